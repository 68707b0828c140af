"""Distil the fine-tuned SST-2 teacher into BERT-tiny on real SST-2; ablations; exports; CPU throughput.

The settings are params.yaml's, changed by this benchmark's own ``OVERRIDES`` (below), then by the flags that name
a params key (``--help`` shows each key and its value) and ``--set KEY=VALUE``; the result file records every
override beside the command. The other flags are the benchmark's budgets (steps, rows, workers, output).

One process, in this order (each expensive artefact is cached under ``--cache`` and reused by a rerun):

1. The transfer set: the SST-2 training split plus ``augment.copies`` word-level rewrites of its
   ``augment.max_source_rows`` longest examples, labelled by the teacher once (logits saved in chunks, so a killed
   run resumes).
2. MLM pre-training of the student on the transfer text (when the main configuration or an ablation uses it).
3. The main student: ``distill.max_steps`` distillation steps; then its exports (``distill.export.formats``), each
   checked against the fp32 student on dev.
4. Ablations, one factor flipped from the main configuration each, at ``--ablation-steps`` (fewer than the
   main run; the main configuration is re-run at that budget too, as the row the others compare with).
5. CPU throughput at ``evaluate.throughput_batch_size`` on the dev sentences: teacher fp32 and every student
   format, interleaved over several rounds (best round each), so the ratios are measured under the same load.

    make bench-distill        # or: python bench/distill.py --help
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import shared_cpu  # noqa: F401  (before torch: the thread policy)
from common import (
    CACHE_DIR,
    RESULTS_DIR,
    SCORE_BATCH_SIZE,
    SST2_DIR,
    ParamFlag,
    Settings,
    log,
    read_encoded_split,
    write_result,
)

# isort: split

import numpy as np
import torch
from datasets import Dataset, concatenate_datasets, load_from_disk

from distilflow.config.params import Params
from distilflow.config.training_params import DistillParams
from distilflow.data.rewrites import Vocabulary, augment_rows
from distilflow.export import student as export
from distilflow.export.teacher_onnx import (
    LOGIT_TOLERANCE,
    cached_teacher_session,
    compare_on_sample,
    onnx_logits,
    onnx_runtime_available,
)
from distilflow.models.inference import logits_to_predictions, predict_logits
from distilflow.models.loading import (
    build_student,
    count_parameters,
    hub_offline_by_default,
    load_classifier,
    load_pretrained_encoder,
    load_tokenizer,
)
from distilflow.models.pooling import load_int8
from distilflow.runtime.process import machine_facts
from distilflow.stages.distill import loop_settings
from distilflow.stages.pretrain import pretrain_student
from distilflow.tasks import get_task
from distilflow.training.distillation import distill
from distilflow.training.loop import SCORED_PREFIX
from distilflow.training.scorer import split_scorer

SCORED = f"{SCORED_PREFIX}accuracy"  # what the training loop scored at each evaluation: dev, in this bench

TASK = get_task("sst2")
CHUNK = 2048
# What this benchmark changes from params.yaml: a longer run at a higher rate on a larger transfer set, KD-heavy,
# no early stopping, on the CPU; labelling through ONNX Runtime where installed, checked on 1024 rows.
OVERRIDES: dict[str, Any] = {
    "augment": {"min_words": 5, "max_source_rows": 12000, "teacher_backend": "auto", "teacher_check_rows": 1024},
    "pretrain": {"max_steps": 1500},
    "distill": {
        "max_steps": 6000,
        "batch_size": 64,
        "learning_rate": 1e-3,
        "alpha": 0.9,
        "warmup_ratio": 0.06,
        "eval_every": 250,
        "early_stopping_patience": 0,
    },
    "run": {"device": "cpu"},
}
PARAM_FLAGS = (
    ParamFlag("--copies", "augment.copies", int, "rewrites per eligible training example"),
    ParamFlag("--max-source-rows", "augment.max_source_rows", int, "rewrite only the N longest examples"),
    ParamFlag("--min-words", "augment.min_words", int),
    ParamFlag("--max-train-rows", "data.max_train_rows", int, "use only N training rows (quick runs)"),
    ParamFlag("--init", "distill.student.init", str, "main run: random | teacher-projected"),
    ParamFlag("--mlm", "pretrain.enabled", bool, "main run: MLM pre-training before distillation"),
    ParamFlag("--mlm-steps", "pretrain.max_steps", int, "MLM pre-training steps (it evaluates every third of them)"),
    ParamFlag("--augmented", "distill.augmented", bool, "main run: train on the rewrites too"),
    ParamFlag(
        "--freeze-embeddings",
        "distill.freeze_word_embeddings",
        bool,
        "keep the word embeddings fixed (teacher-projected init only; random init always trains them)",
    ),
    ParamFlag("--main-steps", "distill.max_steps", int, "main run's distillation steps"),
    ParamFlag("--batch-size", "distill.batch_size", int, "training batch (throughput: evaluate.throughput_batch_size)"),
    ParamFlag("--learning-rate", "distill.learning_rate", float),
    ParamFlag("--temperature", "distill.temperature", float),
    ParamFlag("--alpha", "distill.alpha", float),
    ParamFlag("--eval-every", "distill.eval_every", int),
    ParamFlag("--seed", "seed", int),
    ParamFlag(
        "--teacher-backend",
        "augment.teacher_backend",
        str,
        "transfer-set labelling: auto = ONNX Runtime on CPU (as the augment stage), torch = eager PyTorch",
    ),
)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=SST2_DIR)
    parser.add_argument(
        "--teacher",
        type=Path,
        default=CACHE_DIR / "teacher-sst2",
        help="fine-tuned teacher (save_pretrained folder), e.g. from bench/finetune.py",
    )
    parser.add_argument(
        "--label-originals",
        type=int,
        default=None,
        help="the teacher labels only the first N training rows (plus every rewrite, which is "
        "still drawn from the whole split); the rest stay out of the transfer set (time budget)",
    )
    parser.add_argument(
        "--intermediate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="main run: TinyBERT hidden-state and attention losses (teacher in the loop) at --hidden-weight and "
        "--attention-weight; default: on where params.yaml's distill.hidden_weight or attention_weight is above 0",
    )
    parser.add_argument("--hidden-weight", type=float, default=1.0, help="distill.hidden_weight of a run with them")
    parser.add_argument("--attention-weight", type=float, default=1.0, help="distill.attention_weight, likewise")
    parser.add_argument("--ablation-steps", type=int, default=2000)
    parser.add_argument(
        "--intermediate-steps",
        type=int,
        default=None,
        help="steps for the run with intermediate losses (teacher in the loop: slow); default --ablation-steps",
    )
    parser.add_argument(
        "--ablations", default="init,mlm,augmentation,intermediate", help="comma-separated factors to flip, or 'none'"
    )
    parser.add_argument("--throughput-rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch/onnxruntime threads (default: torch's)")
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="processes: teacher labelling is split across them, and the ablations run in a second "
        "process beside the main run",
    )
    parser.add_argument("--part", choices=("all", "label", "ablation"), default="all", help=argparse.SUPPRESS)
    parser.add_argument("--shard", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, default=CACHE_DIR / "distill-sst2")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "distill-sst2.json")
    return parser


def intermediate_on(config: DistillParams) -> bool:
    return config.hidden_weight > 0 or config.attention_weight > 0


def intermediate_flag(args: argparse.Namespace) -> dict[str, Any]:
    """``--intermediate`` sets both TinyBERT weights (``--no-intermediate`` turns them off)."""
    if args.intermediate is None:
        return {}
    on = args.intermediate
    return {
        "distill.hidden_weight": args.hidden_weight if on else 0.0,
        "distill.attention_weight": args.attention_weight if on else 0.0,
    }


@dataclass(frozen=True)
class Bench:
    """The run's settings, and the teacher snapshot every process reads (``--teacher`` may be replaced while
    bench/finetune.py runs)."""

    settings: Settings
    teacher: Path
    sessions: list[Any] = field(default_factory=list, compare=False)  # this process's ONNX session, made once

    @classmethod
    def from_argv(cls, argv: list[str] | None) -> Bench:
        settings = Settings.parse("distill.py", parser(), argv, PARAM_FLAGS, OVERRIDES, intermediate_flag)
        if settings.params.distill.max_steps is None or settings.params.pretrain.max_steps is None:
            raise SystemExit("distill.max_steps and pretrain.max_steps must be set: they are the step budgets")
        return cls(settings, settings.args.teacher)

    @property
    def args(self) -> argparse.Namespace:
        return self.settings.args

    @property
    def params(self) -> Params:
        return self.settings.params

    def with_params(self, changes: dict[str, Any]) -> Params:
        return self.settings.with_params(changes)

    @property
    def torch_labels(self) -> bool:
        backend = self.params.augment.teacher_backend
        return backend == "torch" or torch.cuda.is_available() or not onnx_runtime_available()


def file_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(folder.glob("*.safetensors")):
        digest.update(file.read_bytes())
    return digest.hexdigest()[:12]


def onnx_folder(bench: Bench) -> Path:
    return bench.args.cache / f"teacher-onnx-{file_digest(bench.teacher)}"


def label(bench: Bench, teacher: Any, rows: Dataset, pad_id: int) -> np.ndarray:
    """The augment stage's path (distilflow.export.teacher_onnx): ONNX Runtime on CPU, eager PyTorch otherwise."""
    batch_size = bench.params.augment.teacher_batch_size
    if bench.torch_labels:
        return predict_logits(teacher, rows, batch_size, pad_id)
    if not bench.sessions:
        bench.sessions.append(cached_teacher_session(teacher, onnx_folder(bench)))
    return onnx_logits(bench.sessions[0], rows, batch_size, pad_id)


