"""Load test of the served model: a real `mlflow models serve` on loopback, a real HTTP client, bounded runs.

Starts ``mlflow models serve -m models:/distilflow-<task>-student@champion --env-manager local -h 127.0.0.1``
(the same command as ``make serve``), warms it up, then sends single-sentence POSTs at each ``--concurrency``:
a level stops after ``--requests`` requests or ``--max-seconds``, whichever comes first, or with ``--seconds``
runs for that long whatever the count (sustained load). Latency is measured per request by the client (send to
full response), so it includes HTTP, JSON and MLflow's scoring server, not just the model. The server's memory
(resident set of its whole process tree) is read after the warm-up and after every level: a leak shows as growth.
Results (with the exact command) go to bench/results/serve-load.json.

    python bench/serve_load.py --root .                 # the project's champion, c1 and c8, 2,000 requests each
    python bench/serve_load.py --root . --concurrency 1 8 32 --seconds 60   # sustained: 60 s per level
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from distilflow.config.loading import load_params
from distilflow.paths import Paths
from distilflow.registry.aliases import model_name
from distilflow.serving.servers import ServerStartError, free_port, serve_command, serve_env, start_server, stop_server
from distilflow.tasks import get_task
from distilflow.tracking.runs import tracking_uri
from distilflow.tracking.tags import METRIC_NAME_TAG, METRIC_TAG, SERVING_BACKEND_TAG, SERVING_EXPORT_TAG

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "serve-load.json"
TARGETS = {"c1_p50_ms": 10.0, "c1_p99_ms": 30.0, "c8_errors": 0, "min_requests": 2000, "memory_growth_pct": 10.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("."), help="project folder (params.yaml, mlruns.db)")
    parser.add_argument("--model-uri", help="default: models:/distilflow-<task>-student@champion")
    parser.add_argument("--requests", type=int, default=2000, help="requests per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--max-seconds", type=float, default=180.0, help="time bound per concurrency level")
    parser.add_argument(
        "--seconds", type=float, help="sustained load: run every level this long, however many requests that is"
    )
    parser.add_argument("--warmup", type=int, default=100, help="sequential requests before measuring")
    parser.add_argument("--start-timeout", type=float, default=300.0, help="seconds to wait for /ping")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--server-log", type=Path, help="default: a file in a new temporary folder")
    return parser.parse_args(argv)


def dev_sentences(paths: Paths, field: str) -> list[str]:
    """The project's validated dev texts (what the model was scored on), else the demo dev set."""
    validated = paths.validated_dir / "dev.parquet"
    if validated.is_file():
        texts = pd.read_parquet(validated)[field].astype(str).tolist()
    else:
        demo = REPO_ROOT / "data" / "demo" / "sst2" / "dev.tsv"
        texts = pd.read_csv(demo, sep="\t")["sentence"].astype(str).tolist()
    return [text for text in texts if text.strip()]


def start(command: list[str], env: dict[str, str], url: str, timeout_s: float, log: Path) -> subprocess.Popen[bytes]:
    """The server, answering ``/ping``; a failed start ends the script with the reason and the log's tail."""
    try:
        return start_server(command, env, f"{url}/ping", timeout_s, log, poll_s=0.25)
    except ServerStartError as error:
        raise SystemExit(str(error)) from error


def session_stats(session_id: int) -> list[list[str]] | None:
    """The /proc stat fields (after ``(comm)``) of every process in the server's session; Linux only.

    `start_server` gives the server a session of its own, so this is mlflow and the uvicorn it runs.
    Fields: state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime ... rss is the 22nd.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    found = []
    for stat in proc.glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == session_id:
                found.append(fields)
    return found


def session_cpu_seconds(session_id: int) -> float | None:
    """CPU time (user + system) used so far by every process of the server's session.

    Latency on a shared machine depends on what else runs; CPU time per request does not, so it is reported
    alongside as the server's own cost.
    """
    stats = session_stats(session_id)
    if stats is None:
        return None
    return sum(int(fields[11]) + int(fields[12]) for fields in stats) / os.sysconf("SC_CLK_TCK")


def server_rss_mb(pid: int) -> float | None:
    """Resident memory of the server's process tree in MB: psutil if it is installed, else /proc."""
    try:
        import psutil
    except ImportError:
        stats = session_stats(pid)
        if stats is None:
            return None
        return sum(int(fields[21]) for fields in stats) * os.sysconf("SC_PAGE_SIZE") / 2**20
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return None
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += process.memory_info().rss
    return total / 2**20


