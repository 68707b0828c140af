"""finetune: train the teacher (a pre-trained BERT with a fresh head) on the tokenized training split.

Runs on CPU here and on CUDA with bf16/fp16 autocast when present; under ``torchrun`` it trains with DDP
(docs/finetune.md has the command) and only rank 0 writes outputs and talks to MLflow. Checkpoints go to
``checkpoints/teacher``: a rerun after a kill resumes from the last one, verified by checksums. A checkpoint
written by other code, teacher weights, data, settings or library versions is set aside with a message that
names the difference, and training starts afresh instead of resuming a stale run.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset, load_from_disk
from transformers import PreTrainedModel

from distilflow.config.params import Params
from distilflow.config.training_params import FinetuneParams
from distilflow.data.holdout import HOLDOUT
from distilflow.models.devices import barrier, choose_device, distributed, init_distributed, seed_everything
from distilflow.models.loading import (
    centre_regression_head,
    count_parameters,
    load_teacher_for_finetuning,
    load_tokenizer,
    resolve_teacher,
)
from distilflow.paths import Paths
from distilflow.tasks import GlueTask, get_task
from distilflow.tracking.runs import StageRun, stage_run, write_json, write_lineage
from distilflow.training.checkpoints import folder_digest, load_model, save_model, saved_record, source_digest
from distilflow.training.checkpoints import prepare as prepare_checkpoints
from distilflow.training.curves import log_history, write_curve
from distilflow.training.loop import EvalFn, LoopResult, LoopSettings, schedule_fingerprint, train
from distilflow.training.scorer import split_scorer
from distilflow.training.search import Report, SearchResult, log_search, reporting, run_search, trial_steps
from distilflow.training.summary import training_metrics


def supervised_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    loss: torch.Tensor = model(**batch).loss
    return loss


def freeze_word_embeddings(model: torch.nn.Module) -> int:
    """Stop training the token embedding table; returns how many parameters that freezes.

    It is half of MiniLM's weights but only the rows of the batch's tokens get a gradient, so on a CPU its
    dense AdamW update costs as much as the whole forward and backward pass of a short-sentence batch.
    """
    embeddings = model.get_input_embeddings()  # type: ignore[operator]
    weight: torch.nn.Parameter = embeddings.weight
    weight.requires_grad_(False)
    return weight.numel()


def seed_of(params: Params, seed: int | None) -> int:
    return params.seed if seed is None else seed


def fingerprint(
    params: Params,
    data_hash: str,
    compute: dict[str, Any],
    config: FinetuneParams | None = None,
    seed: int | None = None,
) -> dict[str, Any]:
    """Everything a resumed run must share with the run that wrote the checkpoint it resumes.

    ``compute`` (training.schedule_fingerprint) holds ``run.device`` and ``run.precision`` as resolved on this
    machine, not the words they were written as (``auto`` means another thing on another machine); the ``finetune``
    settings are the section as it was before those two moved out of it, so a checkpoint written then resumes."""
    import transformers

    teacher = resolve_teacher(params.model.teacher)
    written = (config or params.finetune).model_dump()  # a search's choice included: the run trains with it
    return {
        # this stage and what it imports, not whatever else the process has loaded (the CLI, the warm host)
        "code": source_digest("distilflow.stages.finetune"),
        "teacher_weights": folder_digest(Path(teacher)) if Path(teacher).is_dir() else teacher,
        "data": data_hash,
        "settings": {
            "finetune": written,
            "teacher": params.model.teacher,
            "seed": seed_of(params, seed),
        },
        "libraries": {"torch": torch.__version__, "transformers": transformers.__version__},
        "compute": compute,
    }


SET_BY_TRIALS = {"learning_rate", "epochs", "pooling", "checkpoint_every"}  # the choice, or unused by trials


def search_fingerprint(params: Params, data_hash: str, compute: dict[str, Any]) -> dict[str, Any]:
    """What the search's journal must share with the rerun that reads it back: as :func:`fingerprint`, less the
    settings each trial sets for itself (changing them as written changes no trial), plus Optuna's version."""
    import optuna

    found = fingerprint(params, data_hash, compute)
    found["settings"]["finetune"] = params.finetune.model_dump(exclude=SET_BY_TRIALS)
    found["libraries"]["optuna"] = optuna.__version__
    return found


@contextlib.contextmanager
def _tracked_on_rank0(rank: int, params: Params, paths: Paths) -> Iterator[StageRun | None]:
    """One MLflow run per stage, not one per process: the other ranks train without tracking."""
    if rank != 0:
        yield None
        return
    with stage_run("finetune", params, paths) as tracked:
        yield tracked


