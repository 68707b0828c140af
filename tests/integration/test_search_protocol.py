"""The selection protocol (issue #33): Optuna trials on the held-out slice of train choose the teacher's and the
student's settings, each trial is recorded, and dev is never read.

One tiny workspace with ``finetune.search`` and ``distill.search`` on runs ``dvc repro distill``: the metrics name
what each search chose, MLflow holds one run per trial nested under its stage's run and tags the choice, and the
teacher was trained with the chosen pooling (its trials are whole runs, so the chosen one is the teacher). Then
every dev label is flipped and both searches run again: they never read dev, so they choose the same (issue #33's
plant of a dev file with shuffled labels). That second time each search is killed (``kill -9``) as its second trial
starts; each rerun reads the finished first trial back from the search's journal and goes on from the second, and
the teacher is the very one the unbroken search chose.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow import MlflowClient

from distilflow.registry.registration import weights_hash
from distilflow.runtime.warm import HOST_ENV
from tests.conftest import make_workspace, run, test_env
from tests.faults.test_register_faults import INJECT

TEACHER_SPACE = {"learning_rates": [1e-5, 2e-4], "epochs": [1.0, 2.0], "restarts": 2}  # 16 combinations: TPE
# Each teacher trial is a whole run (as in the small tasks' recipes): the chosen one is kept, not trained again.
STUDENT_SPACE = {
    "learning_rates": [5e-4, 2e-3],
    "temperatures": [2.0],
    "alphas": [0.5, 0.9],
    "inits": ["teacher-projected", "teacher-layers"],
}
SEARCH = {
    "finetune": {"max_steps": None, "search": {"trials": 3, "trial_share": 1.0, **TEACHER_SPACE}},
    "distill": {"search": {"trials": 3, **STUDENT_SPACE}},
}


CHOSEN = ("selected_", "best_heldout", "search_best")  # what the search chose, and the held-out scores it chose by


def choices(metrics: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in metrics.items() if key.startswith(CHOSEN)}


def killed_at_second_call(root: Path, function: str) -> str:
    """``dvc repro distill`` in a fresh process (not the warm host), sent kill -9 as ``function`` returns for the
    second time; its output."""
    env = {key: value for key, value in test_env(root).items() if key != HOST_ENV}
    env.update(PYTHONPATH=os.pathsep.join([str(INJECT), env.get("PYTHONPATH", "")]))
    env.update(DISTILFLOW_KILL_AFTER=function, DISTILFLOW_KILL_ON_CALL="2")
    killed = subprocess.run(["dvc", "repro", "distill"], cwd=root, env=env, capture_output=True, text=True)
    assert killed.returncode != 0 and f"SIGKILL after {function}" in killed.stderr, killed.stdout + killed.stderr
    return killed.stdout


def test_both_searches_choose_on_held_out_rows_record_each_trial_and_ignore_dev(tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "ws", SEARCH)
    run(["dvc", "repro", "distill"], root)
    teacher = json.loads((root / "metrics" / "finetune.json").read_text())
    student = json.loads((root / "metrics" / "distill.json").read_text())
    assert teacher["search_trials"] == 3 and teacher["selected_learning_rate"] in TEACHER_SPACE["learning_rates"]
    assert teacher["selected_epochs"] in (1.0, 2.0) and teacher["selected_restart"] in (0, 1)  # a seed offset
    assert 0.0 <= teacher["search_best_heldout"] <= 1.0
    teacher_config = json.loads((root / "models" / "teacher" / "config.json").read_text())
    assert teacher_config.get("distilflow_pooling", "cls") == teacher["selected_pooling"], "trained as chosen"
    # The served teacher is the chosen trial's model itself: its held-out best is the one the search chose by.
    assert teacher["search_trial_kept"] is True and teacher["best_heldout_accuracy"] == teacher["search_best_heldout"]
    assert student["search_trials"] == 3 and student["search_grid"] is False
    assert student["selected_learning_rate"] in STUDENT_SPACE["learning_rates"]
    assert student["selected_alpha"] in STUDENT_SPACE["alphas"] and student["selected_init"] in STUDENT_SPACE["inits"]

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlruns.db'}")
    runs = client.search_runs(client.get_experiment_by_name("distilflow-sst2").experiment_id)
    for stage, metrics in (("finetune", teacher), ("distill", student)):
        parent = next(r for r in runs if r.info.run_name.startswith(f"{stage}-"))
        trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        assert sorted(r.info.run_name for r in trials) == ["trial-0", "trial-1", "trial-2"], stage
        assert {r.data.tags["distilflow.trial_state"] for r in trials} <= {"COMPLETE", "PRUNED"}
        assert parent.data.params[f"{stage}.search.trials"] == "3"
        assert parent.data.tags["distilflow.selected.learning_rate"] == str(metrics["selected_learning_rate"])
    student_trials = [r for r in runs if r.data.params.get("init")]
    assert {r.data.params["init"] for r in student_trials} <= set(STUDENT_SPACE["inits"])

    dev_file = root / "data" / "demo" / "sst2" / "dev.tsv"
    dev = pd.read_csv(dev_file, sep="\t", quoting=3)
    dev.assign(label=1 - dev["label"]).to_csv(dev_file, sep="\t", index=False, quoting=3)  # every dev label wrong
    teacher_weights = weights_hash(root / "models" / "teacher")
    killed = killed_at_second_call(root, "distilflow.stages.finetune:fresh_teacher")  # the teacher's second trial
    assert not (root / "models" / "teacher").exists() or weights_hash(root / "models" / "teacher") != teacher_weights
    killed = killed_at_second_call(root, "distilflow.stages.distill:starting_student")  # the student's second trial
    assert "Running stage 'finetune'" in killed and "Running stage 'distill'" in killed, killed  # searched again
    resumed_teacher, _ = killed.split("Running stage 'augment'")
    assert "search: 1 of 3 trials finished before, read back from" in resumed_teacher, killed
    assert "search: trial 1/3" not in resumed_teacher and "search: trial 2/3" in resumed_teacher, killed
    assert weights_hash(root / "models" / "teacher") == teacher_weights  # the unbroken search's teacher
    ran = run(["dvc", "repro", "distill"], root).stdout
    assert "Running stage 'finetune'" not in ran and "search: 1 of 3 trials finished before" in ran, ran
    assert "search: trial 1/3" not in ran and "search: trial 2/3" in ran, ran
    for stage, before in (("finetune", teacher), ("distill", student)):
        after = json.loads((root / "metrics" / f"{stage}.json").read_text())
        assert choices(after) == choices(before), stage
