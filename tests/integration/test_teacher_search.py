"""The selection protocol on the teacher (issue #33): Optuna trials on the held-out slice choose its settings.

A tiny workspace with ``finetune.search.trials: 3`` runs ``dvc repro finetune``: the metrics name the chosen learning
rate, epochs and pooling, MLflow holds one run per trial nested under the stage's run, and the teacher trained with
the choice.
Then dev's labels are shuffled and the same search runs again: it never reads dev, so it chooses the same.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient

from tests.conftest import make_workspace, run

SEARCH = {"finetune": {"search": {"trials": 3, "learning_rates": [1e-5, 2e-4], "epochs": [1.0, 2.0], "restarts": 2}}}


def test_the_search_chooses_on_held_out_rows_records_each_trial_and_ignores_dev(tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "ws", {**SEARCH, "finetune": {**SEARCH["finetune"], "max_steps": None}})
    run(["dvc", "repro", "finetune"], root)
    metrics = json.loads((root / "metrics" / "finetune.json").read_text())
    assert metrics["search_trials"] == 3 and metrics["selected_learning_rate"] in (1e-5, 2e-4)
    assert metrics["selected_epochs"] in (1.0, 2.0) and 0.0 <= metrics["search_best_heldout"] <= 1.0
    assert metrics["selected_restart"] in (0, 1)  # a seed offset: restarts are part of the space
    teacher_config = json.loads((root / "models" / "teacher" / "config.json").read_text())
    assert teacher_config.get("distilflow_pooling", "cls") == metrics["selected_pooling"], "trained as chosen"

    uri = f"sqlite:///{root / 'mlruns.db'}"
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs(client.get_experiment_by_name("distilflow-sst2").experiment_id)
    stage = next(r for r in runs if r.info.run_name.startswith("finetune-"))
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == stage.info.run_id]
    assert sorted(r.info.run_name for r in trials) == ["trial-0", "trial-1", "trial-2"]
    assert {r.data.tags["distilflow.trial_state"] for r in trials} <= {"COMPLETE", "PRUNED"}
    assert stage.data.params["finetune.search.trials"] == "3"

    dev_file = root / "data" / "demo" / "sst2" / "dev.tsv"
    dev = pd.read_csv(dev_file, sep="\t", quoting=3)
    dev.assign(label=1 - dev["label"]).to_csv(dev_file, sep="\t", index=False, quoting=3)  # every dev label wrong
    run(["dvc", "repro", "finetune"], root)
    again = json.loads((root / "metrics" / "finetune.json").read_text())
    chosen = (
        "selected_learning_rate",
        "selected_epochs",
        "selected_pooling",
        "selected_restart",
        "search_best_heldout",
    )
    chosen += ("best_heldout_accuracy",)
    assert {key: again[key] for key in chosen} == {key: metrics[key] for key in chosen}
