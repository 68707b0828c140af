"""Register teacher and student as MLflow models that take raw text, and gate the student's promotion.

This is the register stage's work as a library (the stage and ``distilflow sync-registry`` both call
:func:`register`). Each model is an MLflow pyfunc (:class:`distilflow.serving.classifier.TextClassifier`) with an
explicit
signature, an input example, the tokenizer and weights inside and pinned requirements
(:mod:`distilflow.registry.packaging`);
its description is a generated model card (:mod:`distilflow.registry.model_card`).

A version is known by a fingerprint of its weights and settings (:func:`model_hash`: weights, config, tokenizer,
export weights, serving settings; not lineage.json or timing summaries). Registering the same model again finds
the existing version and neither re-gates nor re-promotes it: a rollback or a manual alias move made since then
stands. The one exception is a version that was registered but never gated (the stage died in between): it is
gated now, so a good student is never left behind in silence. Each version also carries the fingerprint of its
weight files alone (:func:`weights_hash`), which the gate checks against people's rollbacks.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from distilflow.config.params import Params
from distilflow.paths import Paths
from distilflow.registry import served_scoring as dev_scoring
from distilflow.registry.aliases import (
    CHALLENGER,
    all_versions,
    current_champion,
    get_version,
    mark_manual_moves,
    model_name,
    promote,
    restart_hint,
)
from distilflow.registry.gate import Decision, gate_version, record_decision
from distilflow.registry.lock import registry_lock
from distilflow.registry.model_card import (
    GATE_SECTION_START,
    gate_section,
    lineage_section,
    model_card,
    model_description,
    model_stage_runs,
)
from distilflow.registry.packaging import (
    EXPORT_DIR,
    EXPORTS,
    ServingChoice,
    choose_serving,
    example_input,
    package,
    pip_requirements,
    serving_config,
    signature,
)
from distilflow.serving.classifier import MODEL_ARTIFACT, Backend, ServingConfig
from distilflow.tasks import LABEL, GlueTask, get_task
from distilflow.tracking.runs import (
    dvc_lock_data_hash,
    file_md5_entries,
    git_commit,
    params_hash,
    stage_run,
    tracking_uri,
    write_json,
)
from distilflow.tracking.tags import (
    AGREEMENT_TAG,
    BASELINE_TAG,
    DATA_TAG,
    DEV_PREDICTIONS_TAG,
    GATE_TAG,
    GIT_COMMIT_TAG,
    LATENCY_TAG,
    LINEAGE_TAG,
    METRIC_NAME_TAG,
    METRIC_TAG,
    MODEL_HASH_TAG,
    NOTE_TAG,
    PARAMS_HASH_TAG,
    ROLE_TAG,
    SERVED_ARTIFACT_TAG,
    SERVED_METRIC_TAG,
    SERVING_BACKEND_TAG,
    SERVING_EXPORT_TAG,
    TASK_TAG,
    WEIGHTS_HASH_TAG,
)

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # src/distilflow: the code a registered version carries
MODEL_CODE = PACKAGE_DIR / "serving" / "pyfunc_model.py"


MODEL_FILES = ("*.safetensors", "config.json", "tokenizer*.json", "vocab.txt", "special_tokens_map.json")
SERVING_RUNTIME_KEYS = frozenset({"port", "workers", "access_log"})  # how `make serve` runs, not what it serves


def model_files(folder: Path) -> list[Path]:
    """The files that make the model: weights, model config, tokenizer, and each export's weights file."""
    files = {file for pattern in MODEL_FILES for file in folder.glob(pattern) if file.is_file()}
    files |= {folder / EXPORT_DIR / relative for _, relative in EXPORTS.values()}
    return sorted(file for file in files if file.is_file())


def weights_hash(folder: Path) -> str:
    """md5 over the model's files alone (weights, config, tokenizer, exports): the model a person rolls back."""
    entries = file_md5_entries(folder, model_files(folder))
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest()


