"""The parts of scripts/gpu_check.py: each calls the library functions its stage calls, without the stage's MLflow run.

data     SST-2 read strictly and tokenized as the tokenize stage does (bench/common.py read_encoded_split)
tests    pytest -m gpu on tests/gpu (library only) and the finetune stage's GPU test, which skips without MLflow/DVC
compare  our loop against transformers.Trainer with DataCollatorWithPadding + group_by_length (bench/finetune.py)
teacher  the finetune stage's loop (training.train, supervised_loss) on all of SST-2 with its recipe
label    the augment stage's build_transfer_set: rewrites, then the teacher's logits on every row
distill  the distill stage's distill() from distill.student.init on that transfer set
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parents[1]  # scripts/gpu_check.sh puts src/ and bench/ on PYTHONPATH

if TYPE_CHECKING:
    import argparse

    from datasets import Dataset
    from transformers import PreTrainedModel

    from common import Settings
    from distilflow.config.params import Params
    from distilflow.tasks import GlueTask
    from distilflow.training.loop import EvalFn

RECIPE = ROOT / "flows" / "profiles" / "glue" / "sst2.yaml"
INTEGRATION_GPU_TESTS = "tests/integration/test_finetune_gpu.py"
COMPARE_ROWS, COMPARE_ROUNDS = 4096, 2  # 128 steps a run at batch 32: seconds on a GPU, long enough to time
# The dry run: a slice of the data and a few steps of every part, through the same calls.
QUICK_ROWS = {"train": 160, "dev": 48}
QUICK_COMPARE_ROWS, QUICK_COMPARE_ROUNDS = 32, 1
QUICK_CHANGES: dict[str, Any] = {
    "finetune": {"max_steps": 3, "eval_every": 3, "batch_size": 8},
    "augment": {"copies": 1, "max_source_rows": 24, "teacher_batch_size": 32},
    "distill": {"max_steps": 3, "eval_every": 3, "batch_size": 16},
}


@dataclass
class Context:
    """What the parts share: settings, the tokenized data, and what one part leaves for the next."""

    args: argparse.Namespace
    work: Path
    bench: Settings  # bench/finetune.py's pieces read their settings from here
    params: Params
    overrides: dict[str, Any]
    task: GlueTask
    tokenizer: Any
    train: Dataset
    dev: Dataset
    teacher: PreTrainedModel | None = None
    transfer: Dataset | None = None

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra``'s nested keys over ``base``'s (a profile over a recipe)."""
    result = dict(base)
    for key, value in extra.items():
        result[key] = (
            merged(result[key], value) if isinstance(value, dict) and isinstance(result.get(key), dict) else value
        )
    return result


def load_data(args: argparse.Namespace, work: Path, figures: dict[str, Any]) -> Context:
    """params.yaml with the SST-2 recipe, the teacher and device of this run; SST-2 tokenized as the stage does."""
    import yaml

    from common import Settings, changed, read_encoded_split
    from distilflow.config.loading import load_params
    from distilflow.config.params import flatten
    from distilflow.models.loading import load_tokenizer, resolve_teacher
    from distilflow.runtime.process import hub_offline_by_default
    from distilflow.tasks import get_task

    hub_offline_by_default()
    changes = merged(yaml.safe_load(RECIPE.read_text(encoding="utf-8")), {"run": {"device": args.device}})
    changes = merged(changes, {"model": {"teacher": args.teacher}, **(QUICK_CHANGES if args.quick else {})})
    params = changed(load_params(ROOT / "params.yaml"), changes)
    task = get_task("sst2")
    tokenizer = load_tokenizer(resolve_teacher(params.model.teacher))
    splits = {
        split: read_encoded_split(
            task, args.data_dir, split, tokenizer, params.tokenize.max_length, QUICK_ROWS[split] if args.quick else None
        )
        for split in ("train", "dev")
    }
    figures.update(train_rows=len(splits["train"]), dev_rows=len(splits["dev"]))
    figures["train_tokens_mean"] = round(fmean(splits["train"]["length"]), 2)
    bench = Settings("../scripts/gpu_check.py", args, params, flatten(changes), [])
    return Context(args, work, bench, params, flatten(changes), task, tokenizer, splits["train"], splits["dev"])


def watched(score: EvalFn, metric: str, figures: dict[str, Any]) -> EvalFn:
    """The dev scorer, recording each evaluation, so a part stopped by its budget still says how far it got."""

    def evaluate(model: Any) -> dict[str, float]:
        scores = score(model)
        figures.setdefault("dev_evaluations", []).append(round(scores[metric], 4))
        figures["best_dev_so_far"] = max(figures["dev_evaluations"])
        return scores

    return evaluate


