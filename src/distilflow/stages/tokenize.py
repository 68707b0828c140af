"""tokenize: validated text → token ids with the teacher's fast tokenizer, saved once as Arrow.

No padding here: batches are padded to their own longest row at training time, which on SST-2
(median ~10 tokens) saves most of the compute that padding to ``max_length`` would waste.
Pair tasks are encoded as ``[CLS] a [SEP] b [SEP]`` with token type ids 0 then 1. ``meta.json`` records a
hash of everything the output depends on (text, labels, vocabulary, settings); DVC skips the stage when
those are unchanged, and a manual rerun that finds the same hash on disk reuses the output as it is.
A stratified, seeded slice of train becomes the ``holdout`` split (data.holdout): finetune and distill score
themselves on it, and dev is read only by evaluate. ``meta.json`` names the held-out source lines.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
from datasets import Dataset, DatasetDict

from distilflow.config.params import Params
from distilflow.data.holdout import HOLDOUT, holdout_rows
from distilflow.models.loading import load_tokenizer, resolve_teacher
from distilflow.paths import Paths
from distilflow.tasks import LABEL, LINE, GlueTask, get_task
from distilflow.tracking.runs import stage_run, write_json, write_lineage


def content_hash(
    frames: dict[str, pd.DataFrame], tokenizer_dir: str, max_length: int, task: str = "", holdout: str = ""
) -> str:
    """Hash of exactly what determines the output: the text and labels, the vocabulary and the settings."""
    digest = hashlib.sha256()
    digest.update(f"task={task};holdout={holdout}".encode())
    for split in sorted(frames):
        digest.update(split.encode())
        digest.update(pd.util.hash_pandas_object(frames[split], index=False).values.tobytes())
    for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        file = Path(tokenizer_dir) / name
        if file.is_file():
            digest.update(file.read_bytes())
    digest.update(f"max_length={max_length}".encode())
    return digest.hexdigest()


def encode(frame: pd.DataFrame, task: GlueTask, tokenizer: Any, max_length: int) -> Dataset:
    """One row per example: input_ids, token_type_ids, labels, the source line and the token count."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"{type(tokenizer).__name__} is a slow (Python) tokenizer; tokenize needs a fast one "
            "(a tokenizer.json next to the model, or a model with a Rust tokenizer)"
        )
    missing = [column for column in (*task.fields, LABEL, LINE) if column not in frame.columns]
    if missing:
        raise ValueError(f"validated {task.name} data lacks column(s) {', '.join(missing)}")
    texts = [frame[field].tolist() for field in task.fields]
    encoded = tokenizer(*texts, truncation=True, max_length=max_length, return_attention_mask=False)
    columns: dict[str, Any] = {
        "input_ids": encoded["input_ids"],
        "token_type_ids": encoded["token_type_ids"],
        "labels": frame[LABEL].tolist(),
        LINE: frame[LINE].tolist(),
    }
    columns["length"] = [len(ids) for ids in columns["input_ids"]]
    return Dataset.from_dict(columns)


def hold_out(splits: DatasetDict, task: GlueTask, params: Params) -> tuple[DatasetDict, dict[str, Any]]:
    """Train split in two: ``holdout`` (data.holdout) and the rest, still ``train``; returns them and the record of
    which source lines were held out."""
    settings = params.tokenize
    train = splits["train"]
    rows = holdout_rows(
        train["labels"], settings.holdout_share, settings.holdout_max_rows, params.seed, task.is_regression
    )
    held = set(rows.tolist())
    kept = [row for row in range(len(train)) if row not in held]
    record = {
        "rows": len(rows),
        "share": settings.holdout_share,
        "max_rows": settings.holdout_max_rows,
        "seed": params.seed,
        "stratified_by": "score quintile" if task.is_regression else "label",
        "lines": list(train.select(rows)[LINE]),  # the source file's line numbers, so anyone can tell which rows
    }
    return DatasetDict({**splits, "train": train.select(kept), HOLDOUT: train.select(rows)}), record


def length_summary(splits: DatasetDict, max_length: int, paths: Paths) -> dict[str, Any]:
    """The training split's token lengths: the histogram plot DVC draws, and the numbers metrics/tokenize.json holds."""
    lengths = pd.Series(splits["train"]["length"])
    histogram = Counter(lengths.tolist())
    plot_rows = [{"tokens": length, "examples": histogram[length]} for length in sorted(histogram)]
    paths.plots_dir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(plot_rows).to_csv(paths.plots_dir / "token_lengths.csv", index=False)
    return {
        "train_rows": len(splits["train"]),
        "holdout_rows": len(splits[HOLDOUT]),
        "tokens_mean": float(lengths.mean()),
        "tokens_p95": float(lengths.quantile(0.95)),
        "tokens_max": int(lengths.max()),
        "truncated_train": int((lengths >= max_length).sum()),
        "padding_saved_pct": float(100 * (1 - lengths.mean() / max_length)),
    }


def run(params: Params, paths: Paths) -> dict[str, Any]:
    task = get_task(params.task)
    frames = {split: pd.read_parquet(paths.validated_dir / f"{split}.parquet") for split in task.splits}
    tokenizer_dir = resolve_teacher(params.model.teacher)
    holdout = f"{params.tokenize.holdout_share}:{params.tokenize.holdout_max_rows}:{params.seed}"
    digest = content_hash(frames, tokenizer_dir, params.tokenize.max_length, task.name, holdout)
    meta_file = paths.tokenized_meta_file
    complete = meta_file.is_file() and (paths.tokenized_dir / "dataset_dict.json").is_file()
    if (
        complete
        and json.loads(meta_file.read_text()).get("content_hash") == digest
        and paths.metrics_file("tokenize").is_file()
    ):
        return {
            "metrics": json.loads(paths.metrics_file("tokenize").read_text()),
            "meta": json.loads(meta_file.read_text()),
            "reused": True,
        }
    with stage_run("tokenize", params, paths) as tracked:
        tokenizer = load_tokenizer(tokenizer_dir)
        splits, held_out = hold_out(
            DatasetDict(
                {split: encode(frame, task, tokenizer, params.tokenize.max_length) for split, frame in frames.items()}
            ),
            task,
            params,
        )
        out = paths.tokenized_dir
        if out.exists():
            shutil.rmtree(out)
        splits.save_to_disk(str(out))
        tokenizer.save_pretrained(str(out / "tokenizer"))
        meta = {
            "content_hash": digest,
            "tokenizer": tokenizer_dir if params.model.teacher != "packaged-minilm" else "packaged-minilm",
            "max_length": params.tokenize.max_length,
            "rows": {split: len(dataset) for split, dataset in splits.items()},
            "fast_tokenizer": True,
            "pair_encoding": "[CLS] a [SEP] b [SEP]" if task.is_pair else "[CLS] a [SEP]",
            HOLDOUT: held_out,
        }
        write_json(out / paths.tokenized_meta_file.name, meta)
        write_lineage(paths, "tokenize", tracked.run_id, "validate")

        metrics = length_summary(splits, params.tokenize.max_length, paths)
        write_json(paths.metrics_file("tokenize"), metrics)
        tracked.log_metrics(metrics)
        tracked.log_dict(meta, "tokenize_meta.json")
    return {"metrics": metrics, "meta": meta, "reused": False}
