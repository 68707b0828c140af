"""The default test suite as CI runs it: `.ci/run` (install, then README's `make test`) in a fresh clone.

A `git clone` of this checkout's HEAD, with `../shared` beside it as CI has it, runs `bash .ci/run` once. pytest is
asked for its slowest tests (``--durations``) through PYTEST_ADDOPTS, which changes what it prints, not what it runs.
Recorded: the whole run's wall time, pytest's own time (install excluded: the issue's budget), the counts, and the
slowest tests, so a later change can see where the time went.

    python bench/suite.py [--out bench/results/suite.json] [--keep DIR] [--slowest 25]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import RESULTS_DIR, ROOT, command_line, write_result
from distilflow.runtime.process import machine_facts

SUMMARY = re.compile(r"^=*\s*(?P<counts>\d+ passed.*?) in (?P<seconds>[\d.]+)s")
DURATION = re.compile(r"^(?P<seconds>[\d.]+)s (?P<phase>setup|call|teardown)\s+(?P<test>\S+)")
BUDGET_S = 600.0  # issue #19: `make test` on a fresh clone in 10 minutes, install excluded


def run_ci(clone: Path, slowest: int, log: Path) -> tuple[int, float, str]:
    env = {**os.environ, "CI": "true", "PYTEST_ADDOPTS": f"--durations={slowest}"}
    for name in ("VIRTUAL_ENV", "PREFECT_HOME", "MLFLOW_TRACKING_URI", "DISTILFLOW_STAGE_HOST"):
        env.pop(name, None)  # the clone makes its own, as CI's machine would
    started = time.monotonic()
    with log.open("w", encoding="utf-8") as sink:
        process = subprocess.run(["bash", ".ci/run"], cwd=clone, env=env, stdout=sink, stderr=subprocess.STDOUT)
    return process.returncode, time.monotonic() - started, log.read_text(encoding="utf-8")


def parse(output: str) -> dict[str, Any]:
    summary = [match for line in output.splitlines() if (match := SUMMARY.match(line))]
    if not summary:
        raise SystemExit("no pytest summary line in the output: see the log")
    slowest = [
        {"seconds": float(match["seconds"]), "phase": match["phase"], "test": match["test"]}
        for line in output.splitlines()
        if (match := DURATION.match(line))
    ]
    return {"counts": summary[-1]["counts"], "pytest_s": float(summary[-1]["seconds"]), "slowest": slowest}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "suite.json")
    parser.add_argument("--keep", type=Path, help="clone into this folder and keep it (default: temporary)")
    parser.add_argument("--slowest", type=int, default=25, help="how many of the slowest tests to record")
    args = parser.parse_args(argv)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
    with tempfile.TemporaryDirectory(prefix="distilflow-suite-") as scratch:
        base = args.keep or Path(scratch)
        base.mkdir(parents=True, exist_ok=True)
        clone = base / "distilflow"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        shared = ROOT.parent / "shared"
        if shared.is_dir() and not (base / "shared").exists():
            (base / "shared").symlink_to(shared)  # the real GLUE data, where CI's machine has it
        machine = machine_facts()  # the load before the run
        code, wall_s, output = run_ci(clone, args.slowest, base / "ci.log")
    result = {
        "command": command_line("suite.py", sys.argv[1:] if argv is None else argv),
        "what": "bash .ci/run (install, then make test) in a fresh clone of HEAD; pytest_s excludes the install",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit.stdout.strip(),
        "exit_code": code,
        "wall_s": round(wall_s, 1),
        **parse(output),
        "budget_s": BUDGET_S,
        "machine": {**machine, "load_average_after": os.getloadavg()},
    }
    result["within_budget"] = code == 0 and result["pytest_s"] <= BUDGET_S
    write_result(args.out, result)
    print(f"{result['counts']} in {result['pytest_s']:.0f} s of pytest ({wall_s:.0f} s with the install) -> {args.out}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
