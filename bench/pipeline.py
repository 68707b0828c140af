"""The embedded pipeline itself: where a `dvc repro` from a clean clone spends its time.

A fresh `git clone` of this checkout's HEAD (so nothing of this workspace's outputs is reused) runs `dvc repro`
once, exactly as a user would after cloning; every line DVC prints is time-stamped as it arrives. Per stage:

- ``wall_s``: from DVC's "Running stage 'X'" line to the next stage's (or DVC's exit), all a user waits for;
- ``work_s``: the stage's own MLflow run (start to end), the part that trains, scores or validates;
- ``before_s``: from DVC's line to the MLflow run's start: process start, imports, settings, reading inputs;
- ``after_s``: from the run's end to the next stage: closing the run, DVC hashing the outputs, writing dvc.lock.

``overhead_s = wall_s - work_s``. The log's size is recorded too (progress must stay readable in a file).

Modes, each in its own fresh clone: ``warm`` (``distilflow warm dvc repro``, what the Prefect flow does: one warm
stage host forks every stage with the heavy libraries imported), ``cold`` (a bare ``dvc repro``: every stage a fresh
process) and ``make`` (``make pipeline``, the flow, after installing .venv from scratch: a new user's first command).
The top-level figures are the first mode's; ``modes`` holds each, ``warm_vs_cold`` the ratios of those two.

    python bench/pipeline.py [--out bench/results/pipeline.json] [--keep DIR] [--modes warm cold]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import RESULTS_DIR, ROOT, command_line, write_result
from distilflow.tracking.tags import STAGE_TAG

RUNNING = "Running stage '"


def timed_lines(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> tuple[int, list[tuple[float, str]]]:
    """Run ``command``, writing its output to ``log``; every line with the wall-clock time it arrived."""
    lines: list[tuple[float, str]] = []
    with log.open("w", encoding="utf-8") as sink:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        assert process.stdout is not None
        for line in process.stdout:
            lines.append((time.time(), line.rstrip("\n")))
            sink.write(line)
            print(line, end="", flush=True)
        return process.wait(), lines


def stage_starts(lines: list[tuple[float, str]]) -> list[tuple[str, float]]:
    starts = []
    for stamp, line in lines:
        if RUNNING in line:  # the flow's log prefixes DVC's lines with a time, a level and the task's name
            starts.append((line.split(RUNNING, 1)[1].split("'", 1)[0], stamp))
    return starts


def mlflow_runs(workspace: Path) -> dict[str, tuple[float, float]]:
    """Stage tag (``evaluate-teacher`` for DVC's ``evaluate@teacher``) -> (start, end) of its MLflow run, in s."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{workspace / 'mlruns.db'}")
    runs: dict[str, tuple[float, float]] = {}
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id], max_results=1000):
            stage = run.data.tags.get(STAGE_TAG)
            if stage and run.info.end_time:
                runs[stage] = (run.info.start_time / 1000, run.info.end_time / 1000)
    return runs


def per_stage(
    lines: list[tuple[float, str]], finished: float, runs: dict[str, tuple[float, float]]
) -> list[dict[str, Any]]:
    starts = stage_starts(lines)
    rows = []
    for index, (stage, began) in enumerate(starts):
        ended = starts[index + 1][1] if index + 1 < len(starts) else finished
        row: dict[str, Any] = {"stage": stage, "wall_s": round(ended - began, 2)}
        run = runs.get(stage.replace("@", "-"))
        if run is not None:
            row.update(
                work_s=round(run[1] - run[0], 2),
                before_s=round(run[0] - began, 2),
                after_s=round(ended - run[1], 2),
                overhead_s=round(ended - began - (run[1] - run[0]), 2),
            )
        rows.append(row)
    return rows


def summary(stages: list[dict[str, Any]], total: float) -> dict[str, Any]:
    timed = [row for row in stages if "work_s" in row]
    work = sum(row["work_s"] for row in timed)
    return {
        "repro_wall_s": round(total, 1),
        "stage_work_s": round(work, 1),
        "overhead_s": round(total - work, 1),
        "overhead_share": round((total - work) / total, 3) if total else None,
        "median_stage_overhead_s": round(statistics.median(row["overhead_s"] for row in timed), 2) if timed else None,
        "median_before_s": round(statistics.median(row["before_s"] for row in timed), 2) if timed else None,
        "median_after_s": round(statistics.median(row["after_s"] for row in timed), 2) if timed else None,
    }


