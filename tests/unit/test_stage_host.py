"""The warm stage host (``distilflow.runtime.host``): a stage forked from it behaves as a fresh ``distilflow stage``.

Real host processes, real forks, real ``distilflow`` command lines; each host takes a few seconds to import.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from distilflow.orchestration.scratch_workspace import subprocess_env
from distilflow.runtime.host import env_difference, probe, refusal_for, warm_host
from distilflow.runtime.locking import workspace_lock
from distilflow.runtime.warm import HOST_ENV, connect, source_digest

REPO_ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "distilflow.cli"]


def base_env(pythonpath: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DISTILFLOW_", "PYTEST_"))}
    env["PYTHONPATH"] = str(pythonpath)
    return env


def stage(args: list[str], env: dict[str, str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "stage", *args], env=env, capture_output=True, text=True, timeout=300, **kwargs)


@pytest.fixture(scope="module")
def host() -> Iterator[tuple[str, dict[str, str]]]:
    env = base_env(REPO_ROOT / "src")
    with warm_host(env) as address:
        yield address, env


def children_of(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def wait_for(condition: object, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_warm_stage_prints_and_exits_as_a_cold_one(host: tuple[str, dict[str, str]]) -> None:
    address, env = host
    cold = stage(["nosuch", "--root", str(REPO_ROOT)], env)
    warm = stage(["nosuch", "--root", str(REPO_ROOT)], {**env, HOST_ENV: address})
    assert cold.returncode == warm.returncode == 2
    assert "unknown stage 'nosuch'; dvc.yaml's stages: ingest, validate" in cold.stderr
    assert warm.stderr == cold.stderr
    assert warm.stdout == cold.stdout


def test_a_caller_in_another_environment_runs_the_stage_itself(host: tuple[str, dict[str, str]]) -> None:
    address, env = host
    other = {**env, "OMP_NUM_THREADS": "7", HOST_ENV: address}  # read by torch at import: the host's would be wrong
    result = stage(["nosuch", "--root", str(REPO_ROOT)], other)
    assert result.returncode == 2
    assert "stage host: the environment differs in OMP_NUM_THREADS; running the stage in this process" in result.stderr
    assert "unknown stage 'nosuch'" in result.stderr
    assert env_difference({"A": "1", "PWD": "/x", "DVC_ROOT": "/y"}, {"A": "1", "PWD": "/z", "DISTILFLOW_X": "1"}) == []
    # A flow asks before reusing a host it was pointed at, and starts its own when the answer is no.
    assert probe(address, env) is None
    assert probe(address, other) == "the environment differs in OMP_NUM_THREADS"


def test_a_caller_may_carry_what_the_hosts_imports_set_with_the_same_value() -> None:
    """A flow or a test process imported torch and MLflow too: their own variables are no reason to run cold."""
    host, imports, digest = {"A": "1"}, {"KMP_INIT_AT_FORK": "FALSE"}, source_digest()

    def refusal(env: dict[str, str]) -> str | None:
        return refusal_for({"source": digest, "env": env}, host, imports, digest)

    assert refusal({"A": "1"}) is None
    assert refusal({"A": "1", "KMP_INIT_AT_FORK": "FALSE"}) is None
    # Another value would have been read at import: the host's copy of the library runs with the wrong one.
    assert refusal({"A": "1", "KMP_INIT_AT_FORK": "TRUE"}) == "the environment differs in KMP_INIT_AT_FORK"
    # Per test (pytest) or per process (a telemetry id), and read after import: the child gets the caller's value.
    assert refusal({"A": "1", "PYTEST_CURRENT_TEST": "t.py::x (call)", "_MLFLOW_TELEMETRY_SESSION_ID": "x"}) is None
    assert refusal({"A": "2"}) == "the environment differs in A"
    older = refusal_for({"source": "old", "env": host}, host, imports, digest)
    assert older == "it runs an older distilflow.runtime.host"


def test_a_stage_forked_by_the_host_dies_with_its_caller(host: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    """kill -9 of the caller (as of the flow, which takes dvc and the caller with it) leaves no stage running."""
    address, env = host
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    host_pid = int(address.split(":")[0])
    with workspace_lock(tmp_path, "the test"):
        # The stage waits for the lock the test holds: a stage that is running, forked by the host.
        waiting = {**env, HOST_ENV: address, "DISTILFLOW_STAGE_LOCK_TIMEOUT_S": "120"}
        caller = subprocess.Popen(
            [*CLI, "stage", "ingest", "--root", str(tmp_path)], env=waiting, stderr=subprocess.PIPE, text=True
        )
        wait_for(lambda: children_of(host_pid))
        (child,) = children_of(host_pid)
        assert "the workspace is in use by" in (caller.stderr.readline() if caller.stderr else "")
        caller.send_signal(signal.SIGKILL)
        caller.wait()
        wait_for(lambda: not children_of(host_pid), timeout_s=30)
        assert not Path(f"/proc/{child}").exists() or "zombie" in Path(f"/proc/{child}/status").read_text()


def test_the_host_serves_the_code_on_disk_not_the_code_it_started_with(tmp_path: Path) -> None:
    """An edit between two stages is in the second one, as dvc.yaml's code deps promise, even through the host."""
    package = tmp_path / "src" / "distilflow"
    shutil.copytree(REPO_ROOT / "src" / "distilflow", package, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "params.yaml"):  # the workspace whose own src/ this is
        shutil.copy2(REPO_ROOT / name, tmp_path / name)
    env = base_env(tmp_path / "src")
    with warm_host(env) as address:
        warm = {**env, HOST_ENV: address}
        before = stage(["nosuch", "--root", str(tmp_path)], warm)
        assert before.returncode == 2 and "stage host:" not in before.stderr
        # runtime/locking.py is one the host itself imported: the child must not reuse the host's copy.
        locking = package / "runtime/locking.py"
        locking.write_text(locking.read_text() + "\nprint('runtime/locking.py as edited', file=sys.stderr)\n")
        after = stage(["nosuch", "--root", str(tmp_path)], warm)
        assert after.returncode == 2
        assert "runtime/locking.py as edited" in after.stderr and "stage host:" not in after.stderr
        # A newer stage_host than the host's own: the host refuses and the stage runs cold.
        host_module = package / "runtime/host.py"
        host_module.write_text(host_module.read_text() + "\n# edited\n")
        newer = stage(["nosuch", "--root", str(tmp_path)], warm)
        assert "stage host: it runs an older distilflow.runtime.host; running the stage in this process" in newer.stderr
        assert newer.returncode == 2 and "unknown stage 'nosuch'" in newer.stderr


