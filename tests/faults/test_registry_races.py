"""Two writers of one registry at once: promotions from two workspaces (two machines' clones, or the GLUE suite
beside the project's pipeline) that share one store are serialised by a lock the store's users share, so neither
takes the other's promotion for a person's move, and the champion is always one that a gate passed."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from distilflow.paths import Paths
from distilflow.registry.lock import registry_lock
from distilflow.tasks import get_task
from distilflow.tracking.tags import CHAMPION_MOVING_TAG, CHAMPION_SET_TAG, ROLLED_BACK_TAG
from tests.conftest import test_env
from tests.faults.test_register_faults import STUDENT, register_process
from tests.integration.registry_helpers import client_for, empty_store, project, set_student
from tests.reliability_record import record

__all__ = ["empty_store"]  # a fixture, imported for pytest to find
pytestmark = pytest.mark.faults  # `make test-faults`: real processes killed and stores broken (minutes)
SST2 = get_task("sst2")


def two_workspaces(tmp_path: Path, store: Path) -> tuple[Paths, Paths]:
    """Workspace A owns the store and its champion v1; B, elsewhere, registers into A's store by URI."""
    _, first = project(tmp_path / "a", store=store)
    set_student(first, SST2, 0.80, seed=1)
    assert register_process(first.root).returncode == 0
    second = Paths.at(shutil.copytree(first.root, tmp_path / "machine-b" / "b"))
    second.mlflow_db.unlink()
    params = yaml.safe_load(second.params_file.read_text())
    params["register"]["tracking_uri"] = f"sqlite:///{first.mlflow_db}"
    second.params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    return first, second


def start_register(root: Path) -> subprocess.Popen[str]:
    env = test_env(root)  # the warm host forks each caller its own stage process, as a flow's stages get
    command = [sys.executable, "-m", "distilflow", "stage", "register", "--root", str(root)]
    return subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_a_promotion_from_another_workspace_waits_for_the_lock_beside_the_store(
    tmp_path: Path, empty_store: Path
) -> None:
    first, second = two_workspaces(tmp_path, empty_store)
    set_student(second, SST2, 0.86, seed=2)
    client = client_for(first)
    with registry_lock(f"sqlite:///{first.mlflow_db}", STUDENT, first.root):  # A's promotion, in progress
        process = start_register(second.root)
        deadline = time.monotonic() + 240
        while len(client.search_model_versions(f"name='{STUDENT}'")) < 2 and time.monotonic() < deadline:
            time.sleep(1)
        time.sleep(3)  # B has registered v2 and is at the gate: it must be waiting for A, not promoting
        assert process.poll() is None, process.communicate()[0][-2000:]
        assert str(client.get_model_version_by_alias(STUDENT, "champion").version) == "1"
    output, _ = process.communicate(timeout=240)
    assert process.returncode == 0, output[-3000:]
    assert str(client.get_model_version_by_alias(STUDENT, "champion").version) == "2"
    record("race-lock-beside-the-store", {"waited_for_the_other_promotion": 1})


def test_two_workspaces_promoting_at_once_end_with_one_gated_champion_and_no_false_rollback(
    tmp_path: Path, empty_store: Path
) -> None:
    first, second = two_workspaces(tmp_path, empty_store)
    set_student(first, SST2, 0.86, seed=2)
    set_student(second, SST2, 0.86, seed=3)
    processes = [start_register(first.root), start_register(second.root)]
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], [output[-2000:] for output in outputs]
    check_serialised_promotions(client_for(first))
    record("race-two-promotions", {"promotions_at_once": 2, "false_rollbacks": 0})


def check_serialised_promotions(client: MlflowClient) -> None:
    """After v1 and two candidates promoted at once: one gated champion, no false rollback, the gates in turn."""
    versions = {str(v.version): v for v in client.search_model_versions(f"name='{STUDENT}'")}
    assert sorted(versions) == ["1", "2", "3"]
    registered = client.get_registered_model(STUDENT)
    champion = str(registered.aliases["champion"])
    assert champion in ("2", "3") and versions[champion].tags.get("distilflow.registry.gate") == "passed"
    assert all(ROLLED_BACK_TAG not in version.tags for version in versions.values())  # nobody "moved" anything
    assert registered.tags.get(CHAMPION_SET_TAG) == champion and CHAMPION_MOVING_TAG not in registered.tags
    # Serialised: one candidate was gated against v1, the other against that one, never both against the stale v1.
    against = {v: versions[v].tags["distilflow.gate_reasons"] for v in ("2", "3")}
    first = next(v for v in ("2", "3") if "against champion v1" in against[v])
    later = ({"2", "3"} - {first}).pop()
    assert "against champion v1" not in against[later], against
    if versions[first].tags.get("distilflow.registry.gate") == "passed":
        assert f"against champion v{first}" in against[later], against