def junit_summary(file: Path) -> dict[str, Any]:
    """Passed, failed and skipped tests (with pytest's reason) from a JUnit XML report."""
    outcome: dict[str, Any] = {"passed": [], "failed": [], "skipped": []}
    if not file.is_file():
        return outcome
    for case in ElementTree.parse(file).getroot().iter("testcase"):
        name = "::".join(part for part in (case.get("classname", ""), case.get("name", "")) if part)
        skipped = case.find("skipped")
        broken = case.find("failure") if case.find("failure") is not None else case.find("error")
        if skipped is not None:
            outcome["skipped"].append({"test": name, "reason": skipped.get("message", "")})
        elif broken is not None:
            outcome["failed"].append({"test": name, "message": broken.get("message", "")[:500]})
        else:
            outcome["passed"].append(name)
    return outcome


def run_tests(ctx: Context, figures: dict[str, Any]) -> None:
    import torch

    junit = ctx.work / "gpu-tests.xml"
    junit.unlink(missing_ok=True)
    targets = ["tests/gpu"]
    if torch.cuda.is_available():
        targets.append(INTEGRATION_GPU_TESTS)
    else:  # its skip-without-CUDA fixture would run after the missing tests/conftest.py fixture already failed
        figures["not_collected"] = {INTEGRATION_GPU_TESTS: "no CUDA device (it needs tests/conftest.py's fixtures)"}
    # tests/conftest.py builds DVC workspaces; --confcutdir keeps it out, so only tests/gpu/conftest.py loads.
    arguments = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=-ra", "--confcutdir", "tests/gpu"]
    arguments += ["-m", "gpu", f"--junitxml={junit}", *targets]
    figures["command"] = shlex.join(["python", *arguments])
    completed = subprocess.run([sys.executable, *arguments], cwd=ROOT, capture_output=True, text=True, check=False)
    figures.update(junit_summary(junit))
    figures["exit_code"] = completed.returncode
    figures["output_tail"] = (completed.stdout + completed.stderr)[-1500:]
    print(completed.stdout[-3000:], completed.stderr[-1500:], sep="", flush=True)
    if completed.returncode != 0:
        raise RuntimeError(f"pytest exited {completed.returncode}: {len(figures['failed'])} failed")


def trainer_precision(device: str) -> dict[str, Any]:
    """The Trainer's share of a fair race: the same autocast dtype as our loop's ``precision: auto``."""
    import torch

    if device == "cpu":
        return {"use_cpu": True}
    return {"bf16": True} if torch.cuda.is_bf16_supported() else {"fp16": True}


def run_compare(ctx: Context, figures: dict[str, Any]) -> None:
    from finetune import run_ours, run_trainer_dynamic

    rows, rounds = (QUICK_COMPARE_ROWS, QUICK_COMPARE_ROUNDS) if ctx.args.quick else (COMPARE_ROWS, COMPARE_ROUNDS)
    subset = ctx.train.select(range(min(rows, len(ctx.train))))
    dev = ctx.dev.select(range(min(64, len(ctx.dev))))
    no_eval = 10**9  # one evaluation, after the last step and outside the timed training
    # Warm-up, not recorded: the first run pays the CUDA context, kernel selection and the allocator's first blocks.
    run_ours(ctx.bench, subset.select(range(min(64, len(subset)))), dev, 1.0, no_eval, ctx.pad_id)
    figures.update(rows=len(subset), rounds=rounds, trainer_arguments=trainer_precision(ctx.args.device))
    ours: list[float] = []
    trainer: list[float] = []
    for _ in range(rounds):
        ours.append(run_ours(ctx.bench, subset, dev, 1.0, no_eval, ctx.pad_id)[1].samples_per_s)
        extra = trainer_precision(ctx.args.device)
        trainer.append(
            run_trainer_dynamic(ctx.bench, subset, ctx.tokenizer, ctx.work / "trainer", **extra)["samples_per_s"]
        )
        figures.update(ours_samples_per_s_runs=ours, trainer_samples_per_s_runs=trainer)
    figures["ours_samples_per_s"] = fmean(ours)
    figures["trainer_samples_per_s"] = fmean(trainer)
    figures["speedup_vs_trainer"] = fmean(ours) / fmean(trainer)


