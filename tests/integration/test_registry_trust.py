"""The journeys of issue #18 against a real sqlite MLflow store: a champion that people can trust.

A constant model never passes; a store error is an error; small drops cannot add up; a person's rollback or alias
move stands; promotion is compare-and-set; an export that disagrees with fp32 is never served.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from distilflow.cli import app
from distilflow.config.loading import load_params
from distilflow.config.params import Params
from distilflow.paths import Paths
from distilflow.registry.aliases import CHAMPION, ChampionChanged, RegistryUnavailable, current_champion, promote
from distilflow.registry.gate import gate_version
from distilflow.stages import register
from distilflow.tasks import get_task
from distilflow.tracking.tags import (
    DATA_TAG,
    GATE_BOOTSTRAP_TAG,
    GATE_REASONS_TAG,
    GATE_TAG,
    PROMOTED_TAG,
    ROLLED_BACK_TAG,
    SERVED_ARTIFACT_TAG,
    SERVED_METRIC_TAG,
)
from tests.integration.registry_helpers import client_for, empty_store, project, set_student, write_dev

__all__ = ["empty_store"]  # a fixture, imported for pytest to find
SST2 = get_task("sst2")
STUDENT = "distilflow-sst2-student"


def champion_of(client: MlflowClient, name: str = STUDENT) -> str:
    return str(client.get_model_version_by_alias(name, CHAMPION).version)


def snapshot(client: MlflowClient, name: str = STUDENT) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    aliases = {alias: str(v) for alias, v in client.get_registered_model(name).aliases.items()}
    tags = {str(v.version): dict(v.tags) for v in client.search_model_versions(f"name='{name}'")}
    return aliases, tags


def test_constant_prediction_candidate_on_a_pair_task_is_refused_naming_the_baseline(
    tmp_path: Path, empty_store: Path
) -> None:
    mrpc = get_task("mrpc")
    params, paths = project(
        tmp_path / "p",
        task="mrpc",
        store=empty_store,
        overrides={"register": {"promotion": {"min_metric": 0.75, "baseline_margin": 0.02}}},
    )
    client = client_for(paths)
    write_dev(paths, mrpc, rows=400, majority_share=0.68)  # about MRPC dev's size (408) and share of paraphrases
    # About what always answering "paraphrase" scores here (F1 0.81): above the 0.75 floor, only the baseline stops it.
    metric = set_student(paths, mrpc, 0.812, seed=1)
    report = register.run(params, paths)["decision"]
    assert not report["promoted"]
    assert report["baseline_metric"] == pytest.approx(2 * 0.68 / 1.68, abs=1e-9)
    assert "always answer '1'" in report["baseline_model"]
    expected = f"{metric:.4f} < trivial baseline 0.8095 + margin 0.0200"
    assert any(expected in reason for reason in report["reasons"]), report["reasons"]
    assert report["bootstrap"]["baseline"]["p_above"] < 0.95
    assert any("within noise" in reason for reason in report["reasons"]), report["reasons"]
    assert current_champion(client, "distilflow-mrpc-student") is None
    set_student(paths, mrpc, 0.90, seed=2)
    promoted = register.run(params, paths)["decision"]
    assert promoted["promoted"], promoted["reasons"]
    assert promoted["bootstrap"]["baseline"]["p_above"] >= 0.95
    assert champion_of(client, "distilflow-mrpc-student") == "2"


def test_a_win_over_the_baseline_within_noise_is_refused_on_a_small_dev_set(tmp_path: Path, empty_store: Path) -> None:
    # The same margin over the baseline passes the point rule on 40 and on 4,000 dev examples; only the larger dev
    # set makes it more than noise, and the bootstrap says so on the version and in its model card.
    outcomes = {}
    for rows in (40, 4000):
        floor = {"register": {"promotion": {"min_metric": 0.5}}}
        params, paths = project(tmp_path / f"p{rows}", store=empty_store, overrides=floor)
        client = client_for(paths)
        write_dev(paths, SST2, rows=rows, majority_share=0.5)
        set_student(paths, SST2, 0.55, seed=1)  # baseline 0.50 + margin 0.02 < 0.55
        report = register.run(params, paths)["decision"]
        assert any("≥ trivial baseline 0.5000 + margin 0.0200" in reason for reason in report["reasons"])
        version = client.get_model_version(STUDENT, "1")
        recorded = json.loads(version.tags[GATE_BOOTSTRAP_TAG])["baseline"]
        assert recorded == report["bootstrap"]["baseline"] and recorded["examples"] == rows
        assert "## Promotion gate" in version.description and "Paired bootstrap" in version.description
        outcomes[rows] = (report["promoted"], recorded["p_above"])
    assert not outcomes[40][0] and outcomes[40][1] < 0.95
    assert outcomes[4000][0] and outcomes[4000][1] >= 0.95


def test_three_small_drops_cannot_walk_the_champion_down(tmp_path: Path, empty_store: Path) -> None:
    params, paths = project(tmp_path / "p", store=empty_store)
    client = client_for(paths)
    write_dev(paths, SST2, rows=1000)  # so that 0.791 and 0.782 are accuracies these rows can have
    for seed, metric in ((1, 0.800), (2, 0.791), (3, 0.782)):
        set_student(paths, SST2, metric, seed=seed)
        register.run(params, paths)
    assert champion_of(client) == "2"  # 0.791 was within 0.01 of 0.800
    refused = client.get_model_version(STUDENT, "3")
    assert refused.tags[GATE_TAG] == "refused"
    reasons = refused.tags[GATE_REASONS_TAG]
    assert "0.7820 < best champion ever v1 0.8000 − tolerance 0.0100" in reasons
    # Both comparisons are also paired bootstraps over the same 1,000 dev answers, reported beside the rule.
    compared = json.loads(refused.tags[GATE_BOOTSTRAP_TAG])
    assert compared["champion v2"]["difference"] == pytest.approx(-0.009)
    assert compared["best champion ever v1"]["difference"] == pytest.approx(-0.018)
    assert compared["best champion ever v1"]["low"] < -0.018 < compared["best champion ever v1"]["high"]
    assert "against best champion ever v1: P(better than best champion ever v1)" in reasons


def test_a_rollback_and_a_manual_alias_move_survive_a_rerun_of_register(tmp_path: Path, empty_store: Path) -> None:
    params, paths = project(tmp_path / "p", store=empty_store)
    client = client_for(paths)
    runner = CliRunner()
    set_student(paths, SST2, 0.80, seed=1)
    register.run(params, paths)
    set_student(paths, SST2, 0.85, seed=2)
    register.run(params, paths)
    assert champion_of(client) == "2"
    result = runner.invoke(app, ["rollback", "--root", str(paths.root)])
    assert result.exit_code == 0 and "restart it" in result.output
    # The stage's entry point on the same weights (test_journeys.py runs it through `dvc repro -f -s register`).
    rerun = runner.invoke(app, ["stage", "register", "--root", str(paths.root)])
    assert rerun.exit_code == 0, rerun.output
    assert champion_of(client) == "1"
    assert "registered before with these weights" in rerun.output
    assert len(client.search_model_versions(f"name='{STUDENT}'")) == 2
    # By hand, without --force, the gate names the rollback; with --force it comes back and loses the mark.
    refused = runner.invoke(app, ["promote", "2", "--root", str(paths.root)])
    assert refused.exit_code == 1 and "was rolled back" in refused.output and champion_of(client) == "1"
    forced = runner.invoke(app, ["promote", "2", "--force", "--root", str(paths.root)])
    assert forced.exit_code == 0, forced.output
    assert champion_of(client) == "2" and ROLLED_BACK_TAG not in client.get_model_version(STUDENT, "2").tags

    # A person moves @champion back to v1 in the MLflow UI (one alias call, no distilflow involved).
    client.set_registered_model_alias(STUDENT, CHAMPION, "1")
    rerun = runner.invoke(app, ["stage", "register", "--root", str(paths.root)])
    assert rerun.exit_code == 0, rerun.output
    assert champion_of(client) == "1"
    assert "a person moved @champion" in client.get_model_version(STUDENT, "2").tags[ROLLED_BACK_TAG]
    # A genuinely new and better candidate may still be promoted; v2 is not the bar any more.
    set_student(paths, SST2, 0.84, seed=3)
    assert register.run(params, paths)["decision"]["promoted"] and champion_of(client) == "3"


def test_racing_promotions_one_wins_the_other_fails_with_a_message(tmp_path: Path, empty_store: Path) -> None:
    params, paths = project(tmp_path / "p", store=empty_store, overrides={"register": {"promote": False}})
    client = client_for(paths)
    for seed, metric in ((1, 0.80), (2, 0.82), (3, 0.83)):
        set_student(paths, SST2, metric, seed=seed)
        register.run(params, paths)
    assert current_champion(client, STUDENT) is None
    rules = params.register_.promotion
    late = gate_version(client, STUDENT, "3", rules)  # this promotion read "no champion"...
    assert late.promote and late.champion_version is None
    won = CliRunner().invoke(app, ["promote", "2", "--root", str(paths.root)])  # ...and this one moved first
    assert won.exit_code == 0, won.output
    with pytest.raises(ChampionChanged, match="it was unset, it is now v2"):
        promote(client, STUDENT, "3", expected=late.champion_version)
    assert champion_of(client) == "2"
    assert PROMOTED_TAG not in client.get_model_version(STUDENT, "3").tags


def test_a_locked_store_fails_the_stage_and_changes_no_alias_or_tag(tmp_path: Path, empty_store: Path) -> None:
    params, paths = project(tmp_path / "p", store=empty_store)
    client = client_for(paths)
    set_student(paths, SST2, 0.80, seed=1)
    register.run(params, paths)
    before = snapshot(client)
    set_student(paths, SST2, 0.90, seed=2)
    holder = sqlite3.connect(paths.mlflow_db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process holding the store, as sqlite's "database is locked" means
    try:
        with pytest.raises(Exception, match="database is locked"):
            register.run(params, paths)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert snapshot(client) == before


def test_an_unreachable_registry_is_an_error_not_no_champion(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    unreachable = MlflowClient(tracking_uri="http://127.0.0.1:9", registry_uri="http://127.0.0.1:9")
    with pytest.raises(RegistryUnavailable, match="no alias or tag was changed"):
        current_champion(unreachable, STUDENT)


def test_an_export_that_disagrees_with_fp32_is_never_served(tmp_path: Path, empty_store: Path) -> None:
    import torch

    from distilflow.export.student import export_onnx
    from distilflow.models.loading import load_classifier

    params, paths = project(tmp_path / "p", overrides={"register": {"serving": {"export": "auto"}}}, store=empty_store)
    client = client_for(paths)
    set_student(paths, SST2, 0.8)
    # An ONNX file whose classifier is negated: it answers the opposite of fp32 on every example where the two
    # logits differ, while the distill stage's summary (wrongly) says it agrees.
    model = load_classifier(paths.student_dir)
    with torch.no_grad():
        model.classifier.weight.neg_()
        model.classifier.bias.neg_()
    export_onnx(model, paths.student_dir / "export" / "onnx" / "model.onnx")
    summary = {"onnx": {"agrees": True, "metric": "accuracy", "accuracy": 0.8, "fp32_accuracy": 0.8}}
    (paths.student_dir / "export" / "summary.json").write_text(json.dumps(summary))
    report = register.run(params, paths)["decision"]
    serving = report["serving"]
    assert serving["export"] == "none", serving
    assert serving["dev_agreement_with_fp32"]["onnx"] < 0.995
    assert any("onnx: agrees with fp32 on" in reason and "not served" in reason for reason in serving["reasons"])
    tags = client.get_model_version(STUDENT, "1").tags
    assert tags[SERVED_ARTIFACT_TAG] == "fp32" and float(tags[SERVED_METRIC_TAG]) == pytest.approx(0.8)
    assert mlflow.pyfunc.load_model(f"models:/{STUDENT}@champion").metadata is not None


FRESH_PROCESS = """
import json, sys
assert not any(name == "distilflow" or name.startswith("distilflow.") for name in sys.modules)
import mlflow
model = mlflow.pyfunc.load_model(sys.argv[1])
import distilflow
out = model.predict(["a gripping , beautifully acted film ."])
print(json.dumps({"distilflow": distilflow.__file__, "columns": list(out.columns), "label": str(out["label"][0])}))
"""


def test_champion_is_a_model_from_code_that_loads_in_a_fresh_process(tmp_path: Path, empty_store: Path) -> None:
    import subprocess
    import sys

    import yaml

    from tests import conftest

    params, paths = project(tmp_path / "p", store=empty_store)
    client_for(paths)
    set_student(paths, SST2, 0.8)
    register.run(params, paths)
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{STUDENT}@champion", dst_path=str(tmp_path / "dl")))
    mlmodel = yaml.safe_load((local / "MLmodel").read_text())
    assert mlmodel["flavors"]["python_function"]["model_code_path"].endswith("pyfunc_model.py")
    assert not list(local.rglob("*.pkl")), "no pickled Python object in the artifact"
    assert [spec["type"] for spec in json.loads(mlmodel["signature"]["inputs"])] == ["any"]  # unchanged
    env = {**conftest.test_env(), "MLFLOW_TRACKING_URI": f"sqlite:///{paths.mlflow_db}"}
    env.pop("PYTHONPATH", None)  # nothing of this checkout on the path: the code comes from the model
    result = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, f"models:/{STUDENT}@champion"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["columns"] == ["label", "score", "truncated"] and answer["label"] in {"0", "1"}
    assert "/code/distilflow/" in answer["distilflow"], answer  # the model's own copy, not an installed one


def test_a_champion_scored_on_another_data_version_is_not_compared_but_refused(
    tmp_path: Path, empty_store: Path
) -> None:
    params, paths = project(tmp_path / "p", store=empty_store)
    client = client_for(paths)
    set_student(paths, SST2, 0.80, seed=1)
    register.run(params, paths)
    client.set_model_version_tag(STUDENT, "1", DATA_TAG, "0123456789abcdef.dir")  # v1 saw other dev data
    set_student(paths, SST2, 0.95, seed=2)
    report = register.run(params, paths)["decision"]
    assert not report["promoted"] and champion_of(client) == "1"
    assert any("scored on another data version" in reason and "--force" in reason for reason in report["reasons"])
    assert "no current champion" not in report["reasons"]  # a champion exists; it is not compared, and says why


def test_a_recompute_in_a_second_clone_reuses_the_version_it_reproduced(
    tmp_path: Path, empty_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from distilflow.registry.registration import model_hash
    from tests.integration.registry_helpers import write_onnx_export

    params, paths = project(tmp_path / "a", store=empty_store)
    client = client_for(paths)
    set_student(paths, SST2, 0.8)
    write_onnx_export(paths.student_dir, agrees=True)
    assert register.run(params, paths)["decision"]["promoted"]
    # A second clone recomputed the same weights (docs/registry.md, "Reproducibility"): its timing summary differs,
    # as it does on every run; a lineage.json left in the folder by an older version counts no more. Both clones use
    # one team registry.
    clone = tmp_path / "b"
    shutil.copytree(paths.root, clone, ignore=shutil.ignore_patterns("mlruns.db", "mlartifacts"))
    summary = clone / "models/student/export/summary.json"
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "speedup_vs_fp32": 1.234}))
    (clone / "models/student/lineage.json").write_text(json.dumps({"distill": "another-run"}))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{paths.mlflow_db}")
    params_b, paths_b = load_params(clone / "params.yaml"), Paths.at(clone)
    assert model_hash(paths_b.student_dir, params_b) == model_hash(paths.student_dir, params)
    rerun = register.run(params_b, paths_b)["decision"]
    assert any("registered before with these weights" in reason for reason in rerun["reasons"]), rerun["reasons"]
    assert [str(v.version) for v in client.search_model_versions(f"name='{STUDENT}'")] == ["1"]

    # How `make serve` runs is not the model; what it serves is.
    def serving(**changes: object) -> Params:
        changed = params_b.register_.serving.model_copy(update=changes)
        return params_b.model_copy(update={"register_": params_b.register_.model_copy(update={"serving": changed})})

    assert model_hash(paths_b.student_dir, serving(port=6001, workers=4)) == model_hash(paths_b.student_dir, params_b)
    assert model_hash(paths_b.student_dir, serving(max_rows=8)) != model_hash(paths_b.student_dir, params_b)
    onnx = paths_b.student_dir / "export/onnx/model.onnx"
    onnx.write_bytes(onnx.read_bytes() + b"\0")
    assert model_hash(paths_b.student_dir, params_b) != model_hash(paths.student_dir, params)
