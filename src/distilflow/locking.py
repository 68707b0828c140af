"""One pipeline run per workspace at a time: an exclusive ``flock`` on ``.distilflow/pipeline.lock``.

Between two DVC stages nothing stops a second run from rewriting ``params.yaml`` or ``dvc.lock`` under the
first (DVC's own lock is held only while one ``dvc`` command runs), so a flow holds this lock for its whole
duration. The kernel drops a ``flock`` when its holder dies, so a crashed or killed run never leaves a stale
lock behind; the JSON inside the file only names the holder for the waiting side's messages.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LOCK_DIR = ".distilflow"
LOCK_NAME = "pipeline.lock"


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

    def describe(self) -> str:
        return f"{self.owner} (pid {self.pid} on {self.host}, since {self.since})"


def lock_path(root: str | Path) -> Path:
    return Path(root) / LOCK_DIR / LOCK_NAME


def read_holder(root: str | Path) -> LockHolder | None:
    """Who holds the lock now, as the holder wrote it; None when free, unreadable or not yet written."""
    path = lock_path(root)
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return LockHolder(
            pid=int(data["pid"]), host=str(data["host"]), owner=str(data["owner"]), since=str(data["since"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


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
) -> Iterator[LockHolder]:
    """Hold the workspace exclusively; wait up to ``timeout_s`` seconds for a running holder, then fail.

    ``owner`` names this run in the other side's messages (e.g. the Prefect flow run). ``on_wait`` is called
    once, when the lock turns out to be taken, so the caller can say whom it is waiting for.
    """
    if timeout_s < 0:
        raise ValueError(f"timeout_s must be ≥ 0, got {timeout_s}")
    path = lock_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        announced = False
        while not _try_lock(fd):
            holder = read_holder(root)
            if not announced and on_wait is not None:
                on_wait(holder)
            announced = True
            if time.monotonic() >= deadline:
                who = holder.describe() if holder else "another run (holder not recorded yet)"
                raise WorkspaceLocked(
                    f"workspace {Path(root).resolve()} is locked by {who}; gave up after waiting {timeout_s:g} s. "
                    f"Wait for that run to finish (or cancel it), or raise the lock timeout. Lock file: {path}",
                    holder,
                )
            time.sleep(max(0.0, min(poll_s, deadline - time.monotonic())))
        me = LockHolder(
            pid=os.getpid(),
            host=socket.gethostname(),
            owner=owner,
            since=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(asdict(me)) + "\n").encode(), 0)
        try:
            yield me
        finally:
            # Emptied before unlocking: a waiter that reads the file after we let go must not name us.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
