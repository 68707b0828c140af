"""The whole pipeline through a real `dvc repro` on the embedded demo data, shrunken to a few steps."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
import yaml
from mlflow import MlflowClient

from tests.conftest import run, write_params

STAGES = ["ingest", "validate", "tokenize", "finetune", "evaluate@teacher", "distill", "evaluate@student", "register"]


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
    assert champion.tags["dvc_data_md5"] == next(o["md5"] for o in lock["stages"]["ingest"]["outs"])
    assert {"lineage.ingest", "lineage.finetune", "lineage.distill", "lineage.register"} <= set(champion.tags)
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
    assert ran_stages(changed.stdout) == ["distill", "evaluate@student", "register"]
