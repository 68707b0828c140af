"""Start the student as a slice of the teacher: some of its layers, narrowed to the student's width.

A student that starts with only projected embeddings spends hundreds of steps on a plateau before its random layers
learn to compare tokens, and where it leaves the plateau decides the result (docs/glue-demos.md). A slice starts
with the teacher's attention patterns and feed-forward features instead:

- **Width.** Every weight is mapped through the same orthonormal directions as the embeddings (the PCA of the
  teacher's word embeddings), so the student's residual stream is a projection of the teacher's. Deleting the same
  low-variance directions from every layer is SliceGPT's idea (Ashkboos et al. 2024).
- **Heads and neurons.** They are pruned by weight magnitude, as Minitron prunes width before distilling
  (Muralidharan et al. 2024). Each student head is made of ``student_head_size / teacher_head_size`` teacher heads
  side by side. Its query is scaled so that every teacher head keeps its own logit scale.
- **Depth.** The student's layers come from ``layers``, by default the teacher's bottom ones. Dropping the top
  layers kept the most GLUE accuracy in Sajjad et al. 2023 ("On the effect of dropping layers of pre-trained
  transformer models").

Only BERT-style models are sliced (``bert.encoder.layer[i].attention.self.query`` and so on). Anything else raises.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel


def default_layers(student_layers: int, teacher_layers: int) -> list[int]:
    """The teacher's bottom ``student_layers`` layers, 0-based."""
    if student_layers > teacher_layers:
        raise ValueError(f"a {student_layers}-layer student cannot be sliced from a {teacher_layers}-layer teacher")
    return list(range(student_layers))


