"""The training loop shared by fine-tuning and distillation: readable in one screen, no wrapper framework.

What it does, in order: pick the device and precision, build AdamW (no decay on bias/LayerNorm) with
linear warmup/decay, then loop over length-grouped batches with gradient accumulation and clipping,
evaluate every ``eval_every`` steps, keep the best weights, stop early, and checkpoint every
``checkpoint_every`` steps so a killed run resumes exactly where it was.
Under ``torchrun`` the model is wrapped in DistributedDataParallel and each rank takes its share of batches.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from safetensors.torch import load_file

from distilflow.config.training_params import TrainingParams
from distilflow.models.batching import Collator, Columns, LengthGroupedBatches
from distilflow.models.devices import (
    barrier,
    choose_device,
    choose_dtype,
    distributed,
    init_distributed,
    resolved_compute,
    seed_everything,
)
from distilflow.runtime.progress import progress_bar
from distilflow.training.checkpoints import _cpu_state, _readable, load_checkpoint, save_best, save_checkpoint

LossFn = Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor]
EvalFn = Callable[[torch.nn.Module], dict[str, float]]
# The key prefix of what each evaluation scores: the held-out slice of train (data.holdout), never dev.
SCORED_PREFIX = "heldout_"


@dataclass(frozen=True)
class LoopSettings:
    epochs: float
    batch_size: int
    learning_rate: float
    weight_decay: float
    warmup_ratio: float
    max_grad_norm: float
    eval_every: int
    early_stopping_patience: int
    primary_metric: str
    seed: int
    grad_accum_steps: int = 1
    max_steps: int | None = None
    checkpoint_every: int | None = None
    device: str = "auto"
    precision: str = "auto"
    greater_is_better: bool = True
    # Speed levers (docs/finetune.md has the ablation that chose these defaults).
    optimizer: str = "auto"  # auto | foreach | fused | loop
    exact_length_batches: bool = False  # batches of one length only, so no padding (leftovers padded)
    drop_full_mask: bool = False  # no attention mask on a batch without padding
    lazy_loss: bool = False  # read the step losses at evaluations/checkpoints, not every step

    @classmethod
    def from_params(cls, config: TrainingParams, primary_metric: str, seed: int, **extra: Any) -> LoopSettings:
        """The shared optimisation fields of a params section, plus the loop's own (device, checkpoints, ...)."""
        shared = {name: getattr(config, name) for name in TrainingParams.model_fields}
        return cls(**shared, primary_metric=primary_metric, seed=seed, **extra)


def schedule_fingerprint(settings: LoopSettings, world_size: int) -> dict[str, Any]:
    """What the optimisation schedule depends on beyond the settings as written, for a resume's fingerprint.

    ``device``/``precision: auto`` resolve differently on another machine, and the world size (torchrun's process
    count) multiplies the examples per optimizer step: the same settings on other hardware train differently.
    """
    return {
        **resolved_compute(settings.device, settings.precision),
        "world_size": world_size,
        "examples_per_step": settings.batch_size * world_size * settings.grad_accum_steps,
    }


@dataclass
class LoopResult:
    best_metric: float
    best_step: int
    steps: int
    samples: int
    train_seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from_step: int = 0

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.train_seconds if self.train_seconds > 0 else 0.0


def optimizer_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices only: decaying biases and LayerNorm gains just hurts (BERT's recipe)."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if parameter.ndim < 2 or "LayerNorm" in name or "bias" in name else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def linear_schedule(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _cycle(
    columns: Columns, sampler: LengthGroupedBatches, collate: Collator, start_epoch: int, skip: int
) -> Iterator[tuple[int, int, dict[str, torch.Tensor]]]:
    """(epoch, batch index, batch) forever; on resume the first ``skip`` batches of the epoch are not loaded."""
    epoch = start_epoch
    while True:
        batches = sampler.batches(epoch)
        for index in range(skip, len(batches)):
            yield epoch, index, collate.columns(columns.take(batches[index]))
        skip = 0
        epoch += 1


