"""Fine-tune the packaged MiniLM teacher on the real SST-2 and compare its speed with transformers.Trainer.

Two parts, one process, so the speed ratio is measured under the same machine load:

1. Accuracy: our loop (distilflow.training.loop.train) on the full training set; dev accuracy, wall time, samples/s.
   The fine-tuned teacher is saved to bench/cache/teacher-sst2/ (save_pretrained + tokenizer) for the
   distillation benchmark. Checkpoints go to bench/cache/, so a killed benchmark resumes where it was.
2. Speed: the same model, epochs, batch size and learning rate on the first ``--subset`` training rows for one
   epoch, through our loop and through ``transformers.Trainer`` twice: with every example padded to
   ``--max-length`` (what run_glue.py does with pad_to_max_length), and as a careful user would configure it,
   with ``DataCollatorWithPadding`` and ``train_sampling_strategy="group_by_length"``. Every configuration
   (the Trainer's and each of our loop's speed levers, ``--levers``) runs ``--rounds`` times, interleaved
   (A B C A B C ...), so a change of machine load biases none of them; rates are averaged over rounds.
   The padded Trainer is slow (every step at 128 tokens), so it runs once, on the first ``--padded-subset`` rows.

    make bench-finetune        # or: python bench/finetune.py --help
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import shared_cpu  # noqa: F401  (before torch: the thread policy)
from common import CACHE_DIR, RESULTS_DIR, ROOT, SCORE_BATCH_SIZE, SST2_DIR, ParamFlag, Settings, write_result

# isort: split

import numpy as np
import pandas as pd
import torch
import transformers
from datasets import Dataset

from distilflow.models.devices import seed_everything
from distilflow.models.loading import load_teacher_for_finetuning, load_tokenizer, resolve_teacher
from distilflow.runtime.process import hub_offline_by_default, machine_facts
from distilflow.stages.finetune import freeze_word_embeddings, supervised_loss
from distilflow.stages.tokenize import encode
from distilflow.tasks import LABEL, LINE, get_task
from distilflow.training.loop import SCORED_PREFIX, LoopResult, LoopSettings, train
from distilflow.training.scorer import split_scorer

SCORED = f"{SCORED_PREFIX}accuracy"  # what the training loop scored at each evaluation: dev, in this bench

# What this benchmark changes from params.yaml: a shorter warm-up, dev evaluations (and checkpoints) every 300
# steps, no early stopping.
OVERRIDES: dict[str, Any] = {"finetune": {"warmup_ratio": 0.06, "eval_every": 300, "early_stopping_patience": 0}}
PARAM_FLAGS = (
    ParamFlag("--teacher", "model.teacher", str),
    ParamFlag("--epochs", "finetune.epochs", float),
    ParamFlag("--batch-size", "finetune.batch_size", int),
    ParamFlag("--learning-rate", "finetune.learning_rate", float),
    ParamFlag("--warmup-ratio", "finetune.warmup_ratio", float),
    ParamFlag("--weight-decay", "finetune.weight_decay", float),
    ParamFlag("--max-length", "tokenize.max_length", int),
    ParamFlag("--freeze-embeddings", "finetune.freeze_embeddings", bool),
    ParamFlag("--eval-every", "finetune.eval_every", int, "optimizer steps between dev evaluations"),
    ParamFlag("--patience", "finetune.early_stopping_patience", int, "early stopping, in evaluations; 0: off"),
    ParamFlag("--max-train-rows", "data.max_train_rows", int, "accuracy run on the first N rows only"),
    ParamFlag("--seed", "seed", int),
)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=SST2_DIR, help="folder with train.tsv, dev.tsv")
    parser.add_argument("--subset", type=int, default=4000, help="training rows for the speed comparison")
    parser.add_argument(
        "--part",
        choices=("all", "accuracy", "speed"),
        default="all",
        help="all: the accuracy run in a child process while this one measures the speed ratio",
    )
    parser.add_argument("--rounds", type=int, default=2, help="speed: interleaved rounds of every configuration")
    parser.add_argument("--padded-subset", type=int, default=256, help="speed: rows for the max-length Trainer")
    parser.add_argument(
        "--levers",
        default="ours",
        help="speed: comma-separated configurations of our loop, from: " + ", ".join(LEVERS),
    )
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--save-to", type=Path, default=CACHE_DIR / "teacher-sst2")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "finetune-sst2.json")
    return parser


# Our loop's speed levers, each alone and combined: LoopSettings overrides, plus "threads" (torch.set_num_threads).
LEVERS: dict[str, dict[str, Any]] = {
    "ours": {},
    "fused_adamw": {"optimizer": "fused"},
    "loop_adamw": {"optimizer": "loop"},
    "exact_length": {"exact_length_batches": True},
    "no_full_mask": {"drop_full_mask": True},
    "exact_length+no_full_mask": {"exact_length_batches": True, "drop_full_mask": True},
    "lazy_loss": {"lazy_loss": True},
    "one_thread": {"threads": 1},
    "all": {"exact_length_batches": True, "drop_full_mask": True, "lazy_loss": True},
    "all+one_thread": {"exact_length_batches": True, "drop_full_mask": True, "lazy_loss": True, "threads": 1},
    "all+fused_adamw": {"exact_length_batches": True, "drop_full_mask": True, "lazy_loss": True, "optimizer": "fused"},
}


def read_split(folder: Path, split: str) -> pd.DataFrame:
    file = folder / f"{split}.tsv"
    if not file.is_file():
        raise SystemExit(f"{file} not found: point --data-dir (or DISTILFLOW_GLUE_DIR) at the GLUE SST-2 folder")
    frame = pd.read_csv(file, sep="\t", quoting=3, keep_default_na=False)
    frame[LABEL] = frame[LABEL].astype(int)
    frame[LINE] = np.arange(2, len(frame) + 2)  # 1-based, after the header
    return frame


def settings_for(run: Settings, epochs: float, eval_every: int, checkpoint_every: int | None) -> LoopSettings:
    """The finetune stage's loop settings (``finetune``), at this run's epochs and evaluation interval."""
    config = run.params.finetune
    settings = LoopSettings.from_params(
        config,
        get_task("sst2").primary_metric,
        run.params.seed,
        grad_accum_steps=config.grad_accum_steps,
        checkpoint_every=checkpoint_every,
        device=run.params.run.device,
        precision=run.params.run.precision,
    )
    return dataclasses.replace(settings, epochs=epochs, eval_every=eval_every)


def fresh_model(run: Settings) -> torch.nn.Module:
    seed_everything(run.params.seed)  # the new classification head is drawn from torch's generator
    model = load_teacher_for_finetuning(run.params.model.teacher, get_task("sst2"))
    if run.params.finetune.freeze_embeddings:
        freeze_word_embeddings(model)
    return model


def run_ours(
    run: Settings,
    train_set: Dataset,
    dev: Dataset,
    epochs: float,
    eval_every: int,
    pad_id: int,
    checkpoint_dir: Path | None = None,
    checkpoint_every: int | None = None,
    on_best: Callable[[torch.nn.Module, int, float], None] | None = None,
    lever: str = "ours",
) -> tuple[torch.nn.Module, LoopResult]:
    score = split_scorer(get_task("sst2"), dev, SCORE_BATCH_SIZE, pad_id)
    overrides = dict(LEVERS[lever])
    threads = overrides.pop("threads", None)
    settings = dataclasses.replace(settings_for(run, epochs, eval_every, checkpoint_every), **overrides)
    if threads is not None:
        default_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
    model = fresh_model(run)
    best = [float("-inf")]

    def on_eval(step: int, point: dict[str, float]) -> None:
        if on_best is not None and point[SCORED] > best[0]:
            best[0] = point[SCORED]
            on_best(model, step, point[SCORED])

    try:
        return train(
            model,
            train_set,
            supervised_loss,
            score,
            settings,
            pad_id,
            regression=False,
            checkpoint_dir=checkpoint_dir,
            on_eval=on_eval,
            description=f"distilflow {lever}",
        )
    finally:
        if threads is not None:
            torch.set_num_threads(default_threads)


def trainer_arguments(run: Settings, rows: int, output_dir: Path, **extra: Any) -> Any:
    steps = int(np.ceil(rows / run.params.finetune.batch_size))
    return transformers.TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=1,
        per_device_train_batch_size=run.params.finetune.batch_size,
        learning_rate=run.params.finetune.learning_rate,
        weight_decay=run.params.finetune.weight_decay,
        warmup_steps=int(run.params.finetune.warmup_ratio * steps),
        lr_scheduler_type="linear",
        max_grad_norm=run.params.finetune.max_grad_norm,
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        seed=run.params.seed,
        dataloader_num_workers=0,
        disable_tqdm=False,
        **extra,
    )


def run_trainer(run: Settings, frame: pd.DataFrame, tokenizer: Any, output_dir: Path) -> dict[str, float]:
    """run_glue.py's recipe: pad every example to max_length, default collator, Trainer's own loop."""
    encoded = tokenizer(
        frame["sentence"].tolist(), padding="max_length", truncation=True, max_length=run.params.tokenize.max_length
    )
    dataset = Dataset.from_dict({**encoded, "labels": frame[LABEL].tolist()})
    training_args = trainer_arguments(run, len(dataset), output_dir)
    trainer = transformers.Trainer(model=fresh_model(run), args=training_args, train_dataset=dataset)
    metrics = trainer.train().metrics
    return {
        "samples_per_s": float(metrics["train_samples_per_second"]),
        "seconds": float(metrics["train_runtime"]),
        "tokens_per_example": float(run.params.tokenize.max_length),
    }


def group_by_length_argument() -> dict[str, Any]:
    """The Trainer's length grouping by either of its names: older transformers 5 releases take group_by_length."""
    fields = {item.name for item in dataclasses.fields(transformers.TrainingArguments)}
    if "train_sampling_strategy" in fields:
        return {"train_sampling_strategy": "group_by_length"}
    return {"group_by_length": True}


