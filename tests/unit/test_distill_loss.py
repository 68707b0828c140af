"""The distillation losses: Hinton's KD loss by hand, its T² scaling, TinyBERT's intermediate losses."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from distilflow.training.distillation import (
    IntermediateDistiller,
    default_layer_map,
    grouped_attention,
    kd_loss,
    masked_mse,
)


def test_kd_loss_matches_hand_computed_value() -> None:
    # One example, two classes: student logits (1, 2), teacher (2, 0), gold class 1, T = 2, alpha = 0.5.
    student = torch.tensor([[1.0, 2.0]])
    teacher = torch.tensor([[2.0, 0.0]])
    label = torch.tensor([1])
    # Softened distributions at T = 2: student softmax(0.5, 1), teacher softmax(1, 0).
    q = [math.exp(0.5) / (math.exp(0.5) + math.exp(1.0)), math.exp(1.0) / (math.exp(0.5) + math.exp(1.0))]
    p = [math.exp(1.0) / (math.exp(1.0) + 1.0), 1.0 / (math.exp(1.0) + 1.0)]
    kl = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    ce = -math.log(math.exp(2.0) / (math.exp(1.0) + math.exp(2.0)))
    expected = 0.5 * 4 * kl + 0.5 * ce
    assert kd_loss(student, teacher, label, temperature=2.0, alpha=0.5, regression=False).item() == pytest.approx(
        expected, rel=1e-6
    )


def test_alpha_selects_between_soft_and_gold_terms() -> None:
    student = torch.tensor([[0.3, -0.2], [1.0, 0.5]])
    labels = torch.tensor([0, 1])
    # A teacher identical to the student leaves only the gold term; alpha = 1 leaves only the soft one.
    assert kd_loss(student, student, labels, 3.0, 1.0, False).item() == pytest.approx(0.0, abs=1e-7)
    gold_only = kd_loss(student, torch.zeros_like(student), labels, 3.0, 0.0, False)
    assert gold_only.item() == pytest.approx(torch.nn.functional.cross_entropy(student, labels).item())


def test_temperature_squared_keeps_soft_gradients_on_one_scale() -> None:
    """Softening by T shrinks the KL gradients by 1/T²; the T² factor undoes that (Hinton et al. 2015)."""
    torch.manual_seed(0)
    teacher = torch.randn(16, 3)
    labels = torch.zeros(16, dtype=torch.long)
    norms = {}
    for temperature in (8.0, 16.0):
        student = torch.randn(16, 3, generator=torch.Generator().manual_seed(1)).requires_grad_()
        kd_loss(student, teacher, labels, temperature, alpha=1.0, regression=False).backward()
        assert student.grad is not None
        norms[temperature] = student.grad.norm().item()
    assert norms[16.0] / norms[8.0] == pytest.approx(1.0, abs=0.02)
    # Without the factor the ratio would be (8/16)² = 0.25: check the factor is really there.
    unscaled = kd_loss(teacher, torch.zeros_like(teacher), labels, 4.0, 1.0, False) / 16
    manual = torch.nn.functional.kl_div(
        torch.log_softmax(teacher / 4, -1), torch.softmax(torch.zeros(16, 3), -1), reduction="batchmean"
    )
    assert unscaled.item() == pytest.approx(manual.item(), rel=1e-5)


def test_regression_uses_mse_to_teacher_and_gold() -> None:
    student = torch.tensor([[1.0], [3.0]])
    teacher = torch.tensor([[2.0], [3.0]])
    gold = torch.tensor([1.0, 1.0])
    # soft: mean((1-2)², 0) = 0.5; hard: mean(0, (3-1)²) = 2.0
    assert kd_loss(student, teacher, gold, 2.0, 0.25, regression=True).item() == pytest.approx(0.25 * 0.5 + 0.75 * 2)


def test_default_layer_map_spreads_student_layers_over_the_teacher() -> None:
    assert default_layer_map(2, 6) == [3, 6]
    assert default_layer_map(4, 12) == [3, 6, 9, 12]
    assert default_layer_map(3, 3) == [1, 2, 3]


def test_grouped_attention_averages_heads_per_group() -> None:
    maps = torch.stack([torch.full((3, 3), float(h)) for h in range(6)]).unsqueeze(0)  # (1, 6 heads, 3, 3)
    grouped = grouped_attention(maps, 2)
    assert grouped.shape == (1, 2, 3, 3)
    assert grouped[0, 0, 0, 0].item() == pytest.approx(1.0)  # mean of heads 0, 1, 2
    assert grouped[0, 1, 0, 0].item() == pytest.approx(4.0)  # mean of heads 3, 4, 5
    with pytest.raises(ValueError, match="cannot be split evenly"):
        grouped_attention(maps, 4)


def test_masked_mse_ignores_padding() -> None:
    student = torch.zeros(1, 3, 2)
    teacher = torch.tensor([[[1.0, 1.0], [1.0, 1.0], [100.0, 100.0]]])
    assert masked_mse(student, teacher, torch.tensor([[1, 1, 0]])).item() == pytest.approx(1.0)


def _bert(hidden: int, layers: int, heads: int) -> BertForSequenceClassification:
    config = BertConfig(
        vocab_size=50,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=2 * hidden,
        max_position_embeddings=32,
        num_labels=2,
    )
    return BertForSequenceClassification(config)


def test_intermediate_losses_train_the_projection_jointly_and_keep_the_teacher_out() -> None:
    torch.manual_seed(0)
    teacher, student = _bert(24, 4, 6), _bert(8, 2, 2)
    teacher.set_attn_implementation("eager")
    student.set_attn_implementation("eager")
    wrapper = IntermediateDistiller(student, teacher, [2, 4])
    names = {name for name, _ in wrapper.named_parameters()}
    assert any(name.startswith("projections.") for name in names)
    assert not any("teacher" in name for name in names), "the teacher must not be optimized or checkpointed"
    batch = {
        "input_ids": torch.randint(1, 50, (3, 7)),
        "token_type_ids": torch.zeros(3, 7, dtype=torch.long),
        "attention_mask": torch.ones(3, 7, dtype=torch.long),
    }
    batch["attention_mask"][0, 5:] = 0
    logits, hidden, attention = wrapper.losses(batch, attention=True)
    assert logits.shape == (3, 2)
    assert hidden.item() > 0 and attention.item() > 0
    (hidden + attention).backward()
    assert wrapper.projections[1].weight.grad is not None and wrapper.projections[1].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())
