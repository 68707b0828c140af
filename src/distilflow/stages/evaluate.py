"""evaluate: score one model (teacher or student) on the dev split with GLUE's metric, size and speed.

dvc.yaml runs it once per model (``evaluate@teacher`` after fine-tuning, ``evaluate@student`` after
distillation), so each model is scored as soon as it exists and a distillation change re-scores only the student.

Outputs per model (``<m>`` is teacher or student):

- ``metrics/eval_<m>.json``: the task's GLUE metrics exactly as ``distilflow.metrics`` defines them, plus
  calibration (ECE, classification) or error (MSE/MAE, regression), size and CPU speed;
- ``predictions/<m>_dev.csv``: one row per dev example with text, gold, prediction and confidence, for error
  analysis and for ``dvc plots``' confusion matrix (columns ``actual``/``predicted``);
- ``plots/eval_<m>/*.png``: confusion matrix, reliability diagram (classification) or predicted-vs-gold scatter
  (regression), and quality by input length; ``plots/eval_<m>_length.csv`` is the length table as data.

The report stage (distilflow.evaluation.comparison) then times both models back to back in one process for a fair ratio.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from datasets import Dataset, load_from_disk

from distilflow.config.params import Params
from distilflow.config.release_params import EvaluateParams
from distilflow.evaluation import plots
from distilflow.evaluation.speed import folder_megabytes, measure_speed
from distilflow.metrics import compute_glue_metrics
from distilflow.models.devices import choose_device
from distilflow.models.inference import logits_to_predictions, predict_logits
from distilflow.models.loading import count_parameters, load_classifier, load_tokenizer
from distilflow.numerics import softmax
from distilflow.paths import Paths
from distilflow.tasks import LINE, GlueTask, get_task
from distilflow.tracking.runs import stage_run, write_json, write_lineage

MODELS = ("teacher", "student")
MODEL_STAGE = {"teacher": "finetune", "student": "distill"}  # the stage whose lineage each evaluated model carries
ID = "id"  # the validated frames' id column (distilflow.data.glue_io.ID), for tasks whose files carry one


def model_dir(paths: Paths, which: str) -> Path:
    if which not in MODELS:
        raise ValueError(f"evaluate takes one of {MODELS}, not {which!r}")
    return paths.teacher_dir if which == "teacher" else paths.student_dir


def predictions_file(paths: Paths, which: str) -> Path:
    return paths.dev_predictions_file(which)


def plot_dir(paths: Paths, which: str) -> Path:
    return paths.plots_dir / f"eval_{which}"


def length_file(paths: Paths, which: str) -> Path:
    return paths.plots_dir / f"eval_{which}_length.csv"


# --- quality -------------------------------------------------------------------------------------------------


def _prefixed(task: GlueTask, split: str, scores: Mapping[str, float]) -> dict[str, float]:
    """Keys as they appear in eval_<m>.json: plain for one dev split, ``<split>_key`` for MNLI's two.

    MNLI also gets the plain keys from dev_matched, GLUE's headline MNLI number, so every task has its
    primary metric under the same name (the register stage's gate reads it).
    """
    if len(task.dev_splits) == 1:
        return dict(scores)
    prefixed = {f"{split}_{key}": value for key, value in scores.items()}
    if split == task.dev_splits[0]:
        prefixed.update(scores)
    return prefixed


def evaluate_model(
    model: torch.nn.Module, task: GlueTask, data: Any, pad_id: int, batch_size: int
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """GLUE metrics on every dev split (MNLI has two); see ``_prefixed`` for the key names."""
    metrics: dict[str, float] = {}
    all_logits: dict[str, np.ndarray] = {}
    for split in task.dev_splits:
        logits = predict_logits(model, data[split], batch_size, pad_id)
        scores = compute_glue_metrics(task.name, logits_to_predictions(logits, task), data[split]["labels"])
        metrics.update(_prefixed(task, split, scores))
        all_logits[split] = logits
    return metrics, all_logits


def calibration_table(
    confidence: Sequence[float] | np.ndarray, correct: Sequence[int] | np.ndarray, bins: int
) -> pd.DataFrame:
    """Equal-width confidence bins (lower, upper]: examples, mean confidence and accuracy in each.

    The first bin also takes confidence 0, so every probability in [0, 1] lands in exactly one bin.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    if confidence.shape != correct.shape or confidence.ndim != 1:
        raise ValueError(f"calibration: confidence {confidence.shape} and correct {correct.shape} must be 1-D, equal")
    if len(confidence) == 0:
        raise ValueError("calibration: no examples")
    if ((confidence < 0) | (confidence > 1) | ~np.isfinite(confidence)).any():
        raise ValueError("calibration: confidences must be probabilities in [0, 1]")
    if bins < 1:
        raise ValueError(f"calibration: bins must be >= 1, got {bins}")
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    rows = []
    for b in range(bins):
        mask = index == b
        count = int(mask.sum())
        rows.append(
            {
                "bin_lower": float(edges[b]),
                "bin_upper": float(edges[b + 1]),
                "examples": count,
                "confidence": float(confidence[mask].mean()) if count else 0.0,
                "accuracy": float(correct[mask].mean()) if count else 0.0,
            }
        )
    return pd.DataFrame(rows)


def expected_calibration_error(table: pd.DataFrame) -> float:
    """ECE (Guo et al. 2017): the example-weighted mean gap between accuracy and confidence over the bins."""
    total = int(table["examples"].sum())
    if total == 0:
        raise ValueError("calibration: no examples")
    gaps = (table["accuracy"] - table["confidence"]).abs() * table["examples"]
    return float(gaps.sum() / total)


def bucket_labels(edges: Sequence[int]) -> list[str]:
    """``[8, 16]`` → ``["1-8", "9-16", "17+"]``."""
    labels, low = [], 1
    for edge in edges:
        labels.append(f"{low}-{edge}")
        low = edge + 1
    labels.append(f"{low}+")
    return labels


def length_bucket(tokens: Sequence[int] | np.ndarray, edges: Sequence[int]) -> list[str]:
    labels = bucket_labels(edges)
    # side="left": a length equal to an edge belongs to the bucket that edge closes.
    return [labels[i] for i in np.searchsorted(np.asarray(edges), np.asarray(tokens), side="left")]


def length_table(frame: pd.DataFrame, edges: Sequence[int], regression: bool) -> pd.DataFrame:
    """Quality per token-length bucket: accuracy (classification) or mean absolute error (regression).

    Columns: bucket, max_tokens (the bucket's upper edge; the longest example for the open last bucket),
    examples, then the quality column, last so that ``dvc plots`` takes it as the y axis by default.
    Empty buckets are left out.
    """
    labels = bucket_labels(edges)
    metric = "mae" if regression else "accuracy"
    values = frame["abs_error"] if regression else frame["correct"]
    rows = []
    for position, label in enumerate(labels):
        mask = frame["length_bucket"] == label
        if not mask.any():
            continue
        upper = edges[position] if position < len(edges) else int(frame.loc[mask, "tokens"].max())
        rows.append(
            {"bucket": label, "max_tokens": int(upper), "examples": int(mask.sum()), metric: float(values[mask].mean())}
        )
    return pd.DataFrame(rows, columns=["bucket", "max_tokens", "examples", metric])


def _score_bin(scores: np.ndarray) -> list[str]:
    # Half-up rounding (np.round would send 2.5 to 2): the confusion plot's bins are 0-0.49 → "0", etc.
    return [str(int(value)) for value in np.floor(scores + 0.5)]


def predictions_frame(
    task: GlueTask, split: str, dev: Dataset, logits: np.ndarray, texts: pd.DataFrame | None, edges: Sequence[int]
) -> pd.DataFrame:
    """One row per dev example, in dev order, for error analysis and the confusion plot.

    ``label``/``prediction`` are what the metric scored (class ids, or scores clipped to the task's range);
    ``actual``/``predicted`` are the class names, or for regression the scores rounded to whole points.
    """
    predictions = logits_to_predictions(logits, task)
    frame = pd.DataFrame({"split": split, LINE: dev[LINE]})
    if texts is not None:
        keep = [column for column in (ID, *task.fields) if column in texts.columns]
        by_line = texts.set_index(LINE)
        missing = sorted(set(frame[LINE]) - set(by_line.index))
        if missing:
            raise ValueError(
                f"{split}: tokenized lines {missing[:5]} are not in the validated split; "
                "rerun tokenize (dvc repro) so both come from the same data"
            )
        for column in keep:
            frame[column] = by_line.loc[frame[LINE], column].to_numpy()
    gold = np.asarray(dev["labels"])
    frame["label"] = gold
    frame["prediction"] = predictions
    if task.is_regression:
        frame["actual"] = _score_bin(gold.astype(np.float64))
        frame["predicted"] = _score_bin(predictions.astype(np.float64))
        frame["abs_error"] = np.abs(predictions - gold)
        # The top-level `calibration` DVC plot bins x and averages y for every task. For scores, predicted vs gold
        # on 0..1 is the regression reliability diagram: mean gold score per predicted-score bin, calibrated on the
        # diagonal.
        low, high = task.score_range
        frame["confidence"] = (np.clip(predictions, low, high) - low) / (high - low)
        frame["correct"] = (gold.astype(np.float64) - low) / (high - low)
    else:
        assert task.labels is not None
        names = np.asarray(task.labels)
        frame["actual"] = names[gold.astype(int)]
        frame["predicted"] = names[predictions]
        frame["correct"] = (predictions == gold).astype(int)
        probabilities = softmax(logits.astype(np.float64))
        frame["confidence"] = probabilities.max(axis=-1)
        for index, label in enumerate(task.labels):
            frame[f"p_{label}"] = probabilities[:, index]
    frame["tokens"] = dev["length"]
    frame["length_bucket"] = length_bucket(frame["tokens"].to_numpy(), edges)
    return frame


def analysis_metrics(task: GlueTask, frame: pd.DataFrame, bins: int) -> dict[str, float]:
    """Beyond GLUE: expected calibration error (classification) or MSE/MAE of the clipped scores (regression)."""
    if task.is_regression:
        errors = frame["abs_error"].to_numpy(dtype=np.float64)
        return {"mse": float(np.mean(errors**2)), "mae": float(np.mean(errors))}
    table = calibration_table(frame["confidence"].to_numpy(), frame["correct"].to_numpy(), bins)
    return {"ece": expected_calibration_error(table)}


def draw_plots(
    task: GlueTask, frame: pd.DataFrame, which: str, folder: Path, settings: EvaluateParams, scores: Mapping[str, float]
) -> list[Path]:
    """The PNGs for one model over all its dev rows; returns their paths."""
    if folder.exists():
        shutil.rmtree(folder)  # a figure from an earlier task (say, a scatter after a switch to sst2) must go
    folder.mkdir(parents=True)
    title = f"{task.name} dev, {which}"
    written = []
    if task.is_regression:
        low, high = task.score_range
        written.append(
            plots.score_scatter(
                frame["label"],
                frame["prediction"],
                folder / "scatter.png",
                title,
                task.score_range,
                {k: scores[k] for k in task.metrics},
            )
        )
        bins = [str(value) for value in range(int(low), int(high) + 1)]
        written.append(
            plots.confusion_matrix(
                frame["actual"], frame["predicted"], bins, folder / "confusion_matrix.png", f"{title} (scores rounded)"
            )
        )
    else:
        assert task.labels is not None
        written.append(
            plots.confusion_matrix(
                frame["actual"], frame["predicted"], task.labels, folder / "confusion_matrix.png", title
            )
        )
        table = calibration_table(
            frame["confidence"].to_numpy(), frame["correct"].to_numpy(), settings.calibration_bins
        )
        written.append(
            plots.reliability_diagram(table, expected_calibration_error(table), folder / "reliability.png", title)
        )
    lengths = length_table(frame, settings.length_buckets, task.is_regression)
    metric = "mae" if task.is_regression else "accuracy"
    written.append(plots.length_buckets(lengths, metric, folder / "length_buckets.png", f"{title}: {metric} by length"))
    return written


def read_texts(paths: Paths, split: str) -> pd.DataFrame:
    file = paths.validated_dir / f"{split}.parquet"
    if not file.is_file():
        raise FileNotFoundError(
            f"{file}: missing; the predictions file joins texts from the validated data (run `dvc repro validate`)"
        )
    return pd.read_parquet(file)


def run(params: Params, paths: Paths, which: str = "teacher") -> dict[str, Any]:
    task = get_task(params.task)
    settings = params.evaluate
    folder = model_dir(paths, which)
    data = load_from_disk(str(paths.tokenized_dir))
    tokenizer = load_tokenizer(str(folder))
    model: torch.nn.Module = load_classifier(folder)
    with stage_run("evaluate", params, paths, instance=which) as tracked:
        # Scoring runs where training does (a GPU, when there is one: MNLI's and QQP's dev sets are large);
        # the speed measurement below is on CPU, which is where the latency budget applies.
        model.to(choose_device(params.run.device))
        metrics, logits = evaluate_model(model, task, data, tokenizer.pad_token_id, params.run.eval_batch_size)
        model.to("cpu")
        frames = []
        for split in task.dev_splits:
            frame = predictions_frame(
                task, split, data[split], logits[split], read_texts(paths, split), settings.length_buckets
            )
            metrics.update(_prefixed(task, split, analysis_metrics(task, frame, settings.calibration_bins)))
            frames.append(frame)
        predictions = pd.concat(frames, ignore_index=True)
        metrics["dev_examples"] = len(predictions)
        metrics.update(measure_speed(model, data[task.dev_splits[0]], tokenizer.pad_token_id, params))
        metrics["parameters"] = count_parameters(model)
        metrics["size_mb"] = folder_megabytes(folder)

        out = predictions_file(paths, which)
        out.parent.mkdir(parents=True, exist_ok=True)
        predictions.to_csv(out, index=False)
        lengths = length_table(predictions, settings.length_buckets, task.is_regression)
        length_file(paths, which).parent.mkdir(parents=True, exist_ok=True)
        lengths.to_csv(length_file(paths, which), index=False)
        figures = draw_plots(task, predictions, which, plot_dir(paths, which), settings, metrics)
        write_json(paths.metrics_file(f"eval_{which}"), metrics)

        tracked.log_metrics(metrics)
        tracked.log_artifact(out, "predictions")
        tracked.log_artifact(length_file(paths, which), "plots")
        for figure in figures:
            tracked.log_artifact(figure, "plots")
        write_lineage(paths, f"evaluate_{which}", tracked.run_id, MODEL_STAGE[which])
    return {"metrics": metrics, "predictions": out, "plots": figures}