def load_level(
    url: str, texts: list[str], concurrency: int, requests: int, max_seconds: float, labels: set[str] | None
) -> dict[str, Any]:
    """``requests`` single-sentence POSTs from ``concurrency`` threads, each with its own keep-alive client."""
    lock, issued = threading.Lock(), 0
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.monotonic() + max_seconds

    def next_index() -> int | None:
        nonlocal issued
        with lock:
            if issued >= requests or time.monotonic() > deadline:
                return None
            issued += 1
            return issued - 1

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=10.0) as client:
            while (index := next_index()) is not None:
                body = json.dumps({"inputs": [texts[index % len(texts)]]})
                start = time.perf_counter()
                try:
                    response = client.post("/invocations", content=body, headers={"Content-Type": "application/json"})
                    elapsed = (time.perf_counter() - start) * 1000
                    problem = None
                    if response.status_code != 200:
                        problem = f"HTTP {response.status_code}: {response.text[:200]}"
                    else:
                        rows = response.json()["predictions"]
                        if len(rows) != 1 or (labels is not None and rows[0].get("label") not in labels):
                            problem = f"unexpected answer {rows!r:.200}"
                except (httpx.HTTPError, ValueError, KeyError) as error:
                    elapsed = (time.perf_counter() - start) * 1000
                    problem = f"{type(error).__name__}: {error}"
                with lock:
                    latencies.append(elapsed)
                    if problem is not None:
                        errors.append(problem)

    began = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    wall = time.perf_counter() - began
    values = np.asarray(latencies)
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": len(errors),
        "error_samples": sorted(set(errors))[:5],
        "p50_ms": round(float(np.percentile(values, 50)), 3),
        "p95_ms": round(float(np.percentile(values, 95)), 3),
        "p99_ms": round(float(np.percentile(values, 99)), 3),
        "mean_ms": round(float(values.mean()), 3),
        "max_ms": round(float(values.max()), 3),
        "rps": round(len(latencies) / wall, 1),
        "seconds": round(wall, 2),
        "stopped_by": "requests" if len(latencies) >= requests else "time bound",
    }


def model_facts(uri: str, model_uri: str) -> dict[str, Any]:
    """The served version and its form, from the registry (an alias URI), for the result file."""
    import mlflow

    model: dict[str, Any] = {"uri": model_uri}
    if model_uri.startswith("models:/") and "@" in model_uri:
        client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        name, alias = model_uri.removeprefix("models:/").split("@")
        version = client.get_model_version_by_alias(name, alias)
        model.update(
            version=str(version.version),
            serving_backend=version.tags.get(SERVING_BACKEND_TAG),
            serving_export=version.tags.get(SERVING_EXPORT_TAG),
            metric={version.tags.get(METRIC_NAME_TAG, "metric"): float(version.tags.get(METRIC_TAG, "nan"))},
        )
    return model


