"""evaluate: score one model (teacher or student) on the dev split with GLUE's metric, size and speed.

dvc.yaml runs it once per model (``evaluate@teacher`` after fine-tuning, ``evaluate@student`` after
distillation), so each model is scored as soon as it exists and a distillation change re-scores only the student.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from datasets import Dataset, load_from_disk

from distilflow.batching import pad_batch
from distilflow.config import Params
from distilflow.metrics import compute_glue_metrics
from distilflow.modeling import count_parameters, load_classifier, load_tokenizer
from distilflow.paths import Paths
from distilflow.tasks import LINE, GlueTask, get_task
from distilflow.tracking import read_lineage, stage_run, write_json, write_lineage
from distilflow.training import logits_to_predictions, predict_logits

SECTIONS = ("evaluate",)
MODELS = ("teacher", "student")


def model_dir(paths: Paths, which: str) -> Path:
    if which not in MODELS:
        raise ValueError(f"evaluate takes one of {MODELS}, not {which!r}")
    return paths.teacher_dir if which == "teacher" else paths.student_dir


def folder_megabytes(folder: Path) -> float:
    return sum(file.stat().st_size for file in folder.glob("*.safetensors")) / 1e6


@torch.inference_mode()
def measure_speed(model: torch.nn.Module, dev: Dataset, pad_id: int, params: Params) -> dict[str, float]:
    """Batch-1 latency percentiles and batch-N throughput of the forward pass on CPU."""
    settings = params.evaluate
    model.eval()
    columns = dev.select_columns(["input_ids", "token_type_ids", "labels"])
    count = min(settings.latency_examples, len(dev))
    singles = [pad_batch([columns[i]], pad_id, regression=False) for i in range(count)]
    for batch in singles[:5]:  # warm-up: first calls pay for allocation and kernel selection
        batch.pop("labels", None)
        model(**batch)
    timings = []
    for batch in singles:
        batch.pop("labels", None)
        start = time.perf_counter()
        model(**batch)
        timings.append((time.perf_counter() - start) * 1000)
    size = settings.throughput_batch_size
    rows = [columns[i % len(dev)] for i in range(size * settings.throughput_batches)]
    batches = [pad_batch(rows[i : i + size], pad_id, regression=False) for i in range(0, len(rows), size)]
    for batch in batches:
        batch.pop("labels")
    model(**batches[0])
    start = time.perf_counter()
    for batch in batches:
        model(**batch)
    elapsed = time.perf_counter() - start
    return {
        "latency_p50_ms": float(np.percentile(timings, 50)),
        "latency_p95_ms": float(np.percentile(timings, 95)),
        f"throughput_b{size}_per_s": len(rows) / elapsed,
    }


def save_predictions(path: Path, task: GlueTask, dev: Dataset, logits: np.ndarray) -> None:
    frame = pd.DataFrame({LINE: dev[LINE], "label": dev["labels"]})
    predictions = logits_to_predictions(logits, task.is_regression)
    frame["prediction"] = predictions
    if not task.is_regression:
        probabilities = torch.softmax(torch.from_numpy(logits), dim=-1).numpy()
        frame["confidence"] = probabilities.max(axis=-1)
    frame["tokens"] = dev["length"]
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)


def evaluate_model(model: torch.nn.Module, task: GlueTask, data: Any, pad_id: int,
                   batch_size: int) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """GLUE metrics on every dev split (MNLI has two); keys are prefixed by split when there are several."""
    metrics: dict[str, float] = {}
    all_logits: dict[str, np.ndarray] = {}
    for split in task.dev_splits:
        logits = predict_logits(model, data[split], batch_size, pad_id)
        scores = compute_glue_metrics(task.name, logits_to_predictions(logits, task.is_regression),
                                      data[split]["labels"])
        prefix = "" if len(task.dev_splits) == 1 else f"{split}_"
        metrics.update({prefix + key: value for key, value in scores.items()})
        all_logits[split] = logits
    return metrics, all_logits


def run(params: Params, paths: Paths, which: str = "teacher") -> dict[str, Any]:
    task = get_task(params.task)
    folder = model_dir(paths, which)
    data = load_from_disk(str(paths.tokenized_dir))
    tokenizer = load_tokenizer(str(folder))
    model = load_classifier(folder)
    with stage_run(f"evaluate-{which}", params, paths, SECTIONS) as tracked:
        metrics, logits = evaluate_model(model, task, data, tokenizer.pad_token_id, params.finetune.eval_batch_size)
        metrics.update(measure_speed(model, data[task.dev_splits[0]], tokenizer.pad_token_id, params))
        metrics["parameters"] = count_parameters(model)
        metrics["size_mb"] = folder_megabytes(folder)
        for split, split_logits in logits.items():
            save_predictions(paths.predictions_dir / f"{which}_{split}.csv", task, data[split], split_logits)
        write_json(paths.metrics_file(f"eval_{which}"), metrics)
        tracked.log_metrics(metrics)
        for split in task.dev_splits:
            tracked.log_artifact(paths.predictions_dir / f"{which}_{split}.csv", "predictions")
        lineage = read_lineage(folder)
        write_lineage(paths.reports_dir / f"eval_{which}", {**lineage, f"evaluate_{which}": tracked.run_id})
    return {"metrics": metrics}
