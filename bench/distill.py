"""Distil the fine-tuned SST-2 teacher into BERT-tiny on real SST-2; ablations; exports; CPU throughput.

One process, in this order (each expensive artefact is cached under ``--cache`` and reused by a rerun):

1. The transfer set: the SST-2 training split plus ``--copies`` word-level rewrites of its ``--max-source-rows``
   longest examples, labelled by the teacher once (logits saved in chunks, so a killed run resumes).
2. MLM pre-training of the student on the transfer text (when the main configuration or an ablation uses it).
3. The main student: ``--main-steps`` distillation steps; then its exports (torch int8, ONNX, ONNX int8), each
   checked against the fp32 student on dev.
4. Ablations, one factor flipped from the main configuration each, at ``--ablation-steps`` (fewer than the
   main run; the main configuration is re-run at that budget too, as the row the others compare with).
5. CPU throughput at ``--batch-size`` on the dev sentences: teacher fp32 and every student format, interleaved
   over several rounds (best round each), so the ratios are measured under the same load.

    make bench-distill        # or: python bench/distill.py --help
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

# Before torch loads OpenMP: on a shared, oversubscribed CPU, spinning threads burn their time slice waiting for a
# descheduled peer.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch
from datasets import Dataset, concatenate_datasets, load_from_disk

from distilflow.config import DistillParams, Params, parse_params
from distilflow.environment import machine_facts
from distilflow.export import (
    export_student,
    load_int8,
    numpy_batches,
    onnx_forward,
    onnx_session,
    run_batches,
    torch_forward,
)
from distilflow.glue_io import read_split
from distilflow.inference import logits_to_predictions, predict_logits
from distilflow.modeling import (
    build_student,
    count_parameters,
    hub_offline_by_default,
    load_classifier,
    load_pretrained_encoder,
    load_tokenizer,
)
from distilflow.rewrites import Vocabulary, augment_rows
from distilflow.scoring import dev_scorer
from distilflow.stages.distill import distill, loop_settings
from distilflow.stages.pretrain import pretrain_student
from distilflow.stages.tokenize import encode
from distilflow.tasks import get_task
from distilflow.teacher_onnx import (
    LOGIT_TOLERANCE,
    cached_teacher_session,
    compare_on_sample,
    onnx_logits,
    onnx_runtime_available,
)

ROOT = Path(__file__).resolve().parents[1]
GLUE_DIR = Path(os.environ.get("DISTILFLOW_GLUE_DIR", ROOT.parent / "shared" / "data" / "glue"))
TASK = get_task("sst2")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=GLUE_DIR / "SST-2")
    parser.add_argument(
        "--teacher",
        type=Path,
        default=ROOT / "bench" / "cache" / "teacher-sst2",
        help="fine-tuned teacher (save_pretrained folder), e.g. from bench/finetune.py",
    )
    parser.add_argument("--copies", type=int, default=2, help="rewrites per eligible training example")
    parser.add_argument("--max-source-rows", type=int, default=12000, help="rewrite only the N longest examples")
    parser.add_argument("--min-words", type=int, default=5)
    parser.add_argument("--max-train-rows", type=int, default=None, help="use only N training rows (quick runs)")
    parser.add_argument(
        "--label-originals",
        type=int,
        default=None,
        help="the teacher labels only the first N training rows (plus every rewrite, which is "
        "still drawn from the whole split); the rest stay out of the transfer set (time budget)",
    )
    parser.add_argument("--init", default="teacher-projected", help="main run: random | teacher-projected")
    parser.add_argument(
        "--mlm",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="main run: MLM pre-training before distillation",
    )
    parser.add_argument(
        "--augmented", action=argparse.BooleanOptionalAction, default=True, help="main run: train on the rewrites too"
    )
    parser.add_argument(
        "--intermediate",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="main run: TinyBERT hidden-state and attention losses (teacher in the loop)",
    )
    parser.add_argument(
        "--freeze-embeddings",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="keep the word embeddings fixed (teacher-projected init only; random init always trains them)",
    )
    parser.add_argument("--hidden-weight", type=float, default=1.0)
    parser.add_argument("--attention-weight", type=float, default=1.0)
    parser.add_argument("--mlm-steps", type=int, default=1500)
    parser.add_argument("--main-steps", type=int, default=6000)
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
    parser.add_argument("--batch-size", type=int, default=64, help="training and throughput batch size")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--alpha", type=float, default=0.9)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--throughput-rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch/onnxruntime threads (default: torch's)")
    parser.add_argument(
        "--teacher-backend",
        choices=("auto", "torch"),
        default="auto",
        help="transfer-set labelling: auto = ONNX Runtime on CPU (as the augment stage), torch = eager PyTorch",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="processes: teacher labelling is split across them, and the ablations run in a second "
        "process beside the main run",
    )
    parser.add_argument("--part", choices=("all", "label", "ablation"), default="all", help=argparse.SUPPRESS)
    parser.add_argument("--shard", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cache", type=Path, default=ROOT / "bench" / "cache" / "distill-sst2")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "distill-sst2.json")
    return parser.parse_args(argv)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def load_split(name: str, tokenizer: Any, limit: int | None) -> Dataset:
    file = ARGS.data_dir / f"{name}.tsv"
    if not file.is_file():
        raise SystemExit(f"{file} not found: point --data-dir (or DISTILFLOW_GLUE_DIR) at the GLUE SST-2 folder")
    frame, problems = read_split(TASK, file, name, max_rows=limit)
    if problems:
        log(f"{name}: {len(problems)} unreadable rows skipped (first: {problems[0]})")
    return encode(frame, TASK, tokenizer, 128)


def file_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(folder.glob("*.safetensors")):
        digest.update(file.read_bytes())
    return digest.hexdigest()[:12]


CHUNK = 2048


def onnx_folder() -> Path:
    return ARGS.cache / f"teacher-onnx-{file_digest(ARGS.teacher)}"


SESSION: list[Any] = []  # this process's ONNX Runtime session of the teacher, made on first use


def label(teacher: Any, rows: Dataset, pad_id: int) -> np.ndarray:
    """The augment stage's path (distilflow.teacher_onnx): ONNX Runtime on CPU, eager PyTorch otherwise."""
    if ARGS.teacher_backend == "torch" or torch.cuda.is_available() or not onnx_runtime_available():
        return predict_logits(teacher, rows, 128, pad_id)
    if not SESSION:
        SESSION.append(cached_teacher_session(teacher, onnx_folder()))
    return onnx_logits(SESSION[0], rows, 128, pad_id)


