"""A shrunken copy of this project in a scratch folder, and the environment its subprocesses get.

The tests and the benchmarks that run the real pipeline (``dvc repro``, the flow) on a few dozen rows share it: the
copy holds what a clone holds, with params.yaml changed by the smoke profile (``flows/profiles/smoke.yaml``) plus
any explicit overrides. Nothing here knows about pytest.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from distilflow.config import yaml_io
from distilflow.orchestration.settings import PREFECT_ENV_DEFAULTS
from distilflow.paths import Paths

SMOKE_PROFILE_NAME = "smoke"
GIT_IDENTITY = ("-c", "user.name=t", "-c", "user.email=t@t")


def workspace_items(source: Path) -> tuple[str, ...]:
    """What a copy holds, relative to the project: the pipeline, its code and DVC's and git's own files."""
    paths = Paths.at(source)
    return (
        "dvc.yaml",
        paths.relative(paths.params_file),
        "src",
        paths.relative(paths.demo_dir),
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
    """``base`` with ``overrides`` merged in, section by section (neither is modified)."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_update(merged[key], value)
        else:
            merged[key] = value
    return merged


def smoke_profile(source: Path) -> dict[str, Any]:
    """The documented smoke profile: a few optimizer steps on a few dozen rows, every code path, nothing learned."""
    text = (Paths.at(source).profiles_dir / f"{SMOKE_PROFILE_NAME}.yaml").read_text(encoding="utf-8")
    profile: dict[str, Any] = yaml_io.load(text) or {}
    return profile


def write_params(root: Path, overrides: dict[str, Any]) -> None:
    """Change the params.yaml in ``root`` by ``overrides`` (nested, as the file's sections)."""
    file = Paths.at(root).params_file
    params = yaml_io.load(file.read_text(encoding="utf-8"))
    file.write_text(yaml.safe_dump(deep_update(params, overrides), sort_keys=False), encoding="utf-8")


def subprocess_env() -> dict[str, str]:
    """The environment the pipeline's commands get: this interpreter's console scripts first, the hub offline,
    no stray tracking server or Prefect home (a scratch project keeps its own), no progress bars."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("PREFECT_HOME", None)  # `make test` exports the project's own
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_EVALUATE_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        GX_ANALYTICS_ENABLED="false",
        MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
        TQDM_DISABLE="1",
    )
    env.update(PREFECT_ENV_DEFAULTS)
    return env


def run_checked(
    cmd: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True, timeout: int = 900
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` in ``cwd`` (default environment: ``subprocess_env()``); with ``check``, a failure raises
    ``AssertionError`` with the command's last output."""
    process = subprocess.run(
        cmd, cwd=cwd, env=env or subprocess_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and process.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {process.returncode}\n{process.stdout[-4000:]}\n{process.stderr[-4000:]}"
        )
    return process


def git_commit(root: Path, message: str) -> None:
    """Stage everything in ``root`` and commit it under a throwaway identity."""
    run_checked(["git", *GIT_IDENTITY, "add", "-A"], root)
    run_checked(["git", *GIT_IDENTITY, "commit", "-qm", message], root)


def make_workspace(source: Path, target: Path, params_overrides: dict[str, Any]) -> Path:
    """A git + DVC project in ``target`` holding ``source``'s pipeline, its params.yaml changed by
    ``params_overrides`` (e.g. the smoke profile)."""
    target.mkdir(parents=True, exist_ok=True)
    for item in workspace_items(source):
        origin = source / item
        if origin.is_dir():
            shutil.copytree(origin, target / item, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif origin.is_file():
            (target / item).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target / item)
    write_params(target, params_overrides)
    run_checked(["git", "init", "-q"], target)
    git_commit(target, "workspace")
    return target
