"""The register stage against a real sqlite MLflow store: gate, promote, rollback, metadata, exports.

Models are tiny random BERTs (tests/integration/registry_helpers.py); the gate only reads the metrics the
evaluate stage would have written, so each test sets those to the values it needs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.exceptions import MlflowException
from typer.testing import CliRunner

from distilflow.cli import app
from distilflow.config.loading import load_params
from distilflow.config.release_params import PromotionParams
from distilflow.registry.aliases import CHALLENGER, CHAMPION
from distilflow.registry.gate import gate
from distilflow.registry.packaging import package, serving_config
from distilflow.serving.classifier import TextClassifier
from distilflow.stages import register
from distilflow.tasks import get_task
from distilflow.tracking.runs import params_hash, stage_run
from distilflow.tracking.tags import (
    DATA_TAG,
    GATE_TAG,
    GIT_COMMIT_TAG,
    LINEAGE_TAG,
    METRIC_TAG,
    PARAMS_HASH_TAG,
    PREVIOUS_CHAMPION_TAG,
    PROMOTED_TAG,
    ROLLED_BACK_TAG,
    SERVED_ARTIFACT_TAG,
    SERVED_METRIC_TAG,
    SERVING_BACKEND_TAG,
)
from tests.integration.registry_helpers import (
    ANY_METRIC,
    client_for,
    empty_store,
    project,
    set_student,
    write_onnx_export,
)

__all__ = ["empty_store"]  # a fixture, imported for pytest to find
SST2 = get_task("sst2")
STUDENT = "distilflow-sst2-student"


def aliases(client: mlflow.MlflowClient, name: str = STUDENT) -> dict[str, str]:
    return {alias: str(version) for alias, version in client.get_registered_model(name).aliases.items()}


def test_gate_checks_every_rule_and_reports_all_reasons() -> None:
    rules = PromotionParams(min_metric=0.7, tolerance=0.01, max_latency_ms=10.0)
    assert gate(0.80, 5.0, None, rules, "accuracy").promote
    assert gate(0.795, 5.0, 0.80, rules, "accuracy").promote  # within tolerance
    worse = gate(0.78, 5.0, 0.80, rules, "accuracy")
    assert not worse.promote and any("< champion 0.8000" in reason for reason in worse.reasons)
    everything = gate(0.5, 12.0, 0.8, rules, "accuracy")
    assert not everything.promote
    assert len(everything.reasons) == 3
    assert "< floor" in everything.reasons[0] and "< champion" in everything.reasons[1]
    assert "> budget" in everything.reasons[2]
    assert not gate(math.nan, 5.0, None, rules, "accuracy").promote
    assert not gate(0.9, math.nan, None, rules, "accuracy").promote


def test_gate_refuses_worse_accepts_better_rollback_restores(tmp_path: Path, empty_store: Path) -> None:
    params, paths = project(tmp_path / "p", store=empty_store)
    client = client_for(paths)
    runner = CliRunner()

    set_student(paths, SST2, 0.80, seed=1)
    first = register.run(params, paths)["decision"]
    assert first["promoted"] and aliases(client) == {CHAMPION: "1", CHALLENGER: "1"}

    set_student(paths, SST2, 0.70, seed=2)  # worse than the champion by more than the tolerance
    second = register.run(params, paths)["decision"]
    assert not second["promoted"]
    assert aliases(client) == {CHAMPION: "1", CHALLENGER: "2"}
    assert any("< champion 0.8000" in reason for reason in second["reasons"])
    assert client.get_model_version(STUDENT, "2").tags[GATE_TAG] == "refused"
    report = json.loads((paths.reports_dir / "promotion.json").read_text())
    assert report["version"] == "2" and report["previous_champion_version"] == "1" and not report["promoted"]

    # People get the same gate: promoting the worse version by hand is refused and changes nothing.
    refused = runner.invoke(app, ["promote", "2", "--root", str(paths.root)])
    assert refused.exit_code == 1 and "refuses" in refused.output
    assert aliases(client)[CHAMPION] == "1"
    missing = runner.invoke(app, ["promote", "7", "--root", str(paths.root)])
    assert missing.exit_code == 2 and "no version '7'" in missing.output

    set_student(paths, SST2, 0.85, seed=3)
    assert register.run(params, paths)["decision"]["promoted"]
    assert aliases(client) == {CHAMPION: "3", CHALLENGER: "3"}
    assert client.get_model_version(STUDENT, "3").tags[PREVIOUS_CHAMPION_TAG] == "1"

    result = runner.invoke(app, ["rollback", "--root", str(paths.root)])
    assert result.exit_code == 0, result.output
    assert "v1 (was v3)" in result.output
    assert aliases(client)[CHAMPION] == "1"
    assert "back to v1" in client.get_model_version(STUDENT, "3").tags[ROLLED_BACK_TAG]
    # v1 was the first champion: nothing further back, and saying so is an error, not a silent no-op.
    again = runner.invoke(app, ["rollback", "--root", str(paths.root)])
    assert again.exit_code == 1 and "no recorded previous champion" in again.output
    assert aliases(client)[CHAMPION] == "1"

    forced = runner.invoke(app, ["promote", "2", "--force", "--root", str(paths.root)])
    assert forced.exit_code == 0, forced.output
    assert aliases(client)[CHAMPION] == "2"
    version = client.get_model_version(STUDENT, "2")
    assert version.tags[PREVIOUS_CHAMPION_TAG] == "1" and "--force" in version.tags[PROMOTED_TAG]
    assert runner.invoke(app, ["rollback", "--root", str(paths.root)]).exit_code == 0
    assert aliases(client)[CHAMPION] == "1"

    listing = runner.invoke(app, ["models", "--root", str(paths.root)])
    assert listing.exit_code == 0
    rows = [line.split() for line in listing.output.splitlines()[2:]]
    assert [row[0] for row in rows] == ["3", "2", "1"]
    assert rows[2][1] == "champion" and rows[0][1] == "challenger"

    dry = runner.invoke(app, ["serve", "--dry-run", "--port", "5123", "--root", str(paths.root)])
    assert dry.exit_code == 0
    assert f"mlflow models serve -m models:/{STUDENT}@champion --env-manager local -h 127.0.0.1 -p 5123" in dry.output


def test_version_carries_lineage_card_signature_and_takes_raw_text(tmp_path: Path, empty_store: Path) -> None:
    params, paths = project(tmp_path / "p", overrides={"register": {"register_teacher": True}}, store=empty_store)
    client = client_for(paths)
    # Real stage runs in the same store, as the pipeline's stages would have left them.
    lineage = {}
    for stage in ("ingest", "finetune", "distill"):
        with stage_run(stage, params, paths) as tracked:
            lineage[stage] = tracked.run_id
    set_student(paths, SST2, 0.8, lineage=lineage)
    register.run(params, paths)

    for role in ("student", "teacher"):
        version = client.get_model_version(f"distilflow-sst2-{role}", "1")
        tags = version.tags
        assert {GIT_COMMIT_TAG, DATA_TAG} <= set(tags) and tags[PARAMS_HASH_TAG] == params_hash(params)
        recorded = json.loads(tags[LINEAGE_TAG])  # one tag for the whole chain
        for stage, run_id in lineage.items():
            assert recorded[stage] == run_id
            experiment = client.get_run(run_id).info.experiment_id
            assert f"(#/experiments/{experiment}/runs/{run_id}?workflowType=machine_learning)" in version.description
        assert recorded["register"] == version.run_id  # MLflow's own "source run" link is the register run
        assert not [key for key in tags if key.startswith("lineage.")]
        assert "## Limits" in version.description
        assert f"accuracy: {0.8 if role == 'student' else 0.9:.4f}" in version.description

        local = Path(mlflow.artifacts.download_artifacts(f"models:/distilflow-sst2-{role}/1"))
        mlmodel = yaml.safe_load((local / "MLmodel").read_text())
        assert mlmodel["signature"]["inputs"] and "saved_input_example_info" in mlmodel
        requirements = (local / "requirements.txt").read_text()
        assert "torch==" in requirements and "torchvision" not in requirements
        packaged = local / "artifacts" / "model"
        assert (packaged / "model.safetensors").is_file() and (packaged / "tokenizer.json").is_file()
    run = client.get_run(client.get_model_version(STUDENT, "1").run_id)
    assert "#/experiments/" in run.data.tags["mlflow.note.content"]
    card = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/student_model_card.md")
    assert card.startswith("Distilled student, GLUE sst2: accuracy 0.8000 on dev")  # the versions list's line

    model = mlflow.pyfunc.load_model(f"models:/{STUDENT}@champion")
    texts = ["a gripping , beautifully acted film .", "a tedious mess ."]
    from_list = model.predict(texts)
    assert list(from_list.columns) == ["label", "score", "truncated"]
    pd.testing.assert_frame_equal(from_list, model.predict(pd.DataFrame({"sentence": texts})))
    assert set(from_list["label"]) <= {"0", "1"} and ((from_list["score"] >= 0.5) & (from_list["score"] <= 1)).all()
    assert list(model.predict(["great " * 400, "fine"])["truncated"]) == [True, False]
    for bad, message in [
        (pd.DataFrame({"text": ["x"]}), "reads columns ['sentence']"),
        (pd.DataFrame({"sentence": ["ok", None]}), "row 1: missing"),
        (pd.DataFrame({"sentence": ["ok", 3]}), "row 1: int"),
        (pd.DataFrame({"sentence": ["  "]}), "empty string"),
        (["x"] * 257, "257 rows in one request; send at most 256"),
    ]:
        with pytest.raises(MlflowException) as caught:
            model.predict(bad)
        assert message in caught.value.message and caught.value.get_http_status_code() == 400


@pytest.mark.parametrize("task_name", ["qqp", "stsb"])
def test_pair_tasks_accept_their_columns_sentence1_2_and_pairs(
    tmp_path: Path, empty_store: Path, task_name: str
) -> None:
    task = get_task(task_name)
    params, paths = project(
        tmp_path / "p", task=task_name, overrides={"register": {"promotion": {"min_metric": -1.0}}}, store=empty_store
    )
    client_for(paths)
    set_student(paths, task, 0.8)
    register.run(params, paths)
    model = mlflow.pyfunc.load_model(f"models:/distilflow-{task_name}-student@champion")
    first, second = ["How do I learn Python?", "Is it raining?"], ["What is the best way to learn Python?", "No."]
    own = model.predict(pd.DataFrame({task.fields[0]: first, task.fields[1]: second}))
    generic = model.predict(pd.DataFrame({"sentence1": first, "sentence2": second}))
    pairs = model.predict([list(pair) for pair in zip(first, second, strict=True)])
    pd.testing.assert_frame_equal(own, generic)
    pd.testing.assert_frame_equal(own, pairs)
    if task.is_regression:
        assert list(own.columns) == ["score", "truncated"] and ((own["score"] >= 0) & (own["score"] <= 5)).all()
    else:
        assert list(own.columns) == ["label", "score", "truncated"]
    with pytest.raises(MlflowException, match="reads columns"):
        model.predict(pd.DataFrame({"left": first, "right": second}))


def test_agreeing_onnx_export_is_served_and_matches_fp32(tmp_path: Path, empty_store: Path) -> None:
    overrides = {"register": {"serving": {"export": "onnx"}, **ANY_METRIC}}
    params, paths = project(tmp_path / "p", overrides=overrides, store=empty_store)
    client = client_for(paths)
    set_student(paths, SST2, 0.8)
    write_onnx_export(paths.student_dir, agrees=True)
    report = register.run(params, paths)["decision"]
    assert report["serving"]["export"] == "onnx"
    assert set(report["serving"]["predict_p50_ms"]) == {"none", "onnx"}  # both timed in the same process
    assert client.get_model_version(STUDENT, "1").tags[SERVING_BACKEND_TAG] == "onnx"

    served = mlflow.pyfunc.load_model(f"models:/{STUDENT}@champion")
    texts = [
        line.split("\t")[0]
        for line in (Path(__file__).parents[2] / "data/demo/sst2/dev.tsv").read_text().splitlines()[1:41]
    ]
    fp32 = TextClassifier.from_folder(package(paths.student_dir, serving_config(SST2, params), tmp_path / "fp32"))
    onnx_out, torch_out = served.predict(texts), fp32.predict(None, texts)
    assert list(onnx_out["label"]) == list(torch_out["label"])
    assert np.allclose(onnx_out["score"], torch_out["score"], atol=1e-4)

    # The metric the version records and the gate judged is the served export's own, on the dev rows: not the
    # evaluate stage's fp32 figure (0.8 here) plus a difference.
    dev = pd.read_parquet(paths.validated_dir / "dev.parquet")
    answers = served.predict(dev[["sentence"]])["label"].astype(int).to_numpy()
    tags = client.get_model_version(STUDENT, "1").tags
    assert tags[SERVED_ARTIFACT_TAG] == "onnx"
    assert float(tags[SERVED_METRIC_TAG]) == pytest.approx(float(np.mean(answers == dev["label"])))
    assert float(tags[METRIC_TAG]) == pytest.approx(0.8)


def test_export_that_failed_its_check_is_never_served(tmp_path: Path, empty_store: Path) -> None:
    params, paths = project(tmp_path / "p", overrides={"register": {"serving": {"export": "auto"}}}, store=empty_store)
    client = client_for(paths)
    set_student(paths, SST2, 0.8)
    write_onnx_export(paths.student_dir, agrees=False)
    report = register.run(params, paths)["decision"]
    assert report["serving"]["export"] == "none"
    assert any("failed its agreement check" in reason for reason in report["serving"]["reasons"])
    assert client.get_model_version(STUDENT, "1").tags[SERVING_BACKEND_TAG] == "torch"


def test_params_reject_unknown_serving_export(tmp_path: Path) -> None:
    from distilflow.config.loading import ParamsError

    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump({"register": {"serving": {"export": "tensorrt"}}}))
    with pytest.raises(ParamsError, match=r"register\.serving\.export"):
        load_params(params_file)
