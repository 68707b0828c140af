"""`distilflow team up|down|status|env`: PostgreSQL, MLflow (basic auth), Prefect and N process workers on loopback.

Order matters twice: PostgreSQL first (both servers keep their data in it), the workers last (they need Prefect);
`down` stops them the other way round, so no server loses its database under a live request. MLflow and Prefect
start side by side, since both spend their start-up on imports and schema migrations that do not depend on each
other.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from distilflow.team import postgres
from distilflow.team.processes import is_running, port_open, spawn, start_ticks, stop_groups, wait_ready
from distilflow.team.settings import (
    DEFAULT_POOL,
    HOST,
    PORT_ENV,
    Credentials,
    Layout,
    TeamError,
    database_url,
    dvc_remote_url,
    load_credentials,
    ports,
    read_state,
    user_env,
    write_auth_ini,
    write_state,
)

SERVER_START_S = 300.0  # a fresh database means schema migrations: MLflow's and Prefect's take a minute or two here
WORKER_START_S = 120.0
STOP_GRACE_S = 20.0
# Tiers `down` stops one after the other; within a tier, together.
STOP_ORDER = (("worker",), ("mlflow", "prefect"), ("postgres",))
Echo = Callable[[str], None]


def _bin(name: str) -> str:
    """The console script next to this interpreter, so servers and workers run the project's own versions."""
    return str(Path(sys.executable).parent / name)


def _record(
    state: dict[str, Any],
    layout: Layout,
    name: str,
    kind: str,
    process: subprocess.Popen[bytes],
    port: int | None,
    stop: signal.Signals,
) -> None:
    state["services"].append(
        {
            "name": name,
            "kind": kind,
            "pid": process.pid,
            "ticks": start_ticks(process.pid),
            "port": port,
            "log": str(layout.log(name)),
            "signal": stop.name,
        }
    )
    write_state(layout, state)


def _server_env(extra: dict[str, str]) -> dict[str, str]:
    """The caller's environment without settings that would point a server at another store or server."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "PREFECT_"))}
    env.update(extra)
    return env


def _start_servers(layout: Layout, state: dict[str, Any], credentials: Credentials) -> None:
    """MLflow with basic auth and proxied artifacts, and Prefect, both on PostgreSQL; wait for both."""
    pg_port, ml_port, pf_port = (state["ports"][name] for name in ("postgres", "mlflow", "prefect"))
    write_auth_ini(layout, pg_port, credentials)
    mlflow_cmd = [
        _bin("mlflow"), "server", "--app-name", "basic-auth",
        "--backend-store-uri", database_url("mlflow", pg_port),
        "--artifacts-destination", str(layout.artifacts), "--serve-artifacts",
        "--host", HOST, "--port", str(ml_port), "--workers", "1",
    ]  # fmt: skip
    mlflow_env = _server_env(
        {
            "PGPASSFILE": str(layout.pgpass),
            "MLFLOW_AUTH_CONFIG_PATH": str(layout.auth_ini),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": credentials.flask_secret,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
    )
    mlflow = spawn(mlflow_cmd, mlflow_env, layout.log("mlflow"), layout.root)
    _record(state, layout, "mlflow", "mlflow", mlflow, ml_port, signal.SIGTERM)
    prefect_env = _server_env(
        {
            "PGPASSFILE": str(layout.pgpass),
            "PREFECT_HOME": str(layout.prefect_home),
            "PREFECT_API_DATABASE_CONNECTION_URL": database_url("prefect", pg_port, "postgresql+asyncpg"),
            "PREFECT_SERVER_API_AUTH_STRING": credentials.prefect_auth,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
    )
    prefect_cmd = [_bin("prefect"), "server", "start", "--host", HOST, "--port", str(pf_port)]
    prefect = spawn(prefect_cmd, prefect_env, layout.log("prefect"), layout.root)
    _record(state, layout, "prefect", "prefect", prefect, pf_port, signal.SIGTERM)
    mlflow_url, prefect_url = state["urls"]["mlflow"], state["urls"]["prefect"]
    wait_ready("MLflow", mlflow, layout.log("mlflow"), lambda: _ok(f"{mlflow_url}/health"), SERVER_START_S)
    auth = _prefect_auth(credentials)
    wait_ready(
        "Prefect", prefect, layout.log("prefect"), lambda: _ok(f"{prefect_url}/api/health", auth), SERVER_START_S
    )


def _ok(url: str, auth: tuple[str, str] | None = None) -> bool:
    return httpx.get(url, auth=auth, timeout=5).status_code == 200


def _prefect_auth(credentials: Credentials) -> tuple[str, str]:
    user, _, password = credentials.prefect_auth.partition(":")
    return user, password


def online_workers(state: dict[str, Any], credentials: Credentials, since: float = 0.0) -> list[str]:
    """Names of the pool's workers the Prefect server reports ONLINE, with a heartbeat after ``since`` (epoch s)."""
    response = httpx.post(
        f"{state['urls']['prefect']}/api/work_pools/{state['pool']}/workers/filter",
        json={},
        auth=_prefect_auth(credentials),
        timeout=10,
    )
    response.raise_for_status()
    names = []
    for worker in response.json():
        beat = worker.get("last_heartbeat_time")
        fresh = beat is not None and _epoch(beat) >= since
        if worker.get("status") == "ONLINE" and fresh:
            names.append(str(worker["name"]))
    return sorted(names)


