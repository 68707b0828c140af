"""Shared fixtures: a shrunken copy of the project that `dvc repro` can run in seconds
(distilflow.orchestration.scratch_workspace,
which the benchmarks use too), and the real GLUE data."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from distilflow.orchestration import scratch_workspace
from distilflow.orchestration.scratch_workspace import (
    deep_update,
    git_commit,
    run_checked,
    smoke_profile,
    subprocess_env,
    workspace_items,
    write_params,
)
from distilflow.paths import Paths
from distilflow.runtime.host import warm_host
from distilflow.runtime.warm import HOST_ENV

# What the tests import from here (deep_update and write_params live in distilflow.orchestration.scratch_workspace).
__all__ = [
    "GLUE_DIR",
    "REPO_ROOT",
    "SMOKE_PROFILE",
    "TINY_OVERRIDES",
    "WORKSPACE_ITEMS",
    "committed_copy",
    "deep_update",
    "make_workspace",
    "run",
    "test_env",
    "write_params",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
GLUE_DIR = Path(os.environ.get("DISTILFLOW_GLUE_DIR", REPO_ROOT.parent / "shared" / "data" / "glue"))
WORKSPACE_ITEMS = workspace_items(REPO_ROOT)

# The tests' tiny settings are the documented smoke profile (a few optimizer steps on a few dozen rows: every code
# path, nothing learned). The profile never moves @champion; the wiring tests need one, so they let a model that
# learned nothing through the gate (the gate's own rules are tested on their own).
SMOKE_PROFILE: dict[str, Any] = smoke_profile(REPO_ROOT)
TINY_OVERRIDES: dict[str, Any] = deep_update(
    SMOKE_PROFILE,
    {
        "register": {
            "promote": True,
            "promotion": {"min_metric": 0.0, "max_latency_ms": 100000.0, "baseline_margin": -1.0},
        }
    },
)


def test_env(root: Path | None = None) -> dict[str, str]:
    """The environment stages see: the venv's console scripts first, offline hub, no stray tracking server."""
    return subprocess_env()


test_env.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test, wherever it is imported


def run(cmd: list[str], cwd: Path, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    return run_checked(cmd, cwd, test_env(cwd), check=check, timeout=timeout)


def committed_copy(source: Path, target: Path) -> Path:
    """A copy of a reproduced workspace with its results committed, as a user's clone would hold them."""
    shutil.copytree(source, target, symlinks=True)
    git_commit(target, "pipeline results")
    return target


@functools.cache
def empty_mlflow_store() -> Path:
    """An sqlite MLflow store with its schema in place, made once per session: a workspace's first stage would
    otherwise spend ~6 s on MLflow's ~50 schema migrations, in every fresh workspace the suite makes."""
    from mlflow import MlflowClient

    folder = Path(tempfile.mkdtemp(prefix="distilflow-empty-store-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    MlflowClient(tracking_uri=f"sqlite:///{folder / 'mlruns.db'}").search_experiments()
    return folder / "mlruns.db"


def make_workspace(target: Path, overrides: dict[str, Any] | None = None) -> Path:
    """A git + DVC project folder holding this repo's pipeline with tiny settings (and an empty MLflow store)."""
    root = scratch_workspace.make_workspace(REPO_ROOT, target, deep_update(TINY_OVERRIDES, overrides or {}))
    shutil.copy2(empty_mlflow_store(), Paths.at(root).mlflow_db)
    return root


@pytest.fixture
def workspace_factory(tmp_path: Path) -> Callable[..., Path]:
    def factory(name: str = "ws", overrides: dict[str, Any] | None = None) -> Path:
        return make_workspace(tmp_path / name, overrides)

    return factory


HOST_LOG = pytest.StashKey[Path]()


def _restored_environment() -> Iterator[None]:
    before = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(before)


# Each test, and each module (whose fixtures are set up before a test's), starts from the session's environment: what
# in-process code exports (mlflow's setters export MLFLOW_REGISTRY_URI and MLFLOW_EXPERIMENT_ID) must not reach
# later tests' stages, which would also run cold (the warm host serves only its own environment).
environment_restored = pytest.fixture(autouse=True)(_restored_environment)
module_environment_restored = pytest.fixture(autouse=True, scope="module")(_restored_environment)


@pytest.fixture(scope="session", autouse=True)
def warm_stages(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One warm stage host for every stage the session's integration tests run (``distilflow.runtime.host``).

    Stages reach it through $DISTILFLOW_STAGE_HOST, which ``subprocess_env()`` passes on; a test that changes the
    environment its stages see gets fresh processes instead, as it would without the host. The summary at the end
    names every caller the host refused (pytest_terminal_summary), since each costs a cold start.
    """
    if not any({"integration", "faults"} & set(item.path.parts) for item in request.session.items):
        yield
        return
    log = request.config.stash[HOST_LOG] = tmp_path_factory.mktemp("stage-host") / "host.log"
    with warm_host(subprocess_env(), log=log) as address:
        os.environ[HOST_ENV] = address
        try:
            yield
        finally:
            os.environ.pop(HOST_ENV, None)


def host_logs(config: pytest.Config) -> list[Path]:
    """This session's host log; under pytest-xdist, each worker's, which xdist puts in popen-gwN/ under the
    controller's basetemp (pytest also links each numbered folder as <name>current: the glob skips those)."""
    own = config.stash.get(HOST_LOG, None)
    if own is not None:
        return [own]
    if not config.getoption("numprocesses", None):
        return []  # no integration tests ran: asking for the basetemp here would only make an empty folder
    base = config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
    return sorted(base.glob("popen-gw*/stage-host[0-9]*/host.log"))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    logs = host_logs(config)
    refused = [line for log in logs for line in log.read_text().splitlines() if line.startswith("refused")]
    if refused:
        terminalreporter.section(f"stage host: {len(refused)} callers ran cold")
        for line in refused[:20]:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def pipeline_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny pipeline run shared by the tests that only read its results (do not modify it)."""
    root = make_workspace(tmp_path_factory.mktemp("pipeline") / "ws")
    run(["dvc", "repro"], root)
    return root


@pytest.fixture
def glue_dir() -> Path:
    if not GLUE_DIR.is_dir():
        pytest.skip(f"real GLUE data not found at {GLUE_DIR}")
    return GLUE_DIR


@pytest.fixture(scope="session")
def session_mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One migrated sqlite store for the whole session: creating one costs ~5-10 s of schema migrations."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlruns.db'}"
    MlflowClient(tracking_uri=uri).search_experiments()
    return uri


@pytest.fixture
def mlflow_store(session_mlflow_uri: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Stage runs in unit tests go to the session store (MLFLOW_TRACKING_URI wins over the project default)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", session_mlflow_uri)
    return session_mlflow_uri
