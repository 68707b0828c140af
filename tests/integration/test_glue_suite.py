"""The GLUE suite in one process, end to end: `distilflow glue` without a pool on the regression demo (smoke profile,
a Prefect subflow and workspace, real `dvc repro`, real MLflow in the project's sqlite store), a task whose data is
broken, and the absent tasks.

One run (the module fixture) serves every test. The suite across tasks and workers (the table's columns and
average, the classification demos, a worker killed mid-task) is the team journey's, `tests/team/test_glue_pool.py`,
which runs SST-2 and MRPC on a work pool; the regression task's column, baseline and served model are checked here
alone.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
import yaml
from sklearn.metrics import accuracy_score, f1_score

from distilflow.paths import Paths
from tests.conftest import REPO_ROOT, make_workspace, run

DEMO = REPO_ROOT / "data" / "demo"
DEMOS = ("stsb",)
ROLES = ("teacher", "student")
SUITE_TIMEOUT = 3600  # three smoke pipelines take minutes on an idle 2-core machine; room for a busy one


@dataclass(frozen=True)
class Suite:
    root: Path
    glue_root: Path
    returncode: int
    output: str

    def workspace(self, task: str) -> Path:
        return self.root / "glue" / task

    @property
    def store(self) -> str:
        return f"sqlite:///{Paths.at(self.root).mlflow_db}"


def read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Suite:
    base = tmp_path_factory.mktemp("glue")
    root = make_workspace(base / "project")
    glue_root = base / "GLUE"
    glue_root.mkdir()
    for task in DEMOS:  # the demos as a GLUE root holds them (symlinks: the suite still finds them in the project)
        (glue_root / task).symlink_to(root / "data" / "demo" / task)
    broken = glue_root / "RTE"  # a task whose data cannot be read: it must fail alone
    broken.mkdir()
    (broken / "train.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\tA dog.\tAn animal.\tentailment\n")
    process = run(
        ["distilflow", "glue", "--glue-dir", str(glue_root), "--profile", "smoke"],
        root,
        check=False,
        timeout=SUITE_TIMEOUT,
    )
    return Suite(root, glue_root, process.returncode, process.stdout + process.stderr)


def test_the_suite_runs_every_task_found_and_reports_the_failed_and_absent_ones(suite: Suite) -> None:
    assert suite.returncode == 1, suite.output[-4000:]  # one task failed
    table = read_json(Paths.at(suite.root).glue_metrics_file)
    assert table["tasks"] == list(DEMOS), suite.output[-4000:]
    assert list(table["failed"]) == ["rte"]
    assert "dev" in table["failed"]["rte"]  # why: the folder has no dev split
    assert set(table["skipped"]) == {"sst2", "cola", "mrpc", "qqp", "mnli", "qnli", "wnli"}
    assert "rte: FAILED:" in suite.output
    assert "cola: skipped: no" in suite.output


def test_each_task_registers_its_student_in_the_projects_store(suite: Suite) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=suite.store, registry_uri=suite.store)
    names = {model.name for model in client.search_registered_models()}
    assert {f"distilflow-glue-{task}-student" for task in DEMOS} <= names
    table = read_json(Paths.at(suite.root).glue_metrics_file)
    artifacts = Paths.at(suite.root).mlflow_artifacts.as_uri()
    for task in DEMOS:
        assert table["per_task"][task]["registered"]["model"] == f"distilflow-glue-{task}-student"
        # The gate's floor is the recipe's where it sets one (STS-B: word overlap's Pearson), else the project's.
        floor = "floor 0.6500" if task == "stsb" else "floor 0.0000"
        assert any(floor in reason for reason in table["per_task"][task]["registered"]["reasons"]), task
        # the models' files sit beside the project's store, not inside the task's workspace
        experiment = client.get_experiment_by_name(f"distilflow-{task}")
        assert experiment is not None and experiment.artifact_location.startswith(artifacts)
        # the task's results are versioned in its workspace's own git history
        log = run(["git", "log", "--format=%s"], suite.workspace(task)).stdout
        assert "distilflow glue: results" in log


def check_evaluation_outputs(root: Path, task: str, keys: set[str], regression: bool) -> None:
    dev = pd.read_csv(DEMO / task / "dev.tsv", sep="\t", quoting=csv.QUOTE_NONE, encoding="utf-8-sig")
    dev = dev.head(yaml.safe_load((root / "params.yaml").read_text())["data"]["max_dev_rows"])
    for role in ROLES:
        metrics = read_json(root / "metrics" / f"eval_{role}.json")
        assert keys <= set(metrics), (role, sorted(metrics))
        assert {"latency_p50_ms", "latency_p95_ms", "parameters", "size_mb"} <= set(metrics)
        predictions = pd.read_csv(root / "predictions" / f"{role}_dev.csv")
        assert len(predictions) == len(dev) == metrics["dev_examples"]
        # The pair's texts ride along for error analysis, in the file's order.
        first = "sentence1" if regression else "#1 String"
        second = "sentence2" if regression else "#2 String"
        assert predictions["sentence1"].tolist() == dev[first].tolist()
        assert predictions["sentence2"].tolist() == dev[second].tolist()
        figures = {path.name for path in (root / "plots" / f"eval_{role}").iterdir()}
        if regression:
            assert predictions["prediction"].between(0.0, 5.0).all()
            assert predictions["label"].tolist() == pytest.approx(dev["score"].tolist())
            assert {"mse", "mae"} <= set(metrics)
            assert figures == {"scatter.png", "confusion_matrix.png", "length_buckets.png"}
        else:
            assert predictions["label"].tolist() == dev["Quality"].tolist()
            assert metrics["f1"] == pytest.approx(
                f1_score(predictions["label"], predictions["prediction"], zero_division=0.0)
            )
            assert metrics["accuracy"] == pytest.approx(accuracy_score(predictions["label"], predictions["prediction"]))
            assert 0.0 <= metrics["ece"] <= 1.0
            assert figures == {"confusion_matrix.png", "reliability.png", "length_buckets.png"}
    combined = read_json(root / "metrics" / "eval.json")
    assert set(combined) == {"teacher", "student", "ratios"}
    assert keys <= set(combined["student"])
    assert combined["ratios"]["parameters_smaller_x"] > 1
    assert (root / "plots" / "comparison.png").is_file()
    report = (root / "reports" / "comparison.md").read_text()
    assert f"# distilflow {task}: teacher vs student" in report
    assert "BERT-Tiny (L2/H128) (published)" in report


def check_served_model(store: str, task: str, regression: bool) -> None:
    """The registered student, behind MLflow's own scoring app (in-process, no server to start), answers a raw
    sentence pair and rejects a one-column request with HTTP 400 (the gate may or may not have promoted it)."""
    from fastapi.testclient import TestClient
    from mlflow.pyfunc import scoring_server

    mlflow.set_tracking_uri(store)
    mlflow.set_registry_uri(store)
    model = mlflow.pyfunc.load_model(f"models:/distilflow-glue-{task}-student@challenger")
    pairs = pd.DataFrame(
        {
            "sentence1": ["A man is playing a guitar.", "The company hired 40 people ."],
            "sentence2": ["A man plays the guitar.", "It is raining in the city ."],
        }
    )
    predicted = model.predict(pairs)
    if regression:
        assert predicted["score"].between(0.0, 5.0).all()
    else:
        assert set(predicted["label"]) <= {"0", "1"}
    app = TestClient(scoring_server.init(model))
    answer = app.post("/invocations", json={"dataframe_records": pairs.to_dict(orient="records")})
    assert answer.status_code == 200, answer.text
    served = answer.json()["predictions"]
    assert len(served) == 2
    if regression:
        assert [row["score"] for row in served] == pytest.approx(predicted["score"].tolist(), abs=1e-5)
    else:
        assert [row["label"] for row in served] == predicted["label"].tolist()
    one_column = app.post("/invocations", json={"dataframe_records": [{"sentence1": "A man is playing a guitar."}]})
    assert one_column.status_code == 400, one_column.text
    assert "only has 1 inputs" in one_column.json()["message"]  # MLflow's schema check: the model reads two


def test_the_regression_demo_passes_end_to_end(suite: Suite) -> None:
    task, keys, regression = "stsb", {"pearson", "spearmanr"}, True
    root = suite.workspace(task)
    check_evaluation_outputs(root, task, keys, regression)
    check_served_model(suite.store, task, regression)
    # The evaluation's own plot definitions (dvc.yaml's evaluate and report stages) render for this task kind.
    targets = [
        f"{prefix}{role}{suffix}"
        for role in ROLES
        for prefix, suffix in (("predictions/", "_dev.csv"), ("plots/eval_", ""), ("plots/eval_", "_length.csv"))
    ]
    shown = json.loads(run(["dvc", "plots", "show", "--json", *targets, "plots/comparison.png"], root).stdout)
    assert not shown.get("errors"), shown.get("errors")
    assert f"plots/eval_student/{'scatter' if regression else 'reliability'}.png" in shown["data"]


def test_the_regression_column_is_pearson_and_spearman_beside_the_word_overlap_baseline(suite: Suite) -> None:
    table = read_json(Paths.at(suite.root).glue_metrics_file)
    assert [(column["task"], column["metric"]) for column in table["columns"]] == [
        ("stsb", "pearson"),
        ("stsb", "spearmanr"),
    ]
    rows = {row["model"]: row for row in table["rows"]}
    for model in ("teacher (distilflow)", "student (distilflow)", "trivial baseline"):
        assert set(rows[model]["task_scores"]) == {"stsb"}, model
    # STS-B's trivial baseline is the overlap of the two sentences' words, not the mean score (whose Pearson is 0)
    assert rows["trivial baseline"]["scores"]["stsb"]["pearson"] > 50
    report = Paths.at(suite.root).glue_report_file.read_text()
    for heading in ("STS-B Pearson", "STS-B Spearman"):
        assert heading in report
