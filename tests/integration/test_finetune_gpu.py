"""The same stage on CUDA: bf16 (or fp16 with a GradScaler) autocast, TF32, pinned memory. Skips without a GPU."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

from distilflow.devices import choose_device, choose_dtype
from tests.conftest import run
from tests.integration.test_finetune_resume import tokenized_workspace

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _needs_cuda() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")


def test_auto_picks_cuda_and_a_half_precision() -> None:
    device = choose_device("auto")
    assert device.type == "cuda"
    assert choose_dtype(device, "auto") == (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    assert choose_dtype(device, "fp16") == torch.float16


@pytest.mark.parametrize("precision", ["auto", "fp16"])
def test_finetune_stage_runs_on_cuda(workspace_factory: Any, precision: str) -> None:
    root = tokenized_workspace(
        workspace_factory,
        f"gpu-{precision}",
        {"finetune": {"device": "cuda", "precision": precision, "max_steps": 6, "eval_every": 3}},
    )
    run(["distilflow", "stage", "finetune"], root)
    metrics = json.loads((root / "metrics" / "finetune.json").read_text())
    assert metrics["steps"] == 6
    assert 0.0 <= metrics["best_dev_accuracy"] <= 1.0
    assert (root / "models" / "teacher" / "model.safetensors").is_file()
