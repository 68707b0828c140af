"""distill: train BERT-tiny to match the fine-tuned teacher.

The teacher's logits on the training set are computed once, before the loop, and travel with each batch,
so the (much larger) teacher never runs inside the training loop.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from datasets import Dataset, load_from_disk

from distilflow.config import DistillParams, Params
from distilflow.modeling import build_student, count_parameters, load_classifier, load_tokenizer
from distilflow.paths import Paths
from distilflow.stages.finetune import dev_scorer, log_history, write_curve
from distilflow.tasks import get_task
from distilflow.tracking import read_lineage, stage_run, write_json, write_lineage
from distilflow.training import LoopSettings, LossFn, predict_logits, train

SECTIONS = ("distill",)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
            temperature: float, alpha: float, regression: bool) -> torch.Tensor:
    """Hinton et al.'s loss: alpha * T² * KL(teacher_T || student_T) + (1 - alpha) * CE(gold).

    The T² factor keeps the soft-target gradients on the same scale whatever the temperature.
    Regression tasks have no distribution to soften: MSE to the teacher's score and to the gold score.
    """
    if regression:
        soft = F.mse_loss(student_logits.squeeze(-1), teacher_logits.squeeze(-1))
        hard = F.mse_loss(student_logits.squeeze(-1), labels)
        return alpha * soft + (1 - alpha) * hard
    soft = F.kl_div(
        F.log_softmax(student_logits / temperature, dim=-1),
        F.log_softmax(teacher_logits / temperature, dim=-1),
        reduction="batchmean",
        log_target=True,
    ) * temperature**2
    hard = F.cross_entropy(student_logits, labels)
    return alpha * soft + (1 - alpha) * hard


def distillation_loss(config: DistillParams, regression: bool) -> LossFn:
    def loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = {k: v for k, v in batch.items() if k not in ("labels", "teacher_logits")}
        logits = model(**inputs).logits
        return kd_loss(logits.float(), batch["teacher_logits"], batch["labels"], config.temperature, config.alpha,
                       regression)

    return loss


def with_teacher_logits(train_set: Dataset, teacher: torch.nn.Module, pad_id: int, batch_size: int) -> Dataset:
    logits = predict_logits(teacher, train_set, batch_size, pad_id)
    return train_set.add_column("teacher_logits", logits.tolist())


def run(params: Params, paths: Paths) -> dict[str, Any]:
    task = get_task(params.task)
    config = params.distill
    data = load_from_disk(str(paths.tokenized_dir))
    tokenizer = load_tokenizer(str(paths.teacher_dir))
    pad_id = tokenizer.pad_token_id
    teacher = load_classifier(paths.teacher_dir)
    settings = LoopSettings(
        epochs=config.epochs, batch_size=config.batch_size, learning_rate=config.learning_rate,
        weight_decay=config.weight_decay, warmup_ratio=config.warmup_ratio, max_grad_norm=config.max_grad_norm,
        eval_every=config.eval_every, early_stopping_patience=config.early_stopping_patience,
        primary_metric=task.primary_metric, seed=params.seed, max_steps=config.max_steps,
        device=params.finetune.device, precision=params.finetune.precision,
    )
    with stage_run("distill", params, paths, SECTIONS) as tracked:
        train_set = with_teacher_logits(data["train"], teacher, pad_id, params.finetune.eval_batch_size)
        student = build_student(teacher, config.student, task, params.seed)
        del teacher
        dev = data[task.dev_splits[0]]
        student, result = train(
            student, train_set, distillation_loss(config, task.is_regression),
            dev_scorer(task, dev, params.finetune.eval_batch_size, pad_id), settings, pad_id, task.is_regression,
            description="distill student",
        )
        paths.student_dir.mkdir(parents=True, exist_ok=True)
        student.save_pretrained(str(paths.student_dir))
        tokenizer.save_pretrained(str(paths.student_dir))
        write_lineage(paths.student_dir, {**read_lineage(paths.teacher_dir), "distill": tracked.run_id})
        metrics = {
            f"best_dev_{task.primary_metric}": result.best_metric,
            "best_step": result.best_step,
            "steps": result.steps,
            "train_samples_per_s": result.samples_per_s,
            "train_seconds": result.train_seconds,
            "parameters": count_parameters(student),
        }
        write_json(paths.metrics_file("distill"), metrics)
        write_curve(paths, "distill", result)
        tracked.log_metrics(metrics)
        log_history(tracked, result)
    return {"metrics": metrics}
