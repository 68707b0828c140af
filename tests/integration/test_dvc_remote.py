"""DVC remote round trip and a fresh clone: push, delete outputs and cache, pull, nothing left to reproduce.

The workspace is a copy of the session's reproduced pipeline, committed the way the README says (dvc.lock and the
cache: false results in git, data and models in the DVC remote). HOME points into the test folder, so the
committed default remote ``~/.cache/distilflow/dvc-remote`` is exercised as is without touching the real home.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dvc.repo import Repo
from mlflow import MlflowClient

from distilflow.orchestration import run_cache
from distilflow.runtime.dvc_files import stages
from distilflow.serving.servers import free_port, prefect_server_command, start_server, stop_server
from tests import conftest
from tests.conftest import make_workspace, run

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
UP_TO_DATE = "Data and pipelines are up to date."


def sh(cmd: list[str], cwd: Path, home: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = conftest.test_env(cwd)  # imported via the module: pytest would collect a bare test_env
    env["HOME"] = str(home)
    process = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False)
    if check and process.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {process.returncode}\n{process.stdout[-4000:]}\n{process.stderr[-4000:]}"
        )
    return process


def cached_outputs(root: Path) -> list[str]:
    with Repo(str(root)) as repo:
        return sorted(out.def_path for out in repo.index.outs if out.use_cache)


def ran(output: str) -> list[str]:
    """Stages DVC ran, from its own output or from the flow's log of it (prefixed with the task's name)."""
    return re.findall(r"Running stage '([^']+)'", output)


def flow_outcome(output: str) -> dict[str, str]:
    """The JSON `python flows/pipeline.py` prints last: each stage's outcome."""
    outcome: dict[str, str] = json.loads(output[output.rindex("\n{") + 1 : output.rindex("}") + 1])
    return outcome


def prefect_runs(prefect_home: Path, tmp_path: Path) -> tuple[list[Any], list[Any]]:
    """Flow runs and task runs in a Prefect database, read through a real server started on it."""
    from prefect.client.orchestration import SyncPrefectClient

    port = free_port()
    env = conftest.test_env(tmp_path)
    env.update(PREFECT_HOME=str(prefect_home))  # Prefect defaults: conftest.test_env (flow_settings)
    env.pop("PREFECT_API_URL", None)
    url = f"http://127.0.0.1:{port}/api"
    server = start_server(prefect_server_command(port), env, f"{url}/health", 300, tmp_path / "prefect.log", poll_s=1)
    try:
        with SyncPrefectClient(url) as client:
            return client.read_flow_runs(), client.read_task_runs()
    finally:
        stop_server(server)


def committed_copy(source: Path, target: Path, home: Path) -> Path:
    shutil.copytree(source, target, symlinks=True)
    sh([*GIT, "add", "-A"], target, home)
    sh([*GIT, "commit", "-qm", "pipeline results"], target, home)
    return target


@pytest.fixture
def home(tmp_path: Path) -> Path:
    folder = tmp_path / "home"
    folder.mkdir()
    return folder


def test_push_delete_pull_then_a_fresh_clone_makes_pipeline_with_nothing_to_do(
    pipeline_workspace: Path, tmp_path: Path, home: Path
) -> None:
    root = committed_copy(pipeline_workspace, tmp_path / "project", home)
    assert sh(["git", "status", "--porcelain"], root, home).stdout == ""
    tracked = sh(["git", "ls-files"], root, home).stdout.splitlines()
    cached = cached_outputs(root)
    assert {"data/raw", "data/tokenized", "models/teacher", "models/student"} <= set(cached)
    leaked = [file for file in tracked if any(file == out or file.startswith(out + "/") for out in cached)]
    assert leaked == [], f"DVC-cached outputs committed to git: {leaked[:10]}"
    assert {"dvc.lock", "metrics/eval_student.json", "data/.gitignore", "models/.gitignore"} <= set(tracked)

    pushed = sh(["make", "-o", ".venv/.installed", "push"], root, home)
    remote = home / ".cache" / "distilflow" / "dvc-remote"
    assert any(remote.rglob("*")), f"make push wrote nothing to {remote}:\n{pushed.stdout}"

    # Outputs and cache gone: dvc pull brings back exactly what dvc.lock names, so repro has nothing to do.
    for out in cached:
        target = root / out
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    shutil.rmtree(root / ".dvc" / "cache")
    missing = sh(["dvc", "status"], root, home).stdout
    assert "deleted:" in missing and "models/student" in missing, missing
    sh(["dvc", "pull"], root, home)
    for out in cached:
        assert (root / out).exists(), f"dvc pull did not restore {out}"
    assert UP_TO_DATE in sh(["dvc", "status"], root, home).stdout
    again = sh(["dvc", "repro"], root, home).stdout
    assert ran(again) == [] and UP_TO_DATE in again, again
    assert sh(["git", "status", "--porcelain"], root, home).stdout == ""

    # A fresh clone on the same machine: `make pipeline` pulls from the default remote and reproduces nothing.
    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(root), str(clone)], tmp_path, home)
    assert not (clone / "models" / "student").exists()
    # -o: the test interpreter's environment stands in for `make setup`'s .venv
    made = sh(["make", "-o", ".venv/.installed", "pipeline"], clone, home)
    output = made.stdout + made.stderr
    assert ran(output) == [], output
    outcome = flow_outcome(made.stdout)
    assert "ran" not in outcome.values(), outcome
    assert (clone / "models" / "student" / "config.json").is_file()
    # The pull skipped register, yet this clone's registry holds the student dvc.lock records.
    assert outcome["registry"] == "synced"
    uri = f"sqlite:///{clone / 'mlruns.db'}"
    assert MlflowClient(tracking_uri=uri, registry_uri=uri).search_model_versions("name='distilflow-sst2-student'")
    # The run is where users look: the project's Prefect database, the one `make ui` serves, one task per stage.
    flows, tasks = prefect_runs(clone / ".prefect", tmp_path)
    assert [run.name for run in flows] and len(flows) == 1
    task_names = {task.name.split(":")[0] for task in tasks if task.flow_run_id == flows[0].id}
    assert {instance for spec in stages(clone) for instance in spec.instances} <= task_names, task_names
    # A user whose Python writes bytecode has __pycache__ beside every imported source: not a code change.
    sh([sys.executable, "-m", "compileall", "-q", "src"], clone, home)
    assert any((clone / "src" / "distilflow" / "metrics").rglob("*.pyc"))
    assert UP_TO_DATE in sh(["dvc", "status"], clone, home).stdout
    assert sh(["git", "status", "--porcelain", "--untracked-files=all"], clone, home).stdout == ""


