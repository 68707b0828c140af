"""The caller's side of the warm stage host (``host.py``): hand a ``distilflow stage`` call to it, or run cold.

A stage that finds $DISTILFLOW_STAGE_HOST set sends its parsed call, working folder, environment and standard
streams over a Unix socket, then waits for the exit status; its signals go to the forked child meanwhile. This
module holds that side and the wire format both sides speak. It imports nothing heavy: every ``distilflow stage``
imports it before deciding whether to run cold.
"""

from __future__ import annotations

import array
import contextlib
import hashlib
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

HOST_ENV = "DISTILFLOW_STAGE_HOST"
"""``PID:SOCKET`` of the host a ``distilflow stage`` call should hand its run to."""
READY_TIMEOUT_S = 120.0
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STREAMS = 3  # stdin, stdout, stderr


def source_digest() -> str:
    """The source of both sides of the host: a host started from an older copy must not serve a newer caller. (Its
    children import the rest of distilflow from disk afresh; a workspace whose own src/ differs runs with it on
    PYTHONPATH, which the host refuses as another environment: distilflow.runtime.own_code.)"""
    digest = hashlib.sha256()
    for name in ("warm.py", "host.py"):
        digest.update(Path(__file__).with_name(name).read_bytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------- wire format


def send_message(conn: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    data = len(payload := json.dumps(message).encode()).to_bytes(8, "big") + payload
    if fds:
        # A signal can cut a large sendmsg short: the descriptors went with the first part, the rest follows.
        sent = conn.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
        data = data[sent:]
    if data:  # even an empty send fails once the other side has read everything and closed
        conn.sendall(data)


def receive_message(conn: socket.socket, with_fds: int = 0) -> tuple[dict[str, Any], list[int]]:
    """One message; raises EOFError when the other side closed first."""
    fds: list[int] = []
    data = b""
    if with_fds:
        chunk, ancillary, _flags, _addr = conn.recvmsg(1 << 16, socket.CMSG_SPACE(with_fds * array.array("i").itemsize))
        for level, kind, raw in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.extend(array.array("i", raw[: len(raw) - len(raw) % array.array("i").itemsize]))
        data = chunk
    while len(data) < 8 or len(data) < 8 + int.from_bytes(data[:8], "big"):
        chunk = conn.recv(1 << 16)
        if not chunk:
            for fd in fds:
                os.close(fd)
            raise EOFError("the other side closed the connection")
        data += chunk
    size = int.from_bytes(data[:8], "big")
    return json.loads(data[8 : 8 + size]), fds


# ---------------------------------------------------------------------------------------------- caller side


def delegate(argv: list[str], call: dict[str, str | None]) -> int | None:
    """Run ``call`` (the keyword arguments of :func:`distilflow.runtime.dispatch.stage_command`, parsed from the
    command line ``argv``) in the host named by $DISTILFLOW_STAGE_HOST.

    Returns the stage's exit code, or None when there is no usable host and the caller should run it itself.
    """
    address = os.environ.get(HOST_ENV)
    if not address:
        return None
    from distilflow.runtime.locking import die_with_parent
    from distilflow.runtime.progress import quiet_library_bars_off_terminal

    die_with_parent()  # as a cold stage does: kill -9 of the flow takes dvc, us and (through the socket) the child
    quiet_library_bars_off_terminal()  # what the stage would set before its imports; the host did the same
    conn = connect(address)
    if conn is None:
        return None
    with conn:
        request = {"argv": argv, "call": call, "cwd": os.getcwd(), "env": dict(os.environ), "source": source_digest()}
        try:
            send_message(conn, request, fds=list(range(STREAMS)))
            reply, _ = receive_message(conn)
        except BROKEN as error:  # the host died, or closed us in its idle-timeout race: nothing ran yet
            reply = {"refused": f"the connection broke before the stage started ({type(error).__name__})"}
        if "started" not in reply:
            why = reply.get("refused", "the host answered something else")
            print(f"stage host: {why}; running the stage in this process", file=sys.stderr)
            return None
        return _outcome(conn, int(reply["started"]))


BROKEN = (OSError, EOFError, ValueError)  # BrokenPipeError, ConnectionResetError, EOF, a garbled message


def _outcome(conn: socket.socket, child: int) -> int:
    """The exit status of the stage that ``child`` started; the caller's signals go to it meanwhile.

    From here on a broken connection never means a second run: the child sent "started" before doing anything
    else, so the stage may have written outputs, checkpoints or an MLflow run, and a copy of it may still be
    writing. Rerunning it here would run it twice, overlapping, under the same workspace lock token; the call
    fails instead, and whoever runs the pipeline (DVC, the flow's retries) decides about a rerun.
    """
    forward = lambda number, _frame: _forward(child, number)  # noqa: E731
    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED_SIGNALS}
    try:
        outcome, _ = receive_message(conn)
        return int(outcome["status"])
    except (*BROKEN, KeyError, TypeError) as error:
        print(
            f"stage host: the connection broke after the stage started (pid {child}, {type(error).__name__}); "
            "its outcome is unknown, so this call fails rather than run the stage a second time",
            file=sys.stderr,
        )
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _forward(pid: int, number: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, number)


def connect(address: str) -> socket.socket | None:
    """A connection to the host, waiting while it is still importing; None when it is gone or never came up."""
    pid_text, _, path = address.partition(":")
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(path)
            return conn
        except OSError:
            conn.close()
        if not _alive(int(pid_text)) or time.monotonic() > deadline:
            return None
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs. A host that died but is not yet reaped by its starter (a zombie) does not: ``kill(pid,
    0)`` still succeeds for it, and every stage would wait ``READY_TIMEOUT_S`` for it before running cold."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:  # no /proc (not Linux), or the process was reaped meanwhile
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]  # the state follows the command name in brackets