def check_onnx_labels(teacher: Any, rows: Dataset, pad_id: int, seed: int) -> dict[str, Any]:
    """Agreement with eager PyTorch and the speedup, on a random sample of the transfer set (as the stage does)."""
    if ARGS.teacher_backend == "torch" or torch.cuda.is_available() or not onnx_runtime_available():
        return {"teacher_backend": "torch"}
    session = cached_teacher_session(teacher, onnx_folder())
    stats = compare_on_sample(teacher, session, rows, 128, pad_id, rows=1024, seed=seed)
    if stats["teacher_max_logit_difference"] > LOGIT_TOLERANCE:
        raise SystemExit(f"ONNX teacher logits differ from eager by {stats['teacher_max_logit_difference']:.2g}")
    return {**stats, "teacher_backend": "onnx", "teacher_logit_tolerance": LOGIT_TOLERANCE}


def label_chunks(
    teacher: Any,
    rows: Dataset,
    pad_id: int,
    folder: Path,
    shard: int,
    shards: int,
    needed: set[int],
    chunk: int = CHUNK,
) -> None:
    """Teacher logits in chunks saved as they finish (a killed run resumes); chunk i goes to shard i % shards."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, start in enumerate(range(0, len(rows), chunk)):
        file = folder / f"{index:05d}.npy"
        if index % shards != shard or file.is_file() or index not in needed:
            continue
        started = time.perf_counter()
        logits = label(teacher, rows.select(range(start, min(start + chunk, len(rows)))), pad_id)
        np.save(file.with_suffix(".tmp.npy"), logits)
        file.with_suffix(".tmp.npy").rename(file)
        log(
            f"  [shard {shard}] teacher logits {min(start + chunk, len(rows))}/{len(rows)} "
            f"({len(logits) / (time.perf_counter() - started):.0f} examples/s)"
        )


def child(part: str, *extra: str) -> subprocess.Popen[bytes]:
    # The snapshot, not the live folder: every process must see the same teacher.
    return subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            *sys.argv[1:],
            "--teacher",
            str(ARGS.teacher),
            "--part",
            part,
            *extra,
        ]
    )


def snapshot_teacher(source: Path) -> Path:
    """Copy the teacher first: bench/finetune.py replaces its folder at every new best while it trains."""
    for _ in range(5):
        try:
            digest = file_digest(source)
            target = ARGS.cache / f"teacher-{digest}"
            if not (target / "config.json").is_file():
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(source, target)
            if file_digest(target) == digest:
                return target
        except (FileNotFoundError, shutil.Error):
            pass
        time.sleep(5)  # the source was being replaced; try again
    raise SystemExit(f"could not take a stable copy of {source}")


def teacher_logits_resumable(teacher: Any, rows: Dataset, pad_id: int, folder: Path, keep: np.ndarray) -> np.ndarray:
    """Logits of the rows ``keep`` selects (row indices into ``rows``)."""
    needed = set((keep // CHUNK).tolist())
    if ARGS.part == "label":
        label_chunks(teacher, rows, pad_id, folder, ARGS.shard, ARGS.workers, needed)
        raise SystemExit(0)
    label(teacher, rows.select(range(min(8, len(rows)))), pad_id)  # export once, before the helpers start
    helpers = [child("label", "--shard", str(k)) for k in range(1, ARGS.workers)]
    label_chunks(teacher, rows, pad_id, folder, 0, ARGS.workers, needed)
    if any(helper.wait() != 0 for helper in helpers):
        raise SystemExit("a labelling process failed; rerun to resume from the saved chunks")
    chunks = {index: np.load(folder / f"{index:05d}.npy") for index in sorted(needed)}
    return np.stack([chunks[int(i) // CHUNK][int(i) % CHUNK] for i in keep])


def transfer_set(train: Dataset, teacher: Any, tokenizer: Any, params: Params, key: str) -> tuple[Dataset, dict]:
    """The stage's recipe (distilflow.stages.augment) with resumable, cached teacher logits."""
    folder = ARGS.cache / f"transfer-{key}"
    name = "dataset" if ARGS.label_originals is None else f"dataset-{ARGS.label_originals}"
    if (folder / name / "dataset_info.json").is_file():
        return load_from_disk(str(folder / name)), json.loads((folder / f"{name}-stats.json").read_text())
    started = time.perf_counter()
    originals = train.select_columns(["input_ids", "token_type_ids", "labels", "length"])
    originals = originals.add_column("source", list(range(len(originals))))
    originals = originals.add_column("augmented", [False] * len(originals))
    vocab = Vocabulary.from_teacher(tokenizer, teacher.get_input_embeddings().weight, params.augment.neighbours)
    ids, types, sources = augment_rows(train["input_ids"], vocab, params.augment, params.seed, 128)
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
    rows = concatenate_datasets([originals, rewrites])
    augment_seconds = time.perf_counter() - started
    log(f"transfer set: {len(originals)} originals + {len(rewrites)} rewrites ({augment_seconds:.0f}s); labelling")
    started = time.perf_counter()
    kept_originals = min(ARGS.label_originals or len(originals), len(originals))
    keep = np.concatenate([np.arange(kept_originals), np.arange(len(originals), len(rows))])
    logits = teacher_logits_resumable(teacher, rows, tokenizer.pad_token_id, folder / "logits", keep)
    teacher_seconds = time.perf_counter() - started
    labelling = check_onnx_labels(teacher, rows.select(keep.tolist()), tokenizer.pad_token_id, params.seed)
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


