"""Where a registered model came from: data version, params, code commit and the MLflow run of every stage.

The register stage tags each model version with the DVC md5 of ``data/raw`` (from dvc.lock), the params
hash, the git commit and one ``lineage.<stage>`` tag per stage run. This module turns those tags back into
an answer a person can act on: the ingest manifest (source and per-file sha256), the git commits whose
dvc.lock records that data version (``git checkout C && dvc checkout`` brings it back), and each stage's
logged params.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from distilflow.config import yaml_io
from distilflow.paths import Paths
from distilflow.runtime.dvc_files import data_md5, lineage_order, lock_out_md5, workspace_data_md5
from distilflow.tracking.tags import DATA_TAG, GIT_COMMIT_TAG, LINEAGE_TAG, LINEAGE_TAG_PREFIX, PARAMS_HASH_TAG

GIT_LOG_LIMIT = 500
_REF = re.compile(r"^(?:models:/)?(?P<name>[^@/]+)(?:@(?P<alias>[\w-]+)|/(?P<version>\d+))$")


class LineageError(ValueError):
    """The model reference is malformed or names nothing in the registry."""


@dataclass
class StageRunInfo:
    stage: str
    run_id: str
    run_name: str | None = None
    status: str | None = None
    started: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    missing: bool = False


@dataclass
class DataCommit:
    """A git commit whose dvc.lock records the model's data version."""

    commit: str
    date: str
    subject: str
    raw_md5: str
    validated_md5: str | None


@dataclass
class ModelLineage:
    name: str
    version: str
    aliases: list[str]
    created: str
    run_id: str | None
    git_commit: str
    git_subject: str | None
    data_md5: str
    params_hash: str
    tags: dict[str, str]
    manifest: dict[str, Any] | None
    data_commits: list[DataCommit]
    workspace_data_md5: str | None
    stage_runs: list[StageRunInfo]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_model_ref(ref: str) -> tuple[str, str | None, str | None]:
    """``NAME@ALIAS`` or ``NAME/VERSION`` (an optional ``models:/`` prefix is accepted) → (name, alias, version)."""
    match = _REF.match(ref.strip())
    if match is None:
        raise LineageError(f"{ref!r}: expected NAME@ALIAS or NAME/VERSION, e.g. distilflow-sst2-student@champion")
    return match["name"], match["alias"], match["version"]


def _iso(millis: int | None) -> str | None:
    return datetime.fromtimestamp(millis / 1000, UTC).isoformat(timespec="seconds") if millis else None


def _git(root: Path, *args: str) -> str | None:
    try:
        process = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return process.stdout if process.returncode == 0 else None


def data_commits(root: Path, raw_md5: str, limit: int = GIT_LOG_LIMIT) -> list[DataCommit]:
    """Commits (newest first) whose committed dvc.lock has ``data/raw`` at ``raw_md5``."""
    log = _git(root, "log", f"-n{limit}", "--format=%H%x09%cI%x09%s", "--", "dvc.lock")
    paths = Paths.at(root)
    found: list[DataCommit] = []
    for line in (log or "").splitlines():
        commit, date, subject = [*line.split("\t", 2), "", ""][:3]
        text = _git(root, "show", f"{commit}:dvc.lock")
        if text is None:
            continue
        try:
            lock = yaml_io.load(text) or {}
        except yaml.YAMLError:
            continue
        if data_md5(lock, root) == raw_md5:
            validated = lock_out_md5(lock, "validate", paths.relative(paths.validated_dir))
            found.append(DataCommit(commit, date, subject, raw_md5, validated))
    return found


def lineage_from_tags(tags: dict[str, str]) -> dict[str, str]:
    """{stage: run id} from a version's ``distilflow.registry.lineage`` JSON tag, or from the older ``lineage.<stage>``
    tags."""
    try:
        folded = json.loads(tags.get(LINEAGE_TAG) or "{}")
    except ValueError:
        folded = {}
    legacy = {
        key[len(LINEAGE_TAG_PREFIX) :]: value for key, value in tags.items() if key.startswith(LINEAGE_TAG_PREFIX)
    }
    return {**legacy, **(folded if isinstance(folded, dict) else {})}


def stage_runs(client: Any, tags: dict[str, str], order: tuple[str, ...] = ()) -> list[StageRunInfo]:
    """The runs the version's lineage tag names, in ``order`` (dvc.yaml's); stages it lacks follow by name."""
    from mlflow.exceptions import MlflowException

    lineage = lineage_from_tags(tags)

    def position(stage: str) -> tuple[int, str]:
        return (order.index(stage) if stage in order else len(order), stage)

    runs = []
    for stage in sorted(lineage, key=position):
        run_id = lineage[stage]
        try:
            run = client.get_run(run_id)
        except MlflowException:
            # The store the model came from may have been pruned; the id is still worth printing.
            runs.append(StageRunInfo(stage, run_id, missing=True))
            continue
        runs.append(
            StageRunInfo(
                stage,
                run_id,
                run.info.run_name,
                run.info.status,
                _iso(run.info.start_time),
                dict(sorted(run.data.params.items())),
            )
        )
    return runs