def model_hash(folder: Path, params: Params) -> str:
    """What the registry knows a model by: md5 over its weights, config and tokenizer files, its exports' weights
    and the settings that shape the served artifact (task, token cap, register.serving).

    Nothing else beside the weights counts: lineage.json names MLflow runs, export/summary.json holds timings, so
    a recompute with the same code, data and params that reproduces the weights is the same version.
    """
    entries = file_md5_entries(folder, model_files(folder))
    settings = {
        "task": params.task,
        "max_length": params.tokenize.max_length,
        "serving": params.register_.serving.model_dump(exclude=set(SERVING_RUNTIME_KEYS)),
    }
    text = json.dumps({"files": entries, "settings": settings}, sort_keys=True)
    return hashlib.md5(text.encode()).hexdigest()


def registered_version(client: Any, name: str, model_md5: str) -> Any | None:
    """The newest version of NAME built from these exact files, or None (so a rerun does not register a copy)."""
    matches = [version for version in all_versions(client, name) if version.tags.get(MODEL_HASH_TAG) == model_md5]
    return max(matches, key=lambda version: int(version.version)) if matches else None


def version_tags(
    task: GlueTask,
    role: str,
    metrics: dict[str, Any],
    params: Params,
    paths: Paths,
    choice: ServingChoice | None,
    baseline: float,
) -> dict[str, str]:
    fp32_metric = float(metrics.get(task.primary_metric, math.nan))
    served = choice.export if choice else "none"
    tags = {
        GIT_COMMIT_TAG: git_commit(paths.root),
        DATA_TAG: dvc_lock_data_hash(paths.root),
        PARAMS_HASH_TAG: params_hash(params),
        TASK_TAG: task.name,
        ROLE_TAG: role,
        METRIC_NAME_TAG: task.primary_metric,
        METRIC_TAG: str(fp32_metric),
        LATENCY_TAG: str(metrics.get("latency_p95_ms", math.nan)),
        BASELINE_TAG: str(baseline),
        SERVING_BACKEND_TAG: choice.backend if choice else "torch",
        SERVING_EXPORT_TAG: served,
        SERVED_ARTIFACT_TAG: "fp32" if served == "none" else served,
        SERVED_METRIC_TAG: str(choice.served_metric(fp32_metric) if choice else fp32_metric),
    }
    if choice and served in choice.agreement:
        tags[AGREEMENT_TAG] = f"{choice.agreement[served]:.6f}"
    return tags


def served_record(task: GlueTask, paths: Paths, dev: pd.DataFrame | None, choice: ServingChoice) -> dict | None:
    """The served form's per-example dev answers with their labels: the gate's paired bootstrap reads them."""
    if dev is None:
        return None
    if choice.export != "none":
        predictions: np.ndarray | None = choice.predictions[choice.export]
        source = f"{choice.export} export, scored by register through the serving path"
    else:
        predictions, source = dev_scoring.recorded_predictions(task, paths.dev_predictions_file("student"), dev)
    if predictions is None:
        choice.reasons.append(f"{source}: the gate has no per-example answers for its bootstrap")
        return None
    return {"task": task.name, "source": source, "labels": dev[LABEL].tolist(), "predictions": predictions.tolist()}


def serving_config_for(task: GlueTask, params: Params, choice: ServingChoice | None) -> ServingConfig:
    backend: Backend = choice.backend if choice else "torch"
    return serving_config(
        task, params, backend, choice.weights_file if choice else None, choice.export if choice else "none"
    )


