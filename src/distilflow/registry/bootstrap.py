"""Paired bootstrap over dev examples: how sure is "A scores higher than B" on a small dev set?

Both models answered the same dev examples. One resample draws ``n`` example indices with replacement and scores
both models on those same rows, so what is shared (an easy or a hard example) cancels and only their
difference varies. Over ``resamples`` draws (seeded, so a rerun gives the same answer) this gives:

- ``p_better``: the share of resamples in which A's metric is above B's (the probability A is better);
- ``p_above``: the share in which A's metric minus B's is above a threshold (the gate's baseline margin);
- ``low``/``high``: the two-sided ``confidence`` interval of the difference (percentile method).

The metrics are the GLUE primary metrics written for a whole batch of resamples at once, with the conventions of
:mod:`distilflow.metrics.glue` (an undefined MCC, F1 or correlation is 0.0), so on the full dev set they equal
:func:`distilflow.metrics.compute_glue_metrics`. numpy only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

SEED = 0
CELLS_PER_CHUNK = 2_000_000  # resamples x examples held in memory at once


def _accuracy(predictions: np.ndarray, references: np.ndarray) -> np.ndarray:
    return np.mean(predictions == references, axis=1)


def _f1(predictions: np.ndarray, references: np.ndarray) -> np.ndarray:
    predicted, actual = predictions == 1, references == 1
    true_positive = np.sum(predicted & actual, axis=1)
    denominator = np.sum(predicted, axis=1) + np.sum(actual, axis=1)
    return np.where(denominator > 0, 2 * true_positive / np.maximum(denominator, 1), 0.0)


def _matthews(predictions: np.ndarray, references: np.ndarray) -> np.ndarray:
    """Multi-class MCC (Gorodkin's R_K, what scikit-learn computes) per row."""
    n = predictions.shape[1]
    correct = np.sum(predictions == references, axis=1).astype(np.float64)
    classes = np.union1d(np.unique(predictions), np.unique(references))
    predicted = np.stack([np.sum(predictions == k, axis=1) for k in classes]).astype(np.float64)
    actual = np.stack([np.sum(references == k, axis=1) for k in classes]).astype(np.float64)
    numerator = correct * n - np.sum(predicted * actual, axis=0)
    denominator = np.sqrt((n * n - np.sum(predicted**2, axis=0)) * (n * n - np.sum(actual**2, axis=0)))
    return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), 0.0)


def _pearson(predictions: np.ndarray, references: np.ndarray) -> np.ndarray:
    x = predictions - predictions.mean(axis=1, keepdims=True)
    y = references - references.mean(axis=1, keepdims=True)
    variance = np.sum(x * x, axis=1) * np.sum(y * y, axis=1)
    covariance = np.sum(x * y, axis=1)
    return np.where(variance > 0, covariance / np.sqrt(np.where(variance > 0, variance, 1.0)), 0.0)


METRICS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "accuracy": _accuracy,
    "f1": _f1,
    "matthews_correlation": _matthews,
    "pearson": _pearson,
}


def batch_metric(name: str, predictions: np.ndarray, references: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """The metric on each row of ``indices`` (shape resamples x examples): one value per resample."""
    if name not in METRICS:
        raise ValueError(f"no bootstrap for metric {name!r} (known: {sorted(METRICS)})")
    return METRICS[name](np.asarray(predictions)[indices], np.asarray(references)[indices])


@dataclass(frozen=True)
class Comparison:
    """A minus B on the primary metric: on the full dev set, and as seen over paired resamples."""

    difference: float
    low: float
    high: float
    p_better: float
    threshold: float
    p_above: float
    confidence: float
    resamples: int
    examples: int

    def describe(self, other: str) -> str:
        percent = f"{self.confidence:.0%}"
        return (
            f"P(better than {other}) {self.p_better:.3f}, {percent} CI of the difference "
            f"[{self.low:+.4f}, {self.high:+.4f}] ({self.resamples} paired resamples of {self.examples} dev examples)"
        )

    def as_dict(self) -> dict[str, Any]:
        return {key: round(value, 6) if isinstance(value, float) else value for key, value in asdict(self).items()}


def paired_bootstrap(
    metric: str,
    a: np.ndarray,
    b: np.ndarray,
    references: np.ndarray,
    resamples: int = 1000,
    confidence: float = 0.95,
    threshold: float = 0.0,
    seed: int = SEED,
) -> Comparison:
    """Paired bootstrap of ``metric(a) - metric(b)`` over the examples both answered (same order as references)."""
    a, b, references = np.asarray(a), np.asarray(b), np.asarray(references)
    n = len(references)
    if n == 0 or len(a) != n or len(b) != n:
        raise ValueError(f"paired bootstrap needs equal, non-empty lengths (got {len(a)}, {len(b)}, {n})")
    if resamples < 1 or not 0 < confidence < 1:
        raise ValueError(f"need resamples >= 1 and 0 < confidence < 1 (got {resamples}, {confidence})")
    full = np.arange(n)[None, :]
    difference = float(batch_metric(metric, a, references, full)[0] - batch_metric(metric, b, references, full)[0])
    rng = np.random.default_rng(seed)
    chunk = max(1, CELLS_PER_CHUNK // n)
    differences = []
    for start in range(0, resamples, chunk):
        indices = rng.integers(0, n, size=(min(chunk, resamples - start), n))
        differences.append(batch_metric(metric, a, references, indices) - batch_metric(metric, b, references, indices))
    diffs = np.concatenate(differences)
    tail = (1 - confidence) / 2
    return Comparison(
        difference=difference,
        low=float(np.quantile(diffs, tail)),
        high=float(np.quantile(diffs, 1 - tail)),
        p_better=float(np.mean(diffs > 0)),
        threshold=float(threshold),
        p_above=float(np.mean(diffs > threshold)),
        confidence=float(confidence),
        resamples=int(resamples),
        examples=int(n),
    )
