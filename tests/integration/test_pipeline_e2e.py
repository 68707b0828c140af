"""The whole pipeline through a real `dvc repro` on the embedded demo data, shrunken to a few steps."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
import yaml
from mlflow import MlflowClient

from distilflow.tracking.tags import DATA_TAG, LINEAGE_TAG, STAGE_TAG
from tests.conftest import run, write_params

STAGES = [
    "ingest",
    "validate",
    "tokenize",
    "finetune",
    "evaluate@teacher",
    "augment",
    "pretrain",
    "distill",
    "evaluate@student",
    "report",
    "register",
]


def ran_stages(output: str) -> list[str]:
    return [stage for stage in STAGES if f"Running stage '{stage}'" in output]


def test_repro_registers_a_champion_that_predicts(pipeline_workspace: Path) -> None:
    root = pipeline_workspace
    assert (root / "dvc.lock").is_file()
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    assert set(STAGES) <= set(lock["stages"])

    uri = f"sqlite:///{root / 'mlruns.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias("distilflow-sst2-student", "champion")
    data_md5 = next(o["md5"] for o in lock["stages"]["ingest"]["outs"] if o["path"] == "data/raw")
    assert champion.tags[DATA_TAG] == data_md5
    # Every stage run carries the data version, the ingest run included (tagged once DVC's hash was known).
    runs = client.search_runs([client.get_experiment_by_name("distilflow-sst2").experiment_id])
    stage_tags = {run.data.tags[STAGE_TAG]: run.data.tags[DATA_TAG] for run in runs}
    assert stage_tags["ingest"] == stage_tags["validate"] == stage_tags["register"] == data_md5
    assert {"ingest", "finetune", "augment", "distill", "register"} <= set(json.loads(champion.tags[LINEAGE_TAG]))
    assert client.get_registered_model("distilflow-sst2-teacher").name == "distilflow-sst2-teacher"

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    model = mlflow.pyfunc.load_model("models:/distilflow-sst2-student@champion")
    predictions = model.predict(pd.DataFrame({"sentence": ["a wonderful , moving film .", "dull and lifeless ."]}))
    assert list(predictions.columns[:2]) == ["label", "score"]
    assert set(predictions["label"]) <= {"0", "1"}
    assert ((predictions["score"] >= 0.5) & (predictions["score"] <= 1.0)).all()

    evaluation = json.loads((root / "metrics" / "eval_student.json").read_text())
    assert 0.0 <= evaluation["accuracy"] <= 1.0
    assert evaluation["parameters"] < json.loads((root / "metrics" / "eval_teacher.json").read_text())["parameters"]


def test_each_stage_run_logs_exactly_the_params_dvc_tracks_for_it(pipeline_workspace: Path) -> None:
    """What a stage logs to MLflow is read from its dvc.yaml ``params:``, so the two never disagree."""
    root = pipeline_workspace
    dvc_yaml = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((root / "params.yaml").read_text())
    uri = f"sqlite:///{root / 'mlruns.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("distilflow-sst2").experiment_id])
    seen = set()
    for run_ in runs:
        stage = run_.data.tags[STAGE_TAG].split("-")[0]  # evaluate-teacher: dvc.yaml's foreach stage evaluate
        spec = dvc_yaml[stage].get("do", dvc_yaml[stage])
        expected = set()
        for key in spec["params"]:
            value = params
            for part in key.split("."):
                value = value[part]
            expected |= {key} if not isinstance(value, dict) else {name for name in flat_keys(value, key)}
        assert set(run_.data.params) == expected, stage
        seen.add(stage)
    assert set(dvc_yaml) - seen == {"pretrain"}  # disabled in params.yaml, so it opens no MLflow run


def flat_keys(mapping: dict[str, object], prefix: str) -> set[str]:
    keys: set[str] = set()
    for key, value in mapping.items():
        name = f"{prefix}.{key}"
        keys |= flat_keys(value, name) if isinstance(value, dict) and value else {name}
    return keys


def test_second_repro_skips_everything_and_param_change_reruns_only_dependants(
    pipeline_workspace: Path, tmp_path: Path
) -> None:
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(pipeline_workspace, root, symlinks=True)
    again = run(["dvc", "repro"], root)
    assert ran_stages(again.stdout) == []

    write_params(root, {"distill": {"temperature": 3.0}})
    changed = run(["dvc", "repro"], root)
    assert ran_stages(changed.stdout) == ["distill", "evaluate@student", "report", "register"]
    # The unchanged teacher is not registered again; the retrained student is a new version.
    uri = f"sqlite:///{root / 'mlruns.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    versions = {
        role: sorted(str(v.version) for v in client.search_model_versions(f"name = 'distilflow-sst2-{role}'"))
        for role in ("teacher", "student")
    }
    assert versions == {"teacher": ["1"], "student": ["1", "2"]}


def test_sync_registry_fills_an_empty_store_once_without_touching_results(
    pipeline_workspace: Path, tmp_path: Path
) -> None:
    """After `dvc pull` a clone has the models but an empty MLflow store; sync-registry registers them there."""
    import shutil

    root = tmp_path / "clone"
    shutil.copytree(pipeline_workspace, root, symlinks=True)
    (root / "mlruns.db").unlink()
    shutil.rmtree(root / "mlartifacts", ignore_errors=True)
    before = {path: path.read_bytes() for folder in ("metrics", "reports") for path in (root / folder).rglob("*.json")}

    first = run(["distilflow", "sync-registry"], root)
    assert "PROMOTED distilflow-sst2-student v1" in first.stdout
    uri = f"sqlite:///{root / 'mlruns.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert str(client.get_model_version_by_alias("distilflow-sst2-student", "champion").version) == "1"
    second = run(["distilflow", "sync-registry"], root)
    assert "already holds models/student as v1" in second.stdout
    assert len(client.search_model_versions("name = 'distilflow-sst2-student'")) == 1
    assert {path: path.read_bytes() for path in before} == before