def loop_settings(params: Params, config: FinetuneParams | None = None, seed: int | None = None) -> LoopSettings:
    """``config``: the finetune settings to train with (default: params.yaml's; a search trial's or choice's);
    ``seed``: params.yaml's unless a search chose a restart."""
    config = config or params.finetune
    return LoopSettings.from_params(
        config,
        get_task(params.task).primary_metric,
        seed_of(params, seed),
        grad_accum_steps=config.grad_accum_steps,
        checkpoint_every=config.checkpoint_every,
        device=params.run.device,
        precision=params.run.precision,
    )


def fresh_teacher(
    params: Params, task: GlueTask, train_split: Dataset, config: FinetuneParams | None = None, seed: int | None = None
) -> PreTrainedModel:
    """The pre-trained teacher with a new head for ``task``, the same head in every run of a seed; ``config`` and
    ``seed`` as loop_settings."""
    config = config or params.finetune
    # The fresh classification head is drawn from torch's generator: seed it, or two runs start apart.
    seed_everything(seed_of(params, seed))
    model = load_teacher_for_finetuning(params.model.teacher, task, config.pooling)
    if task.is_regression:
        centre_regression_head(model, train_split["labels"])
    if config.freeze_embeddings:
        freeze_word_embeddings(model)
    return model


def publish(
    tracked: StageRun,
    paths: Paths,
    model: PreTrainedModel,
    tokenizer: Any,
    result: LoopResult,
    world: int,
    task: GlueTask,
    search: SearchResult | None = None,
    trial_kept: bool = False,
) -> dict[str, Any]:
    """Rank 0's outputs: models/teacher, its lineage, metrics/finetune.json, the curves, the MLflow run."""
    paths.teacher_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(paths.teacher_dir))  # safetensors by default
    tokenizer.save_pretrained(str(paths.teacher_dir))
    write_lineage(paths, "finetune", tracked.run_id, "tokenize")
    metrics: dict[str, Any] = {
        **training_metrics(result, task.primary_metric),
        "resumed_from_step": result.resumed_from_step,
        **(search.summary("") if search is not None else {}),
        **({"search_trial_kept": trial_kept} if search is not None else {}),
        "parameters": count_parameters(model),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "world_size": world,
    }
    write_json(paths.metrics_file("finetune"), metrics)
    write_curve(paths, "finetune", result)
    tracked.log_metrics(metrics)
    log_history(tracked, result)
    return metrics


@dataclass
class KeptTrial:
    """A full-length trial (``trial_share`` 1): the very run the choice would train again, weights and record."""

    choice: dict[str, Any]
    model: PreTrainedModel
    result: LoopResult


def search_settings(
    params: Params, task: GlueTask, data: Any, score: EvalFn, pad_id: int, folder: Path | None = None
) -> tuple[SearchResult, KeptTrial | None]:
    """The selection protocol (training.search): Optuna trials of the teacher, each scored on the held-out slice,
    choose ``learning_rate``, ``epochs`` and ``pooling`` (and a ``restart``, an offset to ``seed``, when
    ``search.restarts`` > 1); dev is not read. When each trial is a whole run (``trial_share`` 1), the best one's
    model is kept: the final run would train the same settings on the same rows again.

    ``folder`` (one process only; under DDP every trial starts afresh): the search's journal, and the kept model
    saved as it improves, so a rerun after a kill goes on from the last finished trial."""
    config, train_rows = params.finetune, data["train"]
    full_length = config.search.trial_share >= 1
    keep = full_length and folder is not None
    kept: list[KeptTrial] = []  # the best completed trial so far, when trials are full length
    on_disk = saved_record(folder / "kept") if keep and folder is not None else None
    best_kept = on_disk["result"]["best_metric"] if on_disk else None  # an interrupted attempt's best

    def steps_of(choice: dict[str, Any]) -> int:
        share, epochs = config.search.trial_share, choice["epochs"]
        return trial_steps(len(train_rows), config.batch_size, config.grad_accum_steps, epochs, share, config.max_steps)

    def run_trial(choice: dict[str, Any], report: Report) -> float:
        nonlocal best_kept
        trial, seed = with_choice(params, choice)
        if not full_length:  # a whole run's trial trains exactly as the final run would
            trial = trial.model_copy(update={"max_steps": steps_of(choice)})
        model = fresh_teacher(params, task, train_rows, trial, seed)
        settings = loop_settings(params, trial, seed)
        scored = reporting(score, task.primary_metric, report)
        _, result = train(model, train_rows, supervised_loss, scored, settings, pad_id, task.is_regression)
        better = math.isfinite(result.best_metric) and (best_kept is None or result.best_metric > best_kept)
        if keep and folder is not None and better:  # ties: the first
            kept[:] = [KeptTrial(dict(choice), model, result)]
            best_kept = result.best_metric
            save_model(folder / "kept", model, {"choice": choice, "result": asdict(result)})
        return result.best_metric

    space: dict[str, list[Any]] = {
        "learning_rate": config.search.learning_rates,
        "epochs": config.search.epochs,
        "pooling": config.search.poolings,
    }
    if config.search.restarts > 1:
        space["restart"] = list(range(config.search.restarts))
    evaluations = steps_of({"epochs": min(config.search.epochs)}) // config.eval_every
    journal = folder / "trials.journal" if folder is not None else None
    search = run_search(space, run_trial, config.search.trials, params.seed, True, evaluations, journal)
    chosen = next((trial for trial in kept if trial.choice == search.chosen), None)
    if chosen is None and keep and folder is not None:
        chosen = _kept_before(params, task, train_rows, folder, search.chosen)
    return search, chosen