def dev_metrics(workspace: Path) -> dict[str, Any]:
    """The quality the speed was bought at: teacher and student dev metrics from the committed metric files."""
    found: dict[str, Any] = {}
    for role in ("teacher", "student"):
        path = workspace / "metrics" / f"eval_{role}.json"
        if path.is_file():
            data = json.loads(path.read_text())
            found[role] = {
                key: data[key] for key in ("accuracy", "f1", "pearson", "matthews_correlation") if key in data
            }
    return found


MODES = {
    # What a user's bare `dvc repro` does: every stage a fresh process that imports torch, transformers and MLflow.
    "cold": ["dvc", "repro"],
    # What the Prefect flow (`make pipeline`) does: the same repro with one warm stage host (distilflow.runtime.host).
    "warm": ["distilflow", "warm", "dvc", "repro"],
    # A new user's first command: `make pipeline` in the fresh clone, which installs .venv from scratch first.
    "make": ["make", "pipeline"],
}


def timed_repro(command: list[str], workspace: Path, log: Path) -> dict[str, Any]:
    """One repro of the embedded default in a fresh clone at ``workspace``: its summary and per-stage rows."""
    subprocess.run(["git", "clone", "-q", str(ROOT), str(workspace)], check=True)
    venv_bin = str(Path(sys.executable).parent)
    if command[0] == "make":  # as a new user has it: no project venv on PATH, nothing of this checkout's settings
        path = os.pathsep.join(entry for entry in os.environ["PATH"].split(os.pathsep) if entry != venv_bin)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DISTILFLOW_", "VIRTUAL_ENV"))}
        env["PATH"] = path
    else:
        env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    started = time.time()
    code, lines = timed_lines(command, workspace, env, log)
    finished = time.time()
    if code != 0:
        raise SystemExit(f"{' '.join(command)} exited {code}; log: {log}")
    stages = per_stage(lines, finished, mlflow_runs(workspace))
    starts = stage_starts(lines)
    return {
        "repro_command": " ".join(command),
        **summary(stages, finished - started),
        # make: the install, then the flow's start and its `dvc status` plan; dvc repro: DVC's own start
        "before_first_stage_s": round(starts[0][1] - started, 1) if starts else None,
        "log_bytes": log.stat().st_size,
        "log_lines": len(lines),
        "stages": stages,
        "dev_metrics": dev_metrics(workspace),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "pipeline.json")
    parser.add_argument("--keep", type=Path, help="clone into this folder and keep the clones (default: temporary)")
    parser.add_argument("--modes", nargs="+", choices=sorted(MODES), default=["warm", "cold"])
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="distilflow-bench-"))
    clones = args.keep or scratch
    runs = {mode: timed_repro(MODES[mode], clones / mode, scratch / f"{mode}.log") for mode in args.modes}
    first = runs[args.modes[0]]
    result = {
        "command": command_line("pipeline.py", sys.argv[1:] if argv is None else argv),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip(),
        "what": "dvc repro of the embedded default in fresh clones (no outputs, empty MLflow store), one per mode",
        # The top-level figures are the first mode's (warm by default: what `make pipeline` runs).
        "mode": args.modes[0],
        **{key: value for key, value in first.items() if key != "stages"},
        "stages": first["stages"],
        "modes": runs,
        "machine": {"cpus": os.cpu_count(), "load_average_after": os.getloadavg()},
    }
    if {"warm", "cold"} <= runs.keys():
        result["warm_vs_cold"] = {
            key: round(runs["cold"][key] / runs["warm"][key], 2)
            for key in ("repro_wall_s", "median_stage_overhead_s", "median_before_s")
            if runs["warm"][key]
        }
    write_result(args.out, result)
    print(json.dumps({key: value for key, value in result.items() if key not in ("stages", "modes")}, indent=2))
    if args.keep is None:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