def log_and_register(
    role: str,
    folder: Path,
    params: Params,
    paths: Paths,
    metrics: dict[str, Any],
    lineage: dict[str, str],
    choice: ServingChoice | None,
    workdir: Path,
    baseline: float,
) -> tuple[Any, bool]:
    """The version for these weights (registered now, or found): (version, registered_now)."""
    import mlflow

    task = get_task(params.task)
    name = model_name(task.name, role, params.register_.model_prefix)
    client = mlflow.MlflowClient()
    model_md5 = model_hash(folder, params)
    existing = registered_version(client, name, model_md5)
    if existing is not None:
        print(f"{name}: these weights are already registered as v{existing.version} (md5 {model_md5[:12]})")
        if not existing.description:  # the run that registered it died before writing its card
            card = model_card(task, role, metrics, params, paths, serving_config_for(task, params, choice), choice)
            client.update_model_version(
                name, existing.version, description=card + lineage_section(client, lineage, paths.root)
            )
        return existing, False
    config = serving_config_for(task, params, choice)
    backend: Backend = config.backend
    # The folder's name is what the logged model shows under artifacts/: keep it "model", one folder per role.
    packaged = package(folder, config, workdir / role / MODEL_ARTIFACT, choice.export_file if choice else None)
    info = mlflow.pyfunc.log_model(
        name=role,
        python_model=str(MODEL_CODE),  # models from code: no pickled class in the artifact
        artifacts={MODEL_ARTIFACT: str(packaged)},
        signature=signature(task),
        input_example=example_input(task),
        pip_requirements=pip_requirements(backend),
        code_paths=[str(PACKAGE_DIR)],
    )
    card = model_card(task, role, metrics, params, paths, config, choice)
    mlflow.log_text(card, f"{role}_model_card.md")
    tags = version_tags(task, role, metrics, params, paths, choice, baseline)
    if choice is not None and choice.dev_record is not None:
        mlflow.log_dict(choice.dev_record, f"{role}_dev_predictions.json")
        tags[DEV_PREDICTIONS_TAG] = f"runs:/{mlflow.active_run().info.run_id}/{role}_dev_predictions.json"  # type: ignore[union-attr]
    tags.update(
        {
            MODEL_HASH_TAG: model_md5,
            WEIGHTS_HASH_TAG: weights_hash(folder),
            LINEAGE_TAG: json.dumps(lineage, sort_keys=True),  # one tag, not one chip per stage in the UI
        }
    )
    # Tags go in with the version (one registry call, not one per tag), so it never exists without them.
    version = mlflow.register_model(info.model_uri, name, tags=tags)
    client.update_model_version(name, version.version, description=card + lineage_section(client, lineage, paths.root))
    described = model_description(name, task, role, params.register_.serving.port)
    if client.get_registered_model(name).description != described:
        client.update_registered_model(name, description=described)
    return version, True


def gate_and_promote(
    client: Any, name: str, version: Any, registered_now: bool, params: Params, root: Path, how: str
) -> tuple[Decision, bool]:
    """Gate a version not gated yet and promote it compare-and-set; a version gated before is left as it is.

    The gate's verdict is written last: a run killed anywhere before it leaves the version ungated, and the next
    run gates it again (promoting the champion it already is changes nothing), never a verdict with no move.
    """
    settings = params.register_
    with registry_lock(tracking_uri(params, Paths.at(root)), name, root):
        demoted = mark_manual_moves(client, name)
        if not registered_now and GATE_TAG in version.tags:
            champion = current_champion(client, name)
            decision = Decision(promote=False, champion_version=str(champion.version) if champion else None)
            decision.reasons.append(
                f"v{version.version} was registered before with these weights (gate: "
                f"{version.tags[GATE_TAG]}); not gated or promoted again, so a person's rollback or alias move stands"
            )
            return decision, False
        decision = gate_version(client, name, version.version, settings.promotion)
        if not registered_now:
            decision.reasons.append(f"v{version.version} was registered before but never gated: gated now")
        if demoted:
            decision.reasons.append(f"note: a person moved @champion away from v{demoted}; it is marked rolled back")
        client.set_registered_model_alias(name, CHALLENGER, version.version)
        promoted = decision.promote and settings.promote
        if promoted:
            promote(client, name, version.version, expected=decision.champion_version, how=how)
        elif decision.promote:
            decision.reasons.append("register.promote is false: champion left where it was")
        card = get_version(client, name, version.version).description or ""
        # A run killed after this line and gated again replaces the section instead of adding a second one.
        card = card.split(GATE_SECTION_START)[0]
        client.update_model_version(name, version.version, description=card + gate_section(decision.as_dict()))
        record_decision(client, name, version.version, decision)
    return decision, promoted


