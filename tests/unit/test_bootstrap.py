"""The paired bootstrap against cases whose answer is known: the full-sample metric, certainty, a single
differing example (analytic probability), and the normal approximation of a paired accuracy difference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import pearsonr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from distilflow.registry.bootstrap import batch_metric, paired_bootstrap

RNG = np.random.default_rng(7)
LABELS = RNG.integers(0, 2, 300)
PREDICTIONS = np.where(RNG.random(300) < 0.8, LABELS, 1 - LABELS)


@pytest.mark.parametrize(
    ("metric", "reference"),
    [("accuracy", accuracy_score), ("f1", f1_score), ("matthews_correlation", matthews_corrcoef)],
)
def test_batch_metric_on_the_full_sample_is_the_library_metric(metric: str, reference: object) -> None:
    full = np.arange(len(LABELS))[None, :]
    value = batch_metric(metric, PREDICTIONS, LABELS, full)[0]
    assert value == pytest.approx(reference(LABELS, PREDICTIONS), abs=1e-12)  # type: ignore[operator]


def test_multiclass_mcc_and_pearson_match_the_libraries() -> None:
    labels = RNG.integers(0, 3, 200)
    predictions = np.where(RNG.random(200) < 0.6, labels, RNG.integers(0, 3, 200))
    full = np.arange(200)[None, :]
    assert batch_metric("matthews_correlation", predictions, labels, full)[0] == pytest.approx(
        matthews_corrcoef(labels, predictions), abs=1e-12
    )
    gold = RNG.random(200) * 5
    scores = gold + RNG.normal(0, 1, 200)
    assert batch_metric("pearson", scores, gold, full)[0] == pytest.approx(pearsonr(scores, gold)[0], abs=1e-12)


def test_undefined_metrics_are_zero_as_in_the_glue_module() -> None:
    full = np.arange(4)[None, :]
    assert batch_metric("f1", np.zeros(4, int), np.zeros(4, int), full)[0] == 0.0
    assert batch_metric("matthews_correlation", np.ones(4, int), np.array([0, 1, 0, 1]), full)[0] == 0.0
    assert batch_metric("pearson", np.full(4, 2.5), np.arange(4.0), full)[0] == 0.0


def test_identical_models_differ_by_nothing() -> None:
    result = paired_bootstrap("accuracy", PREDICTIONS, PREDICTIONS, LABELS, resamples=200)
    assert (result.difference, result.low, result.high, result.p_better) == (0.0, 0.0, 0.0, 0.0)


def test_a_model_right_everywhere_against_one_wrong_everywhere_is_certain() -> None:
    result = paired_bootstrap("accuracy", LABELS, 1 - LABELS, LABELS, resamples=200)
    assert result.difference == 1.0 and result.low == 1.0 and result.high == 1.0 and result.p_better == 1.0


def test_one_differing_example_wins_as_often_as_it_is_drawn() -> None:
    # A is right on example 0 only where B is wrong; elsewhere they agree. A resample favours A exactly when it
    # draws example 0 at least once: probability 1 - (1 - 1/n)^n = 0.6323 for n = 1000.
    n = 1000
    labels = np.zeros(n, int)
    a, b = labels.copy(), labels.copy()
    b[0] = 1
    result = paired_bootstrap("accuracy", a, b, labels, resamples=4000)
    assert result.p_better == pytest.approx(1 - (1 - 1 / n) ** n, abs=0.025)
    assert result.difference == pytest.approx(1 / n) and result.low == 0.0


def test_the_interval_matches_the_normal_approximation_of_a_paired_difference() -> None:
    n = 2000
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, n)
    a = np.where(rng.random(n) < 0.85, labels, 1 - labels)
    b = np.where(rng.random(n) < 0.80, labels, 1 - labels)
    result = paired_bootstrap("accuracy", a, b, labels, resamples=2000, confidence=0.95)
    per_example = (a == labels).astype(float) - (b == labels).astype(float)
    half_width = 1.96 * per_example.std() / math.sqrt(n)
    assert result.difference == pytest.approx(per_example.mean())
    assert (result.high - result.low) / 2 == pytest.approx(half_width, rel=0.12)
    assert result.low > 0 and result.p_better > 0.99


def test_seeded_threshold_and_bad_input() -> None:
    first = paired_bootstrap("f1", PREDICTIONS, np.ones_like(LABELS), LABELS, resamples=300, threshold=0.05)
    again = paired_bootstrap("f1", PREDICTIONS, np.ones_like(LABELS), LABELS, resamples=300, threshold=0.05)
    assert first == again  # seeded: a rerun of the gate gives the same confidence
    assert first.p_above <= first.p_better
    assert "paired resamples of 300 dev examples" in first.describe("the baseline")
    with pytest.raises(ValueError, match="equal, non-empty"):
        paired_bootstrap("accuracy", LABELS[:5], LABELS, LABELS)
    with pytest.raises(ValueError, match="no bootstrap for metric"):
        paired_bootstrap("spearmanr", LABELS, LABELS, LABELS)