def run_trainer_dynamic(
    run: Settings, rows: Dataset, tokenizer: Any, output_dir: Path, **extra: Any
) -> dict[str, float]:
    """The Trainer as a careful user sets it up: the same token ids as ours, padded per batch, length-grouped.

    ``extra``: more TrainingArguments (scripts/gpu_check.py adds bf16 on the GPU, use_cpu in its dry run)."""
    dataset = Dataset.from_dict(
        {
            "input_ids": rows["input_ids"],
            "token_type_ids": rows["token_type_ids"],
            "attention_mask": [[1] * n for n in rows["length"]],
            "labels": rows["labels"],
            "length": rows["length"],
        }
    )
    training_args = trainer_arguments(run, len(dataset), output_dir, **group_by_length_argument(), **extra)
    trainer = transformers.Trainer(
        model=fresh_model(run),
        args=training_args,
        train_dataset=dataset,
        data_collator=transformers.DataCollatorWithPadding(tokenizer),
    )
    metrics = trainer.train().metrics
    return {
        "samples_per_s": float(metrics["train_samples_per_second"]),
        "seconds": float(metrics["train_runtime"]),
        "tokens_per_example": float(np.mean(rows["length"])),
    }


def save_teacher(model: torch.nn.Module, tokenizer: Any, target: Path, summary: dict[str, Any]) -> None:
    """Write beside the target and rename, so a reader never sees half a model."""
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))  # type: ignore[operator]
    tokenizer.save_pretrained(str(tmp))
    (tmp / "bench_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)


def speed_comparison(
    run: Settings, train_frame: pd.DataFrame, train_set: Dataset, dev: Dataset, tokenizer: Any
) -> dict[str, Any]:
    """Every configuration ``--rounds`` times, interleaved; the max-length Trainer once, on fewer rows."""
    subset = train_set.select(range(min(run.args.subset, len(train_set))))
    pad_id = tokenizer.pad_token_id
    no_eval = 10**9  # one evaluation, at the last step, outside the timed training
    levers = [name.strip() for name in run.args.levers.split(",") if name.strip()]
    unknown = set(levers) - set(LEVERS)
    if unknown or "ours" not in levers:
        raise SystemExit(f"--levers must include 'ours' and name only {', '.join(LEVERS)}; unknown: {unknown}")
    rates: dict[str, list[float]] = {name: [] for name in [*levers, "trainer_dynamic"]}
    accuracy: dict[str, list[float]] = {name: [] for name in levers}
    # Warm-up, not recorded: the first run in a process pays one-time costs (allocator, kernel selection).
    run_ours(run, subset.select(range(min(64, len(subset)))), dev.select(range(32)), 1.0, no_eval, pad_id)
    for _ in range(run.args.rounds):
        for name in rates:
            if name == "trainer_dynamic":
                cache = CACHE_DIR / "trainer-dynamic"
                rates[name].append(run_trainer_dynamic(run, subset, tokenizer, cache)["samples_per_s"])
            else:
                _, ours = run_ours(run, subset, dev, 1.0, no_eval, pad_id, lever=name)
                rates[name].append(ours.samples_per_s)
                accuracy[name].append(ours.best_metric)
            print(f"speed: {name} {rates[name][-1]:.1f} samples/s", flush=True)
    padded_rows = train_frame.iloc[: run.args.padded_subset]
    trainer = run_trainer(run, padded_rows, tokenizer, CACHE_DIR / "trainer")
    mean = {name: float(np.mean(values)) for name, values in rates.items()}
    best = max(levers, key=lambda name: mean[name])
    dynamic = mean["trainer_dynamic"]
    return {
        "subset_rows": len(subset),
        "subset_samples_per_s": mean["ours"],
        "subset_samples_per_s_runs": rates["ours"],
        "subset_dev_accuracy": accuracy["ours"],
        "trainer_samples_per_s": trainer["samples_per_s"],
        "trainer_seconds": trainer["seconds"],
        "trainer_rows": len(padded_rows),
        "speedup_vs_trainer": mean["ours"] / trainer["samples_per_s"],
        "trainer_dynamic_samples_per_s": dynamic,
        "trainer_dynamic_samples_per_s_runs": rates["trainer_dynamic"],
        "speedup_vs_trainer_dynamic": mean["ours"] / dynamic,
        "best_lever": best,
        "best_lever_speedup_vs_trainer_dynamic": mean[best] / dynamic,
        "ablation": {
            name: {
                "settings": LEVERS[name],
                "samples_per_s_runs": rates[name],
                "samples_per_s": mean[name],
                "vs_ours": mean[name] / mean["ours"],
                "vs_trainer_dynamic": mean[name] / dynamic,
                "dev_accuracy_after_one_epoch": accuracy[name],
            }
            for name in levers
        },
    }


def accuracy_run(run: Settings, train_set: Dataset, dev: Dataset, tokenizer: Any, started: float) -> dict[str, Any]:
    """Our loop on the training split (``data.max_train_rows`` of it): the teacher saved at every new best."""
    config = run.params.finetune
    limit = run.params.data.max_train_rows
    rows = train_set if limit is None else train_set.select(range(limit))
    recipe = {
        "params": run.params.model_dump(by_alias=True, include={"seed", "run", "data", "model", "tokenize", "finetune"})
    }
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    checkpoints = CACHE_DIR / f"checkpoints-{key}"
    command = run.provenance()["command"]

    def keep_best(model: torch.nn.Module, step: int, accuracy: float) -> None:
        # Saved at every new best, so the distillation benchmark can start before this run ends.
        summary = {"dev_accuracy": accuracy, "step": step, "final": False, "command": command}
        save_teacher(model, tokenizer, run.args.save_to, summary)

    pad_id = tokenizer.pad_token_id
    every = config.eval_every
    model, full = run_ours(run, rows, dev, config.epochs, every, pad_id, checkpoints, every, on_best=keep_best)
    curve = [
        {k: v for k, v in p.items() if k in ("step", "dev_accuracy", "train_loss")} for p in full.history if SCORED in p
    ]
    save_to = run.args.save_to
    save_teacher(
        model,
        tokenizer,
        save_to,
        {"dev_accuracy": full.best_metric, "step": full.best_step, "final": True, "command": command},
    )
    shutil.rmtree(checkpoints, ignore_errors=True)
    print(f"accuracy run: dev accuracy {full.best_metric:.4f}, {full.samples_per_s:.1f} samples/s", flush=True)
    return {
        "teacher_dev_accuracy": full.best_metric,
        "best_step": full.best_step,
        "steps": full.steps,
        "samples_per_s": full.samples_per_s,
        "train_seconds": full.train_seconds,
        "accuracy_run_wall_s": time.perf_counter() - started,
        "resumed_from_step": full.resumed_from_step,
        "dev_curve": curve,
        "train_loss_every_100_steps": [
            {"step": p["step"], "train_loss": p["train_loss"]} for p in full.history if p["step"] % 100 == 0
        ],
        "teacher_dir": str(save_to.relative_to(ROOT) if save_to.is_relative_to(ROOT) else save_to),
    }


def main(argv: list[str] | None = None) -> None:
    run = Settings.parse("finetune.py", parser(), argv, PARAM_FLAGS, OVERRIDES)
    hub_offline_by_default()
    if run.args.threads:
        torch.set_num_threads(run.args.threads)
    started = time.perf_counter()
    task = get_task("sst2")
    tokenizer = load_tokenizer(resolve_teacher(run.params.model.teacher))
    train_frame, dev_frame = read_split(run.args.data_dir, "train"), read_split(run.args.data_dir, "dev")
    train_set = encode(train_frame, task, tokenizer, run.params.tokenize.max_length)
    dev = encode(dev_frame, task, tokenizer, run.params.tokenize.max_length)
    result: dict[str, Any] = {
        **run.provenance(),
        "machine": {
            **machine_facts(),
            "torch_threads": torch.get_num_threads(),
            "load_average_at_start": list(os.getloadavg()),
            "cuda": torch.cuda.is_available(),
        },
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(run.args).items()},
        "train_rows": len(train_set),
        "dev_rows": len(dev),
        "train_tokens_mean": float(np.mean(train_set["length"])),
    }
    child = None
    if run.args.part == "all":
        # The accuracy run takes most of the hour; run it beside the speed comparison instead of before it.
        # Both sides of the speed ratio run in this process, one after the other, under the same load.
        accuracy_json = run.args.out.with_name(run.args.out.stem + ".accuracy.json")
        accuracy_json.unlink(missing_ok=True)
        child_args = [*run.argv, "--part", "accuracy", "--out", str(accuracy_json)]
        child = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *child_args])

    if run.args.part == "accuracy":
        result.update(accuracy_run(run, train_set, dev, tokenizer, started))

    if run.args.part in ("all", "speed"):
        result.update(speed_comparison(run, train_frame, train_set, dev, tokenizer))
        result["speed_measured_beside_accuracy_run"] = child is not None

    if child is not None:
        if child.wait() != 0:
            raise SystemExit(f"the accuracy run failed (exit {child.returncode}); rerun resumes from its checkpoint")
        accuracy = json.loads(accuracy_json.read_text())
        result.update({k: v for k, v in accuracy.items() if k not in result or k == "machine"})
        accuracy_json.unlink()
    result["wall_s"] = time.perf_counter() - started
    result["load_average_at_end"] = list(os.getloadavg())
    write_result(run.args.out, result)
    print(
        json.dumps(
            {
                k: result.get(k)
                for k in (
                    "teacher_dev_accuracy",
                    "samples_per_s",
                    "trainer_samples_per_s",
                    "speedup_vs_trainer",
                    "trainer_dynamic_samples_per_s",
                    "speedup_vs_trainer_dynamic",
                    "best_lever",
                    "best_lever_speedup_vs_trainer_dynamic",
                    "wall_s",
                )
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
