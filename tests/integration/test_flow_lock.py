"""The workspace lock that keeps two pipeline runs apart: real processes contending for a real flock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from distilflow.runtime.locking import WorkspaceLocked, lock_path, read_holder, workspace_lock

HOLD = textwrap.dedent(
    """
    import sys, time
    from distilflow.runtime.locking import workspace_lock
    with workspace_lock(sys.argv[1], "flow run 'first' (abc)"):
        print("held", flush=True)
        time.sleep(float(sys.argv[2]))
    """
)


def hold_in_child(root: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process takes the lock and says so on stdout once it has it."""
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(root), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")},
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "held"
    return child


def test_second_holder_fails_clearly_naming_the_first(tmp_path: Path) -> None:
    child = hold_in_child(tmp_path, 60)
    try:
        started = time.monotonic()
        with pytest.raises(WorkspaceLocked) as caught, workspace_lock(tmp_path, "second", timeout_s=1.0, poll_s=0.1):
            pytest.fail("the lock was granted while another process held it")
        waited = time.monotonic() - started
        message = str(caught.value)
        assert "flow run 'first' (abc)" in message and f"pid {child.pid}" in message
        assert "gave up after waiting 1 s" in message
        assert 0.9 <= waited < 10
        assert caught.value.holder is not None and caught.value.holder.pid == child.pid
    finally:
        child.kill()
        child.wait()


def test_waiter_gets_the_lock_when_the_holder_finishes(tmp_path: Path) -> None:
    child = hold_in_child(tmp_path, 2)
    waits: list[str] = []
    started = time.monotonic()
    with workspace_lock(
        tmp_path,
        "second",
        timeout_s=60,
        poll_s=0.1,
        on_wait=lambda holder: waits.append(holder.owner if holder else "?"),
    ) as me:
        held_after = time.monotonic() - started
        assert read_holder(tmp_path) == me
    assert child.wait(timeout=30) == 0
    assert waits == ["flow run 'first' (abc)"]
    assert held_after >= 1.0  # it really waited for the child's two seconds
    assert read_holder(tmp_path) is None  # released and emptied


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    child = hold_in_child(tmp_path, 600)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert "flow run 'first' (abc)" in lock_path(tmp_path).read_text()  # its note is still in the file ...
    assert read_holder(tmp_path) is None  # ... but names nobody: the kernel dropped its lock
    with workspace_lock(tmp_path, "after the crash", timeout_s=0) as me:  # ... but the kernel dropped its lock
        assert me.owner == "after the crash"


def test_threads_in_one_process_exclude_each_other(tmp_path: Path) -> None:
    inside = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with workspace_lock(tmp_path, "thread"):
            inside.set()
            release.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    assert inside.wait(30)
    try:
        with pytest.raises(WorkspaceLocked), workspace_lock(tmp_path, "main", timeout_s=0):
            pass
    finally:
        release.set()
        thread.join()
    assert lock_path(tmp_path).is_file()


def test_negative_timeout_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="timeout_s"), workspace_lock(tmp_path, "x", timeout_s=-1):
        pass
