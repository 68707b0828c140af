"""A broken MLflow store, met by a real ``distilflow`` process: a locked, a corrupt, an unreachable and a full one.

Each case either refuses in seconds with a message that names the fault (never a traceback, nothing half written)
or, once the fault is gone, a plain rerun leaves the registry exactly as a clean run does.
"""

from __future__ import annotations

import shutil
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from distilflow.paths import Paths
from distilflow.tasks import get_task
from tests.conftest import test_env
from tests.faults.test_register_faults import register_process, registry_state
from tests.integration.registry_helpers import client_for, empty_store, project, set_student
from tests.reliability_record import record

__all__ = ["empty_store"]  # a fixture, imported for pytest to find
pytestmark = pytest.mark.faults  # `make test-faults`: real processes killed and stores broken (minutes)
SST2 = get_task("sst2")


@pytest.fixture
def candidate(tmp_path: Path, empty_store: Path) -> Paths:
    """A project with a student ready to register and no registered version yet."""
    _, paths = project(tmp_path / "project", store=empty_store)
    set_student(paths, SST2, 0.86, seed=2)
    return paths


def outputs_written(paths: Paths) -> list[str]:
    files = (paths.metrics_file("register"), paths.reports_dir / "promotion.json")
    return [paths.relative(file) for file in files if file.exists()]


def assert_refused_cleanly(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode not in (0, -9), result.stdout[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr[-3000:]


def test_a_corrupt_store_is_named_and_nothing_is_written(candidate: Paths) -> None:
    garbage = bytes(range(256)) * 64
    candidate.mlflow_db.write_bytes(garbage)
    result = register_process(candidate.root)
    assert_refused_cleanly(result, "is not an SQLite database", str(candidate.mlflow_db))
    assert candidate.mlflow_db.read_bytes() == garbage  # the evidence is kept for recovery
    assert outputs_written(candidate) == []
    serve = subprocess.run(
        ["distilflow", "serve", "--dry-run", "--root", str(candidate.root)],
        env=test_env(candidate.root),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert serve.returncode != 0 and "is not an SQLite database" in serve.stderr, serve.stderr[-2000:]
    assert "has no @champion" not in serve.stderr
    record("fault-store-corrupt", {"injected": 1, "refused_cleanly": 1})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_tracking_server_is_named_in_seconds(candidate: Paths) -> None:
    started = time.monotonic()
    result = register_process(candidate.root, extra_env={"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"})
    took = time.monotonic() - started
    assert_refused_cleanly(result, "is unreachable", "nothing was written")
    assert took < 60, f"{took:.0f} s before the refusal"
    assert outputs_written(candidate) == []
    record("fault-store-unreachable", {"injected": 1, "refused_cleanly": 1, "seconds_to_refuse": round(took, 1)})


def test_a_locked_store_fails_the_run_and_a_rerun_ends_as_a_clean_run(candidate: Paths, tmp_path: Path) -> None:
    clean = shutil.copytree(candidate.root, tmp_path / "clean")
    assert register_process(clean).returncode == 0
    holder = sqlite3.connect(candidate.mlflow_db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process holding the store, which is what "database is locked" means
    try:
        locked = register_process(candidate.root)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert_refused_cleanly(locked, "database is locked")
    assert outputs_written(candidate) == []
    assert register_process(candidate.root).returncode == 0
    assert registry_state(client_for(candidate)) == registry_state(client_for(Paths.at(clean)))
    record("fault-store-locked", {"injected": 1, "survived": 1})


@pytest.fixture
def full_artifact_store(candidate: Paths) -> Iterator[Path]:
    """The store's artifact folder on a 256 KiB tmpfs: a tiny model's weights (~4 MB) do not fit."""
    folder = candidate.mlflow_artifacts
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_artifact_store_registers_nothing_and_a_rerun_ends_as_a_clean_run(
    candidate: Paths, full_artifact_store: Path, tmp_path: Path
) -> None:
    clean = shutil.copytree(candidate.root, tmp_path / "clean", ignore=shutil.ignore_patterns("mlartifacts"))
    assert register_process(clean).returncode == 0
    full = register_process(candidate.root)
    assert full.returncode not in (0, -9)
    assert "No space left on device" in full.stderr, full.stderr[-3000:]
    client = client_for(candidate)
    assert client.search_model_versions("name='distilflow-sst2-student'") == []  # no version without its model
    assert outputs_written(candidate) == []
    subprocess.run(["umount", "-l", str(full_artifact_store)], check=True)
    rerun = register_process(candidate.root)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert registry_state(client) == registry_state(client_for(Paths.at(clean)))
    record("fault-store-full", {"injected": 1, "survived": 1})
