"""`kill -9` in the middle of `distilflow stage finetune`, then a rerun: it resumes and ends where an
uninterrupted run ends (same best dev metric, same weights). A checkpoint it cannot trust (corrupt, or written
by another run) is set aside with a message, and the fresh start ends where an uninterrupted run ends too."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from distilflow.runtime.warm import HOST_ENV
from distilflow.tasks import LINE
from distilflow.training.checkpoints import FINGERPRINT_FILE, ResumeRefused, prepare
from distilflow.training.loop import schedule_fingerprint
from tests.conftest import run
from tests.conftest import test_env as stage_env  # aliased: pytest would collect a test_* name
from tests.loop_settings import loop_settings

STEPS = 16
SETTINGS = {
    "run": {"device": "cpu"},
    "finetune": {"max_steps": STEPS, "eval_every": 4, "checkpoint_every": 4, "batch_size": 8},
}


def tokenized_workspace(factory: Any, name: str, overrides: dict[str, Any]) -> Path:
    """A tiny workspace with data/tokenized ready: the demo rows written as validated data, then the real
    tokenize stage. Ingest and validation have their own tests; skipping them keeps this one to the loop."""
    root: Path = factory(name, overrides)
    validated = root / "data" / "validated"
    validated.mkdir(parents=True)
    for split, rows in (("train", 64), ("dev", 32)):
        frame = pd.read_csv(root / "data" / "demo" / "sst2" / f"{split}.tsv", sep="\t", quoting=3).head(rows)
        frame[LINE] = range(2, len(frame) + 2)
        frame.to_parquet(validated / f"{split}.parquet", index=False)
    run(["distilflow", "stage", "tokenize"], root)
    return root


def one_thread_env(root: Path) -> dict[str, str]:
    """The same thread count in every run: a matmul's summation order, hence its last bits, depends on it.

    Its own process too, never the session's warm stage host: a SIGKILL must leave nothing running that could
    still write a checkpoint, and the resumed half must count threads as the killed half did."""
    env = {**stage_env(root), "OMP_NUM_THREADS": "1"}
    env.pop(HOST_ENV, None)
    return env


def finetune(
    root: Path, messages: list[str] | None = None, env: dict[str, str] | None = None
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """One whole run of the stage; by default in the session's environment (the warm host, its thread count)."""
    done = subprocess.run(
        ["distilflow", "stage", "finetune"],
        cwd=root,
        env=env or stage_env(root),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    if messages is not None:
        messages.append(done.stderr)
    metrics = json.loads((root / "metrics" / "finetune.json").read_text())
    weights = load_file(root / "models" / "teacher" / "model.safetensors")
    shutil.rmtree(root / "models" / "teacher")
    (root / "metrics" / "finetune.json").unlink()
    return metrics, weights


def kill_after_first_checkpoint(root: Path) -> int:
    """Start the stage, SIGKILL it once a checkpoint is on disk; the step it had checkpointed."""
    process = subprocess.Popen(
        ["distilflow", "stage", "finetune"],
        cwd=root,
        env=one_thread_env(root),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline and process.poll() is None:
            states = list((root / "checkpoints" / "teacher").glob("last/state.json"))
            if states:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
                return int(json.loads(states[0].read_text())["progress"]["step"])
            time.sleep(0.02)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    raise AssertionError(f"no checkpoint appeared before the stage ended (exit {process.returncode})")


@pytest.mark.slow
def test_kill_9_then_rerun_resumes_to_the_uninterrupted_result(workspace_factory: Any) -> None:
    root = tokenized_workspace(workspace_factory, "resume", SETTINGS)
    expected_metrics, expected_weights = finetune(root, env=one_thread_env(root))
    assert expected_metrics["resumed_from_step"] == 0 and expected_metrics["steps"] == STEPS

    checkpointed = kill_after_first_checkpoint(root)
    assert 0 < checkpointed < STEPS
    assert not (root / "models" / "teacher" / "model.safetensors").exists(), "the kill came after the stage ended"

    metrics, weights = finetune(root, env=one_thread_env(root))
    assert metrics["resumed_from_step"] >= checkpointed
    assert metrics["best_heldout_accuracy"] == expected_metrics["best_heldout_accuracy"]
    assert (metrics["best_step"], metrics["steps"]) == (expected_metrics["best_step"], expected_metrics["steps"])
    assert weights.keys() == expected_weights.keys()
    for name, value in expected_weights.items():
        assert torch.equal(weights[name], value), name
    assert not list((root / "checkpoints" / "teacher").glob("*")), "a finished run leaves no checkpoint behind"


def test_untrusted_checkpoints_are_set_aside_and_the_fresh_start_matches(workspace_factory: Any) -> None:
    # The killed runs' checkpoints are never resumed here, so only the whole runs need one thread count (the host's).
    root = tokenized_workspace(workspace_factory, "untrusted", {"finetune": {**SETTINGS["finetune"], "max_steps": 8}})
    expected_metrics, expected_weights = finetune(root)
    checkpoints = root / "checkpoints" / "teacher"

    # A bit flipped on disk: the checksum catches it, the copy is kept aside, training starts from step 0.
    assert kill_after_first_checkpoint(root) > 0
    weights_file = checkpoints / "last" / "model.safetensors"
    data = bytearray(weights_file.read_bytes())
    data[-1] ^= 0xFF
    weights_file.write_bytes(bytes(data))
    messages: list[str] = []
    metrics, weights = finetune(root, messages)
    assert "is corrupt (checksum mismatch in model.safetensors)" in messages[-1]
    assert (root / "checkpoints" / "teacher-last.corrupt" / "model.safetensors").read_bytes() == bytes(data)
    assert metrics["resumed_from_step"] == 0
    assert metrics["best_heldout_accuracy"] == expected_metrics["best_heldout_accuracy"]
    assert all(torch.equal(weights[name], value) for name, value in expected_weights.items())

    # A checkpoint another run wrote (here: other settings in its fingerprint) is never resumed.
    assert kill_after_first_checkpoint(root) > 0
    fingerprint_file = checkpoints / "fingerprint.json"
    foreign = json.loads(fingerprint_file.read_text())
    foreign["settings"]["finetune"]["learning_rate"] = 0.5
    fingerprint_file.write_text(json.dumps(foreign))
    metrics, weights = finetune(root, messages)
    assert "not resuming from" in messages[-1] and "written with another settings" in messages[-1]
    assert (root / "checkpoints" / "teacher.set-aside" / "last" / "state.json").is_file()
    assert metrics["resumed_from_step"] == 0
    assert metrics["best_heldout_accuracy"] == expected_metrics["best_heldout_accuracy"]
    assert all(torch.equal(weights[name], value) for name, value in expected_weights.items())


def test_a_checkpoint_from_other_hardware_is_refused_with_what_changed(tmp_path: Path) -> None:
    """Device and precision as they resolved, and the world size, are in the fingerprint: a resume on other
    hardware or another torchrun size would go on under another schedule, so it stops and says what to do."""
    settings = loop_settings(
        batch_size=8,
        learning_rate=1e-4,
        weight_decay=0.0,
        warmup_ratio=0.0,
        seed=0,
        grad_accum_steps=2,
        precision="auto",
    )
    one = schedule_fingerprint(settings, world_size=1)
    assert one == {"device": "cpu", "autocast": "fp32", "world_size": 1, "examples_per_step": 16}  # auto, resolved
    auto_device = schedule_fingerprint(dataclasses.replace(settings, device="auto"), world_size=1)
    assert auto_device["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    written = {"code": "c", "settings": {"finetune": {"batch_size": 8}}, "compute": one}
    folder = tmp_path / "teacher"
    prepare(folder, written)
    (folder / "last").mkdir()  # a checkpoint to resume

    with pytest.raises(ResumeRefused) as refused:
        prepare(folder, {**written, "compute": schedule_fingerprint(settings, world_size=2)})
    message = str(refused.value)
    assert "(examples_per_step 16 -> 32, world_size 1 -> 2)" in message
    assert f"To start over, delete {folder}; to continue it, rerun as it was written" in message
    assert "torchrun --nproc_per_node=1" in message
    assert (folder / "last").is_dir() and json.loads((folder / FINGERPRINT_FILE).read_text()) == written

    # Written on a GPU, where precision auto meant bf16; resumed on this CPU, where it means fp32.
    on_gpu = {**written, "compute": {**one, "device": "cuda", "autocast": "bf16"}}
    (folder / FINGERPRINT_FILE).write_text(json.dumps(on_gpu))
    with pytest.raises(ResumeRefused, match=r"\(autocast bf16 -> fp32, device cuda -> cpu\)"):
        prepare(folder, written)

    # Killed before its first checkpoint: nothing to resume, nothing to refuse.
    (folder / "last").rmdir()
    prepare(folder, written)
    assert json.loads((folder / FINGERPRINT_FILE).read_text()) == written
