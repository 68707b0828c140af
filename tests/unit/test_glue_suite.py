"""The GLUE suite's settings and per-task workspace params: task folders in both spellings, recipe then profile."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest

from distilflow.config.loading import ParamsError, load_params, parse_params
from distilflow.config.params import Params
from distilflow.config.release_params import GlueParams
from distilflow.glue.recipes import data_path, find_task_folders, recipe, task_overrides
from distilflow.glue.suite import baseline_scores, chosen_settings, code_commit, run_record
from distilflow.glue.table_file import earlier_results
from distilflow.paths import Paths
from distilflow.registry.served_scoring import baseline_metric, word_overlap_metric
from distilflow.tasks import LABEL, TASKS, get_task
from tests.conftest import REPO_ROOT, SMOKE_PROFILE


def test_the_glue_section_defaults_to_every_task_on_the_embedded_demos() -> None:
    glue = load_params(REPO_ROOT / "params.yaml").glue
    assert glue == GlueParams()
    assert glue.tasks == list(TASKS)
    assert (REPO_ROOT / glue.root / "sst2" / "train.tsv").is_file()


def test_the_glue_section_rejects_unknown_or_repeated_tasks() -> None:
    with pytest.raises(ParamsError, match=r"glue\.tasks"):
        parse_params({"glue": {"tasks": ["sst2", "imdb"]}})
    with pytest.raises(ParamsError, match=r"glue\.tasks"):
        parse_params({"glue": {"tasks": ["sst2", "sst2"]}})


def test_task_folders_are_found_under_both_spellings(tmp_path: Path) -> None:
    for name in ("SST-2", "mrpc"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "train.tsv").write_text("x\n")
    (tmp_path / "CoLA").mkdir()  # no train.tsv: absent
    present, absent = find_task_folders(tmp_path, ["cola", "sst2", "mrpc", "stsb"])
    assert present == {"sst2": tmp_path / "SST-2", "mrpc": tmp_path / "mrpc"}
    assert absent == ["cola", "stsb"]
    demos, missing = find_task_folders(REPO_ROOT / "data" / "demo", list(TASKS))
    assert list(demos) == ["sst2", "mrpc", "stsb"]
    assert len(missing) == 6


def test_a_demo_travels_with_the_workspace_and_other_data_is_read_where_it_lies(tmp_path: Path) -> None:
    assert data_path(REPO_ROOT / "data" / "demo" / "stsb", REPO_ROOT) == "data/demo/stsb"
    assert data_path(tmp_path / "STS-B", REPO_ROOT) == str((tmp_path / "STS-B").resolve())


def test_the_recipe_applies_after_the_task_and_the_profile_after_the_recipe() -> None:
    params = Params()
    overrides = task_overrides(params, "cola", REPO_ROOT / "data" / "demo" / "sst2", REPO_ROOT, "smoke")
    assert overrides["task"] == "cola"
    assert overrides["data"]["path"] == "data/demo/sst2"
    assert overrides["augment"]["copies"] == recipe("cola", REPO_ROOT)["augment"]["copies"]
    assert overrides["distill"]["max_steps"] == SMOKE_PROFILE["distill"]["max_steps"]  # the profile wins
    assert overrides["data"]["max_train_rows"] == SMOKE_PROFILE["data"]["max_train_rows"]
    assert overrides["register"]["tracking_uri"] == f"sqlite:///{REPO_ROOT / 'mlruns.db'}"  # the project's store
    without = task_overrides(params, "cola", REPO_ROOT / "data" / "demo" / "sst2", REPO_ROOT, None)
    assert without["distill"]["max_steps"] == recipe("cola", REPO_ROOT)["distill"]["max_steps"]


def test_the_cli_refuses_unknown_tasks_and_missing_folders_before_starting_anything(tmp_path: Path) -> None:
    import subprocess
    import sys

    command = [sys.executable, "-m", "distilflow.cli", "glue", "--root", str(REPO_ROOT)]
    unknown = subprocess.run([*command, "--tasks", "sst2,imdb"], capture_output=True, text=True, check=False)
    assert unknown.returncode == 2
    assert "unknown GLUE tasks ['imdb']" in unknown.stderr
    missing = subprocess.run([*command, "--glue-dir", str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert missing.returncode == 2
    assert "not a folder" in missing.stderr
    elsewhere = subprocess.run([*command[:-1], str(tmp_path)], capture_output=True, text=True, check=False)
    assert elsewhere.returncode == 2
    assert f"--root {tmp_path.resolve()}: not a distilflow project (no dvc.yaml, params.yaml)" in elsewhere.stderr


def test_the_earlier_table_is_read_back_or_reported(tmp_path: Path) -> None:
    table = tmp_path / "glue.json"
    assert earlier_results(table) == {}  # the first run: no table yet
    table.write_text('{"tasks": ["sst2"], "rows": [')  # a run killed while writing, or a bad merge
    with pytest.raises(ValueError):
        earlier_results(table)


def test_the_code_commit_marks_a_changed_tree_and_the_run_record_takes_it_from_the_copy(tmp_path: Path) -> None:
    import subprocess

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "params.yaml").write_text("seed: 1\n")
    git("add", "params.yaml")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    clean = code_commit(tmp_path)
    assert clean is not None and len(clean) == 12
    (tmp_path / "params.yaml").write_text("seed: 2\n")
    assert code_commit(tmp_path) == clean + "+changes"
    record = run_record({"commit": clean}, "distilflow glue")
    assert record["command"] == "distilflow glue" and record["commit"] == clean
    assert record["finished_at"].endswith("Z")
    assert run_record({}, None)["commit"] is None  # a workspace made before the copy was recorded


@pytest.mark.parametrize(("task_name", "folder"), [("stsb", "stsb"), ("mrpc", "mrpc")])
def test_the_tables_baseline_is_the_strongest_cheap_model_the_gate_knows(
    tmp_path: Path, task_name: str, folder: str
) -> None:
    """STS-B: the word overlap that the recipe's gate floor comes from, not the mean's Pearson 0; MRPC: the majority
    class, as the gate's baseline."""
    task = get_task(task_name)
    file = REPO_ROOT / "data" / "demo" / folder / "dev.tsv"
    raw = pd.read_csv(file, sep="\t", quoting=csv.QUOTE_NONE, encoding="utf-8-sig")
    raw = raw.rename(columns=dict(zip(task.file_columns, task.fields, strict=True)))
    label = raw[task.label_column].astype(float if task.is_regression else int)
    dev = pd.DataFrame({**{field: raw[field] for field in task.fields}, LABEL: label}).head(40)
    workspace = Paths.at(tmp_path)
    workspace.validated_dir.mkdir(parents=True)
    dev.to_parquet(workspace.validated_dir / f"{task.dev_splits[0]}.parquet")
    scores = baseline_scores(task, tmp_path)
    if task_name == "stsb":
        assert scores["pearson"] == pytest.approx(word_overlap_metric(task, dev))
        assert scores["pearson"] > 0.3  # the mean score's Pearson is 0: it said nothing
    else:
        assert scores[task.primary_metric] == pytest.approx(baseline_metric(task, dev)[0])


def test_the_table_names_what_each_protocol_chose_or_that_the_recipe_stood(tmp_path: Path) -> None:
    metrics = Paths.at(tmp_path).metrics_file("finetune")
    metrics.parent.mkdir(parents=True)
    chosen = {"selected_learning_rate": 2e-4, "selected_epochs": 3.0, "selected_pooling": "mean", "search_trials": 10}
    metrics.write_text(json.dumps({"best_step": 40, **chosen}))
    Paths.at(tmp_path).metrics_file("distill").write_text(json.dumps({"best_step": 90}))
    assert chosen_settings(tmp_path) == {
        "teacher": "learning rate 0.0002, epochs 3, pooling mean (10 trials)",
        "student": "as the recipe writes",
    }