def distill_params(variant: Variant) -> DistillParams:
    weights = (
        {"hidden_weight": ARGS.hidden_weight, "attention_weight": ARGS.attention_weight} if variant.intermediate else {}
    )
    return parse_params(
        {
            "distill": {
                "student": {"init": variant.init},
                "temperature": ARGS.temperature,
                "alpha": ARGS.alpha,
                "max_steps": variant.steps,
                "batch_size": ARGS.batch_size,
                "learning_rate": ARGS.learning_rate,
                "warmup_ratio": 0.06,
                "eval_every": ARGS.eval_every,
                "early_stopping_patience": 0,
                "augmented": variant.augmented,
                **weights,
                "freeze_word_embeddings": ARGS.freeze_embeddings and variant.init != "random",
            }
        }
    ).distill


def run_variant(variant: Variant, ctx: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    config = distill_params(variant)
    params = parse_params({"seed": ARGS.seed, "distill": config.model_dump(), "finetune": {"device": "cpu"}})
    student = build_student(ctx["teacher"], config.student, TASK, ARGS.seed)
    if variant.mlm:
        load_pretrained_encoder(student, mlm_checkpoint(variant.init, ctx))
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
        "dev_curve": [
            {"step": p["step"], "accuracy": p["dev_accuracy"]} for p in result.history if "dev_accuracy" in p
        ],
    }