def check_onnx_labels(bench: Bench, teacher: Any, rows: Dataset, pad_id: int) -> dict[str, Any]:
    """Agreement with eager PyTorch and the speedup, on a random sample of the transfer set (as the stage does)."""
    if bench.torch_labels:
        return {"teacher_backend": "torch"}
    session = cached_teacher_session(teacher, onnx_folder(bench))
    augment = bench.params.augment
    stats = compare_on_sample(
        teacher,
        session,
        rows,
        augment.teacher_batch_size,
        pad_id,
        rows=augment.teacher_check_rows,
        seed=bench.params.seed,
    )
    if stats["teacher_max_logit_difference"] > LOGIT_TOLERANCE:
        raise SystemExit(f"ONNX teacher logits differ from eager by {stats['teacher_max_logit_difference']:.2g}")
    return {**stats, "teacher_backend": "onnx", "teacher_logit_tolerance": LOGIT_TOLERANCE}


def label_chunks(
    bench: Bench, teacher: Any, rows: Dataset, pad_id: int, folder: Path, shard: int, needed: set[int]
) -> None:
    """Teacher logits in chunks saved as they finish (a killed run resumes); chunk i goes to shard i % workers."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, start in enumerate(range(0, len(rows), CHUNK)):
        file = folder / f"{index:05d}.npy"
        if index % bench.args.workers != shard or file.is_file() or index not in needed:
            continue
        started = time.perf_counter()
        logits = label(bench, teacher, rows.select(range(start, min(start + CHUNK, len(rows)))), pad_id)
        np.save(file.with_suffix(".tmp.npy"), logits)
        file.with_suffix(".tmp.npy").rename(file)
        log(
            f"  [shard {shard}] teacher logits {min(start + CHUNK, len(rows))}/{len(rows)} "
            f"({len(logits) / (time.perf_counter() - started):.0f} examples/s)"
        )


def child(bench: Bench, part: str, *extra: str) -> subprocess.Popen[bytes]:
    # The snapshot, not the live folder: every process must see the same teacher.
    script = str(Path(__file__).resolve())
    return subprocess.Popen(
        [sys.executable, script, *bench.settings.argv, "--teacher", str(bench.teacher), "--part", part, *extra]
    )


def snapshot_teacher(source: Path, cache: Path) -> Path:
    """Copy the teacher first: bench/finetune.py replaces its folder at every new best while it trains."""
    for _ in range(5):
        try:
            digest = file_digest(source)
            target = cache / f"teacher-{digest}"
            if not (target / "config.json").is_file():
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(source, target)
            if file_digest(target) == digest:
                return target
        except (FileNotFoundError, shutil.Error):
            pass
        time.sleep(5)  # the source was being replaced; try again
    raise SystemExit(f"could not take a stable copy of {source}")


def teacher_logits_resumable(
    bench: Bench, teacher: Any, rows: Dataset, pad_id: int, folder: Path, keep: np.ndarray
) -> np.ndarray:
    """Logits of the rows ``keep`` selects (row indices into ``rows``)."""
    needed = set((keep // CHUNK).tolist())
    if bench.args.part == "label":
        label_chunks(bench, teacher, rows, pad_id, folder, bench.args.shard, needed)
        raise SystemExit(0)
    label(bench, teacher, rows.select(range(min(8, len(rows)))), pad_id)  # export once, before the helpers start
    helpers = [child(bench, "label", "--shard", str(k)) for k in range(1, bench.args.workers)]
    label_chunks(bench, teacher, rows, pad_id, folder, 0, needed)
    if any(helper.wait() != 0 for helper in helpers):
        raise SystemExit("a labelling process failed; rerun to resume from the saved chunks")
    chunks = {index: np.load(folder / f"{index:05d}.npy") for index in sorted(needed)}
    return np.stack([chunks[int(i) // CHUNK][int(i) % CHUNK] for i in keep])


def transfer_key(bench: Bench, rows: int) -> str:
    """What the transfer set's rows and labels depend on: the teacher, the rewrite settings, the rows, the seed
    (not how the teacher is run: its backend, batch size and check rows give the same labels)."""
    running = {"teacher_backend", "teacher_batch_size", "teacher_check_rows"}
    recipe = {
        "teacher": file_digest(bench.teacher),
        "augment": bench.params.augment.model_dump(exclude=running),
        "rows": rows,
        "seed": bench.params.seed,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def rewrite_rows(bench: Bench, train: Dataset, teacher: Any, tokenizer: Any) -> tuple[Dataset, Dataset]:
    """The training split and its word-level rewrites (distilflow.data.rewrites, as the augment stage makes them)."""
    params = bench.params
    max_length = params.tokenize.max_length
    originals = train.select_columns(["input_ids", "token_type_ids", "labels", "length"])
    originals = originals.add_column("source", list(range(len(originals))))
    originals = originals.add_column("augmented", [False] * len(originals))
    vocab = Vocabulary.from_teacher(tokenizer, teacher.get_input_embeddings().weight, params.augment.neighbours)
    ids, types, sources = augment_rows(train["input_ids"], vocab, params.augment, params.seed, max_length)
    rewrites = Dataset.from_dict(
        {
            "input_ids": ids,
            "token_type_ids": types,
            "labels": [0] * len(ids),
            "length": [len(r) for r in ids],
            "source": sources,
            "augmented": [True] * len(ids),
        },
        features=originals.features,
    )
    return originals, rewrites


def transfer_set(bench: Bench, train: Dataset, teacher: Any, tokenizer: Any, key: str) -> tuple[Dataset, dict]:
    """The stage's recipe (distilflow.stages.augment) with resumable, cached teacher logits."""
    folder = bench.args.cache / f"transfer-{key}"
    label_originals = bench.args.label_originals
    name = "dataset" if label_originals is None else f"dataset-{label_originals}"
    if (folder / name / "dataset_info.json").is_file():
        return load_from_disk(str(folder / name)), json.loads((folder / f"{name}-stats.json").read_text())
    started = time.perf_counter()
    originals, rewrites = rewrite_rows(bench, train, teacher, tokenizer)
    rows = concatenate_datasets([originals, rewrites])
    augment_seconds = time.perf_counter() - started
    log(f"transfer set: {len(originals)} originals + {len(rewrites)} rewrites ({augment_seconds:.0f}s); labelling")
    started = time.perf_counter()
    kept_originals = min(label_originals or len(originals), len(originals))
    keep = np.concatenate([np.arange(kept_originals), np.arange(len(originals), len(rows))])
    logits = teacher_logits_resumable(bench, teacher, rows, tokenizer.pad_token_id, folder / "logits", keep)
    teacher_seconds = time.perf_counter() - started
    labelling = check_onnx_labels(bench, teacher, rows.select(keep.tolist()), tokenizer.pad_token_id)
    rows = rows.select(keep)
    originals = originals.select(range(kept_originals))
    augmented = np.asarray(rows["augmented"])
    labels = np.where(augmented, logits.argmax(-1), np.asarray(rows["labels"]))
    rows = rows.remove_columns("labels").add_column("labels", labels.tolist())
    rows = rows.add_column("teacher_logits", logits.tolist())
    stats = {
        "train_rows": len(train),
        "labelled_train_rows": len(originals),
        "augmented_rows": len(rewrites),
        "transfer_rows": len(rows),
        "augment_seconds": augment_seconds,
        "teacher_seconds_this_run": teacher_seconds,
        **labelling,
        "teacher_train_accuracy": float(
            (logits[: len(originals)].argmax(-1) == np.asarray(originals["labels"])).mean()
        ),
    }
    rows.save_to_disk(str(folder / name))
    (folder / f"{name}-stats.json").write_text(json.dumps(stats, indent=2))
    return rows, stats


