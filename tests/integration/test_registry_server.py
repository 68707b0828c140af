"""The same gate, promote and rollback against a real `mlflow server` (database backend), via MLFLOW_TRACKING_URI."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from distilflow.cli import app
from distilflow.registry import CHAMPION
from distilflow.stages import register
from distilflow.tasks import get_task
from tests import conftest
from tests.integration.registry_helpers import project, set_student
from tests.integration.test_serving import free_port, stop_server

START_TIMEOUT_S = 300
STUDENT = "distilflow-sst2-student"


@pytest.fixture
def tracking_server(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {**conftest.test_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    command = [
        "mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{tmp_path / 'server.db'}",
        "--artifacts-destination",
        str(tmp_path / "server-artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"mlflow server did not come up:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        yield url
    finally:
        stop_server(process)


@pytest.mark.slow
def test_gate_and_rollback_work_the_same_on_a_tracking_server(
    tmp_path: Path, tracking_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server)
    params, paths = project(tmp_path / "p")
    sst2 = get_task("sst2")
    client = MlflowClient(tracking_uri=tracking_server, registry_uri=tracking_server)

    set_student(paths, sst2, 0.80, seed=1)
    assert register.run(params, paths)["decision"]["promoted"]
    set_student(paths, sst2, 0.70, seed=2)
    assert not register.run(params, paths)["decision"]["promoted"]
    assert str(client.get_model_version_by_alias(STUDENT, CHAMPION).version) == "1"
    set_student(paths, sst2, 0.90, seed=3)
    assert register.run(params, paths)["decision"]["promoted"]
    assert str(client.get_model_version_by_alias(STUDENT, CHAMPION).version) == "3"

    result = CliRunner().invoke(app, ["rollback", "--root", str(paths.root)])
    assert result.exit_code == 0, result.output
    assert str(client.get_model_version_by_alias(STUDENT, CHAMPION).version) == "1"
    assert not paths.mlflow_db.exists()  # nothing went to the local sqlite store
