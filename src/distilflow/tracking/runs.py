"""MLflow bookkeeping shared by all stages: one run per stage, lineage tags, the project's local store.

Each stage writes its lineage file (``reports/lineage/KEY.json``, one DVC out of its own): its own MLflow run id
merged with the lineage of the stages it read from. The chain travels through DVC beside the data, so the register
stage can tag a model with the run of every stage that produced it, even when DVC skipped some of them this time.
It stays out of the data itself: no stage declares a lineage file as a dependency, so run ids, new on every run, never
change a later stage's run-cache key, and a second machine restores every stage a first one ran.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from distilflow.config.declared import whole
from distilflow.config.params import Params, params_at
from distilflow.paths import Paths
from distilflow.runtime.dvc_files import stages
from distilflow.runtime.env_vars import environment_kept
from distilflow.runtime.store_health import check_store
from distilflow.tracking.tags import (
    DATA_TAG,
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    GIT_COMMIT_TAG,
    NOTE_TAG,
    PARAMS_HASH_TAG,
    PIPELINE_ID_TAG,
    STAGE_TAG,
    TASK_TAG,
    ui_query,
)

PIPELINE_ID_ENV = "DISTILFLOW_PIPELINE_ID"


def tracking_uri(params: Params, paths: Paths) -> str:
    """MLFLOW_TRACKING_URI wins, then params, then the project's own sqlite store."""
    configured = whole(params).register_.tracking_uri  # where runs go, not what a stage computes: any stage reads it
    return os.environ.get("MLFLOW_TRACKING_URI") or configured or f"sqlite:///{paths.mlflow_db}"


# mlflow.set_registry_uri and mlflow.set_experiment also export these for child processes. This process keeps the
# values in mlflow's own state; exported, they would follow a flow (which configures one workspace's store) into
# the next workspace's stages, and make those stages' environment differ from the warm stage host's.
EXPORTED_BY_MLFLOW = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID")


def configure_mlflow(params: Params, paths: Paths) -> str:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = tracking_uri(params, paths)
    check_store(uri)  # a corrupt or unreachable store is named in seconds, before MLflow's traceback or retries
    with environment_kept(*EXPORTED_BY_MLFLOW):
        return _point_mlflow_at(uri, f"distilflow-{params.task}", paths)


def _point_mlflow_at(uri: str, name: str, paths: Paths) -> str:
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if mlflow.get_experiment_by_name(name) is None:
        # Artifacts sit beside the sqlite store, not in ./mlruns of whatever the cwd happens to be.
        location = paths.mlflow_artifacts.as_uri() if uri.startswith("sqlite") else None
        # A concurrent stage may create it first; either way it exists afterwards.
        with contextlib.suppress(mlflow.exceptions.MlflowException):
            mlflow.create_experiment(name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
    _describe_experiment(mlflow.set_experiment(name))
    return uri


def experiment_description(name: str, experiment_id: str) -> str:
    """What a person reads at the top of the experiment in the MLflow UI (its ``mlflow.note.content``)."""
    runs = f"#/experiments/{experiment_id}/runs{ui_query({EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})}"
    task = name.removeprefix("distilflow-")
    return (
        f"The distilflow pipeline's runs for GLUE {task}: one MLflow run per DVC stage (ingest, validate, tokenize, "
        "finetune, evaluate@teacher, augment, pretrain when enabled, distill, evaluate@student, report, register), "
        f"named STAGE-PIPELINE_ID, where the pipeline id is the Prefect flow run's. [Open the training runs]({runs}). "
        "The registered models (student and teacher) are under Model registry; the student's `@champion` is served."
    )


def _describe_experiment(experiment: Any) -> None:
    """Kind, description and task tags, set once: on a new experiment and on one an older distilflow created."""
    import mlflow

    wanted = {
        EXPERIMENT_KIND_TAG: EXPERIMENT_KIND,
        NOTE_TAG: experiment_description(experiment.name, experiment.experiment_id),
        TASK_TAG: experiment.name.removeprefix("distilflow-"),
    }
    for key, value in wanted.items():
        # A description a person edited in the UI stays: only a missing tag is written.
        if key not in experiment.tags:
            mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, key, value)


