"""Knowledge distillation, the method: Hinton et al.'s soft-target loss, TinyBERT's intermediate-layer losses, and
the loop that trains a student on a transfer set carrying the teacher's logits (stages/distill.py runs it)."""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from datasets import Dataset
from transformers import PreTrainedModel

from distilflow.config.training_params import DistillParams
from distilflow.models.loading import centre_regression_head
from distilflow.training.loop import EvalFn, LoopResult, LoopSettings, LossFn, train

INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    alpha: float,
    regression: bool,
) -> torch.Tensor:
    """Hinton et al.'s loss: alpha * T² * KL(teacher_T || student_T) + (1 - alpha) * CE(gold).

    The T² factor keeps the soft-target gradients on the same scale whatever the temperature.
    Regression tasks have no distribution to soften: MSE to the teacher's score and to the gold score.
    """
    if regression:
        soft = F.mse_loss(student_logits.squeeze(-1), teacher_logits.squeeze(-1))
        hard = F.mse_loss(student_logits.squeeze(-1), labels)
        return alpha * soft + (1 - alpha) * hard
    soft = (
        F.kl_div(
            F.log_softmax(student_logits / temperature, dim=-1),
            F.log_softmax(teacher_logits / temperature, dim=-1),
            reduction="batchmean",
            log_target=True,
        )
        * temperature**2
    )
    hard = F.cross_entropy(student_logits, labels)
    return alpha * soft + (1 - alpha) * hard


def default_layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """Evenly spaced teacher layers, ending at the last: 2 of 6 → [3, 6] (TinyBERT's uniform mapping)."""
    return [round((i + 1) * teacher_layers / student_layers) for i in range(student_layers)]


