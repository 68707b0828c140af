"""A user's journeys across DVC, the code and the registry: what `dvc status` says must be true.

Each test works on a committed copy of the session's reproduced pipeline (tests/conftest.py), so what it
changes is exactly what a user would change in a clone.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import yaml
from scripts.dvc_deps import code_deps, dep_of

from distilflow.runtime.dvc_files import stages
from distilflow.runtime.locking import TOKEN_ENV, workspace_lock
from distilflow.tracking.tags import ROLLED_BACK_TAG
from tests.conftest import committed_copy, run, write_params


def out_of_date(root: Path) -> set[str]:
    return set(json.loads(run(["dvc", "status", "--json"], root).stdout))


def raw_md5(root: Path) -> str:
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    return str(next(out["md5"] for out in lock["ingest"]["outs"] if out["path"] == "data/raw"))


def test_editing_a_row_of_the_data_reruns_ingest_through_register(pipeline_workspace: Path, tmp_path: Path) -> None:
    root = committed_copy(pipeline_workspace, tmp_path / "project")
    before = raw_md5(root)
    train = root / yaml.safe_load((root / "params.yaml").read_text())["data"]["path"] / "train.tsv"
    lines = train.read_text().splitlines(keepends=True)
    text, label = lines[1].rstrip("\n").rsplit("\t", 1)
    lines[1] = f"{text} , truly\t{label}\n"  # a row inside data.max_train_rows
    train.write_text("".join(lines))

    status = run(["dvc", "status"], root).stdout
    assert "ingest:" in status and "modified:" in status and "data/demo/sst2" in status, status
    assert out_of_date(root) == {"ingest"}  # only ingest knows yet; the rest follows from its new output

    repro = run(["dvc", "repro"], root).stdout
    ran = [line.split("'")[1] for line in repro.splitlines() if line.startswith("Running stage '")]
    assert ran[0] == "ingest" and "register" in ran and "validate" in ran, ran
    after = raw_md5(root)
    assert after != before
    lineage = json.loads(run(["distilflow", "lineage", "distilflow-sst2-student@challenger", "--json"], root).stdout)
    assert lineage["data_md5"] == after == lineage["workspace_data_md5"]
    assert out_of_date(root) == set()


def test_editing_a_library_module_outdates_exactly_the_stages_that_import_its_package(
    pipeline_workspace: Path, tmp_path: Path
) -> None:
    root = committed_copy(pipeline_workspace, tmp_path / "project")
    assert out_of_date(root) == set()
    modules = ("src/distilflow/training/curves.py", "src/distilflow/evaluation/speed.py", "src/distilflow/paths.py")
    for module in modules:
        file = root / module
        original = file.read_text()
        file.write_text(original + "\n\ndef _edited() -> int:\n    return 1\n")
        package = dep_of(module)  # a stage depends on the packages it imports, as folders (docs/architecture.md)
        importers = [spec for spec in stages(root) if package in code_deps(spec.name)]
        expected = {instance for spec in importers for instance in spec.instances}
        assert expected, f"no stage imports {module}?"
        assert out_of_date(root) == expected, module
        file.write_text(original)
    assert out_of_date(root) == set()


def test_a_bare_stage_refuses_while_another_run_holds_the_workspace(pipeline_workspace: Path, tmp_path: Path) -> None:
    """`dvc repro` (or `distilflow stage`) beside a running flow fails at once and names the holder."""
    root = committed_copy(pipeline_workspace, tmp_path / "project")
    run(["dvc", "repro", "-f", "--single-item", "ingest", "--dry"], root)
    with workspace_lock(root, "flow run 'nightly' (abc)"):
        # Started elsewhere, so without the holder's token (the holder's own children inherit it).
        env = {key: value for key, value in os.environ.items() if key != TOKEN_ENV}
        process = subprocess.run(
            ["distilflow", "stage", "ingest"],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
    assert process.returncode == 2
    assert "is locked by flow run 'nightly' (abc)" in process.stderr
    assert out_of_date(root) == set()  # nothing was written


def test_a_rolled_back_version_stays_rolled_back_through_dvc_repro_f_s_register(
    pipeline_workspace: Path, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    root = committed_copy(pipeline_workspace, tmp_path / "project")
    uri = f"sqlite:///{root / 'mlruns.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    name = "distilflow-sst2-student"

    def champion() -> str:
        return str(client.get_model_version_by_alias(name, "champion").version)

    assert champion() == "1"
    # A second champion: the same weights served as fp32 instead of auto's pick are another model (settings differ);
    # no teacher and no export timing keep the two register runs short.
    write_params(root, {"register": {"register_teacher": False, "serving": {"export": "none"}}})
    second = run(["dvc", "repro", "-s", "register"], root)
    assert "PROMOTED distilflow-sst2-student v2" in second.stdout, second.stdout[-3000:]
    assert run(["distilflow", "rollback"], root).returncode == 0
    assert champion() == "1" and ROLLED_BACK_TAG in client.get_model_version(name, "2").tags

    rerun = run(["dvc", "repro", "-f", "-s", "register"], root)
    assert "Running stage 'register'" in rerun.stdout
    assert "registered before with these weights" in rerun.stdout, rerun.stdout[-3000:]
    assert champion() == "1"
    assert sorted(str(v.version) for v in client.search_model_versions(f"name = '{name}'")) == ["1", "2"]

    # A settings change registers v2's weights again as v3: the rollback was about the model, so v3 is refused.
    write_params(root, {"register": {"register_teacher": False, "serving": {"export": "none", "threads": 2}}})
    changed = run(["dvc", "repro"], root)
    assert "NOT PROMOTED distilflow-sst2-student v3" in changed.stdout, changed.stdout[-3000:]
    assert "has the weights of v2, which was rolled back" in changed.stdout
    assert champion() == "1"


def test_a_clone_at_another_path_is_the_same_data_version_and_is_gated_against_the_champion(
    pipeline_workspace: Path, tmp_path: Path
) -> None:
    """Two machines, one commit, one registry: the second clone's data is the first's data version, so its student is
    compared with the first's champion instead of being refused as scored on other data."""
    first = committed_copy(pipeline_workspace, tmp_path / "first")
    second = committed_copy(pipeline_workspace, tmp_path / "elsewhere" / "second")
    run(["dvc", "repro", "-f", "-s", "ingest"], second)  # read the same files again, from another folder
    assert raw_md5(second) == raw_md5(first)
    assert out_of_date(second) == set()  # same data version: nothing downstream is outdated

    shared_store = f"sqlite:///{first / 'mlruns.db'}"
    seed = yaml.safe_load((second / "params.yaml").read_text())["seed"]
    write_params(second, {"seed": seed + 1, "register": {"tracking_uri": shared_store, "register_teacher": False}})
    repro = run(["dvc", "repro", "-s", "distill", "evaluate@student", "register"], second).stdout
    verdict = next(line for line in repro.splitlines() if "PROMOTED distilflow-sst2-student" in line)
    assert "another data version" not in verdict, verdict
    assert "champion" in verdict and "no current champion" not in verdict, verdict
