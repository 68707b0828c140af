"""register: log teacher and student as MLflow models that take raw text, and gate the student's promotion."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from distilflow.config import Params
from distilflow.paths import Paths
from distilflow.registry import CHALLENGER, LATENCY_TAG, METRIC_TAG, gate, model_name, promote
from distilflow.tasks import GlueTask, get_task
from distilflow.tracking import dvc_lock_data_hash, git_commit, params_hash, read_lineage, stage_run, write_json

SECTIONS = ("register",)
PIP_REQUIREMENTS = ["torch==2.13.0", "transformers==5.23.0", "pandas", "numpy", "safetensors"]


def example_input(task: GlueTask) -> pd.DataFrame:
    samples = {
        "single": {task.fields[0]: ["a gripping , beautifully acted film .", "a tedious mess ."]},
        "pair": {task.fields[0]: ["A man is playing a guitar."] * 2,
                 task.fields[-1]: ["A person plays an instrument.", "Nobody is making music."]},
    }
    return pd.DataFrame(samples["single" if not task.is_pair else "pair"])


def packaged_model_dir(source: Path, task: GlueTask, max_length: int, target: Path) -> Path:
    """Copy the model and tokenizer, recording in config.json what the server needs to read raw text."""
    target.mkdir(parents=True, exist_ok=True)
    for file in source.iterdir():
        if file.is_file() and file.name != "lineage.json":
            shutil.copy2(file, target / file.name)
    config = json.loads((target / "config.json").read_text())
    config["distilflow_fields"] = list(task.fields)
    config["distilflow_max_length"] = max_length
    config["distilflow_task"] = task.name
    (target / "config.json").write_text(json.dumps(config, indent=2))
    return target


def model_card(task: GlueTask, role: str, metrics: dict[str, Any], params: Params) -> str:
    primary = task.primary_metric
    rows = "\n".join(f"| {key} | {value:.4g} |" for key, value in sorted(metrics.items())
                     if isinstance(value, int | float))
    return f"""# distilflow {task.name} {role}

- **Task**: GLUE {task.name} ({task.kind}); labels: {", ".join(task.labels or ("score 0..5",))}
- **Data**: source `{params.data.source}` {params.data.path or ""}
- **Dev {primary}**: {metrics.get(primary, float("nan")):.4f}
- **Input**: raw text; columns {list(task.fields)}; texts longer than {params.tokenize.max_length} tokens are truncated.
- **Limits**: trained on {task.name} only; scores are uncalibrated softmax confidences; English, uncased.

| metric | value |
|---|---|
{rows}
"""


def log_and_register(role: str, folder: Path, params: Params, paths: Paths, task: GlueTask,
                     metrics: dict[str, Any], lineage: dict[str, str]) -> Any:
    import mlflow
    from mlflow.models import infer_signature

    from distilflow.serving import TextClassifier

    name = model_name(task.name, role)
    with tempfile.TemporaryDirectory() as tmp:
        packaged = packaged_model_dir(folder, task, params.tokenize.max_length, Path(tmp) / "model")
        example = example_input(task)
        classifier = TextClassifier()
        classifier.load_context(type("Context", (), {"artifacts": {"model": str(packaged)}})())
        signature = infer_signature(example, classifier.predict(None, example))
        info = mlflow.pyfunc.log_model(
            name=role,
            python_model=classifier.__class__(),
            artifacts={"model": str(packaged)},
            signature=signature,
            input_example=example,
            pip_requirements=PIP_REQUIREMENTS,
            code_paths=[str(Path(__file__).resolve().parents[1])],
        )
    card = model_card(task, role, metrics, params)
    mlflow.log_text(card, f"{role}_model_card.md")
    version = mlflow.register_model(info.model_uri, name)
    client = mlflow.MlflowClient()
    tags = {
        "git_commit": git_commit(paths.root),
        "dvc_data_md5": dvc_lock_data_hash(paths.root),
        "params_hash": params_hash(params),
        METRIC_TAG: str(metrics[task.primary_metric]),
        LATENCY_TAG: str(metrics.get("latency_p95_ms", "nan")),
        **{f"lineage.{stage}": run_id for stage, run_id in lineage.items()},
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version.version, key, value)
    client.update_model_version(name, version.version, description=card)
    return version


def run(params: Params, paths: Paths) -> dict[str, Any]:
    import mlflow

    task = get_task(params.task)
    evaluations = {role: json.loads(paths.metrics_file(f"eval_{role}").read_text()) for role in ("teacher", "student")}
    outputs: dict[str, Any] = {}
    with stage_run("register", params, paths, SECTIONS) as tracked:
        client = mlflow.MlflowClient()
        roles = ("teacher", "student") if params.register_.register_teacher else ("student",)
        versions = {}
        for role in roles:
            lineage = {**read_lineage(paths.reports_dir / f"eval_{role}"), "register": tracked.run_id}
            folder = paths.teacher_dir if role == "teacher" else paths.student_dir
            versions[role] = log_and_register(role, folder, params, paths, task, evaluations[role], lineage)
        student_name = model_name(task.name, "student")
        student = versions["student"]
        client.set_registered_model_alias(student_name, CHALLENGER, student.version)
        from distilflow.registry import current_champion

        champion = current_champion(client, student_name)
        champion_metric = float(champion.tags[METRIC_TAG]) if champion is not None else None
        metrics = evaluations["student"]
        decision = gate(metrics[task.primary_metric], metrics["latency_p95_ms"], champion_metric,
                        params.register_.promotion, task.primary_metric)
        decision.champion_version = champion.version if champion is not None else None
        if decision.promote:
            promote(client, student_name, student.version)
        summary = {"student_version": int(student.version), "promoted": int(decision.promote),
                   f"student_{task.primary_metric}": metrics[task.primary_metric]}
        report = {"model": student_name, "version": student.version, **decision.as_dict(),
                  "run_id": tracked.run_id}
        write_json(paths.metrics_file("register"), summary)
        write_json(paths.reports_dir / "promotion.json", report)
        tracked.log_dict(report, "promotion.json")
        tracked.log_metrics(summary)
        print(("PROMOTED " if decision.promote else "NOT PROMOTED ") + f"{student_name} v{student.version}: "
              + "; ".join(decision.reasons))
        outputs = {"metrics": summary, "decision": report}
    return outputs
