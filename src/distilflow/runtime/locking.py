"""One pipeline run per workspace at a time: an exclusive ``flock`` on ``.distilflow/pipeline.lock``.

Between two DVC stages nothing stops a second run from rewriting ``params.yaml`` or ``dvc.lock`` under the
first (DVC's own lock is held only while one ``dvc`` command runs), so every way to run the pipeline takes
this lock: the Prefect flow (which ``make pipeline`` runs), ``make sweep`` and each ``distilflow stage``
(so a bare ``dvc repro`` takes it stage by stage). The kernel drops a ``flock`` when its holder dies, so a
crashed or killed run never leaves a stale lock behind; the JSON inside the file only names the holder for
the waiting side's messages.

A holder's own children (``dvc repro`` → ``distilflow stage``) must not wait for their parent: the holder
puts a random token in the lock file and in ``DISTILFLOW_LOCK_TOKEN``, and a process whose inherited token
matches the file's runs under its parent's lock. :func:`die_with_parent` makes sure such a child cannot
outlive the holder, so a killed run leaves nobody writing in the workspace.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from distilflow.runtime.env_vars import exported

LOCK_DIR = ".distilflow"
LOCK_NAME = "pipeline.lock"
TOKEN_ENV = "DISTILFLOW_LOCK_TOKEN"
PR_SET_PDEATHSIG = 1  # prctl(2) option: the signal this process gets when its parent dies


class WorkspaceLocked(RuntimeError):
    """Another run held the workspace for longer than the caller was willing to wait."""

    def __init__(self, message: str, holder: LockHolder | None) -> None:
        super().__init__(message)
        self.holder = holder


@dataclass(frozen=True)
class LockHolder:
    pid: int
    host: str
    owner: str
    since: str
    token: str = ""

    def describe(self) -> str:
        return f"{self.owner} (pid {self.pid} on {self.host}, since {self.since})"


def lock_path(root: str | Path, name: str = LOCK_NAME) -> Path:
    """The lock file: ``name`` in ``root``'s lock folder (other names: locks beside the pipeline's, e.g. the GLUE
    suite's per-task run lock and its table lock, which must not wait for or block a pipeline run)."""
    return Path(root) / LOCK_DIR / name


def read_holder(root: str | Path, name: str = LOCK_NAME) -> LockHolder | None:
    """Who holds the lock now, as the holder wrote it; None when free, unreadable or not yet written.

    A holder killed with SIGKILL cannot empty the file, but the kernel has dropped its lock: the file's
    words count only while somebody really holds the lock.
    """
    path = lock_path(root, name)
    if not _held(path):
        return None
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return LockHolder(
            pid=int(data["pid"]),
            host=str(data["host"]),
            owner=str(data["owner"]),
            since=str(data["since"]),
            token=str(data.get("token", "")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _held(path: Path) -> bool:
    """Whether some process holds the exclusive lock on ``path`` (a shared lock cannot be had meanwhile)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextmanager
def workspace_lock(
    root: str | Path,
    owner: str,
    timeout_s: float = 0.0,
    poll_s: float = 1.0,
    on_wait: Callable[[LockHolder | None], None] | None = None,
    name: str = LOCK_NAME,
) -> Iterator[LockHolder]:
    """Hold the workspace exclusively; wait up to ``timeout_s`` seconds for a running holder, then fail.

    ``owner`` names this run in the other side's messages (e.g. the Prefect flow run). ``on_wait`` is called
    once, when the lock turns out to be taken, so the caller can say whom it is waiting for. A process whose
    ``DISTILFLOW_LOCK_TOKEN`` matches the holder's runs under the holder's lock (it is one of its children).
    While held, ``DISTILFLOW_LOCK_TOKEN`` is set in this process's environment, so children inherit it.
    ``name`` picks another lock file in the same folder (:func:`lock_path`).
    """
    if timeout_s < 0:
        raise ValueError(f"timeout_s must be ≥ 0, got {timeout_s}")
    inherited = os.environ.get(TOKEN_ENV)
    holder = read_holder(root, name)
    # A child process of the holder passes through; a thread of the holder's own process waits like anyone else.
    if inherited and holder is not None and holder.token == inherited and holder.pid != os.getpid():
        yield holder
        return
    path = lock_path(root, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _wait_for_lock(fd, root, name, timeout_s, poll_s, on_wait)
        me = _record_holder(fd, owner)
        try:
            with exported(TOKEN_ENV, me.token):
                yield me
        finally:
            # Emptied before unlocking: a waiter that reads the file after we let go must not name us.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _wait_for_lock(
    fd: int,
    root: str | Path,
    name: str,
    timeout_s: float,
    poll_s: float,
    on_wait: Callable[[LockHolder | None], None] | None,
) -> None:
    """Take the lock on ``fd``, polling every ``poll_s`` seconds; ``WorkspaceLocked`` naming the holder after
    ``timeout_s``. ``on_wait`` hears of the holder once, the first time the lock turns out to be taken."""
    deadline = time.monotonic() + timeout_s
    announced = False
    while not _try_lock(fd):
        holder = read_holder(root, name)
        if not announced and on_wait is not None:
            on_wait(holder)
        announced = True
        if time.monotonic() >= deadline:
            who = holder.describe() if holder else "another run (holder not recorded yet)"
            raise WorkspaceLocked(
                f"workspace {Path(root).resolve()} is locked by {who}; gave up after waiting {timeout_s:g} s. "
                f"Wait for that run to finish (or cancel it), or raise the lock timeout. "
                f"Lock file: {lock_path(root, name)}",
                holder,
            )
        time.sleep(max(0.0, min(poll_s, deadline - time.monotonic())))


def _record_holder(fd: int, owner: str) -> LockHolder:
    """Write who holds the lock (this process, now, a fresh token for its children) into the locked file."""
    me = LockHolder(
        pid=os.getpid(),
        host=socket.gethostname(),
        owner=owner,
        since=datetime.now(UTC).isoformat(timespec="seconds"),
        token=secrets.token_hex(16),
    )
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(asdict(me)) + "\n").encode(), 0)
    return me


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux; elsewhere a no-op).

    ``distilflow stage`` calls it first thing, and the flow starts ``dvc`` with it, so ``kill -9`` of the flow
    takes its ``dvc repro`` and that one's stage process down too instead of leaving them writing outputs.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGKILL)
