"""Scoring a packaged model on the dev set through its serving path, and the task's trivial baseline.

The gate must judge what will be served, on the same rows it compares everything else on: the validated dev
split (``data/validated/<dev split>.parquet``, written by the validate stage). The trivial baseline is what a
model that ignores its input scores there: always the majority class (classification) or always the mean
score (regression). On a skewed pair task such as MRPC it is far from trivial to beat (F1 0.81). Pair tasks have a
second, lexical baseline: the Jaccard overlap of the two texts' lower-cased word sets, which reaches Pearson 0.65 on
real STS-B dev (issue #20) and which a distilled student must beat to have learnt more than word matching.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from distilflow.serving.classifier import TextClassifier
from distilflow.tasks import LABEL, GlueTask

REGRESSION_AGREEMENT_ATOL = 0.1  # an STS-B score within this of fp32's counts as the same prediction


def dev_file(task: GlueTask, validated_dir: Path) -> Path:
    return validated_dir / f"{task.dev_splits[0]}.parquet"


def load_dev(task: GlueTask, validated_dir: Path) -> pd.DataFrame | None:
    """The validated dev split (text fields and label), or None before the validate stage has run."""
    file = dev_file(task, validated_dir)
    if not file.is_file():
        return None
    frame = pd.read_parquet(file)
    return frame[[*task.fields, LABEL]].reset_index(drop=True)


def primary_metric(task: GlueTask, predictions: np.ndarray, references: np.ndarray) -> float:
    from distilflow.metrics import compute_glue_metrics

    return float(compute_glue_metrics(task.name, predictions, references)[task.primary_metric])


def baseline_predictions(task: GlueTask, references: np.ndarray) -> np.ndarray:
    if task.is_regression:
        return np.full(len(references), float(np.mean(references)))
    values, counts = np.unique(references, return_counts=True)
    return np.full(len(references), int(values[np.argmax(counts)]))


def baseline_metric(task: GlueTask, dev: pd.DataFrame) -> tuple[float, str]:
    """The trivial model's primary metric on DEV, and what that model is, in words."""
    references = dev[LABEL].to_numpy()
    predictions = baseline_predictions(task, references)
    if task.is_regression:
        what = f"always score {predictions[0]:.3f} (the dev mean)"
    else:
        assert task.labels is not None
        what = f"always answer {task.labels[int(predictions[0])]!r} (the dev majority class)"
    return primary_metric(task, predictions, references), what


_WORD = re.compile(r"\w+")


def word_overlap(first: str, second: str) -> float:
    """Jaccard similarity of the two texts' lower-cased word sets (punctuation ignored); 0.0 for two empty texts."""
    a, b = set(_WORD.findall(first.lower())), set(_WORD.findall(second.lower()))
    return len(a & b) / len(a | b) if a | b else 0.0


def word_overlap_metric(task: GlueTask, dev: pd.DataFrame) -> float:
    """The primary metric on a regression pair task's DEV of scoring each pair by its word overlap."""
    if not (task.is_pair and task.is_regression):
        raise ValueError(f"word overlap scores a regression pair task; {task.name} is {task.kind}")
    first, second = task.fields
    overlap = np.array([word_overlap(a, b) for a, b in zip(dev[first], dev[second], strict=True)])
    low, high = task.score_range
    return primary_metric(task, low + overlap * (high - low), dev[LABEL].to_numpy())


def predict_dev(model: TextClassifier, task: GlueTask, dev: pd.DataFrame) -> np.ndarray:
    """Per-example predictions (class ids, or scores) through the model's request path, in request-sized chunks."""
    step = model.config.max_rows
    out: list[Any] = []
    for start in range(0, len(dev), step):
        chunk = dev.iloc[start : start + step][list(task.fields)].reset_index(drop=True)
        answer = model.outputs(chunk)
        if task.is_regression:
            out.extend(answer["score"])
        else:
            assert task.labels is not None
            out.extend(task.labels.index(label) for label in answer["label"])
    return np.asarray(out, dtype=np.float64 if task.is_regression else np.int64)


def agreement(task: GlueTask, predictions: np.ndarray, reference: np.ndarray) -> float:
    """Share of dev examples on which two forms of a model give the same answer."""
    if task.is_regression:
        return float(np.mean(np.abs(predictions - reference) <= REGRESSION_AGREEMENT_ATOL))
    return float(np.mean(predictions == reference))


def recorded_predictions(task: GlueTask, file: Path, dev: pd.DataFrame) -> tuple[np.ndarray | None, str]:
    """The evaluate stage's per-example predictions (``predictions/<model>_dev.csv``) if they answer exactly
    these dev rows (same labels in the same order); else None and why."""
    if not file.is_file():
        return None, f"no per-example dev predictions at {file}"
    frame = pd.read_csv(file, usecols=["label", "prediction"])
    labels = dev[LABEL].to_numpy()
    recorded = frame["label"].to_numpy()
    same = len(recorded) == len(labels) and (
        np.allclose(recorded, labels, atol=1e-6) if task.is_regression else np.array_equal(recorded, labels)
    )
    if not same:
        return None, f"{file} answers other dev rows than data/validated ({len(recorded)} vs {len(labels)} rows)"
    dtype = np.float64 if task.is_regression else np.int64
    return frame["prediction"].to_numpy(dtype=dtype), f"fp32, the evaluate stage's {file.name}"