def test_a_second_machine_without_dvc_lock_restores_every_stage_from_the_run_cache(
    pipeline_workspace: Path, tmp_path: Path
) -> None:
    """A GLUE workspace on the next worker: same code, params and data at another path, no dvc.lock, empty cache.

    What the first machine pushed with its run-cache is enough: no training or evaluation runs again, and DVC calls
    the result up to date. Each stage's MLflow run ids (its lineage file) are an output no later stage depends on,
    so no key differs. Both machines name the shared remote in their own .dvc/config.local, as a team's would (the
    default remote under HOME is the test above's): the stages that run again keep the session's warm host.
    """
    remote = tmp_path / "team-remote"
    first = conftest.committed_copy(pipeline_workspace, tmp_path / "first")
    run(["dvc", "remote", "modify", "--local", "local", "url", str(remote)], first)
    # What a GLUE workspace's flow pushes: `dvc push --run-cache` alone leaves the git-tracked metrics and plots
    # behind, and the second machine would rerun every stage (orchestration.run_cache).
    pushed = run(run_cache.command(), first).stdout
    assert int(re.findall(r"run-cache pushed: (\d+) files", pushed)[0]) > 0, pushed

    second = make_workspace(tmp_path / "elsewhere" / "second")
    assert not (second / "dvc.lock").exists() and not (second / ".dvc" / "cache").exists()
    run(["dvc", "remote", "modify", "--local", "local", "url", str(remote)], second)
    run(["dvc", "fetch", "--run-cache"], second)  # the run-cache entries; each stage's outputs come with --pull
    made = run(["dvc", "repro", "--pull"], second)
    output = made.stdout + made.stderr
    restored = re.findall(r"Stage '([^']+)' is cached - skipping run", output)
    # DVC keeps no run-cache entry for a stage with an output in git (cache: false, not a metric or plot): those
    # stages, the cheap ones that write reports people read in git, run again.
    with Repo(str(second)) as repo:
        reported = {
            stage.name
            for stage in repo.index.stages
            if any(not out.use_cache for out in stage.outs if not (out.is_metric or out.is_plot))
        }
    instances = [instance for spec in stages(second) for instance in spec.instances]
    assert {"finetune", "evaluate@teacher", "distill", "evaluate@student"} <= set(restored), output
    assert sorted(restored) == sorted(set(instances) - reported) and sorted(ran(output)) == sorted(reported), output
    assert UP_TO_DATE in run(["dvc", "status"], second).stdout
    with Repo(str(first)) as repo_first, Repo(str(second)) as repo_second:
        hashes = [
            {
                out.def_path: out.hash_info.value
                for stage in repo.index.stages
                if stage.name in restored
                for out in stage.outs
            }
            for repo in (repo_first, repo_second)
        ]
    assert hashes[0] == hashes[1]
    first_lineage = json.loads((first / "reports" / "lineage" / "distill.json").read_text())
    assert json.loads((second / "reports" / "lineage" / "distill.json").read_text()) == first_lineage


@pytest.mark.slow
def test_make_pipeline_without_a_remote_still_reproduces(tmp_path: Path, home: Path) -> None:
    """The best-effort pull must not break a machine without the remote: repro computes everything."""
    root = make_workspace(tmp_path / "ws")
    made = sh(["make", "-o", ".venv/.installed", "pipeline"], root, home)
    assert "ingest" in ran(made.stdout) and "register" in ran(made.stdout), made.stdout
    assert not (home / ".cache" / "distilflow" / "dvc-remote").exists()
    assert sh(["dvc", "status"], root, home).stdout.strip().endswith(UP_TO_DATE)
