"""Student construction: BERT-tiny's shape, its initialisations, and loading an MLM-pre-trained encoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import PreTrainedModel

from distilflow.config.loading import parse_params
from distilflow.config.training_params import StudentParams
from distilflow.models.loading import (
    build_student,
    load_pretrained_encoder,
    load_teacher_for_finetuning,
    load_tokenizer,
    resolve_teacher,
)
from distilflow.stages.pretrain import masked_lm_student
from distilflow.tasks import get_task


def neighbourhood_overlap(reference: torch.Tensor, candidate: torch.Tensor, ids: torch.Tensor, k: int) -> float:
    """Mean share of each word's ``k`` nearest neighbours (cosine) in ``reference`` also nearest in ``candidate``.

    Measures how much of the teacher's lexical structure an initialisation keeps: 1.0 keeps every
    neighbourhood, a random table about k / len(ids).
    """

    def nearest(table: torch.Tensor) -> torch.Tensor:
        vectors = torch.nn.functional.normalize(table.detach().float()[ids], dim=-1)
        similarity = vectors @ vectors.T
        similarity.fill_diagonal_(-2.0)
        return similarity.topk(k, dim=-1).indices

    ours, theirs = nearest(reference), nearest(candidate)
    shared = [len(set(a.tolist()) & set(b.tolist())) for a, b in zip(ours, theirs, strict=True)]
    return float(sum(shared) / (k * len(shared)))


@pytest.fixture(scope="module")
def teacher() -> PreTrainedModel:
    """The packaged MiniLM (a real pre-trained BERT, 384 wide), as the pipeline's default teacher."""
    return load_teacher_for_finetuning("packaged-minilm", get_task("sst2"))


def test_student_has_bert_tiny_shape_and_the_teachers_vocabulary(teacher: PreTrainedModel) -> None:
    student = build_student(teacher, StudentParams(init="random"), get_task("sst2"), seed=0)
    config = student.config
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads, config.intermediate_size) == (
        2,
        128,
        2,
        512,
    )
    assert config.vocab_size == teacher.config.vocab_size
    assert config.num_labels == 2
    regression = build_student(teacher, StudentParams(init="random"), get_task("stsb"), seed=0)
    assert regression.config.num_labels == 1 and regression.config.problem_type == "regression"


def test_projected_init_keeps_the_teachers_embedding_neighbourhoods(teacher: PreTrainedModel) -> None:
    tokenizer = load_tokenizer(resolve_teacher("packaged-minilm"))
    vocab = tokenizer.get_vocab()
    # 1,500 ordinary words (BERT's vocabulary lists frequent words first after the special and single characters).
    words = [
        idx
        for token, idx in sorted(vocab.items(), key=lambda item: item[1])
        if token.isalpha() and token.isascii() and len(token) > 2
    ][:1500]
    ids = torch.tensor(words)
    reference = teacher.get_input_embeddings().weight
    projected = build_student(teacher, StudentParams(init="teacher-projected"), get_task("sst2"), 0)
    random = build_student(teacher, StudentParams(init="random"), get_task("sst2"), 0)
    kept = neighbourhood_overlap(reference, projected.get_input_embeddings().weight, ids, k=10)
    chance = neighbourhood_overlap(reference, random.get_input_embeddings().weight, ids, k=10)
    assert chance < 0.05, "a random table shares about k / n of each neighbourhood"
    assert kept > 0.3 and kept > 10 * chance, (kept, chance)
    # Same linear map for all tables: position embeddings are projected too, not left random.
    teacher_positions = teacher.base_model.embeddings.position_embeddings.weight
    student_positions = projected.base_model.embeddings.position_embeddings.weight
    assert neighbourhood_overlap(teacher_positions, student_positions, torch.arange(128), k=5) > 0.3  # chance: 0.04


def test_checkpoint_init_loads_a_saved_student(teacher: PreTrainedModel, tmp_path: Path) -> None:
    first = build_student(teacher, StudentParams(init="teacher-projected"), get_task("sst2"), 0)
    first.save_pretrained(str(tmp_path / "student"))
    again = build_student(teacher, StudentParams(init=f"checkpoint:{tmp_path / 'student'}"), get_task("sst2"), 1)
    for (name, a), b in zip(first.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_pretrained_encoder_replaces_the_students_encoder_only(teacher: PreTrainedModel, tmp_path: Path) -> None:
    student = build_student(teacher, StudentParams(init="random"), get_task("sst2"), 0)
    mlm = masked_lm_student(student)
    assert mlm.cls.predictions.decoder.weight.data_ptr() == mlm.bert.embeddings.word_embeddings.weight.data_ptr()
    with torch.no_grad():
        for parameter in mlm.bert.parameters():
            parameter.add_(1.0)  # stands in for MLM training
    mlm.save_pretrained(str(tmp_path / "mlm"))
    fresh = build_student(teacher, StudentParams(init="random"), get_task("sst2"), 0)
    head_before = fresh.classifier.weight.clone()
    copied = load_pretrained_encoder(fresh, tmp_path / "mlm")
    assert copied > 10
    assert torch.equal(fresh.bert.embeddings.word_embeddings.weight, mlm.bert.embeddings.word_embeddings.weight)
    assert torch.equal(fresh.bert.encoder.layer[1].output.dense.weight, mlm.bert.encoder.layer[1].output.dense.weight)
    assert torch.equal(fresh.classifier.weight, head_before)
    wider = build_student(teacher, StudentParams(init="random", hidden_size=64, num_heads=2), get_task("sst2"), 0)
    with pytest.raises(ValueError, match="do not fit"):
        load_pretrained_encoder(wider, tmp_path / "mlm")


def test_unknown_init_is_rejected() -> None:
    with pytest.raises(ValueError, match="teacher-projected"):
        parse_params({"distill": {"student": {"init": "pca"}}})
