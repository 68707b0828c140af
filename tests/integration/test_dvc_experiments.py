"""DVC experiments on the pipeline: -S reruns only what the param feeds, exp show/apply/branch, plots diff, lineage."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
import yaml
from dvc.repo import Repo

from tests.conftest import committed_copy, run, write_params

STUDENT_METRICS = "metrics/eval_student.json"


def ran(output: str) -> list[str]:
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")]


def downstream_of(root: Path, stage: str) -> set[str]:
    """The stage and every stage that depends on it, from DVC's own graph (edges point at dependencies)."""
    with Repo(str(root)) as repo:
        graph = repo.index.graph
        node = next(item for item in graph.nodes if item.name == stage)
        return {stage} | {item.name for item in nx.ancestors(graph, node)}


def experiment(shown: list[dict[str, Any]], name: str) -> dict[str, Any]:
    for baseline in shown:
        for entry in baseline.get("experiments") or []:
            for revision in entry.get("revs", []):
                if revision.get("name") == name:
                    return dict(revision["data"])
    raise AssertionError(f"experiment {name} not in dvc exp show --json: {json.dumps(shown)[:2000]}")


def baseline_data(shown: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(next(item for item in shown if item.get("rev") != "workspace")["data"])


def metrics_of(data: dict[str, Any], file: str) -> dict[str, Any]:
    return dict(data["metrics"][file]["data"])


def test_exp_run_set_param_reruns_only_distill_and_dependants(pipeline_workspace: Path, tmp_path: Path) -> None:
    root = committed_copy(pipeline_workspace, tmp_path / "project")
    before = json.loads((root / STUDENT_METRICS).read_text())
    expected = downstream_of(root, "distill")
    assert {"distill", "evaluate@student", "register"} <= expected
    assert not expected & {"ingest", "validate", "tokenize", "finetune", "evaluate@teacher"}

    result = run(["dvc", "exp", "run", "--set-param", "distill.temperature=3.5", "--name", "hot"], root)
    assert set(ran(result.stdout)) == expected, result.stdout
    after = json.loads((root / STUDENT_METRICS).read_text())

    shown = json.loads(run(["dvc", "exp", "show", "--json"], root).stdout)
    hot = experiment(shown, "hot")
    assert hot["params"]["params.yaml"]["data"]["distill"]["temperature"] == 3.5
    assert metrics_of(hot, STUDENT_METRICS) == after
    assert metrics_of(baseline_data(shown), STUDENT_METRICS) == before
    assert after != before  # a rerun measures again (latency at least), so the numbers cannot all repeat
    # The teacher was not retrained or re-scored: its metrics are the baseline's, byte for byte.
    assert metrics_of(hot, "metrics/eval_teacher.json") == metrics_of(baseline_data(shown), "metrics/eval_teacher.json")

    # exp branch: the experiment becomes an ordinary git branch with its params, lock and results.
    run(["dvc", "exp", "branch", "hot", "hot-branch"], root)
    branched = yaml.safe_load(run(["git", "show", "hot-branch:params.yaml"], root).stdout)
    assert branched["distill"]["temperature"] == 3.5
    assert json.loads(run(["git", "show", f"hot-branch:{STUDENT_METRICS}"], root).stdout) == after

    # Back to the baseline, then exp apply restores the experiment's params, results and (from the cache) models.
    run(["git", "reset", "-q", "--hard"], root)
    run(["dvc", "checkout", "--force"], root)
    assert json.loads((root / STUDENT_METRICS).read_text()) == before
    run(["dvc", "exp", "apply", "hot"], root)
    assert yaml.safe_load((root / "params.yaml").read_text())["distill"]["temperature"] == 3.5
    assert json.loads((root / STUDENT_METRICS).read_text()) == after
    assert "up to date" in run(["dvc", "status"], root).stdout

    # plots diff between the baseline commit and the experiment: both revisions in the calibration plot's data.
    diff = json.loads(run(["dvc", "plots", "diff", "HEAD", "hot", "--json", "--split"], root).stdout)
    assert not diff.get("errors"), diff.get("errors")
    for plot in ("calibration", "learning_curve"):
        assert diff["data"][plot][0]["revisions"] == ["HEAD", "hot"]


def test_plots_show_renders_every_top_level_plot(pipeline_workspace: Path, tmp_path: Path) -> None:
    shown = run(["dvc", "plots", "show", "--json", "--split", "-o", str(tmp_path / "html")], pipeline_workspace).stdout
    answer = json.loads(shown)
    assert not answer.get("errors"), answer.get("errors")
    plots = answer["data"]
    definitions = yaml.safe_load((pipeline_workspace / "dvc.yaml").read_text())["plots"]
    for entry in definitions:
        (name,) = entry
        assert name in plots, f"top-level plot {name} missing from dvc plots show: {sorted(plots)}"
        rendered = plots[name][0]
        assert rendered["type"] == "vega"
        assert not rendered.get("errors"), rendered.get("errors")
    data = plots["calibration"][0]["anchor_definitions"]["<DVC_METRIC_DATA>"]
    # DVC names each series by the file, less the folder the two files share
    assert {row["filename"] for row in data} == {"teacher_dev.csv", "student_dev.csv"}
    assert all({"confidence", "correct"} <= set(row) for row in data)


@pytest.mark.slow
def test_editing_the_demo_data_makes_a_new_data_version(pipeline_workspace: Path, tmp_path: Path) -> None:
    root = committed_copy(pipeline_workspace, tmp_path / "project")
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]

    def out_md5(stages: dict[str, Any], stage: str, path: str) -> str:
        return str(next(out["md5"] for out in stages[stage]["outs"] if out["path"] == path))

    train = root / "data" / "demo" / "sst2" / "train.tsv"
    lines = train.read_text().splitlines(keepends=True)
    train.write_text("".join([lines[0], lines[2], lines[1], *lines[3:]]))  # swap two rows inside the kept slice
    result = run(["dvc", "repro", "validate"], root)
    assert ran(result.stdout) == ["ingest", "validate"]
    relock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    assert out_md5(relock, "ingest", "data/raw") != out_md5(lock, "ingest", "data/raw")
    assert out_md5(relock, "validate", "data/validated") != out_md5(lock, "validate", "data/validated")

    write_params(root, {"data": {"max_train_rows": 48}})
    assert ran(run(["dvc", "repro", "validate"], root).stdout) == ["ingest", "validate"]
    third = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    assert out_md5(third, "ingest", "data/raw") not in {
        out_md5(lock, "ingest", "data/raw"),
        out_md5(relock, "ingest", "data/raw"),
    }