def _kept_before(
    params: Params, task: GlueTask, train_rows: Any, folder: Path, choice: dict[str, Any]
) -> KeptTrial | None:
    """The chosen trial's model as an interrupted attempt kept it, or None (then the final run trains it again)."""
    saved = load_model(folder / "kept")
    if saved is None or saved[1]["choice"] != choice:
        return None
    config, seed = with_choice(params, choice)
    model = fresh_teacher(params, task, train_rows, config, seed)
    model.load_state_dict(saved[0])
    return KeptTrial(dict(choice), model, LoopResult(**saved[1]["result"]))


def with_choice(params: Params, choice: dict[str, Any]) -> tuple[FinetuneParams, int]:
    """The finetune settings and the seed a search's ``choice`` trains with."""
    settings = {name: value for name, value in choice.items() if name != "restart"}
    return params.finetune.model_copy(update=settings), params.seed + int(choice.get("restart", 0))


def release_checkpoints(rank: int, world: int, *checkpoints: Path) -> None:
    barrier()  # every rank is done with the checkpoints before rank 0 removes them
    if rank == 0:
        for folder in checkpoints:  # the run finished; models/teacher holds the result
            shutil.rmtree(folder, ignore_errors=True)
    if world > 1:
        torch.distributed.destroy_process_group()


def run(params: Params, paths: Paths) -> dict[str, Any]:
    task = get_task(params.task)
    # Join the process group first (under torchrun) so each process knows whether it is rank 0.
    init_distributed(choose_device(params.run.device))
    rank, world = distributed()
    data = load_from_disk(str(paths.tokenized_dir))
    tokenizer = load_tokenizer(str(paths.tokenized_dir / "tokenizer"))
    data_hash = json.loads(paths.tokenized_meta_file.read_text())["content_hash"]
    checkpoints = paths.teacher_checkpoints_dir
    pad_id = tokenizer.pad_token_id
    score_held_out = split_scorer(task, data[HOLDOUT], params.run.eval_batch_size, pad_id)  # dev is evaluate's alone
    metrics: dict[str, Any] = {}
    with _tracked_on_rank0(rank, params, paths) as tracked:
        search, kept = (None, None)
        if params.finetune.search.trials:
            # Under DDP the trials keep no journal and the final run trains again, checkpointed: no trial's model
            # is kept.
            folder = paths.teacher_search_dir if world == 1 else None
            if folder is not None:
                compute = schedule_fingerprint(loop_settings(params), world)
                prepare_checkpoints(folder, search_fingerprint(params, data_hash, compute))  # another's: set aside
            search, kept = search_settings(params, task, data, score_held_out, pad_id, folder)
        config, seed = with_choice(params, search.chosen if search else {})
        if kept is not None:
            print("finetune: the chosen trial was a whole run on these rows: kept, not trained again", flush=True)
            model, result = kept.model, kept.result
        else:
            settings = loop_settings(params, config, seed)
            if rank == 0:
                compute = schedule_fingerprint(settings, world)
                prepare_checkpoints(checkpoints, fingerprint(params, data_hash, compute, config, seed))
            barrier()
            model = fresh_teacher(params, task, data["train"], config, seed)
            trained, result = train(
                model,
                data["train"],
                supervised_loss,
                score_held_out,
                settings,
                pad_id,
                task.is_regression,
                checkpoint_dir=checkpoints,
                description="finetune teacher",
            )
            assert trained is model  # trained in place, best weights loaded
        if tracked is not None:
            if search is not None:
                log_search(tracked, search)
            metrics = publish(tracked, paths, model, tokenizer, result, world, task, search, kept is not None)
    release_checkpoints(rank, world, checkpoints, paths.teacher_search_dir)
    return {"metrics": metrics}
