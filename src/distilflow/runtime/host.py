"""A warm process that forks stage runs with the heavy libraries already imported.

Each ``distilflow stage NAME`` is a fresh process, and before this module about 6 s of each one went to importing
torch, transformers, datasets and MLflow (``bench/results/pipeline.json``: 7.8 s median before a stage's MLflow run
opened). A flow run starts one host for all its stages: the host imports those libraries once, then forks a child
per ``distilflow stage`` call, which runs the stage with the caller's working folder, environment, arguments and
standard streams (passed over a Unix socket), so DVC sees the same command, output and exit code as a cold run.

What keeps a warm run equal to a cold one:
- The host imports third-party libraries only, never ``distilflow`` code, so each child imports this project's
  modules from disk: an edit between two stages is in the next stage, as ``dvc.yaml``'s deps promise.
- The host serves only callers whose environment matches its own (libraries read many settings, such as
  ``HF_HUB_OFFLINE`` or ``OMP_NUM_THREADS``, at import time), and only the source of this module it was started
  from. Any difference, or no host, and the caller runs the stage itself: slower, never different.
- A child dies with its caller: it watches the caller's end of the socket and kills itself when it closes, as
  ``kill -9`` of the flow takes ``dvc`` and the stage with it. The caller forwards SIGINT, SIGTERM and SIGHUP.

No heavy import here: ``distilflow stage`` imports this module before deciding whether to run cold.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from distilflow.runtime import env_vars
from distilflow.runtime.warm import (
    BROKEN,
    FORWARDED_SIGNALS,
    HOST_ENV,
    STREAMS,
    connect,
    receive_message,
    send_message,
    source_digest,
)

PRELOAD = (
    "torch",
    "transformers",
    "datasets",
    "evaluate",
    "mlflow",
    "mlflow.pyfunc",
    "mlflow.store.tracking.sqlalchemy_store",  # ~1 s more per stage: the sqlite store every stage run opens
    "mlflow.store.model_registry.sqlalchemy_store",
    "git",  # GitPython, which MLflow's run context imports to tag the commit (~1 s)
    "sqlalchemy",
    "alembic",
    "pandas",
    "pydantic",
    "yaml",
    "typer",
    "sklearn.metrics",
    "matplotlib.pyplot",
    "great_expectations",
)
# Keys a caller's environment may differ in, because no import reads them (the child runs with the caller's whole
# environment, so what is read later sees the caller's value): set per command by a shell or per test by pytest
# (MLflow checks PYTEST_CURRENT_TEST per session), an id (MLflow's telemetry session), or read only by code the
# host never imports (this project's DISTILFLOW_* settings, DVC's and Prefect's), which each child imports fresh.
VOLATILE_ENV = frozenset({"_", "PWD", "OLDPWD", "SHLVL", "PYTEST_CURRENT_TEST", "_MLFLOW_TELEMETRY_SESSION_ID"})
VOLATILE_PREFIXES = ("DVC_", "DISTILFLOW_", "PREFECT_")
REQUEST_TIMEOUT_S = 10.0


def comparable_env(env: Mapping[str, str]) -> dict[str, str]:
    # The libraries' bar switches differ between a caller on a terminal and one in a log; the child sets them
    # through the libraries' own functions (_progress_bars_as), which work because the host never sets them.
    from distilflow.runtime.progress import LIBRARY_BARS_OFF

    ignored = VOLATILE_ENV | LIBRARY_BARS_OFF.keys()
    return {k: v for k, v in env.items() if k not in ignored and not k.startswith(VOLATILE_PREFIXES)}


def env_difference(host: Mapping[str, str], caller: Mapping[str, str]) -> list[str]:
    """The keys (never the values: they may be secrets) in which two environments differ."""
    mine, theirs = comparable_env(host), comparable_env(caller)
    return sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))


# ---------------------------------------------------------------------------------------------- host side


def serve(path: str, idle_timeout_s: float, starter: int | None = None) -> None:
    """Import the heavy libraries, then fork a child per request until idle for ``idle_timeout_s``.

    ``starter``: the pid of the process that started us. If it died before we could ask the kernel to kill us with
    it (a flow killed while we were starting), we are an orphan already and leave at once.
    """
    from distilflow.runtime.locking import die_with_parent

    die_with_parent()  # the flow that started us
    if starter is not None and os.getppid() != starter:
        return
    host_env, digest = dict(os.environ), source_digest()
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            __import__(name)
    # Some imports set variables for themselves (KMP_INIT_AT_FORK, MLflow's telemetry session): a cold stage
    # would have them too, so children get them on top of the caller's environment.
    import_env = {k: v for k, v in os.environ.items() if k not in host_env}
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".part")
    listener.listen(16)
    os.rename(path + ".part", path)  # callers connect only once the imports are done
    waiting: dict[int, socket.socket] = {}  # child pid -> its caller's connection
    last_activity = time.monotonic()
    while waiting or time.monotonic() - last_activity < idle_timeout_s:
        readable, _, _ = select.select([listener], [], [], 0.2)
        if readable:
            conn, _ = listener.accept()
            last_activity = time.monotonic()
            pid = _start(conn, host_env, import_env, digest, listener)
            if pid is not None:
                waiting[pid] = conn
        for pid, status in _reaped(list(waiting)):
            conn = waiting.pop(pid)
            with contextlib.suppress(OSError):
                send_message(conn, {"status": status})
            conn.close()
            last_activity = time.monotonic()
    listener.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _reaped(pids: list[int]) -> Iterator[tuple[int, int]]:
    for pid in pids:
        done, raw = os.waitpid(pid, os.WNOHANG)
        if done:
            yield pid, os.waitstatus_to_exitcode(raw) if not os.WIFSIGNALED(raw) else 128 + os.WTERMSIG(raw)


def refusal_for(
    request: dict[str, Any], host_env: dict[str, str], import_env: dict[str, str], digest: str
) -> str | None:
    """Why the host cannot run ``request`` exactly as a fresh process would; None when it can.

    A variable the host's imports set for themselves (``import_env``) may be in the caller's environment too (a
    caller that imported the same libraries, a flow or a test process) as long as it holds the value the imports
    chose: a fresh process would end up with that value either way.
    """
    if request.get("source") != digest:
        return "it runs an older distilflow.runtime.host"
    if differing := env_difference({**host_env, **import_env}, {**import_env, **request["env"]}):
        return f"the environment differs in {', '.join(differing[:8])}"
    return None


def _start(
    conn: socket.socket, host_env: dict[str, str], import_env: dict[str, str], digest: str, listener: socket.socket
) -> int | None:
    """Fork the child for one request; returns its pid, or None when the request was refused."""
    conn.settimeout(REQUEST_TIMEOUT_S)  # a caller sends its request at once; one that does not must not stall us
    try:
        request, fds = receive_message(conn, with_fds=STREAMS)
    except (EOFError, OSError, ValueError):
        conn.close()
        return None
    conn.settimeout(None)
    refusal = refusal_for(request, host_env, import_env, digest)
    if refusal is None and not request.get("probe") and len(fds) != STREAMS:
        refusal = "the standard streams did not arrive"
    if refusal:  # on the host's stderr: a log (warm_host's ``log``) shows which callers ran cold and why
        kind = "probe" if request.get("probe") else f"stage {request.get('call', {}).get('name')}"
        print(f"refused {kind} in {request.get('cwd')}: {refusal}", file=sys.stderr, flush=True)
    if refusal or request.get("probe"):
        for fd in fds:
            os.close(fd)
        send_message(conn, {"refused": refusal} if refusal else {"ok": True})
        conn.close()
        return None
    pid = os.fork()
    if pid == 0:  # the child never returns
        listener.close()
        _run_child(conn, request, fds, import_env)
    for fd in fds:
        os.close(fd)
    return pid  # the child says "started" itself: only then does the caller know the stage may have run


def _run_child(conn: socket.socket, request: dict[str, Any], fds: list[int], import_env: dict[str, str]) -> None:
    try:
        # Before anything else: a caller that never reads this runs the stage itself, so nothing may have run yet.
        send_message(conn, {"started": os.getpid()})
    except OSError:
        os._exit(1)
    status = 1
    try:
        for sig in (*FORWARDED_SIGNALS, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.setpgid(0, 0)  # its own group: a signal meant for the host's group does not reach it
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(import_env)
        os.environ.update({k: v for k, v in request["env"].items() if k != HOST_ENV})
        _progress_bars_as(os.environ)
        sys.argv = list(request["argv"])
        # sys.path[0] as a cold console script has it (its own folder), not the host's working folder.
        sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0]))
        _die_with_caller(conn)
        # The host imported a few of this project's modules for itself: the stage gets them fresh from disk.
        for name in [m for m in sys.modules if m == "distilflow" or m.startswith("distilflow.")]:
            del sys.modules[name]
        from distilflow.runtime.dispatch import stage_command

        status = stage_command(**request["call"])
    except SystemExit as exit_:
        status = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:  # the child reports every failure as a cold run would
        import traceback

        traceback.print_exc()
        status = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        with contextlib.suppress(Exception):  # the caller's answer even if the host died meanwhile
            send_message(conn, {"status": status})
        os._exit(status)


def _progress_bars_as(env: Mapping[str, str]) -> None:
    """What the bar switches in ``env`` would have done at import time, done through the libraries' functions."""
    with contextlib.suppress(ImportError):
        import datasets.utils
        import huggingface_hub.utils

        for key, module in (
            ("HF_HUB_DISABLE_PROGRESS_BARS", huggingface_hub.utils),
            ("HF_DATASETS_DISABLE_PROGRESS_BARS", datasets.utils),
        ):
            off = env.get(key, "").upper() in {"1", "ON", "YES", "TRUE"}
            (module.disable_progress_bars if off else module.enable_progress_bars)()


