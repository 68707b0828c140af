"""The training loop's settings for tests: a small, fast run, each test changing only what it is about."""

from __future__ import annotations

from typing import Any

from distilflow.training.loop import LoopSettings

DEFAULTS: dict[str, Any] = {
    "epochs": 1.0,
    "batch_size": 16,
    "learning_rate": 3e-3,
    "weight_decay": 0.01,
    "warmup_ratio": 0.1,
    "max_grad_norm": 1.0,
    "eval_every": 4,
    "early_stopping_patience": 0,
    "primary_metric": "accuracy",
    "seed": 5,
    "device": "cpu",
}


def loop_settings(**overrides: Any) -> LoopSettings:
    return LoopSettings(**(DEFAULTS | overrides))
