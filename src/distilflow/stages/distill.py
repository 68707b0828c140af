"""distill: train BERT-tiny to match the fine-tuned teacher, then export it (int8, ONNX) and check the exports.

Soft targets come from the transfer set (``data/transfer``, the augment stage): the teacher's logits on the
training split and its rewrites, computed once. The teacher runs inside the loop only when an
intermediate-layer loss (TinyBERT's hidden-state or attention loss) is switched on, since those need its
hidden states, which are too large to cache. The starting point is ``distill.student.init``, replaced
by the MLM-pre-trained encoder when the pretrain stage ran. With ``distill.search.trials`` set, short distillations
scored on the held-out slice of train choose the learning rate, temperature, alpha and starting point first
(training.search, as finetune's teacher search does). The method itself is training.distillation's.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from datasets import Dataset, load_from_disk
from transformers import PreTrainedModel

from distilflow.config.params import Params
from distilflow.config.training_params import DistillParams
from distilflow.data.holdout import HOLDOUT
from distilflow.export.student import export_student
from distilflow.models.loading import (
    build_student,
    count_parameters,
    load_classifier,
    load_pretrained_encoder,
    load_tokenizer,
)
from distilflow.paths import Paths
from distilflow.tasks import GlueTask, get_task
from distilflow.tracking.runs import stage_run, write_json, write_lineage
from distilflow.training.checkpoints import folder_digest, source_digest
from distilflow.training.checkpoints import prepare as prepare_checkpoints
from distilflow.training.curves import log_history, write_curve
from distilflow.training.distillation import distill
from distilflow.training.loop import EvalFn, LoopResult, LoopSettings, schedule_fingerprint
from distilflow.training.pretrained import read_summary
from distilflow.training.scorer import split_scorer
from distilflow.training.search import Report, SearchResult, log_search, reporting, run_search, trial_steps
from distilflow.training.summary import training_metrics

EXPORT_DIR = "export"


def loop_settings(config: DistillParams, task: GlueTask, params: Params) -> LoopSettings:
    return LoopSettings.from_params(
        config, task.primary_metric, params.seed, device=params.run.device, precision=params.run.precision
    )


def training_rows(transfer: Dataset, config: DistillParams) -> Dataset:
    if config.augmented:
        return transfer
    return transfer.filter(lambda flags: [not flag for flag in flags], input_columns="augmented", batched=True)


def starting_student(
    teacher: PreTrainedModel, config: DistillParams, task: GlueTask, seed: int, pretrained: Path
) -> tuple[PreTrainedModel, bool]:
    """The student from ``distill.student.init``, with the MLM-pre-trained encoder when the pretrain stage ran."""
    student = build_student(teacher, config.student, task, seed)
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


def train_student(
    params: Params,
    config: DistillParams,
    teacher: PreTrainedModel,
    transfer: Dataset,
    score: EvalFn,
    paths: Paths,
    pad_id: int,
    description: str = "distill student",
) -> tuple[PreTrainedModel, LoopResult, bool]:
    """One student trained with ``config`` (params.yaml's distill, or a search trial's); also: whether it started
    from the pretrain stage's encoder."""
    task = get_task(params.task)
    student, pretrained = starting_student(teacher, config, task, params.seed, paths.student_pretrained_dir)
    needs_teacher = config.hidden_weight > 0 or config.attention_weight > 0
    settings = loop_settings(config, task, params)
    student, result = distill(
        student,
        teacher if needs_teacher else None,
        transfer,
        score,
        config,
        settings,
        pad_id,
        task.is_regression,
        description,
    )
    return student, result, pretrained


def with_choice(config: DistillParams, choice: dict[str, Any], max_steps: int | None = None) -> DistillParams:
    """``config`` with a search's values (``init`` belongs to distill.student)."""
    update = {name: value for name, value in choice.items() if name != "init"}
    if "init" in choice:
        update["student"] = config.student.model_copy(update={"init": choice["init"]})
    if max_steps is not None:
        update["max_steps"] = max_steps
    return config.model_copy(update=update)


