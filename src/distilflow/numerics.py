"""Small numeric transforms that the evaluation stage, the exports and the served model must do identically.

Nothing heavy at import: torch is imported only when a model is quantized.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities per row; shifted by the row maximum so that large logits cannot overflow."""
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probabilities: np.ndarray = exp / exp.sum(axis=-1, keepdims=True)
    return probabilities


def quantize_dynamic_int8(model: Any) -> Any:
    """Dynamic int8 on every Linear layer (weights int8, activations quantized per batch); no calibration.

    The int8 export applies it before saving and the served model applies it to a fresh skeleton before loading
    those weights, so both must be this one function.
    """
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # torch.ao warns that eager quantization moves to torchao; it still is torch's CPU int8 path
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def readable_number(value: Any, digits: int = 4) -> str:
    """A number as a person reads it in a card or on a chart: 12,346 rather than 1.235e+04, 0.8123 for a metric."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.{digits}g}"
    return str(value)