def run_teacher(ctx: Context, figures: dict[str, Any]) -> None:
    from transformers import PreTrainedModel

    from distilflow.stages.finetune import supervised_loss
    from distilflow.training.loop import train
    from distilflow.training.scorer import split_scorer
    from finetune import fresh_model, settings_for

    config = ctx.params.finetune
    settings = settings_for(ctx.bench, config.epochs, config.eval_every, None)
    model = fresh_model(ctx.bench)
    assert isinstance(model, PreTrainedModel)
    ctx.teacher = model  # trained in place: a part stopped by its budget leaves its latest weights for labelling
    figures.update(weights_dtype=str(next(model.parameters()).dtype), epochs=config.epochs, max_steps=config.max_steps)
    metric = ctx.task.primary_metric
    score = watched(split_scorer(ctx.task, ctx.dev, ctx.params.run.eval_batch_size, ctx.pad_id), metric, figures)
    _, result = train(model, ctx.train, supervised_loss, score, settings, ctx.pad_id, False, description="teacher")
    figures.update(dev_accuracy=result.best_metric, best_step=result.best_step, steps=result.steps)
    figures.update(samples_per_s=result.samples_per_s, train_seconds=result.train_seconds)
    figures["steps_per_s"] = result.steps / max(result.train_seconds, 1e-9)


def run_label(ctx: Context, figures: dict[str, Any]) -> None:
    from distilflow.stages.augment import build_transfer_set

    assert ctx.teacher is not None
    # As the augment stage has it: loaded on the CPU in eval mode; teacher_onnx moves it to the GPU to label.
    teacher = ctx.teacher.cpu().eval()
    started = time.perf_counter()
    transfer, stats = build_transfer_set(ctx.train, teacher, ctx.tokenizer, ctx.params)
    ctx.transfer = transfer
    figures.update(rows=stats["transfer_rows"], augmented_rows=stats["augmented_rows"])
    figures.update(rows_per_s=stats["teacher_examples_per_s"], labelling_seconds=stats["teacher_seconds"])
    figures.update(augment_seconds=stats["augment_seconds"], teacher_backend=stats["teacher_backend"])
    figures["teacher_train_accuracy"] = stats.get("teacher_train_accuracy")
    figures["wall_s"] = time.perf_counter() - started


def run_distill(ctx: Context, figures: dict[str, Any]) -> None:
    from distilflow.models.loading import build_student, count_parameters
    from distilflow.stages.distill import loop_settings, training_rows
    from distilflow.training.distillation import distill
    from distilflow.training.scorer import split_scorer

    assert ctx.teacher is not None and ctx.transfer is not None
    config = ctx.params.distill
    teacher = ctx.teacher.cpu().eval()
    # starting_student() without the pretrain stage's folder: pretrain is off in params.yaml and the recipe.
    student = build_student(teacher, config.student, ctx.task, ctx.params.seed)
    needs_teacher = config.hidden_weight > 0 or config.attention_weight > 0
    rows = training_rows(ctx.transfer, config)
    metric = ctx.task.primary_metric
    score = watched(split_scorer(ctx.task, ctx.dev, ctx.params.run.eval_batch_size, ctx.pad_id), metric, figures)
    settings = loop_settings(config, ctx.task, ctx.params)
    figures.update(init=config.student.init, transfer_rows=len(rows), max_steps=config.max_steps)
    student, result = distill(
        student, teacher if needs_teacher else None, rows, score, config, settings, ctx.pad_id, False, "student"
    )
    figures.update(dev_accuracy=result.best_metric, best_step=result.best_step, steps=result.steps)
    figures.update(samples_per_s=result.samples_per_s, train_seconds=result.train_seconds)
    figures["steps_per_s"] = result.steps / max(result.train_seconds, 1e-9)
    figures["parameters"] = count_parameters(student)


@dataclass(frozen=True)
class Part:
    run: Callable[[Context, dict[str, Any]], None]
    needs: Callable[[Context], str]  # why it cannot run now; "" when it can


PARTS: dict[str, Part] = {
    "tests": Part(run_tests, lambda ctx: ""),
    "compare": Part(run_compare, lambda ctx: ""),
    "teacher": Part(run_teacher, lambda ctx: ""),
    "label": Part(run_label, lambda ctx: "" if ctx.teacher is not None else "no teacher: the teacher part did not run"),
    "distill": Part(
        run_distill, lambda ctx: "" if ctx.transfer is not None else "no transfer set: the label part did not finish"
    ),
}