def outcome(
    task: GlueTask,
    name: str,
    metrics: dict[str, Any],
    version: Any,
    decision: Decision,
    promoted: bool,
    choice: ServingChoice,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """metrics/register.json and reports/promotion.json: the decision with the baseline beside the metric."""
    fp32_metric = float(metrics[task.primary_metric])
    summary = {
        "student_version": int(version.version),
        "promoted": int(promoted),
        f"student_{task.primary_metric}": fp32_metric,
    }
    if decision.baseline_metric is not None and not math.isnan(decision.baseline_metric):
        summary[f"baseline_{task.primary_metric}"] = decision.baseline_metric
    report = {
        "model": name,
        "version": str(version.version),
        **decision.as_dict(),
        "served_metric": choice.served_metric(fp32_metric),
        "promoted": promoted,
        "serving": choice.as_dict(),
    }
    return summary, report


def register(params: Params, paths: Paths, write_outputs: bool = True) -> dict[str, Any]:
    """Register, gate, promote. ``write_outputs=False`` leaves metrics/ and reports/ (git-versioned) untouched."""
    import mlflow

    task = get_task(params.task)
    evaluations = {role: json.loads(paths.metrics_file(f"eval_{role}").read_text()) for role in ("teacher", "student")}
    roles = ("teacher", "student") if params.register_.register_teacher else ("student",)
    with stage_run("register", params, paths) as tracked, tempfile.TemporaryDirectory() as tmp:
        client = mlflow.MlflowClient()
        dev = dev_scoring.load_dev(task, paths.validated_dir)
        baseline, baseline_model = dev_scoring.baseline_metric(task, dev) if dev is not None else (math.nan, "-")
        choice = choose_serving(params, paths, task, Path(tmp), dev)
        choice.dev_record = served_record(task, paths, dev, choice)
        versions, lineages, new = {}, {}, {}
        for role in roles:
            lineages[role] = {**model_stage_runs(paths, role), "register": tracked.run_id}
            folder = paths.teacher_dir if role == "teacher" else paths.student_dir
            student = role == "student"
            versions[role], new[role] = log_and_register(
                role,
                folder,
                params,
                paths,
                evaluations[role],
                lineages[role],
                choice if student else None,
                Path(tmp),
                baseline,
            )
        # The register run's description (rendered as markdown in the MLflow UI) links each model's lineage.
        client.set_tag(
            tracked.run_id,
            NOTE_TAG,
            "\n".join(
                f"## {model_name(task.name, role, params.register_.model_prefix)} v{versions[role].version}\n"
                + lineage_section(client, lineages[role], paths.root)
                for role in sorted(roles, key=lambda role: role != "student")  # the served model first
            ),
        )
        name, student_version = model_name(task.name, "student", params.register_.model_prefix), versions["student"]
        how = f"gate in register run {tracked.run_id}"
        decision, promoted = gate_and_promote(client, name, student_version, new["student"], params, paths.root, how)
        summary, report = outcome(task, name, evaluations["student"], student_version, decision, promoted, choice)
        report.update(baseline_model=baseline_model, run_id=tracked.run_id)
        if write_outputs:
            write_json(paths.metrics_file("register"), summary)
            write_json(paths.reports_dir / "promotion.json", report)
        tracked.log_dict(report, "promotion.json")
        tracked.log_metrics({key: value for key, value in summary.items() if not math.isnan(value)})
    verdict = "PROMOTED " if promoted else "NOT PROMOTED "
    print(verdict + f"{name} v{student_version.version}: " + "; ".join(decision.reasons))
    print("serving: " + "; ".join(choice.reasons))
    if promoted:
        print(restart_hint(name))
    return {"metrics": summary, "decision": report}


def sync(params: Params, paths: Paths) -> dict[str, Any] | None:
    """Register the student in this clone's store if it does not hold it yet; None if it does.

    ``dvc pull`` restores models/ and the stage results without running the register stage, so a fresh clone's
    own MLflow store (mlruns.db) starts empty; this fills it without touching the git-versioned results.
    """
    import mlflow

    from distilflow.tracking.runs import configure_mlflow

    if not (paths.student_dir.is_dir() and paths.metrics_file("eval_student").is_file()):
        raise FileNotFoundError(f"no student at {paths.student_dir} (run `dvc repro` or `dvc pull` first)")
    configure_mlflow(params, paths)
    name = model_name(params.task, "student", params.register_.model_prefix)
    existing = registered_version(mlflow.MlflowClient(), name, model_hash(paths.student_dir, params))
    if existing is not None:
        print(f"{name}: this store already holds models/student as v{existing.version}")
        return None
    return register(params, paths, write_outputs=False)
