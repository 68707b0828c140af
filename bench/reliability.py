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
from distilflow.runtime.process import machine_facts

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
    return ", ".join(f"{key.replace('_', ' ')} {plain(value)}" for key, value in sorted(values.items()))


def plain(value: Any) -> str:
    if isinstance(value, dict):
        return "(" + ", ".join(f"{key}: {item}" for key, item in sorted(value.items())) + ")"
    return str(value)


def volume_section(name: str, values: dict[str, Any]) -> list[str]:
    """One bad-input suite: its headline (cases, what must be zero), then every figure it recorded."""
    must_be_zero = {key: values[key] for key in HEADLINE_ZEROS if key in values}
    tried = values.get("cases_tried", values.get("files_tried", "?"))
    lines = [f"### {name.replace('-', ' ')}", "", f"**{tried} cases tried; {fmt(must_be_zero)}.**", ""]
    lines += [f"- {key.replace('_', ' ')}: {plain(value)}" for key, value in sorted(values.items())]
    return [*lines, ""]


HEADLINE_ZEROS = ("5xx", "stack_traces_or_paths_seen", "rows_silently_changed")
ELSEWHERE = (
    "Two more kills run in `make test` itself, on the session's pipeline: `kill -9` of `distilflow stage finetune` "
    "mid-epoch then a rerun that resumes to the uninterrupted result "
    "(`tests/integration/test_finetune_resume.py`), and `kill -9` of the flow mid-stage leaving no process writing "
    "(`tests/integration/test_flow.py::test_kill_9_of_the_flow_leaves_no_process_writing`)."
)


def load_rows(load: dict[str, Any] | None) -> list[str]:
    if load is None:
        return ["No load result yet: `make pipeline`, then `python bench/serve_load.py --root .`."]
    machine = load.get("machine", {})
    before, after = machine.get("loadavg_before", ["?"])[0], machine.get("loadavg_after", ["?"])[0]
    lines = [
        f"Command: `{load.get('command', '?')}`, on `make pipeline`'s champion "
        f"({load.get('model', {}).get('serving_export', '?')}), run at {load.get('started_at', '?')} with the "
        f"load average at {before} before and {after} after (the machine was shared).",
        "",
        "| concurrency | seconds | requests | errors | p50 ms | p99 ms |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for level in load.get("levels", []):
        lines.append(
            f"| {level.get('concurrency')} | {level.get('seconds')} | {level.get('requests')} | {level.get('errors')} "
            f"| {level.get('p50_ms')} | {level.get('p99_ms')} |"
        )
    memory = load.get("memory") or {}
    if memory:
        lines += [
            "",
            f"Server memory (RSS of its process tree, {memory.get('measured_with', '?')}): "
            f"{memory.get('after_warmup_mb')} MB after the warm-up, {memory.get('after_c32_mb')} MB after c32: "
            f"growth {memory.get('growth_pct')} % (target under 10 %).",
        ]
    return lines


def page(result: dict[str, Any]) -> str:
    records: dict[str, dict[str, Any]] = result["records"]
    faults = {name: values for name, values in records.items() if name.startswith("fault-")}
    races = {name: values for name, values in records.items() if name.startswith("race-")}
    inputs = {name: values for name, values in records.items() if name not in faults and name not in races}
    lines = [
        "# Reliability: faults survived, bad input rejected, load held",
        "",
        f"Written by `{result['command']}` at commit {result['commit'][:12]} on {result['date']} "
        f"(load average at the start {result['machine']['load_average'][0]:.1f}, {result['machine']['cpus']} cores).",
        "Every figure below is read from what the suites recorded in that run; `bench/results/reliability.json` holds",
        "the same figures. CI runs the same suites on every submission (`make test-faults`).",
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
    lines += ["| fault | outcome |", "|---|---|", *figures_table(faults, "fault-"), "", ELSEWHERE]
    lines += ["", "## Two writers of one registry at once", "", "| race | outcome |", "|---|---|"]
    lines += figures_table(races, "race-")
    lines += ["", "## Bad input at volume (Hypothesis)", ""]
    for name, values in sorted(inputs.items()):
        lines += volume_section(name, values)
    lines += ["## Load held (`bench/serve_load.py`)", "", *load_rows(result["load"]), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "reliability.json")
    parser.add_argument("--page", type=Path, default=ROOT / "docs" / "reliability.md")
    parser.add_argument("--render", action="store_true", help="rewrite the page from --out's figures, run nothing")
    args = parser.parse_args(argv)
    if args.render:
        args.page.write_text(page(json.loads(args.out.read_text())))
        return 0
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