def ingest_manifest(run_id: str | None) -> dict[str, Any] | None:
    """The manifest the ingest stage logged (source, origin, per-file sha256, row counts)."""
    if not run_id:
        return None
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return dict(mlflow.artifacts.load_dict(f"runs:/{run_id}/manifest.json"))
    except (MlflowException, OSError, ValueError):
        return None


def is_lineage_tag(key: str) -> bool:
    return key == LINEAGE_TAG or key.startswith(LINEAGE_TAG_PREFIX)


def model_lineage(client: Any, ref: str, root: Path) -> ModelLineage:
    """Everything the registry and git know about how the model ``ref`` was made."""
    from mlflow.exceptions import MlflowException

    name, alias, version = parse_model_ref(ref)
    try:
        model_version = (
            client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
        )
    except MlflowException as error:
        names = sorted(model.name for model in client.search_registered_models())
        raise LineageError(
            f"{ref}: not found in the registry ({error.message.splitlines()[0]}). "
            f"Registered models: {', '.join(names) or 'none'}"
        ) from None
    tags = dict(model_version.tags)
    commit = tags.get(GIT_COMMIT_TAG, "unknown")
    subject = _git(root, "show", "-s", "--format=%s", commit) if commit != "unknown" else None
    data_md5 = tags.get(DATA_TAG, "unknown")
    runs = stage_runs(client, tags, lineage_order(root))
    ingest = next((run.run_id for run in runs if run.stage == "ingest" and not run.missing), None)
    return ModelLineage(
        name=name,
        version=str(model_version.version),
        aliases=sorted(getattr(model_version, "aliases", []) or []),
        created=_iso(model_version.creation_timestamp) or "unknown",
        run_id=model_version.run_id,
        git_commit=commit,
        git_subject=subject.strip() if subject else None,
        data_md5=data_md5,
        params_hash=tags.get(PARAMS_HASH_TAG, "unknown"),
        tags={key: value for key, value in sorted(tags.items()) if not is_lineage_tag(key)},
        manifest=ingest_manifest(ingest),
        data_commits=data_commits(root, data_md5) if data_md5 != "unknown" else [],
        workspace_data_md5=workspace_data_md5(root),
        stage_runs=runs,
    )


def format_lineage(lineage: ModelLineage) -> str:
    """The text ``distilflow lineage`` prints."""
    aliases = f" (@{', @'.join(lineage.aliases)})" if lineage.aliases else ""
    lines = [
        f"{lineage.name} v{lineage.version}{aliases}, registered {lineage.created}",
        f"  register run   {lineage.run_id}",
        "",
        "Data",
    ]
    lines.append(f"  dvc md5 data/raw   {lineage.data_md5}")
    if lineage.workspace_data_md5 is not None:
        current = lineage.workspace_data_md5
        state = "same data version" if current == lineage.data_md5 else f"{current} (differs)"
        lines.append(f"  workspace dvc.lock {state}")
    if lineage.manifest:
        manifest = lineage.manifest
        lines.append(f"  source             {manifest.get('source')}: {manifest.get('origin')}")
        for split, digest in sorted((manifest.get("files") or {}).items()):
            rows = (manifest.get("rows") or {}).get(split, "?")
            lines.append(f"  {split + '.tsv':<18} sha256 {digest}  {rows} rows")
    if lineage.data_commits:
        first = lineage.data_commits[-1]
        lines.append(f"  first in git       {first.commit[:12]} {first.date} {first.subject}")
        if first.validated_md5:
            lines.append(f"  dvc md5 validated  {first.validated_md5}")
        lines.append(f"  restore            git checkout {first.commit[:12]} -- dvc.lock && dvc checkout")
    elif lineage.data_md5 != "unknown":
        lines.append("  first in git       not in any committed dvc.lock (commit dvc.lock after `dvc repro`)")
    lines += [
        "",
        "Code and params",
        f"  git commit   {lineage.git_commit}" + (f"  {lineage.git_subject}" if lineage.git_subject else ""),
        f"  params hash  {lineage.params_hash}",
    ]
    for key, value in lineage.tags.items():
        if key.startswith("distilflow.") and key not in (DATA_TAG, PARAMS_HASH_TAG):  # both shown above
            lines.append(f"  {key[len('distilflow.') :]:<12} {value}")
    lines += ["", "Stage runs (MLflow)"]
    for run in lineage.stage_runs:
        if run.missing:
            lines.append(f"  {run.stage:<17} {run.run_id}  (not in this tracking store)")
            continue
        lines.append(f"  {run.stage:<17} {run.run_id}  {run.status}  {run.started}  {run.run_name}")
        params = ", ".join(f"{key}={value}" for key, value in run.params.items() if key not in ("task", "seed"))
        if params:
            lines.append(f"  {'':<17} {params}")
    return "\n".join(lines)