@dataclass
class RunState:
    """Where a run stands: what a checkpoint saves (``state.json``'s ``progress``) and a resumed run continues from."""

    step: int = 0
    # The next batch to draw, so a resumed run continues with exactly that batch.
    epoch: int = 0
    batch: int = 0
    best: float | None = None
    best_step: int = 0
    bad_evals: int = 0  # evaluations since the best one, for early stopping
    samples: int = 0
    seconds: float = 0.0  # training time only: evaluations and checkpoints are left out
    history: list[dict[str, float]] = field(default_factory=list)

    @classmethod
    def from_checkpoint(cls, progress: dict[str, Any]) -> RunState:
        """The state a checkpoint recorded (its keys are these fields' names)."""
        return cls(**progress)

    def to_checkpoint(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Run:
    """What one call of :func:`train` works with, built once by :func:`_setup`."""

    model: torch.nn.Module
    net: torch.nn.Module  # the model, or its DistributedDataParallel wrapper
    device: torch.device
    dtype: torch.dtype | None
    rank: int
    world: int
    batches_per_epoch: int
    total: int
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    sampler: LengthGroupedBatches


def build_optimizer(model: torch.nn.Module, settings: LoopSettings, device: torch.device) -> torch.optim.AdamW:
    """AdamW; "auto": fused kernels on CUDA, foreach (one kernel per op over all tensors) on CPU."""
    implementation = settings.optimizer
    if implementation == "auto":
        implementation = "fused" if device.type == "cuda" else "foreach"
    return torch.optim.AdamW(
        optimizer_groups(model, settings.weight_decay),
        lr=settings.learning_rate,
        fused=True if implementation == "fused" else None,
        foreach=True if implementation == "foreach" else (False if implementation == "loop" else None),
    )


def _setup(model: torch.nn.Module, train_set: Dataset, settings: LoopSettings) -> _Run:
    device = choose_device(settings.device)
    init_distributed(device)
    rank, world = distributed()
    # Every rank starts from the same weights (the caller seeded the model's construction); dropout then
    # differs per rank, as it would on one device seeing the whole batch.
    seed_everything(settings.seed + rank)
    dtype = choose_dtype(device, settings.precision)
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32 matmuls on Ampere and later
        torch.backends.cudnn.allow_tf32 = True
    model.to(device)
    net: torch.nn.Module = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    sampler = LengthGroupedBatches(
        train_set["length"],
        settings.batch_size,
        settings.seed,
        rank=rank,
        world_size=world,
        exact=settings.exact_length_batches,
    )
    batches_per_epoch = len(sampler)
    steps_per_epoch = max(1, batches_per_epoch // settings.grad_accum_steps)
    total = settings.max_steps or max(1, math.ceil(settings.epochs * steps_per_epoch))
    optimizer = build_optimizer(model, settings, device)
    scheduler = linear_schedule(optimizer, int(settings.warmup_ratio * total), total)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    return _Run(model, net, device, dtype, rank, world, batches_per_epoch, total, optimizer, scheduler, scaler, sampler)


def _resume(run: _Run, checkpoint_dir: Path | None) -> tuple[RunState, dict[str, torch.Tensor] | None]:
    """The state to continue from (a fresh one without a checkpoint) and the best weights so far."""
    state = RunState()
    last = _readable(checkpoint_dir / "last") if checkpoint_dir else None
    if last is not None:
        state = RunState.from_checkpoint(load_checkpoint(last, run.model, run.optimizer, run.scheduler, run.scaler))
    best_dir = checkpoint_dir / "best" if checkpoint_dir else None
    best_saved = _readable(best_dir) if best_dir is not None and state.step else None
    # It may be newer than the checkpoint; the replayed steps then rewrite it with the same weights.
    return state, load_file(best_saved / "model.safetensors") if best_saved is not None else None


def _optimizer_step(
    run: _Run,
    batches: Iterator[tuple[int, int, dict[str, torch.Tensor]]],
    loss_fn: LossFn,
    settings: LoopSettings,
    state: RunState,
) -> torch.Tensor:
    """One optimizer step over ``grad_accum_steps`` micro-batches; returns the last one's (scaled) loss tensor."""
    pin = run.device.type == "cuda"
    for micro in range(settings.grad_accum_steps):
        epoch, index, batch = next(batches)
        # Pinned host memory lets the copy to the GPU overlap with compute.
        batch = {k: (v.pin_memory() if pin else v).to(run.device, non_blocking=True) for k, v in batch.items()}
        # Under DDP, all-reduce only on the last micro-batch: the gradients just add up until then.
        last_micro = micro == settings.grad_accum_steps - 1
        sync = contextlib.nullcontext() if run.world == 1 or last_micro else run.net.no_sync()  # type: ignore[operator]
        with sync:
            with torch.autocast(run.device.type, dtype=run.dtype or torch.float32, enabled=run.dtype is not None):
                loss = loss_fn(run.net, batch) / settings.grad_accum_steps
            run.scaler.scale(loss).backward()
        state.samples += len(batch["input_ids"]) * run.world
    run.scaler.unscale_(run.optimizer)
    torch.nn.utils.clip_grad_norm_(run.model.parameters(), settings.max_grad_norm)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    run.scheduler.step()
    state.step += 1
    done = index + 1 >= run.batches_per_epoch
    state.epoch, state.batch = (epoch + 1, 0) if done else (epoch, index + 1)
    return loss.detach()


def _evaluate(
    run: _Run,
    eval_fn: EvalFn,
    settings: LoopSettings,
    state: RunState,
    point: dict[str, float],
    best_dir: Path | None,
) -> tuple[dict[str, torch.Tensor] | None, bool]:
    """Score the held-out slice, add the scores to ``point``; returns (new best weights or None, whether to stop
    early)."""
    run.net.eval()
    scores = eval_fn(run.model)
    run.net.train()
    point.update({f"{SCORED_PREFIX}{k}": v for k, v in scores.items()})
    metric = scores[settings.primary_metric]
    sign = 1.0 if settings.greater_is_better else -1.0
    if math.isfinite(metric) and (state.best is None or sign * metric > sign * state.best):  # a NaN beats nothing
        state.best, state.best_step, state.bad_evals = metric, state.step, 0
        best_weights = {k: v.clone() for k, v in _cpu_state(run.model).items()}  # .cpu() of a CPU tensor aliases
        if best_dir is not None and run.rank == 0:
            save_best(best_dir, best_weights, state.step, metric)
        return best_weights, False
    state.bad_evals += 1
    patience = settings.early_stopping_patience
    return None, patience > 0 and state.bad_evals >= patience


class _Losses:
    """Per-step losses kept as tensors and read in one go (one host sync) when they are needed."""

    def __init__(self, scale: int) -> None:
        self.scale = scale  # undoes the division by grad_accum_steps
        self.pending: list[tuple[dict[str, float], torch.Tensor]] = []

    def add(self, point: dict[str, float], loss: torch.Tensor) -> None:
        self.pending.append((point, loss))

    def flush(self) -> None:
        if self.pending:
            values = torch.stack([loss for _, loss in self.pending]).float().tolist()
            for (point, _), value in zip(self.pending, values, strict=True):
                point["train_loss"] = value * self.scale
            self.pending.clear()


def _log_step(
    run: _Run, loss: torch.Tensor, state: RunState, settings: LoopSettings, bar: Any, losses: _Losses
) -> dict[str, float]:
    """The history point of the step just taken; its train_loss is read now, or later when ``lazy_loss``."""
    point: dict[str, float] = {
        "step": state.step,
        "train_loss": float("nan"),
        "learning_rate": float(run.scheduler.get_last_lr()[0]),
        "samples_per_s": state.samples / state.seconds,
    }
    bar.update(1)
    if settings.lazy_loss:
        losses.add(point, loss)
        bar.set_postfix(samples_s=f"{point['samples_per_s']:.1f}", refresh=False)
    else:
        point["train_loss"] = loss.item() * settings.grad_accum_steps
        bar.set_postfix(loss=f"{point['train_loss']:.4f}", samples_s=f"{point['samples_per_s']:.1f}")
    return point


def train(
    model: torch.nn.Module,
    train_set: Dataset,
    loss_fn: LossFn,
    eval_fn: EvalFn,
    settings: LoopSettings,
    pad_id: int,
    regression: bool,
    checkpoint_dir: Path | None = None,
    on_eval: Callable[[int, dict[str, float]], None] | None = None,
    description: str = "train",
) -> tuple[torch.nn.Module, LoopResult]:
    """Train ``model`` in place; returns the best weights (by the primary dev metric) and a summary.

    With ``checkpoint_dir`` set, ``checkpoint_dir/last`` holds the state every ``checkpoint_every`` steps and a
    call that finds it there continues from it; the result equals that of an uninterrupted run.
    """
    run = _setup(model, train_set, settings)
    state, best_weights = _resume(run, checkpoint_dir)
    resumed_from = state.step
    best_dir = checkpoint_dir / "best" if checkpoint_dir else None
    collate = Collator(pad_id, regression, mask_if_full=not settings.drop_full_mask)
    batches = _cycle(Columns(train_set), run.sampler, collate, state.epoch, state.batch)
    bar = progress_bar(run.total, state.step, description, disable=run.rank != 0)
    losses = _Losses(settings.grad_accum_steps)
    run.net.train()
    started = time.perf_counter() - state.seconds
    stop = False
    while state.step < run.total and not stop:
        loss = _optimizer_step(run, batches, loss_fn, settings, state)
        state.seconds = time.perf_counter() - started
        point = _log_step(run, loss, state, settings, bar, losses)
        step = state.step
        if step % settings.eval_every == 0 or step == run.total:
            losses.flush()
            new_best, stop = _evaluate(run, eval_fn, settings, state, point, best_dir)
            best_weights = new_best if new_best is not None else best_weights
            if on_eval is not None and run.rank == 0:
                on_eval(step, point)
        state.history.append(point)
        if checkpoint_dir is not None and settings.checkpoint_every and step % settings.checkpoint_every == 0:
            losses.flush()
            if run.rank == 0:
                progress = state.to_checkpoint()
                save_checkpoint(checkpoint_dir / "last", model, run.optimizer, run.scheduler, progress, run.scaler)
            barrier()  # no rank runs ahead of a checkpoint it might have to resume from
        # Evaluation and checkpoints are not training: keep them out of samples/s (the Trainer comparison does too).
        started = time.perf_counter() - state.seconds
    losses.flush()
    bar.close()
    if best_weights is not None:
        model.load_state_dict(best_weights)
    model.to("cpu")
    return model, _result(state, resumed_from)


def _result(state: RunState, resumed_from: int) -> LoopResult:
    return LoopResult(
        best_metric=float(state.best) if state.best is not None else float("nan"),
        best_step=state.best_step,
        steps=state.step,
        samples=state.samples,
        train_seconds=state.seconds,
        history=state.history,
        resumed_from_step=resumed_from,
    )
