"""augment → pretrain → distill as DVC stages: outputs, the cached teacher logits, the pretrain switch, exports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from datasets import load_from_disk

from tests.conftest import run


def test_pipeline_builds_the_transfer_set_once_with_teacher_logits(pipeline_workspace: Path) -> None:
    transfer = load_from_disk(str(pipeline_workspace / "data" / "transfer"))
    train = load_from_disk(str(pipeline_workspace / "data" / "tokenized"))["train"]
    stats = json.loads((pipeline_workspace / "metrics" / "augment.json").read_text())
    assert stats["train_rows"] == len(train)
    assert stats["transfer_rows"] == len(transfer) > len(train), "the default settings add rewrites"
    logits = np.asarray(transfer["teacher_logits"])
    assert logits.shape == (len(transfer), 2) and np.isfinite(logits).all()
    augmented = np.asarray(transfer["augmented"])
    assert not augmented[: len(train)].any() and augmented[len(train) :].all()
    assert list(transfer["input_ids"])[: len(train)] == list(train["input_ids"])


def test_pipeline_exports_agree_and_pretraining_is_off_by_default(pipeline_workspace: Path) -> None:
    marker = json.loads((pipeline_workspace / "models" / "student_pretrained" / "pretrain.json").read_text())
    assert marker == {"enabled": False}
    assert not (pipeline_workspace / "models" / "student_pretrained" / "model.safetensors").exists()
    summary = json.loads((pipeline_workspace / "models" / "student" / "export" / "summary.json").read_text())
    params = yaml.safe_load((pipeline_workspace / "params.yaml").read_text())
    assert set(summary) == set(params["distill"]["export"]["formats"])
    export = pipeline_workspace / "models" / "student" / "export"
    for name, outcome in summary.items():
        assert outcome["agrees"] == (abs(outcome["accuracy"] - outcome["fp32_accuracy"]) <= 0.005), name
        assert (export / name / "model.onnx").is_file() or (export / name / "model.pt").is_file(), name
    # fp32 ONNX computes the same function: it agrees whatever the dev set's size. (On the tests' 32 dev rows
    # one int8 flip is 3 points, so the int8 formats' verdicts are recorded, not asserted.)
    assert summary["onnx"]["agrees"] is True and summary["onnx"]["max_abs_logit_diff"] < 1e-3
    metrics = json.loads((pipeline_workspace / "metrics" / "distill.json").read_text())
    assert metrics["mlm_pretrained"] is False


def _set(root: Path, section: str, values: dict[str, Any]) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params[section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.mark.slow
def test_mlm_pretraining_feeds_distillation_and_switching_it_off_skips_it(workspace_factory: Any) -> None:
    root = workspace_factory(
        overrides={"pretrain": {"enabled": True, "max_steps": 3, "eval_every": 3, "batch_size": 16}}
    )
    run(["dvc", "repro", "distill"], root)
    pretrain = json.loads((root / "metrics" / "pretrain.json").read_text())
    assert pretrain["enabled"] is True and pretrain["steps"] == 3
    assert (root / "models" / "student_pretrained" / "model.safetensors").is_file()
    assert json.loads((root / "metrics" / "distill.json").read_text())["mlm_pretrained"] is True

    # A distill-only change must not relabel the transfer set: the teacher's logits are cached by DVC.
    _set(root, "distill", {"temperature": 3.0})
    out = run(["dvc", "repro", "distill"], root).stdout
    assert "Stage 'augment' didn't change" in out and "Running stage 'distill'" in out

    _set(root, "pretrain", {"enabled": False})
    run(["dvc", "repro", "distill"], root)
    assert json.loads((root / "models" / "student_pretrained" / "pretrain.json").read_text()) == {"enabled": False}
    assert json.loads((root / "metrics" / "distill.json").read_text())["mlm_pretrained"] is False
