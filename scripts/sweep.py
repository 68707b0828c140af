"""`make sweep`: a distill.temperature × distill.alpha grid as DVC experiments, run one at a time, then compared.

Each grid point is queued with ``dvc exp run --queue -S ...`` and all of them run with ``dvc exp run --run-all``,
each in its own temporary copy of the repo, so the workspace stays untouched. Only the stages a distillation
setting can change run (distill and evaluate@student by default, via the target); everything upstream comes from
the DVC cache. The register stage is left out on purpose: a sweep explores, it should not move the champion
alias. Pick a winner with ``dvc exp apply NAME`` (or ``dvc exp branch NAME BRANCH``), then ``dvc repro`` registers it.

Stage runs of every experiment are logged to this project's MLflow store (MLFLOW_TRACKING_URI is pointed at it),
not to the temporary copies that DVC deletes afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# The columns people compare: swept params, each model's GLUE score and accuracy, size and latency (docs/dvc.md).
SHOW_KEEP = (
    r"Experiment$|Created$|State$|distill\.(temperature|alpha)$"
    r"|metrics/eval_(teacher|student)\.json:(accuracy|glue_score|latency_p95_ms|size_mb)$"
)
EVAL_COLUMNS = (
    "glue_score",
    "accuracy",
    "f1",
    "matthews_correlation",
    "pearson",
    "spearmanr",
    "latency_p95_ms",
    "size_mb",
    "parameters",
)


class SweepError(RuntimeError):
    """The repository is not in a state where a sweep can start."""


def run(cmd: list[str], root: Path, env: dict[str, str] | None = None, capture: bool = False) -> str:
    print("$ " + shlex.join(cmd), flush=True)
    process = subprocess.run(cmd, cwd=root, env=env, text=True, check=False, capture_output=capture)
    if process.returncode != 0:
        detail = (process.stdout or "")[-3000:] + (process.stderr or "")[-3000:] if capture else ""
        raise SweepError(f"{shlex.join(cmd)} exited {process.returncode}\n{detail}")
    return process.stdout or ""


def check_repo(root: Path) -> None:
    """Experiments are git commits on top of HEAD: there must be one, with dvc.lock, and an empty queue."""
    head = subprocess.run(
        ["git", "rev-parse", "--verify", "HEAD"], cwd=root, capture_output=True, text=True, check=False
    )
    if head.returncode != 0:
        raise SweepError("no git commit yet: commit the project first (experiments are based on HEAD)")
    locked = subprocess.run(["git", "cat-file", "-e", "HEAD:dvc.lock"], cwd=root, capture_output=True, check=False)
    if locked.returncode != 0:
        print(
            "note: HEAD has no dvc.lock; upstream stages come from DVC's run cache if `make pipeline` ran "
            "here, otherwise every experiment recomputes them. Commit dvc.lock after `make pipeline`.",
            flush=True,
        )
    status = subprocess.run(["dvc", "queue", "status"], cwd=root, capture_output=True, text=True, check=False)
    if "Queued" in status.stdout:
        raise SweepError(
            "the DVC experiment queue already holds queued experiments (`dvc queue status`); "
            "run them with `dvc exp run --run-all` or drop them with `dvc queue remove --queued`"
        )


def ensure_mlflow_experiment(root: Path) -> str:
    """Create the MLflow experiment in the project's store first, so its artifact folder is the project's own.

    Otherwise the first sweep run in a fresh clone would create it with artifacts inside DVC's temporary copy.
    """
    from distilflow.config.loading import load_params
    from distilflow.paths import Paths
    from distilflow.tracking.runs import configure_mlflow

    paths = Paths.at(root)
    return configure_mlflow(load_params(paths.params_file), paths)


def grid_size(*values: str) -> int:
    size = 1
    for value in values:
        size *= len([item for item in value.split(",") if item.strip()])
    return size


def experiment_rows(root: Path) -> list[dict[str, Any]]:
    """Name, swept params and eval metrics of every experiment on the baseline, from `dvc exp show --json`."""
    shown = json.loads(run(["dvc", "exp", "show", "--json"], root, capture=True))
    rows = []
    for baseline in shown:
        for experiment in baseline.get("experiments") or []:
            for revision in experiment.get("revs", []):
                data = revision.get("data") or {}
                params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
                metrics = data.get("metrics") or {}
                row: dict[str, Any] = {
                    "name": revision.get("name") or experiment.get("name"),
                    "rev": revision.get("rev"),
                    "temperature": params.get("distill", {}).get("temperature"),
                    "alpha": params.get("distill", {}).get("alpha"),
                    "error": (revision.get("error") or {}).get("msg"),
                }
                for role in ("teacher", "student"):
                    values = (metrics.get(f"metrics/eval_{role}.json") or {}).get("data") or {}
                    row[role] = {key: values[key] for key in EVAL_COLUMNS if key in values}
                rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--temperature", default="1.0,4.0", help="comma-separated distill.temperature values")
    parser.add_argument("--alpha", default="0.5,0.9", help="comma-separated distill.alpha values")
    parser.add_argument("--jobs", type=int, default=1, help="experiments run at once (each uses all cores)")
    parser.add_argument(
        "--target",
        default="evaluate@student",
        help="last stage to run in each experiment (default stops before register)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra -S for every grid point, e.g. distill.max_steps=100",
    )
    parser.add_argument("--root", type=Path, default=Path("."), help="the project folder")
    parser.add_argument("--record", type=Path, help="write timings and results as JSON here")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")

    from distilflow.runtime.locking import WorkspaceLocked, workspace_lock

    try:
        with workspace_lock(root, "make sweep", timeout_s=0):
            return sweep(args, root)
    except WorkspaceLocked as error:
        print(f"sweep: {error}", file=sys.stderr)
        return 2


def sweep(args: argparse.Namespace, root: Path) -> int:
    try:
        check_repo(root)
        env = dict(os.environ)
        env["MLFLOW_TRACKING_URI"] = ensure_mlflow_experiment(root)
        started = time.perf_counter()
        queue_cmd = [
            "dvc",
            "exp",
            "run",
            "--queue",
            "-S",
            f"distill.temperature={args.temperature}",
            "-S",
            f"distill.alpha={args.alpha}",
        ]
        for extra in args.set:
            queue_cmd += ["-S", extra]
        queue_cmd.append(args.target)
        run(queue_cmd, root)
        queued = time.perf_counter()
        run(["dvc", "exp", "run", "--run-all", "--jobs", str(args.jobs)], root, env=env)
        finished = time.perf_counter()
        run(["dvc", "exp", "show", "--no-pager", "--md", "--drop", ".*", "--keep", SHOW_KEEP], root)
    except SweepError as error:
        print(f"sweep failed: {error}", file=sys.stderr)
        return 1

    if args.record:
        rows = experiment_rows(root)
        record = {
            "command": shlex.join([sys.executable, *sys.argv]),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "grid": {"distill.temperature": args.temperature, "distill.alpha": args.alpha, "extra": args.set},
            "experiments": grid_size(args.temperature, args.alpha),
            "jobs": args.jobs,
            "target": args.target,
            "cpu_count": os.cpu_count(),
            "load_average_at_end": os.getloadavg(),
            "seconds": {
                "queue": round(queued - started, 1),
                "run_all": round(finished - queued, 1),
                "total": round(finished - started, 1),
            },
            "results": rows,
        }
        args.record.parent.mkdir(parents=True, exist_ok=True)
        args.record.write_text(json.dumps(record, indent=2) + "\n")
        print(f"recorded {args.record}")
    print(
        f"{grid_size(args.temperature, args.alpha)} experiments in {finished - started:.0f} s. "
        "Keep one: dvc exp apply NAME && dvc repro (registers it), or dvc exp branch NAME BRANCH."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
