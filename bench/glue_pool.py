"""The GLUE suite on a Prefect work pool with 1 and with 2 workers: wall time of the whole run and of each task.

For each worker count: a fresh committed copy of this project, `distilflow team up --workers N` in it (PostgreSQL,
MLflow, Prefect, N process workers, on free ports), then
``distilflow glue --pool distilflow-process --tasks sst2,mrpc,stsb --profile smoke`` timed from the outside, and
each task's flow run read back from the Prefect server (its worker, start and end). Then `team down` and the copy is
removed. The machine's cores bound what more workers can give: on a 2-core machine two workers share both cores,
so the figure to carry to N machines is the per-task time (docs/team.md projects it).

    python bench/glue_pool.py                      # 1 and 2 workers -> bench/results/glue-pool.json
    python bench/glue_pool.py --workers 2 --tasks sst2,mrpc
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from distilflow.orchestration.scratch_workspace import make_workspace, subprocess_env
from distilflow.serving.servers import free_port
from distilflow.team.settings import Layout, load_credentials, read_state, user_env

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results" / "glue-pool.json"
DISTILFLOW = str(Path(sys.executable).parent / "distilflow")
POOL = "distilflow-process"
POOLED_FLOW = "distilflow-glue-task-on-worker"
PORT_VARS = ("DISTILFLOW_TEAM_POSTGRES_PORT", "DISTILFLOW_TEAM_MLFLOW_PORT", "DISTILFLOW_TEAM_PREFECT_PORT")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def team(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [DISTILFLOW, "team", *args, "--root", str(project)], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"distilflow team {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done


def team_env(project: Path) -> dict[str, str]:
    """What `distilflow team env` exports for the stack up in ``project``."""
    layout = Layout(project)
    state = read_state(layout)
    if state is None:
        raise RuntimeError(f"no team stack is recorded in {layout.state}")
    return user_env(state, load_credentials(layout, {}))


def task_runs(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Each task's flow run as the Prefect server holds it: its worker, state and seconds from start to end."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    wanted = {PREFECT_API_URL: env["PREFECT_API_URL"], PREFECT_API_AUTH_STRING: env["PREFECT_API_AUTH_STRING"]}
    with temporary_settings(wanted), get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[POOLED_FLOW])))
    found: dict[str, dict[str, Any]] = {}
    for run in runs:
        seconds = (run.end_time - run.start_time).total_seconds() if run.start_time and run.end_time else None
        found[run.name] = {
            "worker": (run.labels or {}).get("prefect.worker.name"),
            "state": run.state.name if run.state else None,
            "seconds": round(seconds, 1) if seconds is not None else None,
            "queued_s": round((run.start_time - run.expected_start_time).total_seconds(), 1)
            if run.start_time and run.expected_start_time
            else None,
        }
    return found


def measure(workers: int, tasks: list[str], profile: str) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="distilflow-bench-pool-"))
    base.chmod(0o755)  # PostgreSQL runs as the postgres account, which must reach the cluster's folder
    project = make_workspace(ROOT, base / "project", {})
    project.chmod(0o755)
    env = {**subprocess_env(), **{name: str(free_port()) for name in PORT_VARS}}
    try:
        started = time.perf_counter()
        team(project, env, "up", "--workers", str(workers))
        up_s = time.perf_counter() - started
        env = {**env, **team_env(project)}
        command = [DISTILFLOW, "glue", "--pool", POOL, "--tasks", ",".join(tasks), "--profile", profile]
        log(f"{workers} worker(s): {shlex.join(command)}")
        started = time.perf_counter()
        done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, check=False)
        wall_s = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"the suite failed ({done.returncode}):\n{done.stdout[-4000:]}{done.stderr[-4000:]}")
        per_task = task_runs(env)
    finally:
        with_stack = (project / ".team" / "state.json").is_file()
        if with_stack:
            team(project, env, "down")
        shutil.rmtree(base, ignore_errors=True)
    busiest = max((run["seconds"] or 0.0) for run in per_task.values())
    log(f"{workers} worker(s): {wall_s:.0f} s in all; per task {json.dumps(per_task)}")
    return {
        "workers": workers,
        "team_up_s": round(up_s, 1),
        "wall_s": round(wall_s, 1),
        "per_task": per_task,
        "longest_task_s": busiest,
        "overhead_s": round(wall_s - busiest, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--tasks", default="sst2,mrpc,stsb")
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    tasks = [name for name in args.tasks.split(",") if name]
    runs = [measure(count, tasks, args.profile) for count in args.workers]
    result = {
        "command": shlex.join(["python", "bench/glue_pool.py", *(argv if argv is not None else sys.argv[1:])]),
        "when": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "tasks": tasks,
        "profile": args.profile,
        "runs": runs,
    }
    if len(runs) >= 2:
        result["speedup"] = round(runs[0]["wall_s"] / runs[-1]["wall_s"], 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
