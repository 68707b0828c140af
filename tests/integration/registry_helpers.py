"""Tiny real models and a project folder around them, so registry and serving tests need no pipeline run.

The models are randomly initialised BERTs with the packaged teacher's tokenizer: real safetensors weights and a
real tokenizer, small enough to save, log and load in about a second.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from distilflow.config.loading import load_params
from distilflow.config.params import Params
from distilflow.paths import Paths
from distilflow.registry.bootstrap import batch_metric
from distilflow.tasks import LABEL, GlueTask, get_task
from tests.conftest import REPO_ROOT, deep_update

REGISTRY_OVERRIDES: dict[str, Any] = {
    "register": {
        "register_teacher": False,
        "serving": {"export": "none"},
        "promotion": {"min_metric": 0.6, "tolerance": 0.01, "max_latency_ms": 50.0},
    },
}

# A served export is scored on dev by its own predictions (packaging.ServingChoice.served_metric): a random tiny
# model's answers on the fixture labels are a coin toss, so tests about serving an export, not about the gate, let
# any metric through.
ANY_METRIC: dict[str, Any] = {"promotion": {"min_metric": -1.0, "baseline_margin": -1.0}}


def tiny_model(folder: Path, task: GlueTask, seed: int = 0, hidden: int = 32) -> Path:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from distilflow.models.loading import label_maps, resolve_teacher

    tokenizer = AutoTokenizer.from_pretrained(resolve_teacher("packaged-minilm"))
    id2label, label2id = label_maps(task)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=hidden * 2,
        num_labels=task.num_labels,
        id2label=id2label,
        label2id=label2id,
        problem_type="regression" if task.is_regression else "single_label_classification",
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An sqlite MLflow store with its schema in place: creating one runs ~50 migrations, copying one is instant."""
    db = tmp_path_factory.mktemp("store") / "mlruns.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
    return db


def project(
    root: Path, task: str = "sst2", overrides: dict[str, Any] | None = None, store: Path | None = None
) -> tuple[Params, Paths]:
    """A project folder with params.yaml and a tiny student (and teacher): what the register stage reads."""
    root.mkdir(parents=True, exist_ok=True)
    if store is not None:
        shutil.copy2(store, root / "mlruns.db")
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    raw = deep_update(raw, deep_update({"task": task, **REGISTRY_OVERRIDES}, overrides or {}))
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    shutil.copy2(REPO_ROOT / "dvc.yaml", root / "dvc.yaml")  # `distilflow stage` runs the stages dvc.yaml declares
    paths = Paths.at(root)
    glue_task = get_task(task)
    tiny_model(paths.student_dir, glue_task, seed=1)
    tiny_model(paths.teacher_dir, glue_task, seed=2, hidden=64)
    write_dev(paths, glue_task)
    return load_params(paths.params_file), paths


def write_dev(paths: Paths, task: GlueTask, rows: int = 200, majority_share: float = 0.5) -> pd.DataFrame:
    """A validated dev split as the validate stage writes it: the task's text fields and label ids (or scores)."""
    texts = [line.split("\t")[0] for line in (REPO_ROOT / "data/demo/sst2/dev.tsv").read_text().splitlines()[1:]]
    texts = (texts * (rows // len(texts) + 1))[:rows]
    frame = pd.DataFrame({field: texts if i == 0 else texts[::-1] for i, field in enumerate(task.fields)})
    if task.is_regression:
        frame[LABEL] = np.linspace(0.0, 5.0, rows)
    else:
        frame[LABEL] = [1 if i < round(rows * majority_share) else 0 for i in range(rows)]
    paths.validated_dir.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(paths.validated_dir / f"{task.dev_splits[0]}.parquet", index=False)
    return frame


def answers_scoring(task: GlueTask, labels: np.ndarray, metric: float, seed: int) -> np.ndarray:
    """Per-example dev answers whose primary metric on LABELS is as close to METRIC as these rows allow.

    Classification: the labels with answers changed one at a time, in a seeded order, until the metric is
    reached; regression: the scores plus seeded noise of the size that gives that Pearson correlation.
    """
    full = np.arange(len(labels))[None, :]

    def score(answers: np.ndarray) -> float:
        return float(batch_metric(task.primary_metric, answers, labels, full)[0])

    rng = np.random.default_rng(seed)
    if task.is_regression:
        noise = rng.normal(size=len(labels))
        scale = min(np.geomspace(1e-3, 1e3, 600), key=lambda s: abs(score(labels + s * noise) - metric))
        return np.asarray(labels + scale * noise)
    answers, best = labels.copy(), labels.copy()
    for index in rng.permutation(len(labels)):
        answers[index] = (answers[index] + 1) % task.num_labels
        if abs(score(answers) - metric) < abs(score(best) - metric):
            best = answers.copy()
        if score(answers) < metric:
            break
    return best


def set_student(
    paths: Paths,
    task: GlueTask,
    metric: float,
    latency_p95_ms: float = 2.0,
    lineage: dict[str, str] | None = None,
    seed: int = 1,
) -> float:
    """A new student 'trained' to about the given dev metric: new weights, and the evaluate stage's files for it
    (its per-example dev answers, scoring as close to METRIC as the dev rows allow, and that metric). Returns it."""
    tiny_model(paths.student_dir, task, seed=seed)
    labels = pd.read_parquet(paths.validated_dir / f"{task.dev_splits[0]}.parquet")[LABEL].to_numpy()
    answers = answers_scoring(task, labels, metric, seed)
    paths.predictions_dir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"label": labels, "prediction": answers}).to_csv(paths.dev_predictions_file("student"), index=False)
    metric = float(batch_metric(task.primary_metric, answers, labels, np.arange(len(labels))[None, :])[0])
    for role in ("teacher", "student"):
        evaluation = {
            task.primary_metric: metric if role == "student" else 0.9,
            "latency_p50_ms": 1.0,
            "latency_p95_ms": latency_p95_ms,
            "parameters": 1_000_000,
            "size_mb": 4.0,
        }
        paths.metrics_file(f"eval_{role}").parent.mkdir(parents=True, exist_ok=True)
        paths.metrics_file(f"eval_{role}").write_text(json.dumps(evaluation))
        paths.lineage_file(f"evaluate_{role}").parent.mkdir(parents=True, exist_ok=True)
        paths.lineage_file(f"evaluate_{role}").write_text(json.dumps(lineage or {}))
    return metric


def client_for(paths: Paths) -> MlflowClient:
    uri = f"sqlite:///{paths.mlflow_db}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def write_onnx_export(student_dir: Path, agrees: bool) -> None:
    """What the distill stage leaves in models/student/export (see distilflow.export.student), for the fp32 ONNX
    form."""
    from distilflow.export.student import export_onnx
    from distilflow.models.loading import load_classifier

    export_onnx(load_classifier(student_dir), student_dir / "export" / "onnx" / "model.onnx")
    summary = {"onnx": {"agrees": agrees, "metric": "accuracy", "accuracy": 0.8, "fp32_accuracy": 0.8}}
    (student_dir / "export" / "summary.json").write_text(json.dumps(summary))
