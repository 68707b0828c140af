"""Shared fixtures: a shrunken copy of the project that `dvc repro` can run in seconds, and the real GLUE data."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
GLUE_DIR = Path(os.environ.get("DISTILFLOW_GLUE_DIR", REPO_ROOT.parent / "shared" / "data" / "glue"))

WORKSPACE_ITEMS = (
    "dvc.yaml",
    "params.yaml",
    "src",
    "data/demo",
    ".dvc/config",
    ".dvcignore",
    ".gitignore",
    "flows",
    "Makefile",
    "pyproject.toml",
    # DVC's own ignore files and plot templates, and the committed ignore entries for its outputs
    ".dvc/.gitignore",
    ".dvc/plots",
    "data/.gitignore",
    "models/.gitignore",
    "predictions/.gitignore",
    "scripts",
)


def deep_update(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_update(merged[key], value)
        else:
            merged[key] = value
    return merged


# The tests' tiny settings are the documented smoke profile (a few optimizer steps on a few dozen rows: every code
# path, nothing learned). The profile never moves @champion; the wiring tests need one, so they let a model that
# learned nothing through the gate (the gate's own rules are tested on their own).
SMOKE_PROFILE: dict[str, Any] = yaml.safe_load((REPO_ROOT / "flows" / "profiles" / "smoke.yaml").read_text())
TINY_OVERRIDES: dict[str, Any] = deep_update(
    SMOKE_PROFILE,
    {
        "register": {
            "promote": True,
            "promotion": {"min_metric": 0.0, "max_latency_ms": 100000.0, "baseline_margin": -1.0},
        }
    },
)


def write_params(root: Path, overrides: dict[str, Any]) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    (root / "params.yaml").write_text(yaml.safe_dump(deep_update(params, overrides), sort_keys=False))


def test_env(root: Path | None = None) -> dict[str, str]:
    """The environment stages see: the venv's console scripts first, offline hub, no stray tracking server."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("PREFECT_HOME", None)  # `make test` exports the project's own; a test workspace keeps its own
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_EVALUATE_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        GX_ANALYTICS_ENABLED="false",
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        TQDM_DISABLE="1",
    )
    return env


test_env.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test, wherever it is imported


def run(cmd: list[str], cwd: Path, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    process = subprocess.run(
        cmd, cwd=cwd, env=test_env(cwd), capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and process.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {process.returncode}\n{process.stdout[-4000:]}\n{process.stderr[-4000:]}"
        )
    return process


def committed_copy(source: Path, target: Path) -> Path:
    """A copy of a reproduced workspace with its results committed, as a user's clone would hold them."""
    shutil.copytree(source, target, symlinks=True)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A"], target)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "pipeline results"], target)
    return target


def make_workspace(target: Path, overrides: dict[str, Any] | None = None) -> Path:
    """A git + DVC project folder holding this repo's pipeline with tiny settings."""
    target.mkdir(parents=True, exist_ok=True)
    for item in WORKSPACE_ITEMS:
        source = REPO_ROOT / item
        if source.is_dir():
            shutil.copytree(source, target / item, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif source.is_file():
            (target / item).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / item)
    write_params(target, deep_update(TINY_OVERRIDES, overrides or {}))
    run(["git", "init", "-q"], target)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A"], target)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "workspace"], target)
    return target


@pytest.fixture
def workspace_factory(tmp_path: Path) -> Callable[..., Path]:
    def factory(name: str = "ws", overrides: dict[str, Any] | None = None) -> Path:
        return make_workspace(tmp_path / name, overrides)

    return factory


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
