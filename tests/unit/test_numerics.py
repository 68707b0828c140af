"""The shared numeric helpers: the card and the charts write numbers the same way."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distilflow.numerics import quantize_dynamic_int8, readable_number, softmax


@pytest.mark.parametrize(
    ("value", "digits", "shown"),
    [
        (4386178, 4, "4,386,178"),
        (12345.6, 4, "12,346"),
        (0.81234, 4, "0.8123"),
        (3.42, 3, "3.42"),
        (True, 4, "true"),
        ("?", 4, "?"),
    ],
)
def test_readable_number(value: object, digits: int, shown: str) -> None:
    assert readable_number(value, digits) == shown


def test_softmax_rows_sum_to_one_without_overflow() -> None:
    probabilities = softmax(np.array([[1000.0, 0.0], [1.0, 1.0]]))
    np.testing.assert_allclose(probabilities, [[1.0, 0.0], [0.5, 0.5]])


def test_int8_quantization_replaces_every_linear_layer() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    quantized = quantize_dynamic_int8(model)
    assert not any(type(layer) is torch.nn.Linear for layer in quantized.modules())
    assert quantized(torch.ones(1, 4)).shape == (1, 2)
