"""Two machines promoting one model at once through the team's servers: each `distilflow stage register` talks to
the MLflow server (PostgreSQL behind it) and serialises its read-gate-move on the Prefect server's slot
``distilflow-registry-<model>`` (``registry_lock``), not on a file either machine holds. Marked ``team``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from distilflow.paths import Paths
from distilflow.registry.lock import lock_name
from distilflow.tasks import get_task
from distilflow.tracking.tags import CHAMPION_MOVING_TAG, CHAMPION_SET_TAG, GATE_REASONS_TAG, GATE_TAG, ROLLED_BACK_TAG
from tests.conftest import test_env
from tests.integration.registry_helpers import project, set_student
from tests.team.conftest import prefect_settings, user_env

pytestmark = pytest.mark.team
SST2 = get_task("sst2")
STUDENT = "distilflow-race-sst2-student"  # its own name on the shared server: no other test's model


def start_register(root: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "distilflow", "stage", "register", "--root", str(root)]
    return subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_two_machines_promoting_at_once_end_with_one_gated_champion_and_no_false_rollback(
    root: Path, tmp_path: Path
) -> None:
    team = user_env(root)
    env = {**test_env(), **team}  # MLFLOW_TRACKING_URI (the server) wins over each project's params.yaml
    _, first = project(tmp_path / "machine-a" / "project", overrides={"register": {"model_prefix": "distilflow-race"}})
    second = Paths.at(shutil.copytree(first.root, tmp_path / "machine-b" / "project"))
    set_student(first, SST2, 0.86, seed=2)
    set_student(second, SST2, 0.86, seed=3)

    processes = [start_register(first.root, env), start_register(second.root, env)]
    try:
        outputs = [process.communicate(timeout=300)[0] for process in processes]
    finally:  # a register that hangs past the timeout is not left running after the test
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert [process.returncode for process in processes] == [0, 0], [output[-2000:] for output in outputs]
    os.environ.update(team)  # the autouse fixture puts the environment back after the test
    url = team["MLFLOW_TRACKING_URI"]
    client = MlflowClient(tracking_uri=url, registry_uri=url)
    versions = {str(v.version): v for v in client.search_model_versions(f"name='{STUDENT}'")}
    assert sorted(versions) == ["1", "2"]
    registered = client.get_registered_model(STUDENT)
    champion = str(registered.aliases["champion"])
    other = ({"1", "2"} - {champion}).pop()
    # One won: promoted with no champion before it. The other was gated after it, against it, not against nothing.
    assert versions[champion].tags.get(GATE_TAG) == "passed"
    if "no current champion" in versions[champion].tags[GATE_REASONS_TAG]:
        assert f"against champion v{champion}" in versions[other].tags[GATE_REASONS_TAG], versions[other].tags
    else:  # the second to be gated beat the first's champion and took its place
        assert f"against champion v{other}" in versions[champion].tags[GATE_REASONS_TAG]
    if versions[other].tags.get(GATE_TAG) == "refused":  # equal students: the later is refused, and says why
        assert f"NOT PROMOTED {STUDENT} v{other}" in "\n".join(outputs)
    assert all(ROLLED_BACK_TAG not in version.tags for version in versions.values())  # nobody "moved" anything
    assert registered.tags.get(CHAMPION_SET_TAG) == champion and CHAMPION_MOVING_TAG not in registered.tags
    # The lock they met at is the Prefect server's, and it is free again; no file lock stood in for it.
    from prefect.client.orchestration import get_client

    with prefect_settings(team), get_client(sync_client=True) as prefect:
        limit = prefect.read_global_concurrency_limit_by_name(lock_name(STUDENT))
    assert limit.limit == 1 and limit.active_slots == 0
    assert not (first.root / ".distilflow" / "registry.lock").exists()
