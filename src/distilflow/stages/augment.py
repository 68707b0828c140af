"""augment: build the transfer set once — the training split plus word-level rewrites, labelled by the teacher.

Running the teacher is the expensive part of distillation, so its logits on every transfer example are
computed here, once, and saved with the examples (``data/transfer``); the distill stage never runs the
teacher for soft targets, however many epochs it trains. A change of distill settings reuses this output.

Columns: input_ids, token_type_ids, labels, length (as in data/tokenized), teacher_logits, source (row of the
training split the example comes from) and augmented. Gold labels stay on original rows; a rewrite carries
the teacher's prediction instead, since a rewrite may no longer mean what its source meant.
"""

from __future__ import annotations

import shutil
import time
from typing import Any

import numpy as np
from datasets import Dataset, Features, concatenate_datasets, load_from_disk

from distilflow.config.params import Params
from distilflow.data.rewrites import Vocabulary, augment_rows
from distilflow.export.teacher_onnx import teacher_logits
from distilflow.models.inference import logits_to_predictions
from distilflow.models.loading import load_classifier, load_tokenizer
from distilflow.paths import Paths
from distilflow.tasks import get_task
from distilflow.tracking.runs import stage_run, write_json, write_lineage

COLUMNS = ("input_ids", "token_type_ids", "labels", "length")


def rewritten_rows(train: Dataset, teacher: Any, tokenizer: Any, params: Params, features: Features) -> Dataset | None:
    """``augment.copies`` word-level rewrites per eligible training example, unlabelled; None when there are none."""
    config = params.augment
    if config.copies <= 0:
        return None
    rows = train["input_ids"]
    vocab = Vocabulary.from_teacher(tokenizer, teacher.get_input_embeddings().weight, config.neighbours, used=rows)
    ids, types, sources = augment_rows(rows, vocab, config, params.seed, params.tokenize.max_length)
    if not ids:
        return None
    # Placeholder labels until the teacher has spoken; the column type must match the originals'.
    placeholder = [0.0 if get_task(params.task).is_regression else 0] * len(ids)
    return Dataset.from_dict(
        {
            "input_ids": ids,
            "token_type_ids": types,
            "labels": placeholder,
            "length": [len(row) for row in ids],
            "source": sources,
            "augmented": [True] * len(ids),
        },
        features=features,
    )


def build_transfer_set(train: Dataset, teacher: Any, tokenizer: Any, params: Params) -> tuple[Dataset, dict[str, Any]]:
    """The training split and its rewrites, each with the teacher's logits; returns the set and its statistics."""
    task = get_task(params.task)
    config = params.augment
    started = time.perf_counter()
    originals = train.select_columns(list(COLUMNS))
    originals = originals.add_column("source", list(range(len(originals))))
    originals = originals.add_column("augmented", [False] * len(originals))
    rewrites = rewritten_rows(train, teacher, tokenizer, params, originals.features)
    parts = [originals] if rewrites is None else [originals, rewrites]
    augment_seconds = time.perf_counter() - started
    transfer = concatenate_datasets(parts)
    started = time.perf_counter()
    logits, labelling = teacher_logits(
        teacher,
        transfer,
        config.teacher_batch_size,
        tokenizer.pad_token_id,
        backend=config.teacher_backend,
        check_rows=config.teacher_check_rows,
        seed=params.seed,
    )
    teacher_seconds = time.perf_counter() - started  # the ONNX export and the check sample included
    predictions = logits_to_predictions(logits, task)
    augmented = np.asarray(transfer["augmented"], dtype=bool)
    labels = np.asarray(transfer["labels"])
    labels = np.where(augmented, predictions, labels).astype(labels.dtype)
    transfer = transfer.remove_columns("labels").add_column("labels", labels.tolist())
    transfer = transfer.add_column("teacher_logits", logits.tolist())
    stats = {
        "train_rows": len(train),
        "augmented_rows": int(augmented.sum()),
        "transfer_rows": len(transfer),
        "sources_rewritten": len(set(np.asarray(transfer["source"])[augmented].tolist())),
        "augment_seconds": augment_seconds,
        "teacher_seconds": teacher_seconds,
        "teacher_examples_per_s": len(transfer) / max(teacher_seconds, 1e-9),
        **labelling,
    }
    if not task.is_regression:
        gold = np.asarray(train["labels"])
        stats["teacher_train_accuracy"] = float((predictions[: len(train)] == gold).mean())
    return transfer, stats


def run(params: Params, paths: Paths) -> dict[str, Any]:
    data = load_from_disk(str(paths.tokenized_dir))
    tokenizer = load_tokenizer(str(paths.teacher_dir))
    teacher = load_classifier(paths.teacher_dir)
    with stage_run("augment", params, paths) as tracked:
        transfer, stats = build_transfer_set(data["train"], teacher, tokenizer, params)
        out = paths.transfer_dir
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        transfer.save_to_disk(str(tmp))  # write aside, then swap: a kill never leaves half a transfer set
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
        write_lineage(paths, "augment", tracked.run_id, "finetune")
        write_json(paths.metrics_file("augment"), stats)
        tracked.log_metrics(stats)
    return {"metrics": stats}