@dataclass(frozen=True)
class Variant:
    name: str
    init: str
    mlm: bool
    augmented: bool
    intermediate: bool
    steps: int


def main_variant(params: Params) -> Variant:
    config = params.distill
    assert config.max_steps is not None  # Bench.from_argv checks it
    return Variant(
        "main",
        config.student.init,
        params.pretrain.enabled,
        config.augmented,
        intermediate_on(config),
        config.max_steps,
    )


def variant_params(bench: Bench, variant: Variant) -> Params:
    """The settings with the variant's factors: its init, rows, losses and step budget."""
    base = bench.params.distill
    if not variant.intermediate:
        weights = {"hidden_weight": 0.0, "attention_weight": 0.0}
    elif intermediate_on(base):
        weights = {"hidden_weight": base.hidden_weight, "attention_weight": base.attention_weight}
    else:
        weights = {"hidden_weight": bench.args.hidden_weight, "attention_weight": bench.args.attention_weight}
    distill_changes = {
        "student": {"init": variant.init},
        "max_steps": variant.steps,
        "augmented": variant.augmented,
        **weights,
        "freeze_word_embeddings": base.freeze_word_embeddings and variant.init != "random",
    }
    return bench.with_params({"distill": distill_changes})


def run_variant(bench: Bench, variant: Variant, ctx: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    params = variant_params(bench, variant)
    config = params.distill
    student = build_student(ctx["teacher"], config.student, TASK, params.seed)
    if variant.mlm:
        load_pretrained_encoder(student, mlm_checkpoint(bench, variant.init, ctx))
    rows = ctx["transfer"] if variant.augmented else ctx["originals"]
    started = time.perf_counter()
    log(f"distill {variant.name}: {variant.steps} steps on {len(rows)} rows")
    student, result = distill(
        student,
        ctx["teacher"] if variant.intermediate else None,
        rows,
        ctx["score_dev"],
        config,
        loop_settings(config, TASK, params),
        ctx["pad_id"],
        False,
        description=variant.name,
    )
    seconds = time.perf_counter() - started
    log(f"  {variant.name}: dev accuracy {result.best_metric:.4f} (step {result.best_step}) in {seconds:.0f}s")
    return student, {
        "name": variant.name,
        "student_dev_accuracy": result.best_metric,
        "best_step": result.best_step,
        "steps": result.steps,
        "init": variant.init,
        "frozen_word_embeddings": config.freeze_word_embeddings,
        "mlm_pretraining": variant.mlm,
        "augmentation": variant.augmented,
        "intermediate_losses": variant.intermediate,
        "train_rows": len(rows),
        "wall_seconds": seconds,
        "dev_curve": [{"step": p["step"], "accuracy": p[SCORED]} for p in result.history if SCORED in p],
    }


def mlm_checkpoint(bench: Bench, init: str, ctx: dict[str, Any]) -> Path:
    """MLM-pre-train a student from ``init`` once per (init, steps, transfer set); cached on disk."""
    steps = bench.params.pretrain.max_steps
    assert steps is not None  # Bench.from_argv checks it
    folder = bench.args.cache / f"mlm-{ctx['key']}-{init}-{steps}"
    if (folder / "model.safetensors").is_file():
        return folder
    params = bench.with_params(
        {"pretrain": {"enabled": True, "eval_every": max(steps // 3, 1)}, "distill": {"student": {"init": init}}}
    )
    student = build_student(ctx["teacher"], params.distill.student, TASK, params.seed)
    started = time.perf_counter()
    log(f"MLM pre-training from {init}: {steps} steps")
    model, outcome = pretrain_student(student, ctx["transfer"], ctx["tokenizer"], params, description=f"mlm-{init}")
    model.save_pretrained(str(folder))
    metrics = {**outcome["metrics"], "wall_seconds": time.perf_counter() - started}
    (folder / "summary.json").write_text(json.dumps(metrics, indent=2))
    ctx.setdefault("mlm", {})[init] = metrics
    log(f"  MLM accuracy {metrics['mlm_accuracy_before']:.3f} → {metrics['best_mlm_accuracy']:.3f}")
    return folder


def throughput_table(bench: Bench, forwards: dict[str, Any], dev: Dataset, pad_id: int) -> dict[str, float]:
    """Examples/s per model over the dev set; rounds interleave the models, best round wins."""
    batches, _ = export.numpy_batches(dev, bench.params.evaluate.throughput_batch_size, pad_id)
    examples = sum(len(batch["input_ids"]) for batch in batches)
    best = dict.fromkeys(forwards, float("inf"))
    for forward in forwards.values():
        forward(batches[0])  # warm-up
    for _ in range(bench.args.throughput_rounds):
        for name, forward in forwards.items():
            started = time.perf_counter()
            for batch in batches:
                forward(batch)
            best[name] = min(best[name], time.perf_counter() - started)
    return {name: examples / seconds for name, seconds in best.items()}


def flipped(bench: Bench, base: Variant, flip: str) -> Variant:
    """``base`` with one factor flipped."""
    if flip == "init":
        other = "random" if base.init == "teacher-projected" else "teacher-projected"
        return replace(base, name=f"init: {other}", init=other)
    if flip == "mlm":
        return replace(base, name=f"MLM pre-training: {'off' if base.mlm else 'on'}", mlm=not base.mlm)
    if flip == "augmentation":
        return replace(base, name=f"augmentation: {'off' if base.augmented else 'on'}", augmented=not base.augmented)
    if flip == "intermediate":
        return replace(
            base,
            name=f"intermediate losses: {'off' if base.intermediate else 'on'}",
            intermediate=not base.intermediate,
            steps=bench.args.intermediate_steps or bench.args.ablation_steps,
        )
    raise SystemExit(f"unknown ablation {flip!r}; known: init, mlm, augmentation, intermediate")


def run_ablations(bench: Bench, ctx: dict[str, Any]) -> list[dict[str, Any]]:
    """The main configuration at the ablation budget, then one row per flipped factor."""
    ablations = bench.args.ablations
    flips = [] if ablations == "none" else [name.strip() for name in ablations.split(",")]
    if not flips:
        return []
    base = replace(main_variant(bench.params), name="main @ ablation budget", steps=bench.args.ablation_steps)
    return [run_variant(bench, variant, ctx)[1] for variant in [base, *(flipped(bench, base, f) for f in flips)]]


def load_context(bench: Bench) -> dict[str, Any]:
    """The teacher, the dev scorer and the transfer set (made or read from the cache)."""
    tokenizer = load_tokenizer(str(bench.teacher))
    teacher = load_classifier(bench.teacher)
    pad_id = tokenizer.pad_token_id
    max_length = bench.params.tokenize.max_length
    data_dir = bench.args.data_dir
    train = read_encoded_split(TASK, data_dir, "train", tokenizer, max_length, bench.params.data.max_train_rows)
    dev = read_encoded_split(TASK, data_dir, "dev", tokenizer, max_length, None)
    score_dev = split_scorer(TASK, dev, SCORE_BATCH_SIZE, pad_id)
    teacher_dev = score_dev(teacher)["accuracy"] if bench.args.part == "all" else float("nan")
    log(f"[{bench.args.part}] teacher dev accuracy {teacher_dev:.4f}; {len(train)} training rows")
    key = transfer_key(bench, len(train))
    started = time.perf_counter()
    transfer, transfer_stats = transfer_set(bench, train, teacher, tokenizer, key)
    transfer_stats["wall_seconds_this_run"] = time.perf_counter() - started
    originals = transfer.filter(lambda flags: [not f for f in flags], input_columns="augmented", batched=True)
    return {
        "teacher": teacher,
        "tokenizer": tokenizer,
        "pad_id": pad_id,
        "dev": dev,
        "teacher_dev": teacher_dev,
        "transfer": transfer,
        "transfer_stats": transfer_stats,
        "originals": originals,
        "score_dev": score_dev,
        "key": key,
    }


def export_formats(bench: Bench, student: Any, ctx: dict[str, Any]) -> dict[str, Any]:
    """The student saved, and its exports (``distill.export``), each checked against fp32 on dev."""
    student.save_pretrained(str(bench.args.cache / "student"))
    ctx["tokenizer"].save_pretrained(str(bench.args.cache / "student"))
    batch_size = bench.params.evaluate.throughput_batch_size
    export_dir = bench.args.cache / "student-export"
    exports = export.export_student(
        student, ctx["tokenizer"], ctx["dev"], TASK, export_dir, bench.params.distill.export, batch_size
    )
    log("exports: " + ", ".join(f"{k} {v['accuracy']:.4f} agrees={v['agrees']}" for k, v in exports.items()))
    return exports


def measure_speed(bench: Bench, student: Any, exports: dict[str, Any], ctx: dict[str, Any]) -> dict[str, Any]:
    """Every model's CPU throughput (after the ablation process ended: the same load for all), and the
    fp32 student's dev accuracy on the throughput batches."""
    log("throughput")
    export_dir = bench.args.cache / "student-export"
    forwards = {"teacher_fp32": export.torch_forward(ctx["teacher"]), "student_fp32": export.torch_forward(student)}
    for name in exports:
        if name == "int8":
            forwards["student_int8"] = export.torch_forward(load_int8(export_dir / name))
        else:
            session = export.onnx_session(export_dir / name / "model.onnx")
            forwards["student_" + name.replace("-", "_")] = export.onnx_forward(session)
    dev, pad_id = ctx["dev"], ctx["pad_id"]
    speeds = throughput_table(bench, forwards, dev, pad_id)
    teacher_speed = speeds["teacher_fp32"]
    export_speeds = {k: v for k, v in speeds.items() if k not in ("teacher_fp32", "student_fp32")}
    agreeing = {
        k: v for k, v in export_speeds.items() if exports[k.removeprefix("student_").replace("_", "-")]["agrees"]
    }
    best_export = max(agreeing, key=lambda k: agreeing[k]) if agreeing else None
    batch_size = bench.params.evaluate.throughput_batch_size
    batches, order = export.numpy_batches(dev, batch_size, pad_id)
    student_logits = export.run_batches(export.torch_forward(student), batches, order)
    student_dev = float((logits_to_predictions(student_logits, TASK) == np.asarray(dev["labels"])).mean())
    return {
        "student_dev_accuracy": student_dev,
        "throughput_batch_size": batch_size,
        "throughput_examples_per_s": speeds,
        "throughput_ratio_vs_teacher": {k: v / teacher_speed for k, v in speeds.items()},
        "best_export": best_export,
        "throughput_ratio_best_export_vs_teacher": agreeing[best_export] / teacher_speed if best_export else None,
    }


def main(argv: list[str] | None = None) -> None:
    bench = Bench.from_argv(argv)
    args = bench.args
    hub_offline_by_default()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not (args.teacher / "config.json").is_file():
        raise SystemExit(f"{args.teacher}: no fine-tuned teacher there; run bench/finetune.py first")
    wall = time.perf_counter()
    args.cache.mkdir(parents=True, exist_ok=True)
    if args.part == "all":
        bench = replace(bench, teacher=snapshot_teacher(args.teacher, args.cache))
    summary_file = bench.teacher / "bench_summary.json"
    teacher_info = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    ctx = load_context(bench)

    ablation_json = args.out.with_name(args.out.stem + ".ablation.json")
    if args.part == "ablation":
        ablation_json.write_text(json.dumps({"ablation": run_ablations(bench, ctx), "mlm": ctx.get("mlm", {})}))
        return
    ablation_process = None
    if args.ablations != "none" and args.workers > 1:
        # Beside the main run: on a shared CPU a second process finishes both sooner than running them in turn.
        ablation_json.unlink(missing_ok=True)
        ablation_process = child(bench, "ablation")
    student, main_row = run_variant(bench, main_variant(bench.params), ctx)
    exports = export_formats(bench, student, ctx)
    if ablation_process is not None:
        if ablation_process.wait() != 0:
            raise SystemExit("the ablation process failed; rerun (cached steps are reused)")
        child_result = json.loads(ablation_json.read_text())
        ablation, ctx["mlm"] = child_result["ablation"], {**ctx.get("mlm", {}), **child_result["mlm"]}
        ablation_json.unlink()
    else:
        ablation = run_ablations(bench, ctx)
    measured = measure_speed(bench, student, exports, ctx)

    teacher_dev = ctx["teacher_dev"]
    result = {
        **bench.settings.provenance(),
        "task": "sst2",
        "data": str(args.data_dir),
        "teacher": str(args.teacher),
        "teacher_snapshot": str(bench.teacher),
        "teacher_finetune_summary": teacher_info,
        "teacher_parameters": count_parameters(ctx["teacher"]),
        "student_parameters": count_parameters(student),
        "teacher_dev_accuracy": teacher_dev,
        "student_dev_accuracy": measured["student_dev_accuracy"],
        "retention": measured["student_dev_accuracy"] / teacher_dev,
        "target_student_dev_accuracy": 0.86,
        "main": main_row,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "transfer_set": ctx["transfer_stats"],
        "mlm": ctx.get("mlm", {}),
        "exports": exports,
        **{k: v for k, v in measured.items() if k != "student_dev_accuracy"},
        "target_throughput_ratio": 25.0,
        "ablation": ablation,
        "ablation_note": f"ablation rows train {args.ablation_steps} steps (intermediate losses: "
        f"{args.intermediate_steps or args.ablation_steps}), the main run {bench.params.distill.max_steps}; "
        "compare rows with 'main @ ablation budget'",
        "wall_seconds": time.perf_counter() - wall,
        "threads": torch.get_num_threads(),
        "machine": machine_facts(),
    }
    write_result(args.out, result)
    ratio = measured["throughput_ratio_best_export_vs_teacher"]
    log(
        f"student {measured['student_dev_accuracy']:.4f} / teacher {teacher_dev:.4f}; best export "
        f"{measured['best_export']} {ratio}x the teacher; wrote {args.out}"
    )


if __name__ == "__main__":
    main()
