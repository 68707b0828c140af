"""The held-out slice of train that training scores itself on, so that dev is read once, for the reported number.

Early stopping and the best checkpoint are choices made on a score; made on dev, the dev score reported afterwards is
optimistic, and a selection protocol built on it would tune to dev. The slice is stratified (per label, or per score
quintile for a regression task) and seeded, so the same data and settings always hold out the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

HOLDOUT = "holdout"  # the split's name in data/tokenized, beside train (the rest) and the dev splits
REGRESSION_STRATA = 5  # score quintiles: STS-B's 0-5 scores are far from uniform


def holdout_rows(labels: Sequence[float], share: float, max_rows: int, seed: int, regression: bool) -> np.ndarray:
    """Sorted row indices of the held-out slice: about ``share`` of the rows (at most ``max_rows``), the same share
    of each stratum, at least one row of every stratum with two or more, never a whole stratum."""
    values = np.asarray(labels, dtype=float)
    if len(values) < 2:
        raise ValueError(f"a held-out slice needs at least 2 training rows, got {len(values)}")
    size = min(max_rows, max(1, round(len(values) * share)))
    if regression:
        edges = np.quantile(values, np.linspace(0, 1, REGRESSION_STRATA + 1)[1:-1])
        strata = np.digitize(values, edges)
    else:
        strata = values.astype(int)
    rng = np.random.default_rng(seed)
    chosen = []
    for stratum in np.unique(strata):  # sorted: the draw order, and so the rows, depend on the seed alone
        rows = np.flatnonzero(strata == stratum)
        take = round(len(rows) * size / len(values))
        take = min(max(take, 1), len(rows) - 1) if len(rows) >= 2 else 0
        chosen.append(rng.permutation(rows)[:take])
    return np.sort(np.concatenate(chosen))
