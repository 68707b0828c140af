"""The evaluate and report stages on tiny random BERTs, in process, with a real MLflow sqlite store.

Each task kind goes through: single sentence (sst2), regression (stsb) and MNLI's two dev sets. The numbers the
stage writes are recomputed from its own predictions file with scikit-learn / SciPy, which is what a person doing
error analysis would do.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from datasets import Dataset, DatasetDict
from mlflow import MlflowClient
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score
from transformers import BertConfig, BertForSequenceClassification

from distilflow.config.loading import parse_params
from distilflow.models.loading import label_maps, load_tokenizer, resolve_teacher
from distilflow.paths import Paths
from distilflow.stages import evaluate as evaluation
from distilflow.stages import report as report_stage
from distilflow.stages.tokenize import encode
from distilflow.tasks import LABEL, LINE, GlueTask, get_task
from distilflow.tracking.tags import STAGE_TAG
from tests.conftest import REPO_ROOT

WORDS = ("good", "bad", "film", "plot", "dull", "great", "slow", "fun", "cast", "score", "long", "short")


def sentence(rng: np.random.Generator, words: int) -> str:
    return " ".join(rng.choice(WORDS, size=words)) + " ."


def split_frame(task: GlueTask, rows: int, seed: int) -> pd.DataFrame:
    """Validated-data shape: line, text fields, label (class id or score), id; lengths spread over buckets."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({LINE: np.arange(2, 2 + rows)})
    for field in task.fields:
        frame[field] = [sentence(rng, int(n)) for n in rng.integers(2, 40, size=rows)]
    if task.is_regression:
        frame[LABEL] = np.round(rng.uniform(0, 5, size=rows), 3)
    else:
        frame[LABEL] = np.arange(rows) % task.num_labels
    frame["id"] = [str(i) for i in range(rows)]
    return frame


def tiny_model(task: GlueTask, hidden: int, layers: int, seed: int, vocab: int) -> BertForSequenceClassification:
    import torch

    torch.manual_seed(seed)
    id2label, label2id = label_maps(task)
    config = BertConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        num_labels=task.num_labels,
        id2label=id2label,
        label2id=label2id,
        problem_type="regression" if task.is_regression else None,
    )
    return BertForSequenceClassification(config)


def spread_regression_head(model: BertForSequenceClassification, dev: Dataset) -> None:
    """A random BERT's pooled outputs barely differ between inputs, so its scores would all clip to one value.

    Point the head along the pooled outputs' main direction of variation and scale it to spread the dev
    scores around 2.5, so that Pearson and Spearman are defined (the model is still untrained).
    """
    import torch

    model.eval()  # without dropout, or the direction found is noise
    pooled = []
    with torch.no_grad():
        for row in dev:
            ids = torch.tensor([row["input_ids"]])
            pooled.append(model.bert(input_ids=ids, token_type_ids=torch.tensor([row["token_type_ids"]]))[1][0])
    features = torch.stack(pooled)
    centred = features - features.mean(dim=0)
    direction = torch.linalg.svd(centred, full_matrices=False).Vh[0]
    spread = (centred @ direction).std()
    with torch.no_grad():
        model.classifier.weight.copy_((direction / spread * 1.5).unsqueeze(0))
        model.classifier.bias.fill_(2.5 - float(features.mean(dim=0) @ model.classifier.weight[0]))


def make_project(root: Path, task_name: str) -> Paths:
    task = get_task(task_name)
    paths = Paths.at(root)
    # A stage logs its dvc.yaml params (tracking.runs.stage_run), so the project has the pipeline's dvc.yaml.
    shutil.copy(REPO_ROOT / "dvc.yaml", root / "dvc.yaml")
    tokenizer = load_tokenizer(resolve_teacher("packaged-minilm"))
    splits = {"train": split_frame(task, 8, 0)}
    for offset, split in enumerate(task.dev_splits, start=1):
        splits[split] = split_frame(task, 24, offset)
    paths.validated_dir.mkdir(parents=True)
    for split, frame in splits.items():
        frame.to_parquet(paths.validated_dir / f"{split}.parquet", index=False)
    data = DatasetDict({split: encode(frame, task, tokenizer, 64) for split, frame in splits.items()})
    data.save_to_disk(str(paths.tokenized_dir))
    for folder, hidden, layers in ((paths.teacher_dir, 64, 2), (paths.student_dir, 16, 1)):
        model = tiny_model(task, hidden, layers, hidden, len(tokenizer))
        if task.is_regression:
            spread_regression_head(model, data[task.dev_splits[0]])
        model.save_pretrained(str(folder))
        tokenizer.save_pretrained(str(folder))
    return paths


def recompute(task: GlueTask, frame: pd.DataFrame) -> dict[str, float]:
    """The task's GLUE metrics straight from the predictions file, with the reference libraries."""
    if task.is_regression:
        return {
            "pearson": float(pearsonr(frame["prediction"], frame["label"]).statistic),
            "spearmanr": float(spearmanr(frame["prediction"], frame["label"]).statistic),
        }
    return {"accuracy": float(accuracy_score(frame["label"], frame["prediction"]))}