def git_commit(root: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True, timeout=10
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def dvc_lock_data_hash(root: Path) -> str:
    """The md5 DVC recorded for data/raw in dvc.lock; 'unknown' before the first repro."""
    from distilflow.runtime.dvc_files import workspace_data_md5

    return workspace_data_md5(root) or "unknown"


def file_md5_entries(folder: Path, files: Iterable[Path]) -> list[dict[str, str]]:
    """DVC's listing entries for ``files`` under ``folder``: each file's md5 and relative path, in the order given."""
    return [
        {"md5": hashlib.md5(file.read_bytes()).hexdigest(), "relpath": file.relative_to(folder).as_posix()}
        for file in files
    ]


def dvc_directory_md5(folder: Path) -> str:
    """The md5 DVC 3 records for FOLDER as an output: md5 of the sorted JSON listing of (relpath, file md5).

    The ingest stage tags its run with this once data/raw is complete, because dvc.lock still holds the previous
    version while the stage runs (DVC hashes outputs after the command exits).
    """
    files = (path for path in folder.rglob("*") if path.is_file())
    entries = sorted(file_md5_entries(folder, files), key=lambda entry: entry["relpath"])
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"


def params_hash(params: Params) -> str:
    text = json.dumps(whole(params).model_dump(by_alias=True), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def pipeline_id() -> str:
    """Groups the stage runs of one pipeline execution; flows and `make pipeline` set it, else per process."""
    value = os.environ.get(PIPELINE_ID_ENV)
    if not value:
        value = uuid.uuid4().hex[:12]
        os.environ[PIPELINE_ID_ENV] = value
    return value


def read_lineage(paths: Paths, *stage_keys: str) -> dict[str, str]:
    """The merged lineage of the named stages; a stage without a lineage file (not run yet) adds nothing."""
    merged: dict[str, str] = {}
    for key in stage_keys:
        file = paths.lineage_file(key)
        if file.is_file():
            merged.update(json.loads(file.read_text()))
    return merged


def write_lineage(paths: Paths, stage_key: str, run_id: str | None, *upstream: str) -> dict[str, str]:
    """Write ``stage_key``'s lineage: the upstream stages' lineage plus its own run (None: it made no run)."""
    lineage = read_lineage(paths, *upstream) | ({stage_key: run_id} if run_id else {})
    file = paths.lineage_file(stage_key)
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(lineage, indent=2, sort_keys=True) + "\n")
    return lineage


class StageRun:
    """What a stage sees of its MLflow run: log numbers and files without importing mlflow itself."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    def set_tag(self, key: str, value: str) -> None:
        import mlflow

        mlflow.set_tag(key, value)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        import mlflow

        clean = {key: float(value) for key, value in metrics.items() if isinstance(value, int | float)}
        if clean:
            mlflow.log_metrics(clean, step=step)

    def log_artifact(self, path: Path, folder: str | None = None) -> None:
        import mlflow

        if path.is_dir():
            mlflow.log_artifacts(str(path), artifact_path=folder)
        elif path.is_file():
            mlflow.log_artifact(str(path), artifact_path=folder)

    def log_dict(self, data: dict[str, Any], file_name: str) -> None:
        import mlflow

        mlflow.log_dict(data, file_name)

    def log_child(self, name: str, params: Mapping[str, Any], metrics: Mapping[str, float], status: str) -> str:
        """A finished run nested under this one (a search trial, say), shown under it in the MLflow UI."""
        import mlflow

        with mlflow.start_run(run_name=name, nested=True, tags={"distilflow.trial_state": status}) as child:
            mlflow.log_params({key: str(value) for key, value in params.items()})
            self.log_metrics(metrics)
        return str(child.info.run_id)


@contextmanager
def stage_run(stage: str, params: Params, paths: Paths, instance: str | None = None) -> Iterator[StageRun]:
    """One MLflow run for dvc.yaml's stage ``stage`` (``instance``: a ``foreach`` key, e.g. evaluate's teacher),
    tagged with the pipeline id, git commit, data and params hashes. Its params are what dvc.yaml's ``params:``
    tracks for the stage, read from there: the two cannot disagree."""
    import mlflow

    configure_mlflow(params, paths)
    name = f"{stage}-{instance}" if instance else stage
    tags = {
        STAGE_TAG: name,
        TASK_TAG: params.task,
        PIPELINE_ID_TAG: pipeline_id(),
        GIT_COMMIT_TAG: git_commit(paths.root),
        DATA_TAG: dvc_lock_data_hash(paths.root),
        PARAMS_HASH_TAG: params_hash(params),
    }
    with mlflow.start_run(run_name=f"{name}-{tags[PIPELINE_ID_TAG]}", tags=tags) as run:
        logged = params_at(whole(params), tracked_params(paths.root, stage))
        mlflow.log_params({key: str(value)[:500] for key, value in logged.items()})
        yield StageRun(run.info.run_id)


def tracked_params(root: Path, stage: str) -> tuple[str, ...]:
    """dvc.yaml's ``params:`` of ``stage``."""
    spec = next((spec for spec in stages(root) if spec.name == stage), None)
    if spec is None:
        raise ValueError(f"{stage!r} is not a stage of {root / 'dvc.yaml'}")
    return spec.params


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(data), indent=2, sort_keys=True, allow_nan=False) + "\n")
