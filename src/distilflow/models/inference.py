"""A model's logits over a tokenized dataset, in its row order, and the predictions they stand for."""

from __future__ import annotations

import numpy as np
import torch
from datasets import Dataset

from distilflow.models.batching import logits_by_length
from distilflow.runtime.progress import progress_bar
from distilflow.tasks import GlueTask


@torch.inference_mode()
def predict_logits(
    model: torch.nn.Module,
    dataset: Dataset,
    batch_size: int,
    pad_id: int,
    device: torch.device | None = None,
    progress: str | None = None,
) -> np.ndarray:
    """Logits in the dataset's row order; batches are formed by length so little time goes on padding.

    ``progress``: a label for a progress bar (labelling a transfer set takes minutes on real data); None: silent.
    """
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    bar = progress_bar(total=len(dataset), desc=progress or "", unit="row", disable=progress is None)

    def run_batch(batch: dict[str, torch.Tensor]) -> np.ndarray:
        logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
        return np.asarray(logits.float().cpu().numpy())

    try:
        return logits_by_length(dataset, batch_size, pad_id, run_batch, on_batch=bar.update)
    finally:
        bar.close()
        model.train(was_training)


def logits_to_predictions(logits: np.ndarray, task: GlueTask) -> np.ndarray:
    """Class ids, or for a regression task the score clipped to the task's range."""
    if task.is_regression:
        return np.clip(logits[:, 0], *task.score_range)
    return logits.argmax(axis=-1)
