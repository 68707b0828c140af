"""A training run's learning curves, published twice: CSVs for ``dvc plots`` and per-step MLflow metrics."""

from __future__ import annotations

import time

from distilflow.paths import Paths
from distilflow.tracking.runs import StageRun
from distilflow.training.loop import SCORED_PREFIX, LoopResult


def log_history(tracked: StageRun, result: LoopResult) -> None:
    """Per-step curves in batches of 1,000 values: one MLflow call per point would cost minutes on sqlite."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    now = int(time.time() * 1000)
    points = [
        Metric(key, float(value), now, int(point["step"]))
        for point in result.history
        for key, value in point.items()
        if key != "step"
    ]
    client = MlflowClient()
    for start in range(0, len(points), 1000):
        client.log_batch(tracked.run_id, metrics=points[start : start + 1000], synchronous=True)


def write_curve(paths: Paths, name: str, result: LoopResult) -> None:
    """A CSV per curve for `dvc plots`: train loss every step, held-out metrics at each evaluation."""
    import pandas as pd

    paths.plots_dir.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(result.history)
    frame.to_csv(paths.plots_dir / f"{name}_train.csv", index=False, columns=["step", "train_loss", "learning_rate"])
    scored = [c for c in frame.columns if c.startswith(SCORED_PREFIX)]
    frame.dropna(subset=scored).to_csv(paths.plots_dir / f"{name}_heldout.csv", index=False, columns=["step", *scored])
