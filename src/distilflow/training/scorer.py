"""The scorer a training loop calls at each evaluation: GLUE's metric for the task on fresh logits of one split.

Training scores itself on the held-out slice of train (data.holdout), never on dev: early stopping and the best
checkpoint are choices, and a choice made on dev would make the dev number reported afterwards optimistic.
"""

from __future__ import annotations

from typing import Any

import torch

from distilflow.metrics import compute_glue_metrics
from distilflow.models.inference import logits_to_predictions, predict_logits
from distilflow.tasks import GlueTask
from distilflow.training.loop import EvalFn


def split_scorer(task: GlueTask, rows: Any, batch_size: int, pad_id: int) -> EvalFn:
    references = list(rows["labels"])

    def score(model: torch.nn.Module) -> dict[str, float]:
        logits = predict_logits(model, rows, batch_size, pad_id)
        return compute_glue_metrics(task.name, logits_to_predictions(logits, task), references)

    return score