def _die_with_caller(conn: socket.socket) -> None:
    """The caller sends nothing after its request: a readable socket means it closed, so it died."""

    def watch() -> None:
        with contextlib.suppress(OSError):
            select.select([conn], [], [])
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="die-with-caller", daemon=True).start()


# ---------------------------------------------------------------------------------------------- lifetime


@contextlib.contextmanager
def warm_host(env: dict[str, str], idle_timeout_s: float = 3600.0, log: Path | None = None) -> Iterator[str]:
    """A host for the commands run inside the block, started with ``env``; yields the value for $DISTILFLOW_STAGE_HOST.

    The host starts in the background: the first stage waits for its imports rather than doing them twice.
    ``log``: a file for the host's messages (a line per caller it refused, with the reason).
    """
    folder = tempfile.mkdtemp(prefix="distilflow-host-")
    path = os.path.join(folder, "host.sock")
    with open(log or os.devnull, "a") as messages:
        process = subprocess.Popen(
            [sys.executable, "-m", "distilflow.runtime.host", path, str(idle_timeout_s), str(os.getpid())],
            env={k: v for k, v in env.items() if k != HOST_ENV},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=messages,
        )
    try:
        yield f"{process.pid}:{path}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for leftover in (path, path + ".part"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(leftover)
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def shared_host(env: dict[str, str]) -> contextlib.AbstractContextManager[str]:
    """The host this process was pointed at ($DISTILFLOW_STAGE_HOST: ``distilflow warm``, a parent flow, the test
    session) if it serves callers with ``env``, else a new one for the block."""
    existing = os.environ.get(HOST_ENV)
    if existing and probe(existing, env) is None:
        return contextlib.nullcontext(existing)
    return warm_host(env)


def probe(address: str, env: dict[str, str]) -> str | None:
    """Whether the host at ``address`` would serve a caller with ``env``: None if so, else why not."""
    conn = connect(address)
    if conn is None:
        return "no host is listening"
    with conn:
        try:
            send_message(conn, {"probe": True, "env": env, "source": source_digest()})
            reply, _ = receive_message(conn)
        except BROKEN:
            return "the host closed the connection"
    return reply.get("refused")


def exported(address: str | None) -> contextlib.AbstractContextManager[str | None]:
    """$DISTILFLOW_STAGE_HOST set to ``address`` (None: unset) in this process for the block, so every child
    inherits it."""
    return env_vars.exported(HOST_ENV, address)


def run_warm(command: list[str]) -> int:
    """``command`` with a host for the ``distilflow stage`` calls it makes (``distilflow warm dvc repro``)."""
    env = dict(os.environ)
    with warm_host(env) as address:
        try:
            return subprocess.run(command, env={**env, HOST_ENV: address}).returncode
        except KeyboardInterrupt:
            return 130


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the stage through its caller; warm_host stops us
    serve(argv[0], float(argv[1]) if len(argv) > 1 else 600.0, int(argv[2]) if len(argv) > 2 else None)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