def _epoch(timestamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def _start_workers(layout: Layout, state: dict[str, Any], credentials: Credentials, count: int) -> None:
    """Create the process pool unless it exists, start ``count`` workers, wait until the server lists them online."""
    env = {**_server_env(user_env(state, credentials)), "PREFECT_HOME": str(layout.prefect_home)}
    url = f"{state['urls']['prefect']}/api/work_pools/{state['pool']}"
    if httpx.get(url, auth=_prefect_auth(credentials), timeout=10).status_code == 404:
        create = [_bin("prefect"), "work-pool", "create", state["pool"], "--type", "process"]
        done = subprocess.run(create, env=env, cwd=layout.root, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise TeamError(f"{shlex.join(create)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    since = time.time() - 1.0
    started = []
    for index in range(1, count + 1):
        name = f"worker-{index}"
        # --limit 1: a worker takes one flow run at a time, so the pool's runs spread over the workers (a GLUE task
        # is minutes of both cores' work; two on one worker would only slow each other down).
        command = [_bin("prefect"), "worker", "start", "--pool", state["pool"], "--name", name, "--type", "process"]
        command += ["--limit", "1"]
        process = spawn(command, env, layout.log(name), layout.root)
        # The worker stops cleanly on SIGINT (Ctrl-C); `down` sends that first, SIGKILL only after the grace period.
        _record(state, layout, name, "worker", process, None, signal.SIGINT)
        started.append((name, process))
    wanted = sorted(name for name, _ in started)
    for name, process in started:
        ready = lambda name=name: name in online_workers(state, credentials, since)  # noqa: E731
        wait_ready(f"Prefect {name}", process, layout.log(name), ready, WORKER_START_S)
    state["workers"] = len(wanted)
    write_state(layout, state)


def running_services(state: dict[str, Any]) -> list[str]:
    return [s["name"] for s in state["services"] if is_running(s["pid"], s["ticks"])]


def up(root: Path, workers: int = 2, pool: str = DEFAULT_POOL, echo: Echo = print) -> dict[str, Any]:
    """Start the stack under ``root``/.team, or say it is up already. Returns its state (ports, URLs, pids)."""
    if workers < 0:
        raise TeamError(f"workers={workers}: expected 0 or more")
    layout = Layout(root.resolve())
    env = dict(os.environ)
    previous = read_state(layout)
    if previous is not None:
        running = running_services(previous)
        if running and len(running) == len(previous["services"]):
            echo(f"team stack is already up ({len(running)} processes); `distilflow team status` shows them")
            return previous
        if running:
            raise TeamError(f"team stack is partly up ({', '.join(running)} running): run `distilflow team down` first")
    (layout.base / "logs").mkdir(parents=True, exist_ok=True)
    credentials = load_credentials(layout, env)
    chosen = ports(env)
    busy = [f"{name} port {port} ({PORT_ENV[name]})" for name, port in chosen.items() if port_open(port)]
    if busy:
        raise TeamError(f"already in use on {HOST}: {', '.join(busy)}; free it or set the variable to another port")
    state: dict[str, Any] = {
        "pool": pool,
        "workers": 0,
        "ports": chosen,
        "urls": {"mlflow": f"http://{HOST}:{chosen['mlflow']}", "prefect": f"http://{HOST}:{chosen['prefect']}"},
        "dvc_remote": dvc_remote_url(layout, env),
        "services": [],
    }
    write_state(layout, state)
    started = time.monotonic()
    try:
        process = postgres.start(layout, chosen["postgres"], credentials, echo)
        _record(state, layout, "postgres", "postgres", process, chosen["postgres"], signal.SIGINT)
        postgres.create_databases(layout, chosen["postgres"])
        echo("PostgreSQL is up; starting MLflow and Prefect (a first start migrates their databases) ...")
        _start_servers(layout, state, credentials)
        _start_workers(layout, state, credentials, workers)
    except BaseException:
        _stop(layout, state, echo)
        raise
    if "://" not in state["dvc_remote"]:
        Path(state["dvc_remote"]).mkdir(parents=True, exist_ok=True)
    echo(f"team stack is up in {time.monotonic() - started:.0f} s")
    echo(summary(state))
    return state


def summary(state: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"  MLflow   {state['urls']['mlflow']}  (basic auth; artifacts proxied)",
            f"  Prefect  {state['urls']['prefect']}  (pool {state['pool']!r}, {state['workers']} process workers)",
            f"  Postgres {HOST}:{state['ports']['postgres']}  (databases mlflow, mlflow_auth, prefect)",
            f"  DVC      {state['dvc_remote']}",
            'Use it:   eval "$(distilflow team env)"',
            f"DVC:      dvc remote add --local --force --default team {state['dvc_remote']}",
        ]
    )


def _stop(layout: Layout, state: dict[str, Any], echo: Echo) -> list[str]:
    """Stop every recorded process, tier by tier; return what is still alive or still holds its port."""
    for kinds in STOP_ORDER:
        tier = [s for s in state["services"] if s["kind"] in kinds and is_running(s["pid"], s["ticks"])]
        if tier:
            began = time.monotonic()
            stop_groups([(s["pid"], signal.Signals[s["signal"]]) for s in tier], STOP_GRACE_S)
            echo(f"stopped {', '.join(s['name'] for s in tier)} in {time.monotonic() - began:.1f} s")
    left = [f"{s['name']} (pid {s['pid']})" for s in state["services"] if is_running(s["pid"], s["ticks"])]
    left += [f"{s['name']} port {s['port']}" for s in state["services"] if s["port"] and port_open(s["port"])]
    return left


def down(root: Path, echo: Echo = print) -> None:
    """Stop the stack; its data (database, artifacts, DVC remote, credentials) stays in .team/ for the next `up`."""
    layout = Layout(root.resolve())
    state = read_state(layout)
    if state is None or not running_services(state):
        echo("team stack is not running")
        if state is not None:
            layout.state.unlink()
        return
    left = _stop(layout, state, echo)
    if left:
        raise TeamError(f"still running after SIGKILL: {', '.join(left)}; logs in {layout.base / 'logs'}")
    layout.state.unlink()
    echo("team stack is down: no process of it is left and its ports are free")


def status(root: Path, echo: Echo = print) -> bool:
    """Print each process of the stack and whether it runs; True when all of them do."""
    layout = Layout(root.resolve())
    state = read_state(layout)
    if state is None:
        echo("team stack is not running")
        return False
    running = set(running_services(state))
    for service in state["services"]:
        mark = "up  " if service["name"] in running else "DOWN"
        port = f" port {service['port']}" if service["port"] else ""
        echo(f"  {mark} {service['name']:<9} pid {service['pid']}{port}  log {service['log']}")
    echo(summary(state))
    return bool(state["services"]) and len(running) == len(state["services"])


def env_lines(root: Path) -> str:
    """`export` lines for the running stack's URLs and credentials, for `eval "$(distilflow team env)"`."""
    layout = Layout(root.resolve())
    state = read_state(layout)
    if state is None:
        raise TeamError("team stack is not running: start it with `make team-up` or `distilflow team up`")
    credentials = load_credentials(layout, {})
    lines = [f"export {key}={shlex.quote(value)}" for key, value in user_env(state, credentials).items()]
    lines.append(f"# DVC remote: dvc remote add --local --force --default team {state['dvc_remote']}")
    return "\n".join(lines)
