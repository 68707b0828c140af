"""One page of reliability figures, docs/reliability.md, from the suites that earn them (issue #31).

Runs the fault-injection suite and the property-based suites once with ``DISTILFLOW_RELIABILITY_DIR`` set, so each
test leaves its counts (``tests/reliability_record.py``), reads the load test's result (``bench/serve_load.py``,
which has to be run on a reproduced project: it takes minutes), and writes both the JSON and the page. Every figure
on the page is read from those files; nothing is typed in by hand.

    python bench/reliability.py [--out bench/results/reliability.json] [--page docs/reliability.md]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import RESULTS_DIR, ROOT, command_line, write_result
from distilflow.environment import machine_facts

# The suites whose tests record figures; each runs as one pytest call (serially: the kill tests time processes).
SUITES = {
    "faults": ["tests/faults"],
    "bad input": ["tests/data/test_reader_properties.py", "tests/integration/test_serving_properties.py"],
}
LOAD_RESULT = RESULTS_DIR / "serve-load.json"


def run_suite(paths: list[str], records: Path) -> dict[str, Any]:
    """pytest over ``paths`` with the record folder set; the counts from its JUnit report."""
    junit = records / f"junit-{abs(hash(tuple(paths)))}.xml"
    env = {**os.environ, "DISTILFLOW_RELIABILITY_DIR": str(records)}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-m", "", f"--junitxml={junit}", *paths]
    started = time.monotonic()
    process = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    suite = ElementTree.parse(junit).getroot().find("testsuite")
    assert suite is not None, process.stdout[-2000:]
    counts = {key: int(suite.get(key, "0")) for key in ("tests", "failures", "errors", "skipped")}
    skipped = [
        f"{case.get('name')}: {reason.get('message', '')}"
        for case in suite.iter("testcase")
        for reason in case.findall("skipped")
    ]
    return {"paths": paths, **counts, "skipped_why": skipped, "seconds": round(time.monotonic() - started, 1)}


def load_figures() -> dict[str, Any] | None:
    if not LOAD_RESULT.is_file():
        return None
    return dict(json.loads(LOAD_RESULT.read_text()))


def figures_table(records: dict[str, dict[str, Any]], prefix: str) -> list[str]:
    rows = [f"| {name[len(prefix) :].replace('-', ' ')} | {fmt(values)} |" for name, values in sorted(records.items())]
    return rows or ["| (none recorded) | |"]


def fmt(values: dict[str, Any]) -> str:
    return ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in sorted(values.items()))


def load_rows(load: dict[str, Any] | None) -> list[str]:
    if load is None:
        return ["No load result yet: `make pipeline`, then `python bench/serve_load.py --root .`."]
    lines = [
        f"Command: `{load.get('command', '?')}`",
        "",
        "| concurrency | seconds | requests | errors | p50 ms | p99 ms |",
    ]
    lines.append("|---:|---:|---:|---:|---:|---:|")
    for level in load.get("levels", []):
        lines.append(
            f"| {level.get('concurrency')} | {level.get('seconds')} | {level.get('requests')} | {level.get('errors')} "
            f"| {level.get('p50_ms')} | {level.get('p99_ms')} |"
        )
    memory = load.get("memory")
    if memory:
        lines += ["", f"Server memory (RSS of its process tree): {fmt(memory)}."]
    return lines


def page(result: dict[str, Any]) -> str:
    records: dict[str, dict[str, Any]] = result["records"]
    faults = {name: values for name, values in records.items() if name.startswith("fault-")}
    inputs = {name: values for name, values in records.items() if not name.startswith("fault-")}
    lines = [
        "# Reliability: faults survived, bad input rejected, load held",
        "",
        f"Written by `{result['command']}` at commit {result['commit'][:12]} on {result['date']} "
        f"(load average at the start {result['machine']['load_average'][0]:.1f}, {result['machine']['cpus']} cores). "
        "Every figure below is read from what the suites recorded in that run; `bench/results/reliability.json` holds "
        "the same figures.",
        "",
        "## Suites run",
        "",
        "| suite | tests | failures | errors | skipped | seconds |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, suite in result["suites"].items():
        lines.append(
            f"| {name} (`{' '.join(suite['paths'])}`) | {suite['tests']} | {suite['failures']} | {suite['errors']} "
            f"| {suite['skipped']} | {suite['seconds']} |"
        )
    skipped = [why for suite in result["suites"].values() for why in suite["skipped_why"]]
    lines += [f"- skipped: {why}" for why in skipped]
    lines += ["", "## Faults injected (each a real process killed or a real store broken)", ""]
    lines += ["| fault | outcome |", "|---|---|", *figures_table(faults, "fault-")]
    lines += ["", "## Bad input at volume (Hypothesis)", "", "| suite | cases |", "|---|---|"]
    lines += figures_table(inputs, "")
    lines += ["", "## Load held (`bench/serve_load.py`)", "", *load_rows(result["load"]), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "reliability.json")
    parser.add_argument("--page", type=Path, default=ROOT / "docs" / "reliability.md")
    args = parser.parse_args(argv)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
    machine = machine_facts()
    with tempfile.TemporaryDirectory(prefix="reliability-") as folder:
        records_dir = Path(folder)
        suites = {name: run_suite(paths, records_dir) for name, paths in SUITES.items()}
        records = {path.stem: json.loads(path.read_text()) for path in sorted(records_dir.glob("*.json"))}
    result = {
        "command": command_line("reliability.py", argv if argv is not None else sys.argv[1:]),
        "commit": commit.stdout.strip(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "suites": suites,
        "records": records,
        "load": load_figures(),
    }
    write_result(args.out, result)
    args.page.write_text(page(result))
    failed = sum(suite["failures"] + suite["errors"] for suite in suites.values())
    print(f"{args.page}: {len(records)} figures from {sum(s['tests'] for s in suites.values())} tests, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
