"""The held-out slice of train (data.holdout): stratified, seeded, capped, never a whole class."""

from __future__ import annotations

import numpy as np
import pytest

from distilflow.data.holdout import holdout_rows


def test_each_class_gives_the_same_share_and_the_seed_alone_decides_which_rows() -> None:
    labels = [0] * 800 + [1] * 200
    rows = holdout_rows(labels, 0.1, 1000, seed=3, regression=False)
    picked = np.asarray(labels)[rows]
    assert len(rows) == 100 and (picked == 0).sum() == 80 and (picked == 1).sum() == 20
    assert list(rows) == sorted(set(rows.tolist()))
    assert np.array_equal(rows, holdout_rows(labels, 0.1, 1000, seed=3, regression=False))
    assert not np.array_equal(rows, holdout_rows(labels, 0.1, 1000, seed=4, regression=False))


def test_the_cap_bounds_the_slice_and_keeps_the_class_balance() -> None:
    labels = [0, 1, 2] * 10_000
    rows = holdout_rows(labels, 0.2, 300, seed=0, regression=False)
    assert len(rows) == 300
    assert np.bincount(np.asarray(labels)[rows]).tolist() == [100, 100, 100]


def test_a_rare_class_keeps_a_row_on_each_side() -> None:
    labels = [0] * 60 + [1] * 2 + [2]  # class 2 has one row: it stays in train, where a model can learn it
    picked = np.asarray(labels)[holdout_rows(labels, 0.1, 1000, seed=0, regression=False)]
    assert (picked == 1).sum() == 1 and (picked == 2).sum() == 0 and (picked == 0).sum() == 6


def test_regression_scores_are_held_out_across_their_range() -> None:
    scores = np.concatenate([np.zeros(900), np.linspace(4.0, 5.0, 100)])  # a skewed range, as STS-B's is
    picked = scores[holdout_rows(scores.tolist(), 0.1, 1000, seed=1, regression=True)]
    assert 95 <= len(picked) <= 105
    assert 5 <= (picked >= 4.0).sum() <= 15  # the rare high scores are in the slice, in proportion


def test_too_little_data_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 2 training rows"):
        holdout_rows([1], 0.1, 10, seed=0, regression=False)
