"""The finetune stage on CUDA in a DVC workspace: bf16 (or fp16 with a GradScaler) autocast, TF32, pinned memory.

Skips without a GPU. The library-level CUDA tests live in tests/gpu/, which need no MLflow or DVC; this module
needs both (the stage runs in a DVC workspace and opens an MLflow run), so a machine without them, such as the
lent GPU machine scripts/gpu_check.py runs on, skips it at collection and says why.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

for _module in ("mlflow", "dvc"):
    pytest.importorskip(_module, reason=f"the finetune stage runs in a DVC workspace with MLflow; no {_module} here")

from tests.conftest import run  # noqa: E402 - after the skips: it imports the workspace helpers
from tests.integration.test_finetune_resume import tokenized_workspace  # noqa: E402

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _needs_cuda() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")


@pytest.mark.parametrize("precision", ["auto", "fp16"])
def test_finetune_stage_runs_on_cuda(workspace_factory: Any, precision: str) -> None:
    root = tokenized_workspace(
        workspace_factory,
        f"gpu-{precision}",
        {"run": {"device": "cuda", "precision": precision}, "finetune": {"max_steps": 6, "eval_every": 3}},
    )
    run(["distilflow", "stage", "finetune"], root)
    metrics = json.loads((root / "metrics" / "finetune.json").read_text())
    assert metrics["steps"] == 6
    assert 0.0 <= metrics["best_heldout_accuracy"] <= 1.0
    assert (root / "models" / "teacher" / "model.safetensors").is_file()
