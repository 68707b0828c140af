"""distill: train BERT-tiny to match the fine-tuned teacher, then export it (int8, ONNX) and check the exports.

Soft targets come from the transfer set (``data/transfer``, the augment stage): the teacher's logits on the
training split and its rewrites, computed once. The teacher runs inside the loop only when an
intermediate-layer loss (TinyBERT's hidden-state or attention loss) is switched on, since those need its
hidden states, which are too large to cache. The starting point is ``distill.student.init``, replaced
by the MLM-pre-trained encoder when the pretrain stage ran.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from datasets import Dataset, load_from_disk
from transformers import PreTrainedModel

from distilflow.config.params import Params
from distilflow.config.training_params import DistillParams
from distilflow.data.holdout import HOLDOUT
from distilflow.export.student import export_student
from distilflow.models.loading import (
    build_student,
    centre_regression_head,
    count_parameters,
    load_classifier,
    load_pretrained_encoder,
    load_tokenizer,
)
from distilflow.paths import Paths
from distilflow.tasks import GlueTask, get_task
from distilflow.tracking.runs import stage_run, write_json, write_lineage
from distilflow.training.curves import log_history, write_curve
from distilflow.training.loop import EvalFn, LoopResult, LoopSettings, LossFn, train
from distilflow.training.pretrained import read_summary
from distilflow.training.scorer import split_scorer
from distilflow.training.summary import training_metrics

EXPORT_DIR = "export"
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


def loop_settings(config: DistillParams, task: GlueTask, params: Params) -> LoopSettings:
    return LoopSettings.from_params(
        config, task.primary_metric, params.seed, device=params.run.device, precision=params.run.precision
    )


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


def training_rows(transfer: Dataset, config: DistillParams) -> Dataset:
    if config.augmented:
        return transfer
    return transfer.filter(lambda flags: [not flag for flag in flags], input_columns="augmented", batched=True)


def starting_student(
    teacher: PreTrainedModel, params: Params, task: GlueTask, pretrained: Path
) -> tuple[PreTrainedModel, bool]:
    """The student from ``distill.student.init``, with the MLM-pre-trained encoder when the pretrain stage ran."""
    student = build_student(teacher, params.distill.student, task, params.seed)
    summary = read_summary(pretrained)
    if summary.get("enabled"):
        load_pretrained_encoder(student, pretrained)
        return student, True
    return student, False


def save_student(paths: Paths, student: PreTrainedModel, tokenizer: Any, run_id: str) -> None:
    paths.student_dir.mkdir(parents=True, exist_ok=True)
    student.save_pretrained(str(paths.student_dir))
    tokenizer.save_pretrained(str(paths.student_dir))
    # The transfer set (augment) and the pre-trained start (pretrain, when enabled) made this student too.
    write_lineage(paths, "distill", run_id, "finetune", "augment", "pretrain")


def distill_metrics(
    result: LoopResult,
    task: GlueTask,
    transfer_rows: int,
    pretrained: bool,
    student: PreTrainedModel,
    exports: dict[str, Any],
) -> dict[str, Any]:
    metrics: dict[str, Any] = {
        **training_metrics(result, task.primary_metric),
        "transfer_rows": transfer_rows,
        "mlm_pretrained": pretrained,
        "parameters": count_parameters(student),
    }
    for name, outcome in exports.items():
        metrics[f"export_{name}_{task.primary_metric}"] = outcome["accuracy"]
        metrics[f"export_{name}_agrees"] = outcome["agrees"]
        metrics[f"export_{name}_speedup_vs_fp32"] = outcome["speedup_vs_fp32"]
    return metrics


def check_exports(exports: dict[str, Any], config: DistillParams, task: GlueTask, summary: Path) -> None:
    """An export that disagrees with the fp32 student fails the stage or is a warning, as ``distill.export`` says."""
    disagreeing = [name for name, outcome in exports.items() if not outcome["agrees"]]
    if not disagreeing:
        return
    message = (
        f"exports {', '.join(disagreeing)} differ from the fp32 student by more than "
        f"{config.export.max_accuracy_drop} in dev {task.primary_metric}: see {summary}"
    )
    if config.export.fail_on_disagreement:
        raise ExportMismatchError(message)
    print(f"warning: {message}", file=sys.stderr)


def run(params: Params, paths: Paths) -> dict[str, Any]:
    task = get_task(params.task)
    config = params.distill
    data = load_from_disk(str(paths.tokenized_dir))
    transfer = training_rows(load_from_disk(str(paths.transfer_dir)), config)
    tokenizer = load_tokenizer(str(paths.teacher_dir))
    pad_id = tokenizer.pad_token_id
    teacher = load_classifier(paths.teacher_dir)
    settings = loop_settings(config, task, params)
    held_out = data[HOLDOUT]  # what the student scores itself on; dev is evaluate's alone
    with stage_run("distill", params, paths) as tracked:
        student, pretrained = starting_student(teacher, params, task, paths.student_pretrained_dir)
        needs_teacher = config.hidden_weight > 0 or config.attention_weight > 0
        student, result = distill(
            student,
            teacher if needs_teacher else None,
            transfer,
            split_scorer(task, held_out, params.run.eval_batch_size, pad_id),
            config,
            settings,
            pad_id,
            task.is_regression,
        )
        del teacher
        save_student(paths, student, tokenizer, tracked.run_id)
        exports = export_student(
            student,
            tokenizer,
            held_out,
            task,
            paths.student_dir / EXPORT_DIR,
            config.export,
            params.evaluate.throughput_batch_size,
        )
        summary = paths.student_dir / EXPORT_DIR / "summary.json"
        write_json(summary, exports)
        metrics = distill_metrics(result, task, len(transfer), pretrained, student, exports)
        write_json(paths.metrics_file("distill"), metrics)
        write_curve(paths, "distill", result)
        tracked.log_metrics({k: float(v) for k, v in metrics.items()})
        tracked.log_dict(exports, "export_summary.json")
        log_history(tracked, result)
        check_exports(exports, config, task, summary)
    return {"metrics": metrics, "exports": exports}


class ExportMismatchError(RuntimeError):
    """An exported student scores differently from the fp32 one by more than the allowed margin."""