def test_a_host_whose_starter_died_before_it_started_leaves_at_once(tmp_path: Path) -> None:
    """A flow killed while its host starts: the host finds itself orphaned and exits before importing anything."""
    socket_path = tmp_path / "host.sock"
    not_our_parent = "1"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "distilflow.runtime.host", str(socket_path), "60", not_our_parent],
        env=base_env(REPO_ROOT / "src"),
        timeout=60,
    )
    assert result.returncode == 0
    assert not socket_path.exists()
    assert time.monotonic() - started < 30  # well short of the imports and the 60 s idle timeout


def test_a_host_that_died_unreaped_is_not_waited_for(tmp_path: Path) -> None:
    """A host that exited but that its starter has not reaped yet is a zombie, and ``kill(pid, 0)`` still finds it.
    A caller must see it as gone at once and run the stage itself, not wait READY_TIMEOUT_S (120 s) per stage."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    stat = Path(f"/proc/{dead.pid}/stat")
    deadline = time.monotonic() + 30
    while stat.read_text().rpartition(")")[2].split()[0] != "Z":  # exited, not reaped: we have not waited on it
        assert time.monotonic() < deadline, "the child did not exit"
        time.sleep(0.05)
    try:
        started = time.monotonic()
        assert connect(f"{dead.pid}:{tmp_path / 'host.sock'}") is None
        assert time.monotonic() - started < 5
    finally:
        dead.wait()


HUB_PROBE_STAGE = """
import json


def run(params, paths):
    import datasets.config
    import evaluate.config
    import huggingface_hub.constants
    import transformers.utils.hub

    seen = {
        "huggingface_hub": huggingface_hub.constants.HF_HUB_OFFLINE,
        "datasets": [datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE],
        "evaluate": evaluate.config.HF_EVALUATE_OFFLINE,
        "transformers": transformers.utils.hub.is_offline_mode(),
    }
    print("hub mode " + json.dumps(seen))
"""
OFFLINE_KEYS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE", "TRANSFORMERS_OFFLINE")


def test_a_warm_stage_sees_the_hub_mode_a_cold_one_sees(tmp_path: Path) -> None:
    """The host imported the hub libraries before any stage decided its hub mode (configure_hub: offline for the
    packaged teacher and local data); with the variables unset, the warm stage must not run online."""
    package = tmp_path / "src" / "distilflow"
    shutil.copytree(REPO_ROOT / "src" / "distilflow", package, ignore=shutil.ignore_patterns("__pycache__"))
    (package / "stages" / "hubprobe.py").write_text(HUB_PROBE_STAGE)
    workspace = tmp_path / "ws"
    workspace.mkdir()
    shutil.copy(REPO_ROOT / "params.yaml", workspace / "params.yaml")
    (workspace / "dvc.yaml").write_text("stages:\n  hubprobe:\n    cmd: distilflow stage hubprobe\n")
    env = {k: v for k, v in base_env(tmp_path / "src").items() if k not in OFFLINE_KEYS}
    cold = stage(["hubprobe", "--root", str(workspace)], env)
    assert cold.returncode == 0, cold.stderr
    offline = {"huggingface_hub": True, "datasets": [True, True], "evaluate": True, "transformers": True}
    assert json.loads(cold.stdout.split("hub mode ", 1)[1]) == offline
    with warm_host(env) as address:
        warm = stage(["hubprobe", "--root", str(workspace)], {**env, HOST_ENV: address})
    assert warm.returncode == 0, warm.stderr
    assert "stage host:" not in warm.stderr  # it did run warm
    assert json.loads(warm.stdout.split("hub mode ", 1)[1]) == offline


# A host that breaks the connection at a chosen moment: a real process on a real socket, speaking the real wire
# format, so the caller meets what a dying host or the idle-timeout race gives it.
FAULTY_HOST = """
import os, socket, sys
from distilflow.runtime.warm import STREAMS, receive_message, send_message

