"""Detached processes of the team stack: start each in its own process group, tell whether it still runs, stop it.

The stack outlives the command that started it (`distilflow team up` returns while the servers run on), so a
later `down` knows its processes only by what `up` wrote down: the leader's pid and its start time. The start time
guards against a recycled pid; the process group reaches the children a server spawned (MLflow's uvicorn workers,
Prefect's flow-run subprocesses), which would otherwise keep a port or the database busy.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from distilflow.serving.servers import log_tail
from distilflow.team.settings import TeamError

POLL_S = 0.1
READY_POLL_S = 0.25
PROC = Path("/proc")


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot, /proc/PID/stat field 22), or None if no such process."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its closing one.
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[19])


def _snapshot() -> dict[int, tuple[str, int, int]]:
    """Every process now: pid -> (state, parent pid, process group), from /proc/PID/stat."""
    found = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        found[int(entry.name)] = (fields[0], int(fields[1]), int(fields[2]))
    return found


def group_members(pgid: int) -> list[int]:
    """The live processes of the group ``up`` started as ``pgid``: its members and the leader's descendants.

    Descendants count too because PostgreSQL puts each backend in a process group of its own. Zombies do not
    count: here PID 1 may never reap them.
    """
    processes = _snapshot()
    members = {pid for pid, (_, _, group) in processes.items() if group == pgid}
    if pgid in processes:
        members.add(pgid)
    grown = True
    while grown:
        children = {pid for pid, (_, parent, _) in processes.items() if parent in members} - members
        members |= children
        grown = bool(children)
    return sorted(pid for pid in members if processes[pid][0] != "Z")


def is_running(pid: int, ticks: int | None) -> bool:
    """Whether the process group ``up`` started as ``pid`` (at ``ticks``) still has a live member.

    A leader that is gone while its children live on still counts as running: `down` must stop those too. A pid
    whose start time differs is someone else's process that reused the number, so it is left alone.
    """
    if ticks is not None and start_ticks(pid) not in (ticks, None):
        return False
    return bool(group_members(pid))


def spawn(
    command: list[str], env: dict[str, str], log_path: Path, cwd: Path, user: str | None = None
) -> subprocess.Popen[bytes]:
    """Start ``command`` in a new session (its own process group), output appended to ``log_path``.

    ``user``: run as that account (PostgreSQL refuses to run as root). Output goes to a file, never a pipe: nobody
    drains a pipe once `up` has returned, and a full one would block the server.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=user,
            group=user,
            extra_groups=[] if user else None,
        )


def _reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our own child (the test calls `up` and `down` in one process)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _alive(pids: set[int]) -> set[int]:
    processes = _snapshot()
    return {pid for pid in pids if pid in processes and processes[pid][0] != "Z"}


def stop_groups(groups: list[tuple[int, signal.Signals]], grace_s: float) -> list[int]:
    """Send each group its stop signal, wait up to ``grace_s`` for all together, SIGKILL what is left.

    The processes are listed before the signal: once a leader exits, its orphaned descendants (PostgreSQL's
    backends) can no longer be traced to it. Returns the pids still alive after SIGKILL (should be none).
    Stopping a tier at once, not one by one, makes `down` as long as the slowest shutdown, not the sum of them.
    """
    pids = {pid for pgid, _ in groups for pid in group_members(pgid)}
    for pgid, sig in groups:
        _signal_group(pgid, sig)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        for pgid, _ in groups:
            _reap(pgid)
        if not _alive(pids):
            return []
        time.sleep(POLL_S)
    for pgid, _ in groups:
        _signal_group(pgid, signal.SIGKILL)
    for pid in _alive(pids):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    time.sleep(POLL_S)
    for pgid, _ in groups:
        _reap(pgid)
    return sorted(_alive(pids))


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


def wait_ready(
    name: str, process: subprocess.Popen[bytes], log: Path, ready: Callable[[], bool], timeout_s: float
) -> None:
    """Return once ``ready()`` is true; if the process exits first or time runs out, say so and name its log."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise TeamError(
                f"{name} exited with code {process.returncode} before it was ready; log {log}:\n{log_tail(log)}"
            )
        try:
            if ready():
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TeamError(f"{name} was not ready within {timeout_s:.0f} s; log {log}:\n{log_tail(log)}")
        time.sleep(READY_POLL_S)