def check_fits(teacher: Any, student: Any, layers: list[int]) -> None:
    """Raise ``ValueError`` naming the first way the student's shape cannot be cut from the teacher's."""
    t_head = teacher.hidden_size // teacher.num_attention_heads
    s_head = student.hidden_size // student.num_attention_heads
    problems = []
    if student.hidden_size > teacher.hidden_size:
        problems.append(f"hidden size {student.hidden_size} > the teacher's {teacher.hidden_size}")
    if s_head % t_head:
        problems.append(f"a student head ({s_head} wide) is not a whole number of teacher heads ({t_head} wide)")
    elif student.num_attention_heads * (s_head // t_head) > teacher.num_attention_heads:
        problems.append(
            f"{student.num_attention_heads} heads of {s_head // t_head} teacher heads each need more than the "
            f"teacher's {teacher.num_attention_heads}"
        )
    if student.intermediate_size > teacher.intermediate_size:
        problems.append(f"intermediate size {student.intermediate_size} > the teacher's {teacher.intermediate_size}")
    if len(layers) != student.num_hidden_layers or not all(0 <= i < teacher.num_hidden_layers for i in layers):
        problems.append(
            f"teacher_layers {[i + 1 for i in layers]} must name one teacher layer (1..{teacher.num_hidden_layers}) "
            f"per student layer ({student.num_hidden_layers})"
        )
    if problems:
        raise ValueError("init teacher-layers cannot slice this student from this teacher: " + "; ".join(problems))


def _largest(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the ``count`` largest scores, in their original order."""
    return scores.topk(count).indices.sort().values


def _copy_norm(target: nn.LayerNorm, source: nn.LayerNorm, directions: torch.Tensor) -> None:
    # A LayerNorm scales each channel; through the projection its scale becomes diag(P diag(γ) Pᵀ).
    target.weight.copy_((directions**2) @ source.weight)
    target.bias.copy_(directions @ source.bias)


def _copy_linear(
    target: nn.Linear, source: nn.Linear, rows: torch.Tensor | None, columns: torch.Tensor | None, scale: float = 1.0
) -> None:
    """``target = scale * R W Cᵀ``: ``rows``/``columns`` are index tensors or (out, in) projection matrices."""
    weight, bias = source.weight.float(), source.bias.float()
    if rows is not None:
        weight, bias = (weight[rows], bias[rows]) if rows.dim() == 1 else (rows @ weight, rows @ bias)
    if columns is not None:
        weight = weight[:, columns] if columns.dim() == 1 else weight @ columns.T
    target.weight.copy_(weight * scale)
    target.bias.copy_(bias * scale)


def _head_rows(heads: torch.Tensor, head_size: int) -> torch.Tensor:
    return (heads.unsqueeze(1) * head_size + torch.arange(head_size)).flatten()


def _slice_layer(target: Any, source: Any, directions: torch.Tensor, teacher_head: int, kept_heads: int) -> None:
    attention = source.attention
    # A head's importance: the size of what it writes to the residual stream, |W_O[:, h] W_V[h]|.
    heads_total = attention.self.query.out_features // teacher_head
    importance = torch.stack(
        [
            torch.linalg.matrix_norm(
                attention.output.dense.weight[:, rows].float() @ attention.self.value.weight[rows].float()
            )
            for rows in (_head_rows(torch.tensor([h]), teacher_head) for h in range(heads_total))
        ]
    )
    rows = _head_rows(_largest(importance, kept_heads), teacher_head)
    student_head = target.attention.self.query.out_features // target.attention.self.num_attention_heads
    # Logits are divided by sqrt(head size): a wider head would soften each teacher head's attention.
    query_scale = math.sqrt(student_head / teacher_head)
    _copy_linear(target.attention.self.query, attention.self.query, rows, directions, query_scale)
    _copy_linear(target.attention.self.key, attention.self.key, rows, directions)
    _copy_linear(target.attention.self.value, attention.self.value, rows, directions)
    _copy_linear(target.attention.output.dense, attention.output.dense, directions, rows)
    _copy_norm(target.attention.output.LayerNorm, attention.output.LayerNorm, directions)
    # A neuron's importance: |input weights| x |output weights|.
    up, down = source.intermediate.dense, source.output.dense
    neurons = _largest(
        up.weight.float().norm(dim=1) * down.weight.float().norm(dim=0), target.intermediate.dense.out_features
    )
    _copy_linear(target.intermediate.dense, up, neurons, directions)
    _copy_linear(target.output.dense, down, directions, neurons)
    _copy_norm(target.output.LayerNorm, source.output.LayerNorm, directions)


def _is_bert_style(model: PreTrainedModel) -> bool:
    layers = getattr(getattr(model.base_model, "encoder", None), "layer", None)
    return isinstance(layers, nn.ModuleList) and len(layers) > 0 and hasattr(layers[0].attention, "self")


def slice_teacher(
    teacher: PreTrainedModel, student: PreTrainedModel, directions: torch.Tensor, layers: list[int]
) -> None:
    """Copy the teacher's ``layers`` (0-based), pooler and classifier into ``student`` through ``directions``.

    ``directions`` is the (student hidden, teacher hidden) matrix with orthonormal rows that the embeddings were
    projected with. The embedding tables themselves are the caller's (:func:`modeling.project_embeddings`); the
    embedding LayerNorm is copied here.
    """
    if not _is_bert_style(teacher):
        raise ValueError(
            f"init teacher-layers slices BERT-style teachers only (base_model.encoder.layer[i].attention.self); "
            f"{type(teacher).__name__} is not one: use init teacher-projected"
        )
    check_fits(teacher.config, student.config, layers)
    # Any: transformers types base_model as a Module, whose submodules mypy cannot see.
    source: Any = teacher.base_model
    target: Any = student.base_model
    teacher_head = teacher.config.hidden_size // teacher.config.num_attention_heads
    student_head = student.config.hidden_size // student.config.num_attention_heads
    kept_heads = student.config.num_attention_heads * (student_head // teacher_head)
    directions = directions.float()
    with torch.no_grad():
        _copy_norm(target.embeddings.LayerNorm, source.embeddings.LayerNorm, directions)
        for student_layer, index in zip(target.encoder.layer, layers, strict=True):
            _slice_layer(student_layer, source.encoder.layer[index], directions, teacher_head, kept_heads)
        if source.pooler is not None and target.pooler is not None:
            _copy_linear(target.pooler.dense, source.pooler.dense, directions, directions)
        classifier, head = getattr(teacher, "classifier", None), getattr(student, "classifier", None)
        if (
            isinstance(classifier, nn.Linear)
            and isinstance(head, nn.Linear)
            and classifier.out_features == head.out_features
        ):
            _copy_linear(head, classifier, None, directions)
