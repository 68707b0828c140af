"""Teacher labelling speed on real SST-2 rows: eager PyTorch against ONNX Runtime (distilflow.export.teacher_onnx).

The same rows, the same length-sorted batches of ``--batch-size``, the same thread count; the two paths run
``--rounds`` times interleaved (eager, onnx, eager, onnx, ...) so a change of machine load biases neither.
Agreement is over every row: the share of rows whose predicted label is the same, and the largest logit gap.

    python bench/teacher_labelling.py --rows 4096 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import shared_cpu  # noqa: F401  (before torch: the thread policy)
from common import RESULTS_DIR, SST2_DIR, ParamFlag, Settings, read_encoded_split, write_result

# isort: split

import numpy as np
import torch

from distilflow.export.student import onnx_session
from distilflow.export.teacher_onnx import LOGIT_TOLERANCE, export_teacher, onnx_logits
from distilflow.models.devices import seed_everything
from distilflow.models.inference import predict_logits
from distilflow.models.loading import load_classifier, load_teacher_for_finetuning, load_tokenizer, resolve_teacher
from distilflow.runtime.process import hub_offline_by_default, machine_facts
from distilflow.tasks import get_task

PARAM_FLAGS = (
    ParamFlag(
        "--teacher",
        "model.teacher",
        str,
        "a fine-tuned save_pretrained folder, or packaged-minilm (its head then drawn with --seed)",
    ),
    ParamFlag("--batch-size", "augment.teacher_batch_size", int),
    ParamFlag("--seed", "seed", int),
)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=SST2_DIR)
    parser.add_argument("--rows", type=int, default=4096, help="the first N training rows")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--spin", action=argparse.BooleanOptionalAction, default=False, help="ONNX Runtime threads spin when idle"
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "teacher-labelling-sst2.json")
    return parser


def main(argv: list[str] | None = None) -> None:
    run = Settings.parse("teacher_labelling.py", parser(), argv, PARAM_FLAGS, {})
    args, params = run.args, run.params
    hub_offline_by_default()
    task = get_task("sst2")
    tokenizer = load_tokenizer(resolve_teacher(params.model.teacher))
    seed_everything(params.seed)
    folder = Path(params.model.teacher)
    model = (
        load_classifier(folder)
        if (folder / "config.json").is_file()
        else load_teacher_for_finetuning(params.model.teacher, task)
    )
    model.eval()
    rows = read_encoded_split(task, args.data_dir, "train", tokenizer, params.tokenize.max_length, args.rows)
    pad_id = tokenizer.pad_token_id
    batch_size = params.augment.teacher_batch_size
    result: dict[str, object] = {
        **run.provenance(),
        "machine_at_start": machine_facts(),
        "torch_threads": torch.get_num_threads(),
        "rows": len(rows),
        "tokens_mean": float(np.mean(rows["length"])),
    }
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        session = onnx_session(export_teacher(model, Path(tmp)), spin=args.spin)
        result["export_seconds"] = time.perf_counter() - started
        onnx_logits(session, rows.select(range(batch_size)), batch_size, pad_id)  # warm-up
        predict_logits(model, rows.select(range(batch_size)), batch_size, pad_id)
        seconds: dict[str, list[float]] = {"eager": [], "onnx": []}
        for _ in range(args.rounds):
            started = time.perf_counter()
            eager = predict_logits(model, rows, batch_size, pad_id)
            seconds["eager"].append(time.perf_counter() - started)
            started = time.perf_counter()
            fast = onnx_logits(session, rows, batch_size, pad_id)
            seconds["onnx"].append(time.perf_counter() - started)
            print(f"eager {seconds['eager'][-1]:.1f}s, onnx {seconds['onnx'][-1]:.1f}s", flush=True)
    rates = {name: [len(rows) / s for s in values] for name, values in seconds.items()}
    result.update(
        {
            "eager_examples_per_s_runs": rates["eager"],
            "onnx_examples_per_s_runs": rates["onnx"],
            "eager_examples_per_s": float(np.mean(rates["eager"])),
            "onnx_examples_per_s": float(np.mean(rates["onnx"])),
            "teacher_labelling_speedup_vs_eager": float(np.sum(seconds["eager"]) / np.sum(seconds["onnx"])),
            "speedup_per_round": [e / o for e, o in zip(seconds["eager"], seconds["onnx"], strict=True)],
            "teacher_label_agreement": float((eager.argmax(-1) == fast.argmax(-1)).mean()),
            "teacher_max_logit_difference": float(np.abs(eager - fast).max()),
            "teacher_logit_tolerance": LOGIT_TOLERANCE,
            "machine_at_end": machine_facts(),
        }
    )
    write_result(args.out, result)
    print(json.dumps({k: result[k] for k in ("teacher_labelling_speedup_vs_eager", "teacher_label_agreement")}))


if __name__ == "__main__":
    main()
