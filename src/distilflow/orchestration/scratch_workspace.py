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
from collections.abc import Iterable
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


class CommandFailed(RuntimeError):
    """A command a scratch or GLUE workspace needs (git, dvc, a stage) exited non-zero: a failure of the run, not of
    the user's input, so it keeps its traceback. Carries the command, its exit code and the tail of its output."""

    def __init__(self, command: list[str], returncode: int, stdout: str, stderr: str) -> None:
        self.command = command
        self.returncode = returncode
        self.output_tail = f"{stdout[-OUTPUT_TAIL_CHARS:]}\n{stderr[-OUTPUT_TAIL_CHARS:]}"
        super().__init__(f"{' '.join(command)} exited {returncode}\n{self.output_tail}")


OUTPUT_TAIL_CHARS = 4000
"""Of each of stdout and stderr, kept in a ``CommandFailed`` message: enough for DVC's or a stage's error."""


def run_checked(
    cmd: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True, timeout: int = 900
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` in ``cwd`` (default environment: ``subprocess_env()``); with ``check``, a failure raises
    ``CommandFailed`` with the command's last output."""
    process = subprocess.run(
        cmd, cwd=cwd, env=env or subprocess_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and process.returncode != 0:
        raise CommandFailed(cmd, process.returncode, process.stdout, process.stderr)
    return process


def git_commit(root: Path, message: str) -> None:
    """Stage everything in ``root`` and commit it under a throwaway identity."""
    run_checked(["git", *GIT_IDENTITY, "add", "-A"], root)
    run_checked(["git", *GIT_IDENTITY, "commit", "-qm", message], root)


def copy_items(source: Path, target: Path, items: Iterable[str]) -> None:
    """Copy each of ``items`` (relative paths) from ``source`` to ``target``, replacing what ``target`` holds there:
    a folder is copied whole (no bytecode or build metadata), so a file deleted in ``source`` goes in ``target`` too.
    An item ``source`` lacks is left out."""
    for item in items:
        origin, copy = source / item, target / item
        if origin.is_dir():
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(origin, copy, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif origin.is_file():
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, copy)


def make_workspace(source: Path, target: Path, params_overrides: dict[str, Any]) -> Path:
    """A git + DVC project in ``target`` holding ``source``'s pipeline, its params.yaml changed by
    ``params_overrides`` (e.g. the smoke profile)."""
    target.mkdir(parents=True, exist_ok=True)
    copy_items(source, target, workspace_items(source))
    write_params(target, params_overrides)
    run_checked(["git", "init", "-q"], target)
    git_commit(target, "workspace")
    return target
