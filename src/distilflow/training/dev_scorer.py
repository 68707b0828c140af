"""The dev-set scorer a training loop calls at each evaluation: GLUE's metric for the task on fresh logits."""

from __future__ import annotations

from typing import Any

import torch

from distilflow.metrics import compute_glue_metrics
from distilflow.models.inference import logits_to_predictions, predict_logits
from distilflow.tasks import GlueTask
from distilflow.training.loop import EvalFn


def dev_scorer(task: GlueTask, dev: Any, batch_size: int, pad_id: int) -> EvalFn:
    references = list(dev["labels"])

    def score(model: torch.nn.Module) -> dict[str, float]:
        logits = predict_logits(model, dev, batch_size, pad_id)
        return compute_glue_metrics(task.name, logits_to_predictions(logits, task), references)

    return score