def masked_mse(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE over real tokens only: padding is whatever the batch's longest row made it, not signal."""
    weights = mask.unsqueeze(-1).to(student.dtype)
    return ((student - teacher) ** 2 * weights).sum() / (weights.sum() * student.shape[-1]).clamp(min=1.0)


def grouped_attention(teacher_attention: torch.Tensor, student_heads: int) -> torch.Tensor:
    """Average the teacher's heads in ``student_heads`` contiguous groups, so 12 heads can teach 2."""
    batch, heads, length, _ = teacher_attention.shape
    if heads % student_heads:
        raise ValueError(
            f"the teacher's {heads} attention heads cannot be split evenly among the student's "
            f"{student_heads}; set distill.attention_weight: 0 or pick a divisor"
        )
    return teacher_attention.view(batch, student_heads, heads // student_heads, length, length).mean(dim=2)


class IntermediateDistiller(torch.nn.Module):
    """The student plus the learned projections its hidden states are compared through (TinyBERT).

    One module, so ``train`` optimizes the projections jointly with the student; only the student is kept.
    The teacher is held outside the module's parameters (no gradients, not in the checkpoint) and follows
    the student to its device on first use.
    """

    def __init__(self, student: PreTrainedModel, teacher: PreTrainedModel, layer_map: list[int]) -> None:
        super().__init__()
        self.student = student
        self.layer_map = layer_map
        teacher_hidden = teacher.config.hidden_size
        # One projection per matched pair: the embedding outputs (0 ↔ 0) and each student layer.
        self.projections = torch.nn.ModuleList(
            torch.nn.Linear(student.config.hidden_size, teacher_hidden) for _ in range(len(layer_map) + 1)
        )
        self._teacher = (teacher.eval().requires_grad_(False),)

    @property
    def teacher(self) -> PreTrainedModel:
        return self._teacher[0]

    def losses(
        self, batch: dict[str, torch.Tensor], attention: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(student logits, hidden-state loss, attention loss)."""
        inputs = {k: batch[k] for k in INPUTS}
        device = batch["input_ids"].device
        teacher = self.teacher
        if next(teacher.parameters()).device != device:
            torch.nn.Module.to(teacher, device)
        out = self.student(**inputs, output_hidden_states=True, output_attentions=attention)
        with torch.no_grad():
            reference = teacher(**inputs, output_hidden_states=True, output_attentions=attention)
        mask = batch["attention_mask"]
        pairs = [(0, 0), *[(i + 1, t) for i, t in enumerate(self.layer_map)]]
        hidden = torch.stack(
            [
                masked_mse(projection(out.hidden_states[s]).float(), reference.hidden_states[t].float(), mask)
                for projection, (s, t) in zip(self.projections, pairs, strict=True)
            ]
        ).mean()
        attention_loss = torch.zeros((), device=device)
        if attention:
            pair_mask = (mask.unsqueeze(-1) * mask.unsqueeze(-2)).unsqueeze(1)  # (batch, 1, query, key)
            terms = []
            for i, t in enumerate(self.layer_map):
                student_map = out.attentions[i].float()
                teacher_map = grouped_attention(reference.attentions[t - 1].float(), student_map.shape[1])
                weights = pair_mask.expand_as(student_map).float()
                terms.append(((student_map - teacher_map) ** 2 * weights).sum() / weights.sum().clamp(min=1.0))
            attention_loss = torch.stack(terms).mean()
        return out.logits, hidden, attention_loss


def distillation_loss(config: DistillParams, regression: bool) -> LossFn:
    def loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if isinstance(model, IntermediateDistiller):
            logits, hidden, attention = model.losses(batch, attention=config.attention_weight > 0)
            extra = config.hidden_weight * hidden + config.attention_weight * attention
        else:
            logits = model(**{k: batch[k] for k in INPUTS}).logits
            extra = torch.zeros((), device=logits.device)
        soft = kd_loss(
            logits.float(), batch["teacher_logits"], batch["labels"], config.temperature, config.alpha, regression
        )
        return soft + extra

    return loss


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.student if isinstance(model, IntermediateDistiller) else model


def intermediate_distiller(
    student: PreTrainedModel, teacher: PreTrainedModel | None, config: DistillParams
) -> IntermediateDistiller:
    """The student wrapped with the projections of TinyBERT's hidden-state and attention losses."""
    if teacher is None:
        raise ValueError("intermediate-layer losses need the teacher")
    if config.attention_weight > 0:
        # Attention maps are returned only by the eager implementation, not by SDPA's fused kernel.
        student.set_attn_implementation("eager")
        teacher.set_attn_implementation("eager")
    layer_map = config.layer_map or default_layer_map(
        student.config.num_hidden_layers, teacher.config.num_hidden_layers
    )
    if len(layer_map) != student.config.num_hidden_layers or not all(
        1 <= t <= teacher.config.num_hidden_layers for t in layer_map
    ):
        raise ValueError(
            f"distill.layer_map {layer_map} must name one teacher layer (1.."
            f"{teacher.config.num_hidden_layers}) per student layer "
            f"({student.config.num_hidden_layers})"
        )
    return IntermediateDistiller(student, teacher, layer_map)


def word_embeddings(student: PreTrainedModel, config: DistillParams) -> torch.nn.Parameter:
    """The student's word-embedding table, frozen when ``distill.freeze_word_embeddings`` asks."""
    # An nn.Embedding's weight: transformers types get_input_embeddings() as any module.
    words = cast(torch.nn.Parameter, student.get_input_embeddings().weight)
    if config.freeze_word_embeddings:
        if config.student.init == "random":
            raise ValueError(
                "distill.freeze_word_embeddings would keep random word embeddings random; use it with "
                "init teacher-projected or checkpoint:PATH"
            )
        words.requires_grad_(False)  # train() gives the optimizer only parameters that need gradients
    return words


def distill(
    student: PreTrainedModel,
    teacher: PreTrainedModel | None,
    transfer: Dataset,
    score_dev: EvalFn,
    config: DistillParams,
    settings: LoopSettings,
    pad_id: int,
    regression: bool,
    description: str = "distill student",
) -> tuple[PreTrainedModel, LoopResult]:
    """Train ``student`` on ``transfer`` (which carries ``teacher_logits``); the teacher is needed only for
    intermediate-layer losses. Returns the student with its best dev weights. A regression head starts at the
    teacher's mean score (:func:`centre_regression_head`)."""
    model: torch.nn.Module = student
    if regression:
        centre_regression_head(student, [row[0] for row in transfer["teacher_logits"]])
    if config.hidden_weight > 0 or config.attention_weight > 0:
        model = intermediate_distiller(student, teacher, config)

    def score(candidate: torch.nn.Module) -> dict[str, float]:
        return score_dev(unwrap(candidate))

    words = word_embeddings(student, config)
    trained, result = train(
        model,
        transfer,
        distillation_loss(config, regression),
        score,
        settings,
        pad_id,
        regression,
        description=description,
    )
    words.requires_grad_(True)
    final = unwrap(trained)
    assert isinstance(final, PreTrainedModel)
    final.set_attn_implementation("sdpa")  # back to the fast kernel for inference and export
    return final, result