def mlm_checkpoint(init: str, ctx: dict[str, Any]) -> Path:
    """MLM-pre-train a student from ``init`` once per (init, steps, transfer set); cached on disk."""
    folder = ARGS.cache / f"mlm-{ctx['key']}-{init}-{ARGS.mlm_steps}"
    if (folder / "model.safetensors").is_file():
        return folder
    params = parse_params(
        {
            "seed": ARGS.seed,
            "finetune": {"device": "cpu"},
            "pretrain": {
                "enabled": True,
                "max_steps": ARGS.mlm_steps,
                "batch_size": ARGS.batch_size,
                "learning_rate": 1e-3,
                "eval_every": max(ARGS.mlm_steps // 3, 1),
            },
            "distill": {"student": {"init": init}},
        }
    )
    student = build_student(ctx["teacher"], params.distill.student, TASK, ARGS.seed)
    started = time.perf_counter()
    log(f"MLM pre-training from {init}: {ARGS.mlm_steps} steps")
    model, outcome = pretrain_student(student, ctx["transfer"], ctx["tokenizer"], params, description=f"mlm-{init}")
    model.save_pretrained(str(folder))
    metrics = {**outcome["metrics"], "wall_seconds": time.perf_counter() - started}
    (folder / "summary.json").write_text(json.dumps(metrics, indent=2))
    ctx.setdefault("mlm", {})[init] = metrics
    log(f"  MLM accuracy {metrics['mlm_accuracy_before']:.3f} → {metrics['best_mlm_accuracy']:.3f}")
    return folder


def throughput_table(forwards: dict[str, Any], dev: Dataset, pad_id: int) -> dict[str, float]:
    """Examples/s per model over the dev set at --batch-size; rounds interleave the models, best round wins."""
    batches, _ = numpy_batches(dev, ARGS.batch_size, pad_id)
    examples = sum(len(batch["input_ids"]) for batch in batches)
    best = dict.fromkeys(forwards, float("inf"))
    for forward in forwards.values():
        forward(batches[0])  # warm-up
    for _ in range(ARGS.throughput_rounds):
        for name, forward in forwards.items():
            started = time.perf_counter()
            for batch in batches:
                forward(batch)
            best[name] = min(best[name], time.perf_counter() - started)
    return {name: examples / seconds for name, seconds in best.items()}


def run_ablations(main_variant: Variant, ctx: dict[str, Any]) -> list[dict[str, Any]]:
    """The main configuration at the ablation budget, then one row per flipped factor."""
    flips = [] if ARGS.ablations == "none" else [name.strip() for name in ARGS.ablations.split(",")]
    if not flips:
        return []
    base = replace(main_variant, name="main @ ablation budget", steps=ARGS.ablation_steps)
    rows = [run_variant(base, ctx)[1]]
    for flip in flips:
        if flip == "init":
            other = "random" if base.init == "teacher-projected" else "teacher-projected"
            variant = replace(base, name=f"init: {other}", init=other)
        elif flip == "mlm":
            variant = replace(base, name=f"MLM pre-training: {'off' if base.mlm else 'on'}", mlm=not base.mlm)
        elif flip == "augmentation":
            variant = replace(
                base, name=f"augmentation: {'off' if base.augmented else 'on'}", augmented=not base.augmented
            )
        elif flip == "intermediate":
            variant = replace(
                base,
                name=f"intermediate losses: {'off' if base.intermediate else 'on'}",
                intermediate=not base.intermediate,
                steps=ARGS.intermediate_steps or ARGS.ablation_steps,
            )
        else:
            raise SystemExit(f"unknown ablation {flip!r}; known: init, mlm, augmentation, intermediate")
        rows.append(run_variant(variant, ctx)[1])
    return rows


ARGS = parse_args([])


def main(argv: list[str] | None = None) -> None:
    global ARGS
    ARGS = parse_args(argv)
    hub_offline_by_default()
    if ARGS.threads:
        torch.set_num_threads(ARGS.threads)
    if not (ARGS.teacher / "config.json").is_file():
        raise SystemExit(f"{ARGS.teacher}: no fine-tuned teacher there; run bench/finetune.py first")
    wall = time.perf_counter()
    ARGS.cache.mkdir(parents=True, exist_ok=True)
    teacher_source = ARGS.teacher
    if ARGS.part == "all":
        ARGS.teacher = snapshot_teacher(ARGS.teacher)
    summary_file = ARGS.teacher / "bench_summary.json"
    teacher_info = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    tokenizer = load_tokenizer(str(ARGS.teacher))
    teacher = load_classifier(ARGS.teacher)
    pad_id = tokenizer.pad_token_id
    train = load_split("train", tokenizer, ARGS.max_train_rows)
    dev = load_split("dev", tokenizer, None)
    score_dev = dev_scorer(TASK, dev, 256, pad_id)
    teacher_dev = score_dev(teacher)["accuracy"] if ARGS.part == "all" else float("nan")
    log(f"[{ARGS.part}] teacher dev accuracy {teacher_dev:.4f}; {len(train)} training rows")

    augment = {"copies": ARGS.copies, "min_words": ARGS.min_words, "max_source_rows": ARGS.max_source_rows}
    params = parse_params({"seed": ARGS.seed, "augment": augment})
    key = hashlib.sha256(
        json.dumps(
            {
                "teacher": file_digest(ARGS.teacher),
                "augment": params.augment.model_dump(),
                "rows": len(train),
                "seed": ARGS.seed,
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()[:12]
    started = time.perf_counter()
    transfer, transfer_stats = transfer_set(train, teacher, tokenizer, params, key)
    transfer_stats["wall_seconds_this_run"] = time.perf_counter() - started
    originals = transfer.filter(lambda flags: [not f for f in flags], input_columns="augmented", batched=True)
    ctx: dict[str, Any] = {
        "teacher": teacher,
        "tokenizer": tokenizer,
        "pad_id": pad_id,
        "transfer": transfer,
        "originals": originals,
        "score_dev": score_dev,
        "key": key,
    }

    main_variant = Variant("main", ARGS.init, ARGS.mlm, ARGS.augmented, ARGS.intermediate, ARGS.main_steps)
    ablation_json = ARGS.out.with_name(ARGS.out.stem + ".ablation.json")
    if ARGS.part == "ablation":
        ablation_json.write_text(json.dumps({"ablation": run_ablations(main_variant, ctx), "mlm": ctx.get("mlm", {})}))
        return
    ablation_process = None
    if ARGS.ablations != "none" and ARGS.workers > 1:
        # Beside the main run: on a shared CPU a second process finishes both sooner than running them in turn.
        ablation_json.unlink(missing_ok=True)
        ablation_process = child("ablation")
    student, main_row = run_variant(main_variant, ctx)

    export_dir = ARGS.cache / "student-export"
    student.save_pretrained(str(ARGS.cache / "student"))
    tokenizer.save_pretrained(str(ARGS.cache / "student"))
    exports = export_student(
        student,
        tokenizer,
        dev,
        TASK,
        export_dir,
        parse_params({"distill": {"export": {"formats": ["int8", "onnx", "onnx-int8"]}}}).distill.export,
        ARGS.batch_size,
    )
    log("exports: " + ", ".join(f"{k} {v['accuracy']:.4f} agrees={v['agrees']}" for k, v in exports.items()))

    if ablation_process is not None:
        if ablation_process.wait() != 0:
            raise SystemExit("the ablation process failed; rerun (cached steps are reused)")
        child_result = json.loads(ablation_json.read_text())
        ablation, ctx["mlm"] = child_result["ablation"], {**ctx.get("mlm", {}), **child_result["mlm"]}
        ablation_json.unlink()
    else:
        ablation = run_ablations(main_variant, ctx)

    log("throughput")
    forwards = {
        "teacher_fp32": torch_forward(teacher),
        "student_fp32": torch_forward(student),
        "student_int8": torch_forward(load_int8(export_dir / "int8")),
        "student_onnx": onnx_forward(onnx_session(export_dir / "onnx" / "model.onnx")),
        "student_onnx_int8": onnx_forward(onnx_session(export_dir / "onnx-int8" / "model.onnx")),
    }
    speeds = throughput_table(forwards, dev, pad_id)
    teacher_speed = speeds["teacher_fp32"]
    export_speeds = {k: v for k, v in speeds.items() if k not in ("teacher_fp32", "student_fp32")}
    agreeing = {
        k: v for k, v in export_speeds.items() if exports[k.removeprefix("student_").replace("_", "-")]["agrees"]
    }
    best_export = max(agreeing, key=lambda k: agreeing[k]) if agreeing else None
    batches, order = numpy_batches(dev, ARGS.batch_size, pad_id)
    student_logits = run_batches(torch_forward(student), batches, order)
    student_dev = float((logits_to_predictions(student_logits, TASK) == np.asarray(dev["labels"])).mean())

    result = {
        "command": "python " + " ".join(shlex.quote(a) for a in ["bench/distill.py", *(argv or sys.argv[1:])]),
        "task": "sst2",
        "data": str(ARGS.data_dir),
        "teacher": str(teacher_source),
        "teacher_snapshot": str(ARGS.teacher),
        "teacher_finetune_summary": teacher_info,
        "teacher_parameters": count_parameters(teacher),
        "student_parameters": count_parameters(student),
        "teacher_dev_accuracy": teacher_dev,
        "student_dev_accuracy": student_dev,
        "retention": student_dev / teacher_dev,
        "target_student_dev_accuracy": 0.86,
        "main": main_row,
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(ARGS).items()},
        "transfer_set": transfer_stats,
        "mlm": ctx.get("mlm", {}),
        "exports": exports,
        "throughput_batch_size": ARGS.batch_size,
        "throughput_examples_per_s": speeds,
        "throughput_ratio_vs_teacher": {k: v / teacher_speed for k, v in speeds.items()},
        "best_export": best_export,
        "throughput_ratio_best_export_vs_teacher": agreeing[best_export] / teacher_speed if best_export else None,
        "target_throughput_ratio": 25.0,
        "ablation": ablation,
        "ablation_note": f"ablation rows train {ARGS.ablation_steps} steps (intermediate losses: "
        f"{ARGS.intermediate_steps or ARGS.ablation_steps}), the main run {ARGS.main_steps}; "
        "compare rows with 'main @ ablation budget'",
        "wall_seconds": time.perf_counter() - wall,
        "threads": torch.get_num_threads(),
        "machine": machine_facts(),
    }
    ARGS.out.parent.mkdir(parents=True, exist_ok=True)
    ARGS.out.write_text(json.dumps(result, indent=2) + "\n")
    log(
        f"student {student_dev:.4f} / teacher {teacher_dev:.4f}; best export {best_export} "
        f"{result['throughput_ratio_best_export_vs_teacher']}x the teacher; wrote {ARGS.out}"
    )


if __name__ == "__main__":
    main()
