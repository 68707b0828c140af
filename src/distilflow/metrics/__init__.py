"""GLUE scoring for every stage, through one metric module that works without a network.

The pipeline runs where the Hugging Face hub cannot be reached, so ``evaluate.load("glue")``
would fail there. The project ships its own copy of the metric (``glue/glue.py``, same configs
and result keys as the hub's) and loads it by path. The hub copy stays one keyword away for
anyone who wants to compare against it.

Importing this package has no side effects and does not import ``evaluate`` (which pulls in
``datasets`` and takes seconds), so importing it stays cheap. Which metric is a task's primary one is a
task fact, in ``tasks.py``.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from statistics import fmean
from typing import TYPE_CHECKING, Any, Final, Literal

from distilflow.tasks import TASKS

if TYPE_CHECKING:
    import evaluate
    import numpy.typing as npt
    from numpy.typing import ArrayLike

__all__ = [
    "GLUE_METRIC_PATH",
    "GLUE_TASKS",
    "MetricSource",
    "compute_glue_metrics",
    "load_glue_metric",
]

MetricSource = Literal["local", "hub"]

GLUE_METRIC_PATH: Final[str] = str(Path(__file__).resolve().parent / "glue")
"""Absolute path of the folder holding ``glue.py``: ``evaluate.load`` wants the folder, whose
name must match the script's. Computed from ``__file__`` so it is right wherever the package is
installed or checked out."""

GLUE_TASKS: Final[tuple[str, ...]] = (*TASKS, "mnli_matched", "mnli_mismatched", "hans")
"""Config names the metric accepts, the same as the hub metric's: every task, MNLI's two dev sets scored alone,
and HANS (a test ties this to ``glue/glue.py``). Checked here so that a typo
fails with a ValueError naming the choices before ``evaluate`` is even imported."""

# Correlations undefined for constant input: the local module reports them as 0.0; the hub
# module returns NaN. Normalising here gives both sources the same contract.
_CORRELATION_KEYS: Final[frozenset[str]] = frozenset({"matthews_correlation", "pearson", "spearmanr"})


def _check_task(task: str) -> None:
    if task not in GLUE_TASKS:
        raise ValueError(f"unknown GLUE metric config {task!r}; known: {', '.join(GLUE_TASKS)}")


def _checked_inputs(task: str, name: str, values: ArrayLike) -> npt.NDArray[Any]:
    """Reject inputs that ``evaluate`` would silently cast into wrong scores.

    Its int64 features truncate floats, so probabilities or unreduced logits passed for a
    classification task would be scored as class ids without any error; a distillation
    pipeline handles logits everywhere, which makes that mistake likely. Non-finite values
    are refused too, so a NaN result can only mean an undefined correlation (see below).
    """
    import numpy as np

    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(
            f"GLUE {task}: {name} must be one-dimensional, got shape {array.shape}; "
            "take the argmax of classification logits and squeeze regression outputs"
        )
    if array.dtype.kind not in "biuf":
        raise ValueError(f"GLUE {task}: {name} must be numeric, got dtype {array.dtype}")
    if array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise ValueError(f"GLUE {task}: {name} contain NaN or infinite values")
        if task != "stsb" and not np.equal(np.round(array), array).all():
            raise ValueError(
                f"GLUE {task}: {name} must be class ids, got non-integer values; take the argmax of the logits first"
            )
    return array


def load_glue_metric(task: str, *, source: MetricSource = "local") -> evaluate.EvaluationModule:
    """Load the GLUE metric for ``task``, from the bundled module unless ``source="hub"``.

    ``keep_in_memory=True`` because evaluation here is single-process: buffering predictions in
    Arrow files under ``~/.cache/huggingface/evaluate`` would only add disk writes and file
    locks (and break on read-only home directories). Distributed evaluation would need
    ``evaluate.load`` directly, with ``num_process`` and on-disk buffers.
    """
    _check_task(task)
    import evaluate  # deferred: importing it costs seconds and pulls in ``datasets``

    if source == "local":
        path = GLUE_METRIC_PATH
    elif source == "hub":
        path = "glue"
    else:
        raise ValueError(f"unknown metric source {source!r}; expected 'local' or 'hub'")
    return evaluate.load(path, config_name=task, keep_in_memory=True)


@functools.cache
def _cached_metric(task: str, source: MetricSource) -> evaluate.EvaluationModule:
    # Loading copies and imports the module script and builds its features; done once per task
    # rather than once per evaluation step. ``compute`` clears the module's buffer each call,
    # so sharing one instance between calls in a process is safe.
    return load_glue_metric(task, source=source)


def compute_glue_metrics(
    task: str,
    predictions: ArrayLike,
    references: ArrayLike,
    *,
    source: MetricSource = "local",
) -> dict[str, float]:
    """Score one split and add ``glue_score``, the task's entry in the GLUE average.

    ``glue_score`` is the mean of the task's metrics, as the GLUE leaderboard averages them:
    (accuracy + F1) / 2 for MRPC and QQP, (Pearson + Spearman) / 2 for STS-B, the single metric
    otherwise. It gives every task one comparable number; use ``PRIMARY_METRIC`` instead when a
    task's own headline metric is wanted.

    MNLI has two dev sets. Call this once per split (``"mnli"`` or ``"mnli_matched"`` for
    dev_matched, ``"mnli_mismatched"`` for dev_mismatched) and report both, as GLUE does; the
    metric cannot tell the splits apart, so concatenating them would silently blend the two
    numbers into one.

    Raises ValueError for an unknown task, empty, non-finite or multi-dimensional inputs,
    inputs of different lengths, and non-integer predictions for a classification task.
    """
    _check_task(task)
    checked_predictions = _checked_inputs(task, "predictions", predictions)
    checked_references = _checked_inputs(task, "references", references)
    metric = _cached_metric(task, source)
    raw = metric.compute(predictions=checked_predictions, references=checked_references)
    if raw is None:  # only non-main processes in distributed runs get None
        raise RuntimeError(f"GLUE {task}: the metric returned no result")
    scores = {name: float(value) for name, value in raw.items()}
    for name in _CORRELATION_KEYS.intersection(scores):
        if math.isnan(scores[name]):
            scores[name] = 0.0
    scores["glue_score"] = fmean(scores.values())
    return scores