def test_lineage_names_data_version_params_commit_and_stage_runs(pipeline_workspace: Path, tmp_path: Path) -> None:
    root = committed_copy(pipeline_workspace, tmp_path / "project")
    head = run(["git", "rev-parse", "HEAD"], root).stdout.strip()
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    raw_md5 = next(out["md5"] for out in lock["ingest"]["outs"] if out["path"] == "data/raw")
    validated_md5 = next(out["md5"] for out in lock["validate"]["outs"] if out["path"] == "data/validated")

    result = run(["distilflow", "lineage", "distilflow-sst2-student@champion", "--json"], root)
    lineage = json.loads(result.stdout)
    assert lineage["name"] == "distilflow-sst2-student" and "champion" in lineage["aliases"]
    assert lineage["data_md5"] == raw_md5 == lineage["workspace_data_md5"]
    assert lineage["manifest"]["source"] == "local"
    assert set(lineage["manifest"]["files"]) == {"train", "dev"}
    # dvc.lock was first committed in HEAD, so that is where this data version is recorded
    assert [commit["commit"] for commit in lineage["data_commits"]] == [head]
    assert lineage["data_commits"][0]["validated_md5"] == validated_md5
    stages = [item["stage"] for item in lineage["stage_runs"]]
    assert stages[0] == "ingest" and stages[-1] == "register"
    assert {"finetune", "distill", "evaluate_student"} <= set(stages)
    assert all(not item["missing"] and item["status"] == "FINISHED" for item in lineage["stage_runs"])
    distill = next(item for item in lineage["stage_runs"] if item["stage"] == "distill")
    assert distill["params"]["distill.temperature"] == "2.0"
    assert len(lineage["git_commit"]) == 40 and len(lineage["params_hash"]) == 16

    text = run(["distilflow", "lineage", "distilflow-sst2-student@champion"], root).stdout
    assert raw_md5 in text and validated_md5 in text and f"git checkout {head[:12]}" in text

    missing = subprocess.run(
        ["distilflow", "lineage", "distilflow-sst2-student@nosuchalias"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        env=_env(root),
    )
    assert missing.returncode == 2
    assert "not found in the registry" in missing.stderr and "distilflow-sst2-student" in missing.stderr


def _env(root: Path) -> dict[str, str]:
    from tests import conftest

    return conftest.test_env(root)