def run_levels(
    server: subprocess.Popen[bytes], url: str, texts: list[str], args: argparse.Namespace, labels: set[str] | None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every concurrency level in turn, each with the server's CPU per request; and the server's memory."""
    requests = sys.maxsize if args.seconds else args.requests
    max_seconds = args.seconds or args.max_seconds
    load_level(url, texts, 1, args.warmup, args.max_seconds, labels)
    memory: dict[str, Any] = {"after_warmup_mb": rounded(server_rss_mb(server.pid))}
    levels = []
    for concurrency in args.concurrency:
        server_cpu, client_cpu = session_cpu_seconds(server.pid), time.process_time()
        level = load_level(url, texts, concurrency, requests, max_seconds, labels)
        server_cpu_after = session_cpu_seconds(server.pid)
        if server_cpu is not None and server_cpu_after is not None:
            level["server_cpu_ms_per_request"] = round((server_cpu_after - server_cpu) * 1000 / level["requests"], 3)
        level["client_cpu_ms_per_request"] = round((time.process_time() - client_cpu) * 1000 / level["requests"], 3)
        level["server_rss_mb_after"] = memory[f"after_c{concurrency}_mb"] = rounded(server_rss_mb(server.pid))
        levels.append(level)
        print(json.dumps(level), flush=True)
    before, after = memory["after_warmup_mb"], levels[-1]["server_rss_mb_after"] if levels else None
    if before and after:
        memory["growth_pct"] = round((after - before) * 100 / before, 2)
    memory["measured_with"] = "psutil" if importlib.util.find_spec("psutil") else "/proc"
    return levels, memory


def rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def checks_for(levels: list[dict[str, Any]], memory: dict[str, Any]) -> dict[str, bool]:
    by_name = {f"c{level['concurrency']}": level for level in levels}
    checks = {}
    if c1 := by_name.get("c1"):
        checks["c1_p50_within_10ms"] = c1["p50_ms"] <= TARGETS["c1_p50_ms"]
        checks["c1_p99_within_30ms"] = c1["p99_ms"] <= TARGETS["c1_p99_ms"]
    if c8 := by_name.get("c8"):
        checks["c8_no_errors_over_2000"] = c8["errors"] == 0 and c8["requests"] >= TARGETS["min_requests"]
    if levels:
        checks["no_errors_at_any_level"] = all(level["errors"] == 0 for level in levels)
    if "growth_pct" in memory:
        checks["memory_growth_under_10pct"] = memory["growth_pct"] < TARGETS["memory_growth_pct"]
    return checks


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    paths = Paths.at(args.root)
    params = load_params(paths.params_file)
    task = get_task(params.task)
    if task.is_pair:
        raise SystemExit(f"{task.name} is a pair task; this load test sends single sentences (use sst2 or cola)")
    uri = tracking_uri(params, paths)
    model_uri = args.model_uri or f"models:/{model_name(task.name, 'student')}@champion"
    model = model_facts(uri, model_uri)
    texts = dev_sentences(paths, task.fields[0])
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = serve_command(model_uri, port, workers=params.register_.serving.workers)
    env = serve_env(uri, access_log=params.register_.serving.access_log)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    log = args.server_log or Path(tempfile.mkdtemp(prefix="serve-load-")) / "server.log"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    began = time.perf_counter()
    server = start(command, env, url, args.start_timeout, log)
    startup_s = time.perf_counter() - began
    print(f"server up in {startup_s:.1f} s (log {log}): {shlex.join(command)}", flush=True)
    try:
        levels, memory = run_levels(server, url, texts, args, set(task.labels) if task.labels else None)
    finally:
        stop_server(server)
    serving = params.register_.serving
    result = {
        "command": shlex.join(["python", *sys.argv]) if argv is None else shlex.join(["python", __file__, *argv]),
        "server_command": shlex.join(command),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": model,
        "request": 'POST /invocations {"inputs": [<one dev sentence>]}, the dev sentences in turn',
        "distinct_texts": len(texts),
        "server": {"workers": serving.workers, "threads": serving.threads, "access_log": serving.access_log},
        "startup_s": round(startup_s, 1),
        "machine": machine(load_before, os.getloadavg()),
        "warmup_requests": args.warmup,
        "per_level": f"{args.seconds} s" if args.seconds else f"{args.requests} requests or {args.max_seconds} s",
        "levels": levels,
        "memory": memory,
        "targets": TARGETS,
        "checks": checks_for(levels, memory),
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return result


def machine(load_before: tuple[float, float, float], load_after: tuple[float, float, float]) -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
    }


if __name__ == "__main__":
    main()