path, moment = sys.argv[1], sys.argv[2]
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(path + ".part")
listener.listen(1)
os.rename(path + ".part", path)
conn, _ = listener.accept()
if moment != "on-accept":  # on-accept: closed unread, as the idle timeout closes a caller still in the backlog
    request, fds = receive_message(conn, with_fds=STREAMS)
    if moment == "after-start":  # as a host that died, or a child killed, once the stage had begun
        send_message(conn, {"started": os.getpid()})
conn.close()
"""


def stage_through_faulty_host(
    tmp_path: Path, moment: str, env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], int]:
    """A stage whose caller reaches a host that breaks the connection at ``moment``; the result and the host's pid."""
    socket_path = tmp_path / "host.sock"
    host = subprocess.Popen([sys.executable, "-c", FAULTY_HOST, str(socket_path), moment], env=env)
    try:
        result = stage(["nosuch", "--root", str(REPO_ROOT)], {**env, HOST_ENV: f"{host.pid}:{socket_path}"})
        assert host.wait(60) == 0
    finally:
        host.kill()
    return result, host.pid


@pytest.mark.parametrize(
    ("moment", "errors"),
    [
        # The kernel reports the closed end as EPIPE or ECONNRESET, whichever the caller's send meets first.
        ("on-accept", ("BrokenPipeError", "ConnectionResetError")),
        ("after-request", ("EOFError",)),
    ],
)
def test_a_connection_broken_before_the_stage_started_falls_back_to_a_cold_run(
    tmp_path: Path, moment: str, errors: tuple[str, ...]
) -> None:
    env = base_env(REPO_ROOT / "src")
    # More request than a socket buffer holds: the send is still under way when the host closes its end.
    env.update({f"DISTILFLOW_PADDING_{n}": "x" * 100_000 for n in range(4)})
    result, _ = stage_through_faulty_host(tmp_path, moment, env)
    assert result.returncode == 2, result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("stage host:")]
    assert notes in (
        [f"stage host: the connection broke before the stage started ({error}); running the stage in this process"]
        for error in errors
    ), result.stderr
    assert "unknown stage 'nosuch'" in result.stderr  # and the stage ran, once, in the caller
    assert "Traceback" not in result.stderr


def test_a_connection_broken_after_the_stage_started_never_runs_it_twice(tmp_path: Path) -> None:
    result, host_pid = stage_through_faulty_host(tmp_path, "after-start", base_env(REPO_ROOT / "src"))
    assert result.returncode == 1, result.stderr
    assert f"stage host: the connection broke after the stage started (pid {host_pid}, EOFError)" in result.stderr
    assert "unknown stage" not in result.stderr, "the caller ran the stage a second time"
    assert "Traceback" not in result.stderr


def test_a_workspace_runs_its_own_code_when_it_differs_from_the_installed_package(tmp_path: Path) -> None:
    """A copy's stage imports the copy's src/ (what DVC hashed there), not the package distilflow was installed from."""
    from distilflow.runtime.own_code import PACKAGE_DIR, code_digest, foreign_code

    copy = tmp_path / "workspace" / "src" / "distilflow"
    shutil.copytree(PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert foreign_code(tmp_path / "workspace") is None  # the same code: the installed package (or a warm host) serves
    marker = "print('running the copy of', __file__)\n"
    (copy / "stages" / "ingest.py").write_text((copy / "stages" / "ingest.py").read_text() + marker)
    assert foreign_code(tmp_path / "workspace") == copy.resolve()
    assert code_digest(copy) != code_digest()

    (tmp_path / "workspace" / "params.yaml").write_text("task: sst2\n")
    shutil.copy2(Path(__file__).resolve().parents[2] / "dvc.yaml", tmp_path / "workspace" / "dvc.yaml")
    env = {key: value for key, value in subprocess_env().items() if key != HOST_ENV}
    result = subprocess.run(
        [sys.executable, "-m", "distilflow", "stage", "ingest"],
        cwd=tmp_path / "workspace",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert f"running the copy of {copy / 'stages' / 'ingest.py'}" in result.stdout, result.stderr[-2000:]
    assert "running this workspace's own code" in result.stderr
