"""What a training stage reports about its loop: one set of keys, so finetune's and distill's metrics files and
MLflow runs compare key for key."""

from __future__ import annotations

from typing import Any

from distilflow.training.loop import SCORED_PREFIX, LoopResult


def training_metrics(result: LoopResult, primary_metric: str) -> dict[str, Any]:
    """The best held-out score and when it came, and how long and how fast the loop trained; a stage adds its own."""
    return {
        f"best_{SCORED_PREFIX}{primary_metric}": result.best_metric,
        "best_step": result.best_step,
        "steps": result.steps,
        "train_samples_per_s": result.samples_per_s,
        "train_seconds": result.train_seconds,
    }