@pytest.mark.parametrize("task_name", ["sst2", "stsb", "mnli"])
def test_evaluate_both_models_then_report(task_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    task = get_task(task_name)
    paths = make_project(tmp_path, task_name)
    params = parse_params(
        {
            "task": task_name,
            "run": {"eval_batch_size": 8},
            "evaluate": {
                "latency_examples": 6,
                "throughput_batch_size": 4,
                "throughput_batches": 2,
                "length_buckets": [8, 16, 32],
            },
        }
    )

    results = {role: evaluation.run(params, paths, role) for role in ("teacher", "student")}

    for role in ("teacher", "student"):
        metrics = json.loads(paths.metrics_file(f"eval_{role}").read_text())
        assert metrics == pytest.approx(results[role]["metrics"])
        frame = pd.read_csv(evaluation.predictions_file(paths, role))
        assert len(frame) == 24 * len(task.dev_splits) == metrics["dev_examples"]
        for split in task.dev_splits:
            rows = frame[frame["split"] == split]
            prefix = "" if len(task.dev_splits) == 1 else f"{split}_"
            for key, value in recompute(task, rows).items():
                assert metrics[prefix + key] == pytest.approx(value, abs=1e-6), (role, split, key)
            validated = pd.read_parquet(paths.validated_dir / f"{split}.parquet")
            assert rows[task.fields[-1]].tolist() == validated[task.fields[-1]].tolist()
        if len(task.dev_splits) > 1:  # MNLI: the plain keys are dev_matched's, GLUE's headline number
            assert metrics[task.primary_metric] == metrics[f"{task.dev_splits[0]}_{task.primary_metric}"]
        for key in ("latency_p50_ms", "latency_p95_ms", "throughput_b4_per_s", "parameters", "size_mb"):
            assert metrics[key] > 0
        if task.is_regression:
            assert frame["prediction"].between(0.0, 5.0).all()
            assert metrics["mae"] == pytest.approx(np.mean(np.abs(frame["prediction"] - frame["label"])), abs=1e-6)
            expected = {"scatter.png", "confusion_matrix.png", "length_buckets.png"}
        else:
            assert 0.0 <= metrics["ece"] <= 1.0
            assert set(frame["predicted"].astype(str)) <= set(task.labels or ())
            expected = {"confusion_matrix.png", "reliability.png", "length_buckets.png"}
        assert {p.name for p in evaluation.plot_dir(paths, role).iterdir()} == expected
        lengths = pd.read_csv(evaluation.length_file(paths, role))
        assert lengths["examples"].sum() == len(frame)

    teacher = json.loads(paths.metrics_file("eval_teacher").read_text())
    student = json.loads(paths.metrics_file("eval_student").read_text())
    assert student["parameters"] < teacher["parameters"]
    assert student["size_mb"] < teacher["size_mb"]

    report_stage.run(params, paths)
    combined = json.loads(paths.metrics_file("eval").read_text())
    assert set(combined) == {"teacher", "student", "ratios"}
    assert combined["teacher"][task.primary_metric] == teacher[task.primary_metric]
    assert combined["ratios"]["parameters_smaller_x"] == pytest.approx(teacher["parameters"] / student["parameters"])
    assert combined["ratios"]["throughput_speedup_x"] == pytest.approx(
        combined["student"]["throughput_b4_per_s"] / combined["teacher"]["throughput_b4_per_s"]
    )
    markdown = (paths.reports_dir / "comparison.md").read_text()
    assert "**teacher** (this run)" in markdown and "**student** (this run)" in markdown
    assert "(published)" in markdown
    assert (paths.plots_dir / "comparison.png").read_bytes()[:4] == b"\x89PNG"

    client = MlflowClient(tracking_uri=f"sqlite:///{paths.mlflow_db}")
    runs = {
        run.data.tags[STAGE_TAG]: run
        for run in client.search_runs([client.get_experiment_by_name(f"distilflow-{task_name}").experiment_id])
    }
    assert set(runs) == {"evaluate-teacher", "evaluate-student", "report"}
    logged = {item.path for item in client.list_artifacts(runs["evaluate-student"].info.run_id, "plots")}
    assert {f"plots/{name}" for name in expected} <= logged
    assert runs["evaluate-student"].data.metrics[task.primary_metric] == pytest.approx(student[task.primary_metric])
    assert "ratios_size_smaller_x" in runs["report"].data.metrics
    assert {item.path for item in client.list_artifacts(runs["report"].info.run_id, "report")} >= {
        "report/comparison.md",
        "report/comparison.png",
        "report/eval.json",
    }


def test_unknown_model_role_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="teacher"):
        evaluation.model_dir(Paths.at(tmp_path), "assistant")


def test_report_without_evaluations_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"dvc repro evaluate@teacher"):
        report_stage.run(parse_params({"task": "sst2"}), Paths.at(tmp_path))
