"""Probe what limits the BERT-tiny student on SST-2: one factor changed at a time, at a fixed step budget.

Reuses the teacher-labelled transfer set of an earlier ``bench/distill.py`` run (``--transfer``: a folder
``bench/cache/distill-sst2/transfer-*``), so every variant trains on the same rows for ``--steps`` steps and the
only difference is the factor named:

- ``baseline``: the bench's main configuration (teacher-projected init, KD at T=2, alpha 0.9, lr 1e-3).
- ``contextual-word-init``: word embeddings from the fine-tuned teacher's last layer on each token alone
  (``[CLS] token [SEP]``), PCA-projected, instead of its input embeddings: sentiment-aware, for every word.
- ``no-dropout``: dropout 0 (is the student under-fitting?).
- ``intermediate-losses``: TinyBERT hidden-state and attention losses on as well (the teacher runs in the loop).
- ``spliced-text``: ``--splices`` extra teacher-labelled sentences made by joining two or three training
  phrases with a connective ("but", "although", ...): new long, mixed sentences like the dev set's.
- ``4-layers`` and ``hidden-256``: capacity probes outside BERT-tiny's shape (the issue fixes 2 x 128).

It also measures how closely the baseline follows the teacher on rows it trained on and on dev: a gap there
says the student fits its transfer set but does not generalise, rather than failing to fit it.

    python bench/distill_probe.py --transfer bench/cache/distill-sst2/transfer-b8ffba3164d7
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from pathlib import Path
from typing import Any

import common
import shared_cpu  # noqa: F401  (before torch: the thread policy)
from common import ParamFlag, Settings, log
from distill import OVERRIDES as DISTILL_OVERRIDES

# isort: split

import numpy as np
import torch
from datasets import Dataset, concatenate_datasets, load_from_disk

from distilflow.models.inference import predict_logits
from distilflow.models.loading import build_student, count_parameters, load_classifier, load_tokenizer, pca_directions
from distilflow.orchestration.scratch_workspace import deep_update
from distilflow.runtime.process import machine_facts
from distilflow.stages.distill import loop_settings
from distilflow.tasks import get_task
from distilflow.training.distillation import distill
from distilflow.training.loop import SCORED_PREFIX
from distilflow.training.scorer import split_scorer

SCORED = f"{SCORED_PREFIX}accuracy"  # what the training loop scored at each evaluation: dev, in this bench

CACHE = common.CACHE_DIR / "distill-sst2"
TASK = get_task("sst2")
VARIANTS = (
    "baseline",
    "contextual-word-init",
    "no-dropout",
    "intermediate-losses",
    "spliced-text",
    "4-layers",
    "hidden-256",
)
# fmt: off
CONNECTIVES = (
    ",", "and", "but", ", but", ".", ";", "although", "while", "even though", "yet", "though",
    "because", "--", "and yet", ", and", "so", "however ,", "if", "as", "with",
)
# fmt: on
COLUMNS = ["input_ids", "token_type_ids", "length", "labels", "teacher_logits"]
# The baseline is bench/distill.py's main configuration (its distill settings and the CPU), at this probe's budget.
OVERRIDES: dict[str, Any] = deep_update(
    {"distill": DISTILL_OVERRIDES["distill"], "finetune": DISTILL_OVERRIDES["finetune"]},
    {"distill": {"max_steps": 3000, "eval_every": 500}},
)
PARAM_FLAGS = (
    ParamFlag("--steps", "distill.max_steps", int, "distillation steps of every variant"),
    ParamFlag("--eval-every", "distill.eval_every", int),
    ParamFlag("--seed", "seed", int),
)
# What each variant changes from the baseline's params (the others change the student or its rows).
VARIANT_PARAMS: dict[str, dict[str, Any]] = {
    "4-layers": {"distill": {"student": {"num_layers": 4}}},
    "hidden-256": {"distill": {"student": {"hidden_size": 256, "num_heads": 4, "intermediate_size": 1024}}},
    "intermediate-losses": {"distill": {"hidden_weight": 1.0, "attention_weight": 1.0}},
}


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--transfer",
        type=Path,
        default=None,
        help="a transfer-* folder from bench/distill.py (default: the newest under bench/cache/distill-sst2)",
    )
    parser.add_argument("--teacher", type=Path, default=None, help="default: the teacher-* snapshot beside it")
    parser.add_argument("--data-dir", type=Path, default=common.SST2_DIR)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {VARIANTS}")
    parser.add_argument("--splices", type=int, default=200_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=common.RESULTS_DIR / "distill-probe.json")
    return parser


def parse_settings(argv: list[str] | None) -> Settings:
    run = Settings.parse("distill_probe.py", parser(), argv, PARAM_FLAGS, OVERRIDES)
    args = run.args
    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; choose from {VARIANTS}")
    if args.transfer is None:
        made = sorted(CACHE.glob("transfer-*/dataset"), key=lambda folder: folder.stat().st_mtime)
        if not made:
            raise SystemExit(f"no transfer set under {CACHE}: run bench/distill.py (make bench-distill) first")
        args.transfer = made[-1].parent
    if not (args.transfer / "dataset").is_dir():
        raise SystemExit(f"{args.transfer}: no dataset folder; pass a transfer-* folder written by bench/distill.py")
    if args.teacher is None:
        # teacher-<digest> snapshots hold a save_pretrained folder; teacher-onnx-<digest> their ONNX export
        snapshots = sorted(p for p in args.transfer.parent.glob("teacher-*") if (p / "config.json").is_file())
        if len(snapshots) != 1:
            raise SystemExit(f"pass --teacher: found {len(snapshots)} teacher snapshots beside {args.transfer}")
        args.teacher = snapshots[0]
    return run


def spliced_sentences(phrases: list[list[int]], tokenizer: Any, count: int, seed: int) -> list[list[int]]:
    """``count`` new examples: two (one in four: three) training phrases joined by connectives, at most 64 tokens.

    Phrases are drawn with probability growing as the square root of their length, so whole sentences
    turn up often without crowding out the short clauses that make a contrast ("but the acting is flat").
    """
    weights = np.sqrt([len(p) for p in phrases])
    weights /= weights.sum()
    joins = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in CONNECTIVES]
    rng = np.random.default_rng(seed)
    out: list[list[int]] = []
    while len(out) < count:
        picks = rng.choice(len(phrases), 3 if rng.random() < 0.25 else 2, p=weights)
        ids = list(phrases[picks[0]])
        for pick in picks[1:]:
            ids += joins[rng.integers(len(joins))] + list(phrases[pick])
        if len(ids) <= 62:
            out.append([tokenizer.cls_token_id, *ids, tokenizer.sep_token_id])
    return out


def label_part(job: tuple[str, str, int]) -> None:
    """One labelling process (one thread): the spawned workers share the CPU instead of oversubscribing it."""
    part, teacher_dir, pad_id = job
    torch.set_num_threads(1)
    rows = load_from_disk(part)
    with torch.no_grad():
        logits = predict_logits(load_classifier(Path(teacher_dir)), rows, 128, pad_id)
    np.save(part + ".npy", logits)


def spliced_set(transfer: Dataset, tokenizer: Any, run: Settings) -> tuple[Dataset, dict[str, Any]]:
    args, seed = run.args, run.params.seed
    folder = args.transfer.parent / f"splices-{args.transfer.name}-{args.splices}-{seed}"
    if not (folder / "dataset" / "dataset_info.json").is_file():
        started = time.perf_counter()
        originals = transfer.filter(lambda flags: [not f for f in flags], input_columns="augmented", batched=True)
        phrases = [ids[1:-1] for ids in originals["input_ids"] if len(ids) >= 5]
        ids = spliced_sentences(phrases, tokenizer, args.splices, seed)
        rows = Dataset.from_dict(
            {"input_ids": ids, "token_type_ids": [[0] * len(r) for r in ids], "length": [len(r) for r in ids]}
        )
        parts = []
        for index in range(2):
            part = folder / f"part{index}"
            rows.shard(2, index, contiguous=True).save_to_disk(str(part))
            parts.append((str(part), str(args.teacher), tokenizer.pad_token_id))
        log(f"labelling {len(rows)} spliced sentences (2 processes)")
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            pool.map(label_part, parts)
        logits = np.concatenate([np.load(part + ".npy") for part, _, _ in parts])
        rows = rows.add_column("teacher_logits", logits.tolist()).add_column("labels", logits.argmax(-1).tolist())
        rows.save_to_disk(str(folder / "dataset"))
        stats = {
            "rows": len(rows),
            "mean_tokens": float(np.mean(rows["length"])),
            "teacher_positive_fraction": float(logits.argmax(-1).mean()),
            "seconds": time.perf_counter() - started,
            "examples": [tokenizer.decode(r[1:-1]) for r in ids[:5]],
        }
        (folder / "stats.json").write_text(json.dumps(stats, indent=2))
    return load_from_disk(str(folder / "dataset")), json.loads((folder / "stats.json").read_text())


def contextual_word_embeddings(teacher: Any, tokenizer: Any, student: Any) -> torch.Tensor:
    """Each vocabulary entry through the fine-tuned teacher alone, last layer, PCA-projected to the student's width
    and scaled to its init range (as ``modeling.project_embeddings`` does for the input embeddings)."""
    ids = torch.arange(teacher.config.vocab_size)
    vectors = []
    with torch.no_grad():
        for start in range(0, len(ids), 1024):
            chunk = ids[start : start + 1024]
            inputs = torch.stack(
                [torch.full_like(chunk, tokenizer.cls_token_id), chunk, torch.full_like(chunk, tokenizer.sep_token_id)],
                dim=1,
            )
            vectors.append(teacher.base_model(input_ids=inputs).last_hidden_state[:, 1])
    table = torch.cat(vectors)
    words = (table - table.mean(0)) @ pca_directions(table, student.config.hidden_size).T
    return words * (student.config.initializer_range / words.std())


def agreement(student: Any, rows: Dataset, teacher_logits: np.ndarray, pad_id: int) -> float:
    return float(
        (predict_logits(student, rows, common.SCORE_BATCH_SIZE, pad_id).argmax(-1) == teacher_logits.argmax(-1)).mean()
    )


def prepared_student(run: Settings, name: str, params: Any, ctx: dict[str, Any]) -> Any:
    """The variant's student before training: built as distill builds it, then the variant's own change."""
    teacher = ctx["teacher"]
    student = build_student(teacher, params.distill.student, TASK, params.seed)
    if name == "contextual-word-init":
        words = student.get_input_embeddings()
        assert isinstance(words, torch.nn.Embedding)
        with torch.no_grad():
            words.weight.copy_(contextual_word_embeddings(teacher, ctx["tokenizer"], student))
    if name == "no-dropout":
        for module in student.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    return student


def fit_to_teacher(run: Settings, student: Any, ctx: dict[str, Any]) -> dict[str, float]:
    """On rows it trained on against held-out dev: does the student fit the teacher, and does it generalise?"""
    rng = np.random.default_rng(run.params.seed)
    transfer, pad_id = ctx["transfer"], ctx["pad_id"]
    flags = np.asarray(transfer["augmented"])
    fits = {}
    for kind, pool in (("training_split", np.flatnonzero(~flags)), ("rewrites", np.flatnonzero(flags))):
        sample = transfer.select(rng.choice(pool, min(8000, len(pool)), replace=False))
        fits[kind] = agreement(student, sample, np.asarray(sample["teacher_logits"]), pad_id)
    fits["dev"] = agreement(student, ctx["dev"], ctx["teacher_dev_logits"], pad_id)
    return fits


def run_variant(run: Settings, name: str, ctx: dict[str, Any]) -> dict[str, Any]:
    params = run.with_params(VARIANT_PARAMS.get(name, {}))
    config = params.distill
    student = prepared_student(run, name, params, ctx)
    train_rows = ctx["transfer"]
    if name == "spliced-text":
        spliced, ctx["splice_stats"] = spliced_set(train_rows, ctx["tokenizer"], run)
        base = train_rows.select_columns(COLUMNS)
        train_rows = concatenate_datasets([base, spliced.select_columns(COLUMNS).cast(base.features)])
    started = time.perf_counter()
    log(f"{name}: {config.max_steps} steps on {len(train_rows)} rows")
    student, result = distill(
        student,
        ctx["teacher"] if config.hidden_weight > 0 or config.attention_weight > 0 else None,
        train_rows,
        ctx["score_dev"],
        config,
        loop_settings(config, TASK, params),
        ctx["pad_id"],
        False,
        description=name,
    )
    row: dict[str, Any] = {
        "name": name,
        "student_dev_accuracy": result.best_metric,
        "best_step": result.best_step,
        "steps": result.steps,
        "train_rows": len(train_rows),
        "student_parameters": count_parameters(student),
        "wall_seconds": time.perf_counter() - started,
        "dev_curve": [{"step": p["step"], "accuracy": p[SCORED]} for p in result.history if SCORED in p],
    }
    if name == "baseline":
        row["agreement_with_teacher"] = fit_to_teacher(run, student, ctx)
    log(f"  {name}: dev {result.best_metric:.4f} (step {result.best_step})")
    return row


def main(argv: list[str] | None = None) -> None:
    run = parse_settings(argv)
    args = run.args
    torch.set_num_threads(args.threads)
    wall = time.perf_counter()
    teacher = load_classifier(args.teacher)
    tokenizer = load_tokenizer(str(args.teacher))
    dev = common.read_encoded_split(TASK, args.data_dir, "dev", tokenizer, run.params.tokenize.max_length, None)
    pad_id = tokenizer.pad_token_id
    # One teacher pass on dev: its accuracy here, and the reference the baseline's dev agreement is measured against.
    teacher_dev_logits = predict_logits(teacher, dev, common.SCORE_BATCH_SIZE, pad_id)
    teacher_dev = float((teacher_dev_logits.argmax(-1) == np.asarray(dev["labels"])).mean())
    transfer = load_from_disk(str(args.transfer / "dataset"))
    log(f"teacher dev {teacher_dev:.4f}; transfer set {len(transfer)} rows")
    ctx: dict[str, Any] = {
        "teacher": teacher,
        "tokenizer": tokenizer,
        "pad_id": pad_id,
        "dev": dev,
        "teacher_dev_logits": teacher_dev_logits,
        "score_dev": split_scorer(TASK, dev, common.SCORE_BATCH_SIZE, pad_id),
        "transfer": transfer,
        "splice_stats": {},
    }
    rows = [run_variant(run, name, ctx) for name in args.variants.split(",")]
    result_json = {
        **run.provenance(),
        "task": "sst2",
        "transfer": str(args.transfer),
        "teacher": str(args.teacher),
        "teacher_dev_accuracy": teacher_dev,
        "steps": run.params.distill.max_steps,
        "note": "best dev accuracy over evaluations every eval_every steps; one seed, so about +-1 point is noise "
        "(872 dev sentences)",
        "variants": rows,
        "spliced_text": ctx["splice_stats"],
        "wall_seconds": time.perf_counter() - wall,
        "threads": args.threads,
        "machine": machine_facts(),
    }
    common.write_result(args.out, result_json)
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
