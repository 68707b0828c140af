"""kill -9 of the register stage at each step that writes the registry, then a plain rerun: the registry ends as a
clean run leaves it (champion, gate verdicts, no version taken for a person's rollback), never a silently wrong one.

Each killed run is a real ``distilflow stage register`` process on a real sqlite MLflow store, killed by SIGKILL the
moment the named call returns (``inject/sitecustomize.py``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

from distilflow.paths import Paths
from distilflow.runtime.warm import HOST_ENV
from distilflow.tasks import get_task
from distilflow.tracking.tags import (
    CHAMPION_MOVING_TAG,
    CHAMPION_SET_TAG,
    GATE_TAG,
    PREVIOUS_CHAMPION_TAG,
    PROMOTED_TAG,
    ROLLED_BACK_TAG,
)
from tests.conftest import test_env
from tests.integration.registry_helpers import client_for, empty_store, project, set_student
from tests.reliability_record import record

__all__ = ["empty_store"]  # a fixture, imported for pytest to find
pytestmark = pytest.mark.faults  # `make test-faults`: real processes killed and stores broken (minutes)
SST2 = get_task("sst2")
STUDENT = "distilflow-sst2-student"
INJECT = Path(__file__).resolve().parent / "inject"

# Where a register run writes the registry, in order: the version, the gate's verdict, the promotion's alias
# move, and its tags after it.
KILL_POINTS = {
    "after registering the version": ("distilflow.registry.registration:log_and_register", None),
    "after gating": ("distilflow.registry.registration:gate_version", None),
    "between the alias move and its tags": (
        "mlflow.tracking.client:MlflowClient.set_registered_model_alias",
        "champion",
    ),
    "after promoting, before the verdict": ("distilflow.registry.registration:promote", None),
}


def register_process(
    root: Path, kill_after: str | None = None, when_arg: str | None = None, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``distilflow stage register``: a run to kill in a fresh process of its own (it must die alone, never the
    session's warm stage host); any other through the warm host when its environment fits, as a flow runs it."""
    env = test_env(root) | (extra_env or {})
    if kill_after is not None:
        env.pop(HOST_ENV, None)
        env.update(
            PYTHONPATH=os.pathsep.join([str(INJECT), env.get("PYTHONPATH", "")]), DISTILFLOW_KILL_AFTER=kill_after
        )
        if when_arg is not None:
            env["DISTILFLOW_KILL_WHEN_ARG"] = when_arg
    command = [sys.executable, "-m", "distilflow", "stage", "register", "--root", str(root)]
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300)


def registry_state(client: MlflowClient) -> dict[str, Any]:
    """What a person relies on: the aliases, each version's verdict and marks, the model's own bookkeeping."""
    registered = client.get_registered_model(STUDENT)
    versions = {
        str(version.version): {
            "gate": version.tags.get(GATE_TAG),
            "promoted": PROMOTED_TAG in version.tags,
            "rolled_back": ROLLED_BACK_TAG in version.tags,
            "previous_champion": version.tags.get(PREVIOUS_CHAMPION_TAG),
            "gate_sections": (version.description or "").count("## Promotion gate"),
        }
        for version in client.search_model_versions(f"name='{STUDENT}'")
    }
    tags = registered.tags or {}
    return {
        "aliases": {alias: str(version) for alias, version in (registered.aliases or {}).items()},
        "versions": versions,
        "champion_set": tags.get(CHAMPION_SET_TAG),
        "moving": tags.get(CHAMPION_MOVING_TAG),
    }


@pytest.fixture(scope="module")
def champion_and_candidate(tmp_path_factory: pytest.TempPathFactory, empty_store: Path) -> Path:
    """A project whose v1 is champion and whose models/student holds a better candidate, not yet registered."""
    root = tmp_path_factory.mktemp("faults") / "project"
    _, paths = project(root, store=empty_store)
    set_student(paths, SST2, 0.80, seed=1)
    assert register_process(root).returncode == 0
    set_student(paths, SST2, 0.86, seed=2)
    return root


@pytest.fixture(scope="module")
def clean_state(champion_and_candidate: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = shutil.copytree(champion_and_candidate, tmp_path_factory.mktemp("clean") / "project")
    result = register_process(root)
    assert result.returncode == 0, result.stderr[-2000:]
    state = registry_state(client_for(Paths.at(root)))
    assert state["aliases"]["champion"] == "2" and state["versions"]["2"]["gate"] == "passed"
    return state


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_kill_9_anywhere_in_register_then_a_rerun_ends_as_a_clean_run(
    point: str, champion_and_candidate: Path, clean_state: dict[str, Any], tmp_path: Path
) -> None:
    root = shutil.copytree(champion_and_candidate, tmp_path / "project")
    target, when_arg = KILL_POINTS[point]
    killed = register_process(root, target, when_arg)
    assert killed.returncode == -signal.SIGKILL, f"not killed at {point}: {killed.stderr[-2000:]}"
    assert f"SIGKILL after {target}" in killed.stderr
    client = client_for(Paths.at(root))
    # Whatever the kill left, it never shows a champion that no gate passed.
    champion = registry_state(client)["aliases"].get("champion")
    assert champion in ("1", "2")

    rerun = register_process(root)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert registry_state(client) == clean_state, rerun.stdout[-3000:]
    record(f"fault-register-{point.replace(' ', '-').replace(',', '')}", {"injected": 1, "survived": 1})


def test_a_rollback_is_about_the_weights_not_a_settings_change(tmp_path: Path, empty_store: Path) -> None:
    """A person rolls back v2; a serving setting changes; the same weights come back as v3: the gate refuses them."""
    from typer.testing import CliRunner

    from distilflow.cli import app
    from distilflow.config.loading import load_params
    from distilflow.stages import register

    params, paths = project(tmp_path / "p", store=empty_store)
    client = client_for(paths)
    set_student(paths, SST2, 0.80, seed=1)
    register.run(params, paths)
    set_student(paths, SST2, 0.86, seed=2)
    register.run(params, paths)
    runner = CliRunner()
    assert runner.invoke(app, ["rollback", "--root", str(paths.root)]).exit_code == 0

    text = paths.params_file.read_text().replace("threads: 1", "threads: 2", 1)
    assert text != paths.params_file.read_text(), "params.yaml has no register.serving.threads: 1 to change"
    paths.params_file.write_text(text)
    decision = register.run(load_params(paths.params_file), paths)["decision"]
    assert decision["version"] == "3" and not decision["promoted"]
    assert any("has the weights of v2, which was rolled back" in reason for reason in decision["reasons"])
    assert str(client.get_model_version_by_alias(STUDENT, "champion").version) == "1"
    refused = runner.invoke(app, ["promote", "3", "--root", str(paths.root)])
    assert refused.exit_code != 0 and "rolled back" in refused.output
    forced = runner.invoke(app, ["promote", "3", "--force", "--root", str(paths.root)])
    assert forced.exit_code == 0, forced.output
    assert str(client.get_model_version_by_alias(STUDENT, "champion").version) == "3"
