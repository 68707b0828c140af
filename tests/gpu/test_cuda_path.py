"""The library on CUDA: device and autocast dtype, the training loop in bf16, its scaler, pinned copies, labelling."""

from __future__ import annotations

import math

import pytest
import torch
from datasets import Dataset
from transformers import BertConfig, BertForSequenceClassification

from distilflow.export.teacher_onnx import teacher_logits
from distilflow.models.batching import Collator, Columns
from distilflow.models.devices import choose_device, choose_dtype
from distilflow.models.inference import predict_logits
from distilflow.training.loop import LoopSettings, _setup, train
from tests.loop_settings import loop_settings

pytestmark = pytest.mark.gpu

PAD = 0


def tiny_bert() -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    return BertForSequenceClassification(config)


def tiny_set(rows: int = 64) -> Dataset:
    """Label 1 when the sentence holds token 7: learnable in a few steps."""
    generator = torch.Generator().manual_seed(0)
    ids = [[2, *torch.randint(8, 64, (3 + i % 9,), generator=generator).tolist(), 3] for i in range(rows)]
    for row in ids[::2]:
        row[1] = 7
    return Dataset.from_dict(
        {
            "input_ids": ids,
            "token_type_ids": [[0] * len(row) for row in ids],
            "labels": [int(7 in row) for row in ids],
            "length": [len(row) for row in ids],
        }
    )


def settings(precision: str, steps: int = 6) -> LoopSettings:
    return loop_settings(
        batch_size=8,
        learning_rate=1e-3,
        warmup_ratio=0.0,
        eval_every=3,
        seed=0,
        max_steps=steps,
        device="cuda",
        precision=precision,
    )


def supervised(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    loss: torch.Tensor = model(**batch).loss
    return loss


def test_auto_picks_cuda_and_a_half_precision() -> None:
    device = choose_device("auto")
    assert device.type == "cuda"
    assert choose_dtype(device, "auto") == (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    assert choose_dtype(device, "fp16") == torch.float16
    assert choose_dtype(device, "fp32") is None


@pytest.mark.parametrize(("precision", "scaled"), [("bf16", False), ("fp16", True), ("fp32", False)])
def test_grad_scaler_only_for_fp16(precision: str, scaled: bool) -> None:
    run = _setup(tiny_bert(), tiny_set(), settings(precision))
    assert run.device.type == "cuda"
    assert run.scaler.is_enabled() is scaled


def test_training_loop_in_bf16_on_cuda() -> None:
    model = tiny_bert()
    seen: list[torch.dtype] = []

    def loss(net: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        assert all(t.device.type == "cuda" for t in batch.values())
        out = net(**batch)
        seen.append(out.logits.dtype)  # autocast's compute dtype
        value: torch.Tensor = out.loss
        return value

    def score(net: torch.nn.Module) -> dict[str, float]:
        assert next(net.parameters()).device.type == "cuda"
        return {"accuracy": 0.5}

    trained, result = train(model, tiny_set(), loss, score, settings("bf16"), PAD, regression=False)
    assert result.steps == 6
    assert set(seen) == {torch.bfloat16}
    assert all(math.isfinite(p["train_loss"]) for p in result.history)
    # fp32 master weights, back on the host for saving
    assert {p.dtype for p in trained.parameters()} == {torch.float32}
    assert next(trained.parameters()).device.type == "cpu"


def test_pinned_batch_reaches_the_gpu_intact() -> None:
    data = tiny_set(16)
    batch = Collator(PAD, regression=False).columns(Columns(data).take(list(range(8))))
    pinned = {k: v.pin_memory() for k, v in batch.items()}
    assert all(t.is_pinned() for t in pinned.values())
    moved = {k: v.to("cuda", non_blocking=True) for k, v in pinned.items()}
    torch.cuda.synchronize()
    for key, tensor in batch.items():
        assert torch.equal(moved[key].cpu(), tensor)


def test_teacher_labels_on_the_gpu_and_stays_where_it_was() -> None:
    model = tiny_bert().eval()
    data = tiny_set(40)
    on_cpu = predict_logits(model, data, 16, PAD)  # the model is on the CPU, so this reference is too
    torch.cuda.reset_peak_memory_stats()
    on_gpu, stats = teacher_logits(model, data, 16, PAD, backend="torch")
    assert torch.cuda.max_memory_allocated() > 0  # the forward passes ran on the GPU
    assert next(model.parameters()).device.type == "cpu"  # and the model is back where the caller had it
    assert stats["teacher_backend"] == "torch"
    assert abs(on_gpu - on_cpu).max() < 1e-3
