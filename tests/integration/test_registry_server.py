"""The same gate, promote and rollback against a real `mlflow server` (database backend), via MLFLOW_TRACKING_URI."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from typer.testing import CliRunner

from distilflow.cli import app
from distilflow.registry.aliases import CHAMPION
from distilflow.serving.servers import free_port, start_server, stop_server
from distilflow.stages import register
from distilflow.tasks import get_task
from tests import conftest
from tests.integration.registry_helpers import project, set_student

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


AUTH_INI = """[mlflow]
default_permission = READ
database_uri = sqlite:///{db}
admin_username = admin
admin_password = {password}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
"""


@pytest.fixture
def auth_server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """`mlflow server --app-name basic-auth` on loopback: READ for everyone, writes need a login."""
    password = "team-secret-1234"
    ini = tmp_path / "basic_auth.ini"
    ini.write_text(AUTH_INI.format(db=tmp_path / "auth.db", password=password))
    port = free_port()
    env = {
        **conftest.test_env(),
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-csrf-key",
    }
    command = [
        "mlflow", "server", "--app-name", "basic-auth",
        "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
        "--artifacts-destination", str(tmp_path / "server-artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    process = start_server(command, env, f"{url}/health", START_TIMEOUT_S, tmp_path / "server.log", poll_s=0.5)
    try:
        yield url, password
    finally:
        stop_server(process)


@pytest.mark.slow
def test_basic_auth_registry_only_the_team_can_move_an_alias(
    tmp_path: Path, auth_server: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, password = auth_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    params, paths = project(tmp_path / "p")
    sst2 = get_task("sst2")
    anonymous = MlflowClient(tracking_uri=url, registry_uri=url)
    with pytest.raises(MlflowException) as refused:
        anonymous.create_registered_model(STUDENT)
    assert refused.value.get_http_status_code() == 401

    # The pipeline, with the team's credentials, registers and promotes.
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    set_student(paths, sst2, 0.80, seed=1)
    assert register.run(params, paths)["decision"]["promoted"]
    set_student(paths, sst2, 0.90, seed=2)
    assert register.run(params, paths)["decision"]["promoted"]

    # Without them: no alias moves, and the champion is still what the team set.
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    with pytest.raises(MlflowException) as moved:
        anonymous.set_registered_model_alias(STUDENT, CHAMPION, "1")
    assert moved.value.get_http_status_code() == 401
    wrong = httpx.post(
        f"{url}/api/2.0/mlflow/registered-models/alias",
        json={"name": STUDENT, "alias": CHAMPION, "version": "1"},
        auth=("admin", "guess"),
        timeout=10,
    )
    assert wrong.status_code == 401
    rollback = CliRunner().invoke(app, ["rollback", "--root", str(paths.root)])
    assert rollback.exit_code == 1 and "MLFLOW_TRACKING_USERNAME" in rollback.output, rollback.output
    reader = httpx.get(
        f"{url}/api/2.0/mlflow/registered-models/alias", params={"name": STUDENT, "alias": CHAMPION},
        auth=("admin", password), timeout=10,
    )  # fmt: skip
    assert reader.json()["model_version"]["version"] == "2"
