"""init teacher-layers: the student starts as a slice of the teacher (models/teacher_slicing.py)."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    PreTrainedModel,
)

from distilflow.config.loading import ParamsError, parse_params
from distilflow.config.training_params import StudentParams
from distilflow.models.loading import build_student, load_teacher_for_finetuning
from distilflow.models.teacher_slicing import check_fits, default_layers, slice_teacher
from distilflow.tasks import get_task


def tiny_bert(hidden: int, heads: int, intermediate: int, layers: int, seed: int = 0) -> BertForSequenceClassification:
    """A random BERT whose LayerNorms and biases are random too, so copying them wrongly shows."""
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=50,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=16,
        num_labels=2,
    )
    model = BertForSequenceClassification(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                parameter.normal_(mean=1.0 if name.endswith("LayerNorm.weight") else 0.0, std=0.3)
    return model


def copy_embeddings(teacher: PreTrainedModel, student: PreTrainedModel, directions: torch.Tensor) -> None:
    source, target = teacher.base_model.embeddings, student.base_model.embeddings
    with torch.no_grad():
        for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
            getattr(target, name).weight.copy_(getattr(source, name).weight @ directions.T)


def test_a_full_slice_through_identity_directions_is_the_teacher() -> None:
    teacher = tiny_bert(32, 4, 64, 3)
    student = tiny_bert(32, 4, 64, 3, seed=1)
    directions = torch.eye(32)
    copy_embeddings(teacher, student, directions)
    slice_teacher(teacher, student, directions, [0, 1, 2])
    ids = torch.randint(0, 50, (4, 12))
    with torch.no_grad():
        expected, got = teacher(input_ids=ids).logits, student(input_ids=ids).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_chosen_layers_are_the_ones_copied() -> None:
    teacher = tiny_bert(32, 4, 64, 4)
    student = tiny_bert(32, 4, 64, 2, seed=1)
    slice_teacher(teacher, student, torch.eye(32), [3, 1])
    pairs = zip(student.bert.encoder.layer, (teacher.bert.encoder.layer[3], teacher.bert.encoder.layer[1]), strict=True)
    for target, source in pairs:
        assert torch.equal(target.output.dense.bias, source.output.dense.bias)
        assert torch.equal(target.attention.self.key.weight, source.attention.self.key.weight)


def test_the_heads_that_write_nothing_are_pruned_first() -> None:
    teacher = tiny_bert(32, 4, 64, 1)
    layer = teacher.bert.encoder.layer[0].attention
    with torch.no_grad():
        for head in (1, 3):  # value rows of heads 1 and 3 are zero: they add nothing to the residual stream
            layer.self.value.weight[head * 8 : (head + 1) * 8] = 0
    student = tiny_bert(16, 2, 32, 1, seed=1)  # 2 heads of 8: two teacher heads are kept
    directions = torch.eye(32)[:16]
    slice_teacher(teacher, student, directions, [0])
    kept = torch.cat([torch.arange(0, 8), torch.arange(16, 24)])
    expected = layer.self.key.weight[kept][:, :16]
    assert torch.equal(student.bert.encoder.layer[0].attention.self.key.weight, expected)


def test_merged_heads_keep_each_teacher_heads_logit_scale() -> None:
    teacher = tiny_bert(32, 4, 64, 1)
    student = tiny_bert(32, 2, 64, 1, seed=1)  # 2 heads of 16, each two teacher heads of 8 side by side
    slice_teacher(teacher, student, torch.eye(32), [0])
    source, target = teacher.bert.encoder.layer[0].attention.self, student.bert.encoder.layer[0].attention.self
    # Scores are divided by sqrt(16) instead of sqrt(8): the query is multiplied by sqrt(2) to make up for it.
    torch.testing.assert_close(target.query.weight, source.query.weight * 2**0.5)
    torch.testing.assert_close(target.key.weight, source.key.weight)


def test_feed_forward_neurons_are_kept_by_weight_size() -> None:
    teacher = tiny_bert(32, 4, 64, 1)
    block = teacher.bert.encoder.layer[0]
    with torch.no_grad():
        block.output.dense.weight[:, 32:] *= 0.01  # the upper half of the neurons barely write anything
    student = tiny_bert(32, 4, 32, 1, seed=1)
    slice_teacher(teacher, student, torch.eye(32), [0])
    assert torch.equal(student.bert.encoder.layer[0].intermediate.dense.bias, block.intermediate.dense.bias[:32])


@pytest.mark.parametrize(
    ("student_shape", "layers", "message"),
    [
        ((64, 4, 64, 1), [0], "hidden size 64 > the teacher's 32"),
        ((24, 2, 64, 1), [0], "not a whole number of teacher heads"),
        ((32, 4, 128, 1), [0], "intermediate size 128"),
        ((32, 4, 64, 2), [0, 5], r"teacher_layers \[1, 6\] must name one teacher layer \(1..3\)"),
    ],
)
def test_shapes_that_cannot_be_cut_are_refused(
    student_shape: tuple[int, int, int, int], layers: list[int], message: str
) -> None:
    teacher = tiny_bert(32, 4, 64, 3)
    student = tiny_bert(*student_shape, seed=1)
    with pytest.raises(ValueError, match=message):
        check_fits(teacher.config, student.config, layers)


def test_a_teacher_that_is_not_bert_shaped_is_refused_by_name() -> None:
    config = DistilBertConfig(vocab_size=50, dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=16)
    teacher = DistilBertForSequenceClassification(config)
    with pytest.raises(ValueError, match="DistilBertForSequenceClassification is not one: use init teacher-projected"):
        slice_teacher(teacher, tiny_bert(16, 2, 32, 1), torch.eye(32)[:16], [0])


def test_default_layers_are_the_bottom_ones() -> None:
    assert default_layers(2, 6) == [0, 1]
    with pytest.raises(ValueError, match="7-layer student"):
        default_layers(7, 6)


def test_teacher_layers_must_be_positive_and_known() -> None:
    assert parse_params({"distill": {"student": {"teacher_layers": [1, 6]}}}).distill.student.teacher_layers == [1, 6]
    with pytest.raises(ParamsError, match=r"distill.student: .*teacher_layers \[0, 2\]"):
        parse_params({"distill": {"student": {"teacher_layers": [0, 2]}}})
    with pytest.raises(ValidationError, match="teacher_layers"):
        StudentParams(init="teacher-layers", teacher_layers=[1, 2, 3])


def test_the_packaged_minilm_slices_to_bert_tiny_with_the_layers_asked_for() -> None:
    task = get_task("stsb")
    teacher = load_teacher_for_finetuning("packaged-minilm", task)
    student = build_student(teacher, StudentParams(init="teacher-layers", teacher_layers=[1, 6]), task, seed=0)
    words = teacher.get_input_embeddings().weight
    directions = torch.linalg.svd(words - words.mean(0), full_matrices=False).Vh[:128]
    for student_layer, teacher_layer in zip(student.bert.encoder.layer, (0, 5), strict=True):
        source = teacher.bert.encoder.layer[teacher_layer].output.dense.bias
        torch.testing.assert_close(student_layer.output.dense.bias, directions @ source, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match=r"teacher_layers \[1, 7\] must name one teacher layer \(1..6\)"):
        build_student(teacher, StudentParams(init="teacher-layers", teacher_layers=[1, 7]), task, seed=0)
