"""Two processes under torchrun with the gloo backend: one model, one set of outputs, one MLflow run."""

from __future__ import annotations

import json
import shutil
from typing import Any

import pytest
from mlflow import MlflowClient

from tests.conftest import run
from tests.integration.test_finetune_resume import tokenized_workspace

STEPS = 4
BATCH = 8


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu_train_one_model(workspace_factory: Any) -> None:
    if shutil.which("torchrun") is None:
        pytest.skip("torchrun is not on PATH")
    root = tokenized_workspace(
        workspace_factory,
        "ddp",
        {
            "run": {"device": "cpu"},
            "finetune": {"max_steps": STEPS, "eval_every": 2, "checkpoint_every": 2, "batch_size": BATCH},
        },
    )
    process = run(["torchrun", "--standalone", "--nproc_per_node=2", "-m", "distilflow", "stage", "finetune"], root)

    metrics = json.loads((root / "metrics" / "finetune.json").read_text())
    assert metrics["world_size"] == 2
    assert metrics["steps"] == STEPS
    # each optimizer step consumed one batch on each rank
    assert metrics["train_samples_per_s"] * metrics["train_seconds"] == pytest.approx(2 * BATCH * STEPS, rel=0.2)
    assert (root / "models" / "teacher" / "model.safetensors").is_file()
    assert not list((root / "checkpoints" / "teacher").glob("*"))

    uri = f"sqlite:///{root / 'mlruns.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("distilflow-sst2")
    assert experiment is not None, process.stderr[-2000:]
    runs = client.search_runs([experiment.experiment_id], "tags.`distilflow.stage` = 'finetune'")
    assert len(runs) == 1, "only rank 0 tracks"
    assert runs[0].info.status == "FINISHED"
    assert runs[0].data.metrics["world_size"] == 2
    history = client.get_metric_history(runs[0].info.run_id, "train_loss")
    assert sorted(point.step for point in history) == list(range(1, STEPS + 1))