def search_fingerprint(params: Params, paths: Paths) -> dict[str, Any]:
    """Everything a student search's journal must share with the rerun that reads it back: this stage's code, the
    teacher, the transfer set, the held-out rows, the pre-trained start, the settings, libraries and compute."""
    import optuna
    import torch
    import transformers

    pretrained = paths.student_pretrained_dir
    # Each trial sets these itself, and export comes after the search: changing them as written changes no trial.
    searched: dict[str, Any] = {
        "learning_rate": True,
        "temperature": True,
        "alpha": True,
        "student": {"init"},
        "export": True,
    }
    return {
        "code": source_digest("distilflow.stages.distill"),
        "teacher_weights": folder_digest(paths.teacher_dir),
        "transfer": folder_digest(paths.transfer_dir, "*.arrow"),
        "data": json.loads(paths.tokenized_meta_file.read_text())["content_hash"],
        "pretrained": folder_digest(pretrained) if pretrained.is_dir() else None,
        "settings": {"distill": params.distill.model_dump(exclude=searched), "seed": params.seed},
        "libraries": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "optuna": optuna.__version__,
        },
        "compute": schedule_fingerprint(loop_settings(params.distill, get_task(params.task), params), 1),
    }


def search_student(
    params: Params, teacher: PreTrainedModel, transfer: Dataset, score: EvalFn, paths: Paths, pad_id: int
) -> SearchResult:
    """The selection protocol for the student (training.search): short distillations, each scored on the held-out
    slice, choose its learning rate, temperature, alpha and starting point; dev is not read. Finished trials are
    journaled in ``paths.student_search_dir`` (fingerprinted): a rerun after a kill goes on from them."""
    config, task = params.distill, get_task(params.task)
    prepare_checkpoints(paths.student_search_dir, search_fingerprint(params, paths))  # another run's: set aside
    search = config.search
    steps = trial_steps(len(transfer), config.batch_size, 1, config.epochs, search.trial_share, config.max_steps)

    def run_trial(choice: dict[str, Any], report: Report) -> float:
        trial = with_choice(config, choice, steps)
        scored = reporting(score, task.primary_metric, report)
        _, result, _ = train_student(params, trial, teacher, transfer, scored, paths, pad_id, "distill trial")
        return result.best_metric

    space: dict[str, list[Any]] = {
        "learning_rate": search.learning_rates,
        "temperature": search.temperatures,
        "alpha": search.alphas,
        "init": search.inits,
    }
    journal = paths.student_search_dir / "trials.journal"
    return run_search(space, run_trial, search.trials, params.seed, True, steps // config.eval_every, journal)


def run(params: Params, paths: Paths) -> dict[str, Any]:
    task = get_task(params.task)
    data = load_from_disk(str(paths.tokenized_dir))
    transfer = training_rows(load_from_disk(str(paths.transfer_dir)), params.distill)
    tokenizer = load_tokenizer(str(paths.teacher_dir))
    teacher = load_classifier(paths.teacher_dir)
    held_out = data[HOLDOUT]  # what the student scores itself on; dev is evaluate's alone
    pad_id = tokenizer.pad_token_id
    score = split_scorer(task, held_out, params.run.eval_batch_size, pad_id)
    with stage_run("distill", params, paths) as tracked:
        searching = params.distill.search.trials > 0
        search = search_student(params, teacher, transfer, score, paths, pad_id) if searching else None
        config = with_choice(params.distill, search.chosen) if search else params.distill
        student, result, pretrained = train_student(params, config, teacher, transfer, score, paths, pad_id)
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
        metrics.update(search.summary("") if search is not None else {})
        write_json(paths.metrics_file("distill"), metrics)
        write_curve(paths, "distill", result)
        tracked.log_metrics(metrics)
        if search is not None:
            log_search(tracked, search)
        tracked.log_dict(exports, "export_summary.json")
        log_history(tracked, result)
        check_exports(exports, config, task, summary)
    shutil.rmtree(paths.student_search_dir, ignore_errors=True)  # the stage finished: no rerun will read it
    return {"metrics": metrics, "exports": exports}


class ExportMismatchError(RuntimeError):
    """An exported student scores differently from the fp32 one by more than the allowed margin."""
