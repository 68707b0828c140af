"""What the Prefect flow costs on top of a bare `dvc repro`, on the same unchanged workspace.

Both commands are run as a user runs them, alternately, ``--rounds`` times after one warm-up each; medians are
compared. The flow talks to a Prefect server started here on loopback (its start-up is reported separately as
``server_start_s``). ``flow_s`` is the flow run's wall time as Prefect records it (Running to Completed); the whole
``python flows/pipeline.py`` process is reported too (``flow_process_s``): the difference is the interpreter,
Prefect's import and the flow run's creation, a fixed start-up cost like the server's. One serverless run
(Prefect's temporary server on a fresh database) is timed as well.

    python bench/flow_overhead.py [--workspace DIR] [--rounds 5] [--out bench/results/flow-overhead.json]

Without ``--workspace`` a copy of the project with the smoke profile's settings
(distilflow.orchestration.scratch_workspace, as the
tests make theirs) is made and reproduced first (minutes, not timed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from common import ROOT
from distilflow.orchestration.scratch_workspace import make_workspace, smoke_profile, subprocess_env
from distilflow.serving.servers import ServerStartError, free_port, prefect_server_command, start_server, stop_server

SKIPPED = "skipped (up to date)"
REGISTRY_STEP = "registry"  # the flow's step after DVC's stages: "synced" on its first run, then "already registered"


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    process = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    output = process.stdout + process.stderr
    if process.returncode != 0:
        raise SystemExit(f"{shlex.join(command)} exited {process.returncode}:\n{output[-4000:]}")
    return elapsed, output


def start_prefect(home: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str, float]:
    """A Prefect server on loopback, answering ``/api/health``: the process, its API URL and its start-up time."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    server_env = {**env, "PREFECT_HOME": str(home), "PREFECT_API_URL": url, "PREFECT_SERVER_UI_ENABLED": "false"}
    started = time.perf_counter()
    try:
        process = start_server(
            prefect_server_command(port),
            server_env,
            f"{url}/health",
            timeout_s=600,
            log_path=home / "server.log",
            poll_s=0.2,
        )
    except ServerStartError as error:
        raise SystemExit(f"Prefect server did not start: {error}") from error
    return process, url, time.perf_counter() - started


def flow_run_seconds(url: str, output: str) -> float:
    """The flow run's wall time as Prefect recorded it: Running to Completed, i.e. the flow function's body,
    without the interpreter start, Prefect's import and the flow run's creation (reported apart)."""
    found = [line.split()[-1] for line in output.splitlines() if line.startswith("flow run ")]
    if not found:
        raise SystemExit(f"the flow printed no flow run id:\n{output[-2000:]}")
    response = httpx.get(f"{url}/flow_runs/{found[-1]}", timeout=30)
    response.raise_for_status()
    data = response.json()
    started, ended = (datetime.fromisoformat(data[key]) for key in ("start_time", "end_time"))
    return (ended - started).total_seconds()


def stage_outcomes(output: str) -> dict[str, str]:
    """The flow's printed outcome per DVC stage (without its own registry step, which follows dvc.lock)."""
    start, end = output.find("{"), output.rfind("}")
    outcome = json.loads(output[start : end + 1])
    outcome.pop(REGISTRY_STEP, None)
    return outcome


def check_all_skipped(output: str) -> None:
    outcome = stage_outcomes(output)
    if set(outcome.values()) != {SKIPPED}:
        raise SystemExit(f"the workspace is not up to date, the comparison would be unfair: {outcome}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, help="an already reproduced workspace (default: build one)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "flow-overhead.json")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (workspace, Prefect homes)")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="flow-overhead-"))
    try:
        result = measure(args, scratch)
    finally:
        if args.keep:
            print(f"scratch kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def measure(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    env = subprocess_env()
    env.pop("PREFECT_API_URL", None)
    if args.workspace is None:
        root = make_workspace(ROOT, scratch / "ws", smoke_profile(ROOT))
        print(f"reproducing a shrunken workspace in {root} (not timed) ...", flush=True)
        timed(["dvc", "repro"], root, env)
    else:
        root = args.workspace.resolve()

    server, url, server_start_s = start_prefect(scratch / "prefect-home", env)
    flow_env = {**env, "PREFECT_HOME": str(scratch / "prefect-home"), "PREFECT_API_URL": url}
    dvc_cmd = [sys.executable, "-m", "dvc", "repro"]
    flow_cmd = [sys.executable, str(ROOT / "flows" / "pipeline.py"), str(root)]
    try:
        timed(dvc_cmd, root, env)  # warm-ups: page cache, DVC's state database, Prefect's flow record
        _, output = timed(flow_cmd, root, flow_env)
        check_all_skipped(output)
        dvc_times: list[float] = []
        process_times: list[float] = []
        run_times: list[float] = []
        for round_ in range(args.rounds):
            dvc_s, dvc_out = timed(dvc_cmd, root, env)
            if "Running stage" in dvc_out:
                raise SystemExit("dvc repro ran a stage: the workspace is not up to date")
            process_s, output = timed(flow_cmd, root, flow_env)
            check_all_skipped(output)
            dvc_times.append(dvc_s)
            process_times.append(process_s)
            run_times.append(flow_run_seconds(url, output))
            print(
                f"round {round_ + 1}: dvc repro {dvc_s:.2f} s, flow run {run_times[-1]:.2f} s "
                f"(process {process_s:.2f} s)",
                flush=True,
            )
    finally:
        stop_server(server)

    serverless_env = {**env, "PREFECT_HOME": str(scratch / "prefect-home-serverless")}
    serverless_s, output = timed(flow_cmd, root, serverless_env)
    check_all_skipped(output)

    dvc_repro_s = statistics.median(dvc_times)
    flow_s = statistics.median(run_times)
    process_s = statistics.median(process_times)
    result: dict[str, Any] = {
        "command": shlex.join(["python", *sys.argv]),
        "what": "medians on one unchanged workspace (every stage up to date), the two commands alternating: "
        "bare `dvc repro` (whole process) vs `python flows/pipeline.py` against a started Prefect server; "
        "flow_s is the flow run's wall time as Prefect recorded it (Running to Completed), flow_process_s "
        "the whole process including the interpreter, Prefect's import and the flow run's creation",
        "rounds": args.rounds,
        "stages": len(stage_outcomes(output)),
        "dvc_repro_s": round(dvc_repro_s, 3),
        "flow_s": round(flow_s, 3),
        "overhead_pct": round(100.0 * (flow_s - dvc_repro_s) / dvc_repro_s, 1),
        "flow_process_s": round(process_s, 3),
        "process_overhead_pct": round(100.0 * (process_s - dvc_repro_s) / dvc_repro_s, 1),
        "prefect_startup_s": round(process_s - flow_s, 3),
        "server_start_s": round(server_start_s, 2),
        "serverless_flow_process_s": round(serverless_s, 2),
        "within_budget": {
            "flow_s <= 1.15 * dvc_repro_s": flow_s <= 1.15 * dvc_repro_s,
            "flow_process_s <= 1.15 * dvc_repro_s + server_start_s": process_s <= 1.15 * dvc_repro_s + server_start_s,
        },
        "dvc_repro_all_s": [round(value, 3) for value in dvc_times],
        "flow_all_s": [round(value, 3) for value in run_times],
        "flow_process_all_s": [round(value, 3) for value in process_times],
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
        },
    }
    return result


if __name__ == "__main__":
    main()
