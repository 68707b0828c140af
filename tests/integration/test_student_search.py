"""The selection protocol on the student (issue #33): Optuna trials on the held-out slice choose how it is distilled.

A tiny workspace with ``distill.search.trials: 3`` runs ``dvc repro distill``: the metrics name the chosen learning
rate, temperature, alpha and starting point, MLflow holds one run per trial nested under the stage's run and tags the
choice. Then every dev label is flipped and the same search runs again: it never reads dev, so it chooses the same.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from mlflow import MlflowClient

from tests.conftest import make_workspace, run

SPACE = {
    "learning_rates": [5e-4, 2e-3],
    "temperatures": [2.0],
    "alphas": [0.5, 0.9],
    "inits": ["teacher-projected", "teacher-layers"],
}
SEARCH = {"distill": {"search": {"trials": 3, **SPACE}}}  # 8 combinations: three TPE trials


def test_the_student_search_chooses_on_held_out_rows_records_each_trial_and_ignores_dev(tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "ws", SEARCH)
    run(["dvc", "repro", "distill"], root)
    metrics = json.loads((root / "metrics" / "distill.json").read_text())
    assert metrics["search_trials"] == 3 and metrics["search_grid"] is False
    assert metrics["selected_learning_rate"] in SPACE["learning_rates"]
    assert metrics["selected_alpha"] in SPACE["alphas"] and metrics["selected_init"] in SPACE["inits"]
    assert 0.0 <= metrics["search_best_heldout"] <= 1.0

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlruns.db'}")
    runs = client.search_runs(client.get_experiment_by_name("distilflow-sst2").experiment_id)
    stage = next(r for r in runs if r.info.run_name.startswith("distill-"))
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == stage.info.run_id]
    assert sorted(r.info.run_name for r in trials) == ["trial-0", "trial-1", "trial-2"]
    assert {r.data.params["init"] for r in trials} <= set(SPACE["inits"])
    assert stage.data.tags["distilflow.selected.init"] == metrics["selected_init"]

    dev_file = root / "data" / "demo" / "sst2" / "dev.tsv"
    dev = pd.read_csv(dev_file, sep="\t", quoting=3)
    dev.assign(label=1 - dev["label"]).to_csv(dev_file, sep="\t", index=False, quoting=3)  # every dev label wrong
    ran = run(["dvc", "repro", "distill"], root).stdout
    assert "Running stage 'distill'" in ran, ran  # searched again, not restored
    again = json.loads((root / "metrics" / "distill.json").read_text())
    chosen = [key for key in metrics if key.startswith("selected_")] + ["search_best_heldout", "best_heldout_accuracy"]
    assert {key: again[key] for key in chosen} == {key: metrics[key] for key in chosen}
