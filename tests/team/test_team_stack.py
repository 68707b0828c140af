"""The team stack for real: `distilflow team up --workers 2`, then each server's guarantee, then `down` leaves nothing.

One stack serves the session (tests/team/conftest.py: starting it is most of the time); the `down` test runs last
and the fixture stops the stack anyway, also when a test fails. Marked ``team``: `make test-team` (docs/team.md).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from distilflow.team import postgres, stack
from distilflow.team.processes import group_members, port_open
from distilflow.team.settings import Layout, TeamError, load_credentials, read_state
from tests.team.conftest import team, user_env

pytestmark = pytest.mark.team


def test_up_twice_says_it_is_up(root: Path, team_env: dict[str, str]) -> None:
    again = team(root, team_env, "up", "--workers", "2")
    assert again.returncode == 0 and "already up" in again.stdout, again.stdout + again.stderr
    assert team(root, team_env, "status").returncode == 0


def test_mlflow_keeps_runs_in_postgresql_and_artifacts_behind_the_server(root: Path) -> None:
    env = user_env(root)
    os.environ.update(env)  # the autouse fixture puts the environment back after the test
    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    experiment = client.create_experiment(f"team-{uuid.uuid4().hex[:8]}")
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "accuracy", 0.91)
    note = root / "note.txt"
    note.write_text("proxied")
    client.log_artifact(run.info.run_id, str(note))
    client.set_terminated(run.info.run_id)

    state = read_state(Layout(root))
    assert state is not None
    port = state["ports"]["postgres"]
    stored = postgres.psql(
        Layout(root), port, f"SELECT value FROM metrics WHERE run_uuid = '{run.info.run_id}'", "mlflow"
    )
    assert stored.split() == ["0.91"]
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")  # clients never write the store themselves
    assert list((root / ".team" / "mlflow-artifacts").rglob("note.txt"))


def test_only_an_authenticated_client_moves_an_alias(root: Path) -> None:
    env = user_env(root)
    url = env["MLFLOW_TRACKING_URI"]
    os.environ.update(env)
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    team_client = MlflowClient(tracking_uri=url, registry_uri=url)
    name = f"team-model-{uuid.uuid4().hex[:8]}"
    team_client.create_registered_model(name)
    run = team_client.create_run(team_client.create_experiment(f"reg-{uuid.uuid4().hex[:8]}"))
    team_client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)

    del os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]
    anonymous = MlflowClient(tracking_uri=url, registry_uri=url)
    with pytest.raises(MlflowException) as refused:
        anonymous.set_registered_model_alias(name, "champion", "1")
    assert refused.value.get_http_status_code() == 401
    with pytest.raises(MlflowException):
        anonymous.get_model_version_by_alias(name, "champion")  # nothing moved

    os.environ.update(env)
    team_client.set_registered_model_alias(name, "champion", "1")
    assert str(anonymous.get_model_version_by_alias(name, "champion").version) == "1"  # READ for everyone


def test_prefect_lists_the_pool_with_two_online_workers(root: Path) -> None:
    state = read_state(Layout(root))
    assert state is not None
    credentials = load_credentials(Layout(root), {})
    assert stack.online_workers(state, credentials) == ["worker-1", "worker-2"]
    api = f"{state['urls']['prefect']}/api"
    assert httpx.post(f"{api}/work_pools/filter", json={}, timeout=10).status_code == 401  # no auth string
    user, _, password = credentials.prefect_auth.partition(":")
    pools = httpx.post(f"{api}/work_pools/filter", json={}, auth=(user, password), timeout=10).json()
    assert [(pool["name"], pool["type"]) for pool in pools] == [("distilflow-process", "process")]


def test_down_leaves_no_process_and_no_port(root: Path, team_env: dict[str, str]) -> None:
    state = read_state(Layout(root))
    assert state is not None
    pids = {pid for service in state["services"] for pid in group_members(service["pid"])}
    assert len(pids) > len(state["services"])  # PostgreSQL's backends, MLflow's uvicorn: children are counted
    down = team(root, team_env, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert not [pid for pid in pids if Path(f"/proc/{pid}").exists() and _state(pid) != "Z"]
    assert not [port for port in state["ports"].values() if port_open(port)]
    again = team(root, team_env, "down")
    assert again.returncode == 0 and "not running" in again.stdout
    assert team(root, team_env, "status").returncode == 1


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"


def test_a_port_in_use_is_named_before_anything_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        monkeypatch.setenv("DISTILFLOW_TEAM_MLFLOW_PORT", str(busy.getsockname()[1]))
        with pytest.raises(TeamError, match="DISTILFLOW_TEAM_MLFLOW_PORT"):
            stack.up(tmp_path, workers=0)
    assert not (tmp_path / ".team" / "postgres").exists()
