"""scripts/gpu_check.sh on the CPU (the dry run that keeps the one-command GPU check from rotting), its time budgets,
and the fp32 weights fine-tuning needs when the teacher's checkpoint holds fp16 ones (as gpu/teacher does)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import BertConfig, BertForSequenceClassification

from distilflow.config.data_params import PACKAGED_TEACHER
from distilflow.models.loading import load_teacher_for_finetuning, load_tokenizer, resolve_teacher
from distilflow.tasks import get_task

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from gpu_check import Report, run_part  # noqa: E402 - scripts/ is no package

PARTS = ("data", "tests", "compare", "teacher", "label", "distill")


def save_tiny_teacher(folder: Path, half: bool = False) -> Path:
    """A 2-layer BERT as wide as the student (so teacher-layers init works), with the packaged tokenizer."""
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522, hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512
    )
    BertForSequenceClassification(config).save_pretrained(str(folder))
    load_tokenizer(resolve_teacher(PACKAGED_TEACHER)).save_pretrained(str(folder))
    if half:  # as scripts/gpu_prepare.py writes gpu/teacher: fp16 tensors, the config left as it was
        weights = load_file(str(folder / "model.safetensors"))
        save_file(
            {k: v.half() for k, v in weights.items()}, str(folder / "model.safetensors"), metadata={"format": "pt"}
        )
    return folder


def test_dry_run_passes_every_part_and_writes_every_figure(tmp_path: Path) -> None:
    teacher = save_tiny_teacher(tmp_path / "teacher", half=True)
    out = tmp_path / "out"
    arguments = ["--device", "cpu", "--quick", "--data-dir", "data/demo/sst2", "--teacher", str(teacher)]
    started = time.perf_counter()
    completed = subprocess.run(
        ["bash", "scripts/gpu_check.sh", str(out), *arguments],
        cwd=ROOT,
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    report: dict[str, Any] = json.loads((out / "gpu_check.json").read_text())
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    parts = report["parts"]
    assert {name: parts[name]["status"] for name in PARTS} == dict.fromkeys(PARTS, "ok"), seconds
    assert report["summary"] == {"ok": True, "not_ok": []}
    assert report["environment"]["torch"] == torch.__version__
    assert report["command"].startswith("bash scripts/gpu_check.sh")
    tests = parts["tests"]["figures"]
    assert tests["skipped"] and all(case["reason"].endswith("no CUDA device") for case in tests["skipped"])
    assert not tests["failed"]
    compare = parts["compare"]["figures"]
    assert compare["speedup_vs_trainer"] > 0 and compare["trainer_arguments"] == {"use_cpu": True}
    teacher_figures = parts["teacher"]["figures"]
    assert teacher_figures["weights_dtype"] == "torch.float32"  # the fp16 checkpoint is trained in fp32
    assert teacher_figures["steps"] == 3 and 0.0 <= teacher_figures["dev_accuracy"] <= 1.0
    label = parts["label"]["figures"]
    assert label["rows"] == parts["data"]["figures"]["train_rows"] + label["augmented_rows"]
    assert label["augmented_rows"] > 0 and label["rows_per_s"] > 0
    distill = parts["distill"]["figures"]
    assert distill["steps"] == 3 and distill["steps_per_s"] > 0 and distill["init"] == "teacher-layers"
    assert all(parts[name]["peak_gpu_memory_mb"] is None for name in PARTS)  # nothing claims a GPU it lacks


def test_a_part_past_its_budget_is_stopped_and_keeps_its_figures(tmp_path: Path) -> None:
    report = Report(tmp_path, "test")

    def slow(figures: dict[str, Any]) -> None:
        figures["evaluations"] = 1
        time.sleep(30)

    started = time.perf_counter()
    assert not run_part(report, "slow", slow, 0.3, "cpu")
    assert time.perf_counter() - started < 5
    record = json.loads((tmp_path / "gpu_check.json").read_text())["parts"]["slow"]
    assert record["status"] == "over_budget"
    assert record["figures"] == {"evaluations": 1}


def test_a_failing_part_is_reported_and_the_next_one_runs(tmp_path: Path) -> None:
    report = Report(tmp_path, "test")

    def broken(figures: dict[str, Any]) -> None:
        raise ValueError("dtype mismatch")

    assert not run_part(report, "broken", broken, 10, "cpu")
    assert run_part(report, "next", lambda figures: figures.update(ok=1), 10, "cpu")
    parts = json.loads((tmp_path / "gpu_check.json").read_text())["parts"]
    assert parts["broken"]["status"] == "failed" and "dtype mismatch" in parts["broken"]["error"]
    assert parts["next"]["status"] == "ok"


@pytest.mark.parametrize("half", [True, False])
def test_teacher_is_fine_tuned_with_fp32_weights_whatever_its_checkpoint_holds(tmp_path: Path, half: bool) -> None:
    folder = save_tiny_teacher(tmp_path / "teacher", half=half)
    model = load_teacher_for_finetuning(str(folder), get_task("sst2"))
    assert {parameter.dtype for parameter in model.parameters()} == {torch.float32}
