"""Start and stop a local HTTP server (``mlflow models serve``, ``prefect server start``) for a test or benchmark.

Also the exact commands and environment of those servers (``serve_command``, ``serve_env``: ``make serve``, the
tests and the load test run the same).

The integration tests and the benchmarks all need the same thing: a real server on a free loopback port, known
to answer before the first request, and gone afterwards together with any children it spawned (mlflow runs
uvicorn as a child). Doing that in one place keeps the start-up diagnostics (exit code, log tail) and the
process-group clean-up the same everywhere.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

LOG_TAIL_CHARS = 3000
STOP_GRACE_S = 30.0
READY_REQUEST_TIMEOUT_S = 5.0


class ServerStartError(RuntimeError):
    """The server exited or did not answer its readiness URL in time; the message carries the log's tail."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it, so parallel runs do not clash)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(log_path: Path) -> str:
    """The end of a server's log, for the error that says why it did not start."""
    try:
        return log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
    except OSError as error:
        return f"(log unreadable: {error})"


def start_server(
    command: list[str],
    env: dict[str, str],
    ready_url: str,
    timeout_s: float,
    log_path: Path,
    poll_s: float = 0.25,
) -> subprocess.Popen[bytes]:
    """Start ``command`` and return once ``ready_url`` answers HTTP 200.

    The server gets its own session (process group) so that `stop_server` can stop its children too, and its
    output goes to ``log_path`` rather than a pipe nobody drains (a full pipe would block the server). If it
    exits or stays silent past ``timeout_s``, it is stopped and `ServerStartError` says why, with the log's tail.
    """
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise ServerStartError(
                f"{shlex.join(command)} exited {process.returncode} before {ready_url} answered; "
                f"log {log_path}:\n{log_tail(log_path)}"
            )
        try:
            if httpx.get(ready_url, timeout=READY_REQUEST_TIMEOUT_S).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            stop_server(process)
            raise ServerStartError(
                f"{shlex.join(command)}: no HTTP 200 from {ready_url} within {timeout_s:.0f} s; "
                f"log {log_path}:\n{log_tail(log_path)}"
            )
        time.sleep(poll_s)


def stop_server(process: subprocess.Popen[bytes]) -> None:
    """Stop the session `start_server` began: SIGTERM its whole process group, SIGKILL it if still up after 30 s.

    Signalling the group, not just the process, also stops the children it started (mlflow's uvicorn), which
    would otherwise outlive it and keep the port. The process is always reaped, so no zombie is left.
    """
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def serve_command(
    model_uri: str, port: int, host: str = "127.0.0.1", workers: int = 1, timeout_s: int = 60
) -> list[str]:
    """The exact command ``make serve``, the tests and the load test run."""
    return [
        "mlflow",
        "models",
        "serve",
        "-m",
        model_uri,
        "--env-manager",
        "local",
        "-h",
        host,
        "-p",
        str(port),
        "--workers",
        str(workers),
        "--timeout",
        str(timeout_s),
    ]


def serve_env(tracking_uri: str, access_log: bool = False, threads: int | None = None) -> dict[str, str]:
    """Environment for the serving process: where the registry is, and quiet, offline libraries.

    `mlflow models serve` runs uvicorn's command line, which reads UVICORN_* variables: without an access log
    line per request the event loop spends noticeably less CPU on each one.
    """
    env = dict(os.environ)
    env.update(
        MLFLOW_TRACKING_URI=tracking_uri,
        MLFLOW_REGISTRY_URI=tracking_uri,
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE=env.get("HF_HUB_OFFLINE", "1"),
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
        UVICORN_ACCESS_LOG="true" if access_log else "false",
    )
    if threads is not None:
        from distilflow.serving.classifier import (
            THREADS_ENV,  # here: the served model's module imports pandas and MLflow
        )

        env[THREADS_ENV] = str(threads)
    return env


def prefect_server_command(port: int, ui: bool = False) -> list[str]:
    """``prefect server start`` on 127.0.0.1:PORT (without the UI unless asked), from this interpreter's environment.

    The ``prefect`` next to ``sys.executable`` is used, not the first one on PATH, so the server is the same
    Prefect version as the client talking to it.
    """
    prefect = Path(sys.executable).parent / "prefect"
    return [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port), *([] if ui else ["--no-ui"])]
