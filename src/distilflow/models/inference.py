"""A model's logits over a tokenized dataset, in its row order, and the predictions they stand for."""

from __future__ import annotations

import numpy as np
import torch
from datasets import Dataset

from distilflow.models.batching import Columns, pad_columns
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
    columns = Columns(dataset, names=("input_ids", "token_type_ids"))
    order = np.argsort(np.asarray(dataset["length"]), kind="stable")
    outputs: list[np.ndarray] = []
    bar = progress_bar(total=len(order), desc=progress or "", unit="row", disable=progress is None)
    for start in range(0, len(order), batch_size):
        batch = pad_columns(columns.take(order[start : start + batch_size].tolist()), pad_id, regression=False)
        logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
        outputs.append(logits.float().cpu().numpy())
        bar.update(len(batch["input_ids"]))
    bar.close()
    model.train(was_training)
    stacked = np.concatenate(outputs) if outputs else np.zeros((0, 1), dtype=np.float32)
    result = np.empty_like(stacked)
    result[order] = stacked
    return result


def logits_to_predictions(logits: np.ndarray, task: GlueTask) -> np.ndarray:
    """Class ids, or for a regression task the score clipped to the task's range."""
    if task.is_regression:
        return np.clip(logits[:, 0], *task.score_range)
    return logits.argmax(axis=-1)
