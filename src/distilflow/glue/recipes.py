"""What each GLUE task's workspace changes in the project's params.yaml: its data folder, its recipe
(``flows/profiles/glue/<task>.yaml``), then the chosen profile (e.g. smoke), and the shared MLflow store.

The suite's workspaces (``glue.suite``) apply these; nothing here touches a workspace.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from distilflow.config import yaml_io
from distilflow.config.params import Params
from distilflow.orchestration.scratch_workspace import deep_update
from distilflow.orchestration.settings import read_profile
from distilflow.paths import Paths
from distilflow.tasks import GlueTask, get_task, task_folder


def find_task_folders(glue_root: Path, tasks: Sequence[str]) -> tuple[dict[str, Path], list[str]]:
    """The tasks whose folder exists under ``glue_root`` (in ``tasks``' order), and the absent ones."""
    present: dict[str, Path] = {}
    absent: list[str] = []
    for name in tasks:
        folder = task_folder(glue_root, get_task(name))
        if folder is None:
            absent.append(name)
        else:
            present[name] = folder
    return present, absent


def absent_reason(glue_root: Path, task: GlueTask) -> str:
    names = " or ".join(f"{glue_root / name}/train.tsv" for name in task.folder_names)
    return f"no {names}"


def recipe(task: str, root: Path) -> dict[str, Any]:
    """The task's recipe: the params ``flows/profiles/glue/<task>.yaml`` changes (each value's source in a comment)."""
    file = Paths.at(root).glue_recipes_dir / f"{task}.yaml"
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no recipe for GLUE task {task}")
    data: dict[str, Any] = yaml_io.load(file.read_text(encoding="utf-8")) or {}
    return data


def data_path(folder: Path, root: Path) -> str:
    """How the task workspace's params.yaml names the data: the embedded demos travel with the workspace (relative),
    anything else is read where it lies (absolute)."""
    demo = Paths.at(root).demo_dir
    folder = folder.resolve()
    if folder.is_relative_to(demo):
        return folder.relative_to(Paths.at(root).root).as_posix()
    return str(folder)


GLUE_MODEL_PREFIX = "distilflow-glue"


def task_overrides(params: Params, task: str, folder: Path, root: Path, profile: str | None) -> dict[str, Any]:
    """What the task's workspace changes in the project's params.yaml: task and data, recipe, then the profile."""
    overrides: dict[str, Any] = {"task": task, "data": {"source": "local", "path": data_path(folder, root)}}
    overrides = deep_update(overrides, recipe(task, root))
    if profile:
        overrides = deep_update(overrides, read_profile(profile, root))
    # The project's store by absolute URI (a team server if params.yaml names one); MLFLOW_TRACKING_URI still wins.
    shared = params.register_.tracking_uri or f"sqlite:///{Paths.at(root).mlflow_db}"
    # Its own registered names (GLUE_MODEL_PREFIX-<task>-student): the project's pipeline on the same task registers
    # distilflow-<task>-student, and the two must never gate against, serve or roll back each other's models.
    overrides = deep_update(overrides, {"register": {"tracking_uri": shared, "model_prefix": GLUE_MODEL_PREFIX}})
    return overrides


def share_artifact_store(task: str, tracking: str, root: Path) -> None:
    """Create the task's MLflow experiment in the project's sqlite store with the project's artifact folder, before
    a stage does: otherwise the first stage would put its artifacts (the registered models' files) inside the task's
    workspace, and removing the workspace would break the registry. A server keeps its own artifacts: nothing to do.
    """
    if not tracking.startswith("sqlite") or os.environ.get("MLFLOW_TRACKING_URI"):
        return
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri=tracking)
    name = f"distilflow-{task}"  # tracking.configure_mlflow's experiment name
    if client.get_experiment_by_name(name) is None:
        with contextlib.suppress(MlflowException):  # a concurrent run may create it first
            client.create_experiment(name, artifact_location=Paths.at(root).mlflow_artifacts.as_uri())
