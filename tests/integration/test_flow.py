"""The Prefect flow against a real Prefect server started on loopback, a real worker and real `dvc repro`.

One whole-pipeline run (the module fixture ``deployed``): the scheduled deployment is created with flows/deploy.py,
a process worker picks up two overlapping runs of it, and the second waits for the first's workspace lock. The
other tests reuse that workspace (copies of it) or a fresh one, so the module runs the pipeline only once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import yaml
from mlflow import MlflowClient

from distilflow.orchestration.settings import FLOW_NAME
from distilflow.runtime.locking import read_holder, workspace_lock
from distilflow.serving.servers import free_port, prefect_server_command, start_server, stop_server
from tests.conftest import make_workspace, run
from tests.conftest import test_env as workspace_env  # aliased: pytest would collect a test_* name
from tests.ui.pages import (  # the UI checks, collected here to share this module's flow run (tests/ui/pages.py)
    UiRun,
    test_the_experiment_opens_on_its_training_runs,  # noqa: F401
    test_the_flow_run_shows_one_task_per_stage,  # noqa: F401
    test_the_students_page_shows_its_card_and_the_champion_alias,  # noqa: F401
)

POOL = "distilflow-test-pool"
DEPLOYMENT = f"{FLOW_NAME}/test-nightly"
CRON = "0 3 * * *"
ARTIFACT_KEYS = {"validation-summary", "evaluation-metrics", "promotion-decision"}
STUDENT = "distilflow-sst2-student"


@dataclass
class Server:
    url: str
    env: dict[str, str]

    def client(self) -> Any:
        from prefect.client.orchestration import SyncPrefectClient

        return SyncPrefectClient(self.url)


def stop(process: subprocess.Popen[Any], sig: int = signal.SIGINT, timeout: float = 60) -> None:
    """`prefect worker` ignores SIGTERM: SIGINT it; kill its process group only if it will not stop."""
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = workspace_env()
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_API_URL=url,
        PREFECT_SERVER_UI_ENABLED="true",  # the UI checks below read its pages
        DISTILFLOW_MLFLOW_UI=f"http://127.0.0.1:{free_port()}",  # where the artifacts' links point; ui_run serves it
        PREFECT_LOGGING_LEVEL="INFO",
        PREFECT_WORKER_QUERY_SECONDS="2",
    )
    server = start_server(
        prefect_server_command(port, ui=True), env, f"{url}/health", 300, home / "server.log", poll_s=1
    )
    try:
        yield Server(url=url, env=env)
    finally:
        stop_server(server)


def run_flow(
    root: Path, args: list[str], env: dict[str, str], cwd: Path | None = None, timeout: int = 1800
) -> tuple[int, str, UUID | None]:
    """`python flows/pipeline.py ROOT ...` as a user runs it; returns exit code, output and the flow run id."""
    process = subprocess.run(
        [sys.executable, str(root / "flows" / "pipeline.py"), str(root), *args],
        cwd=cwd or root,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = process.stdout + process.stderr
    found = re.findall(r"^flow run ([0-9a-f-]{36})$", output, re.MULTILINE)
    return process.returncode, output, UUID(found[-1]) if found else None


def wait_final(server: Server, run_id: UUID, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    with server.client() as client:
        while True:
            flow_run = client.read_flow_run(run_id)
            if flow_run.state is not None and flow_run.state.is_final():
                return flow_run
            if time.monotonic() > deadline:
                raise AssertionError(f"flow run {run_id} still {flow_run.state} after {timeout} s")
            time.sleep(3)


def task_runs(server: Server, run_id: UUID, expected: int = 1) -> list[Any]:
    """Task runs reach the server as events, a moment after the flow run ends: poll for them."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + 60
    with server.client() as client:
        while True:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
            final = [r for r in runs if r.state is not None and r.state.is_final()]
            if len(final) >= expected or time.monotonic() > deadline:
                return final
            time.sleep(1)


def artifacts(server: Server, run_id: UUID) -> dict[str, Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with server.client() as client:
        found = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    return {artifact.key: artifact for artifact in found if artifact.key}


def log_text(server: Server, run_id: UUID) -> str:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with server.client() as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])), limit=200)
    return "\n".join(entry.message for entry in logs)


def registry(root: Path) -> MlflowClient:
    uri = f"sqlite:///{root / 'mlruns.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def versions(root: Path) -> list[tuple[str, str]]:
    return sorted((v.name, v.version) for v in registry(root).search_model_versions())


@dataclass
class Deployed:
    root: Path
    remote: Path
    deployment: Any
    first: Any
    second: Any
    worker_log: Path


@pytest.fixture(scope="module")
def deployed(prefect_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    """`flows/deploy.py` creates the cron deployment; a worker runs two overlapping runs of the whole flow."""
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    base = tmp_path_factory.mktemp("deployed")
    root = make_workspace(base / "ws")
    remote = base / "dvc-remote"
    run(["dvc", "remote", "modify", "--local", "local", "url", str(remote)], root)
    env = prefect_server.env
    deploy = subprocess.run(
        [
            sys.executable,
            "flows/deploy.py",
            "--root",
            str(root),
            "--name",
            "test-nightly",
            "--pool",
            POOL,
            "--cron",
            CRON,
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    assert f"prefect deployment run '{DEPLOYMENT}'" in deploy.stdout

    worker_log = base / "worker.log"
    with worker_log.open("w") as log:
        worker = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "prefect"),
                "worker",
                "start",
                "--pool",
                POOL,
                "--type",
                "process",
                "--name",
                "test-worker",
            ],
            cwd=base,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            with temporary_settings(updates={PREFECT_API_URL: prefect_server.url}):
                first = run_deployment(DEPLOYMENT, timeout=0)
                deadline = time.monotonic() + 600
                while (holder := read_holder(root)) is None or str(first.id) not in holder.owner:
                    assert time.monotonic() < deadline, f"first run never took the lock:\n{worker_log.read_text()}"
                    assert worker.poll() is None, worker_log.read_text()
                    time.sleep(1)
                # The first run holds the workspace for the whole pipeline (minutes); this one must wait for it.
                second = run_deployment(DEPLOYMENT, timeout=0)
                with prefect_server.client() as client:
                    deployment = client.read_deployment_by_name(DEPLOYMENT)
            first = wait_final(prefect_server, first.id, 1800)
            second = wait_final(prefect_server, second.id, 600)
        finally:
            # With nothing left to run, the worker sometimes takes over a minute to stop after SIGINT (seen in the
            # full suite, not alone); both runs are final by then, so a short wait before SIGKILL loses nothing.
            stop(worker, timeout=10)
    yield Deployed(root=root, remote=remote, deployment=deployment, first=first, second=second, worker_log=worker_log)


def test_scheduled_deployment_runs_the_whole_flow_with_artifacts_and_a_registered_model(
    deployed: Deployed, prefect_server: Server
) -> None:
    deployment = deployed.deployment
    assert deployment.work_pool_name == POOL
    assert [schedule.schedule.cron for schedule in deployment.schedules] == [CRON]
    assert deployment.parameters["root"] == str(deployed.root)

    first = deployed.first
    assert first.state.is_completed(), f"{first.state}\n{deployed.worker_log.read_text()[-5000:]}"
    stages = yaml.safe_load((deployed.root / "dvc.lock").read_text())["stages"]
    names = {run.name for run in task_runs(prefect_server, first.id, expected=len(stages))}
    # One task per dvc.yaml stage, each of which really ran on this fresh workspace.
    assert set(stages) <= names, names

    found = artifacts(prefect_server, first.id)
    assert set(found) >= ARTIFACT_KEYS
    table = found["evaluation-metrics"].data
    table = json.loads(table) if isinstance(table, str) else table
    rows = {row["metric"]: row for row in table}
    assert {"accuracy", "latency_p95_ms", "parameters"} <= set(rows)
    assert int(rows["parameters"]["student"]) < int(rows["parameters"]["teacher"])
    promotion = found["promotion-decision"].data
    decision = json.loads((deployed.root / "reports" / "promotion.json").read_text())
    assert f"{STUDENT} v{decision['version']}" in promotion
    assert f"/#/runs/{decision['run_id']}" in promotion
    assert "passed" in found["validation-summary"].data

    champion = registry(deployed.root).get_model_version_by_alias(STUDENT, "champion")
    assert str(champion.version) == str(decision["version"]) == "1"
    # The remote was empty: one line says what it lacked, not DVC's screenful of warnings and an ERROR.
    logged = log_text(prefect_server, first.id)
    assert "first run: nothing to pull yet from remote 'local' (it holds none of data/raw" in logged
    assert "Checkout failed" not in logged and "md5: " not in logged
    assert any(deployed.remote.rglob("*")), "results were not pushed to the DVC remote"
    assert "up to date" in run(["dvc", "status"], deployed.root).stdout


def test_overlapping_deployment_run_waits_for_the_lock_and_finds_everything_up_to_date(
    deployed: Deployed, prefect_server: Server
) -> None:
    second = deployed.second
    assert second.state.is_completed(), f"{second.state}\n{deployed.worker_log.read_text()[-5000:]}"
    assert f"in use by flow run '{deployed.first.name}'" in log_text(prefect_server, second.id)

    stages = yaml.safe_load((deployed.root / "dvc.lock").read_text())["stages"]
    first_tasks = task_runs(prefect_server, deployed.first.id, expected=len(stages))
    second_tasks = task_runs(prefect_server, second.id, expected=len(stages))
    first_done = max(run.end_time for run in first_tasks)
    second_began = min(run.start_time for run in second_tasks if run.start_time is not None)
    assert second_began >= first_done, "the second run started work while the first still held the workspace"
    skipped = sorted(run.name.split(":")[0] for run in second_tasks if run.name.endswith("skipped (up to date)"))
    assert skipped == sorted(stages)
    # The second run registered nothing: one student and one teacher version, from the first run.
    assert [name for name, _ in versions(deployed.root)] == ["distilflow-sst2-student", "distilflow-sst2-teacher"]


def test_validation_failure_ends_failed_without_retries_or_registry_change(
    deployed: Deployed, prefect_server: Server, tmp_path: Path
) -> None:
    root = tmp_path / "ws"
    shutil.copytree(deployed.root, root, symlinks=True)
    before = versions(root)
    champion = registry(root).get_model_version_by_alias(STUDENT, "champion").version
    # A user's edit breaks the data: a label outside {0, 1} in the kept rows. A plain run reruns ingest (the
    # data is its dependency) and validation stops the pipeline there.
    train = root / "data" / "demo" / "sst2" / "train.tsv"
    lines = train.read_text().splitlines(keepends=True)
    lines[1] = lines[1].rsplit("\t", 1)[0] + "\t7\n"
    train.write_text("".join(lines))
    code, output, run_id = run_flow(root, ["--no-sync-remote"], prefect_server.env)
    assert code == 1, output
    assert run_id is not None, output
    flow_run = wait_final(prefect_server, run_id, 60)
    assert flow_run.state.is_failed()
    assert "data validation FAILED" in flow_run.state.message and "label" in flow_run.state.message

    by_name = {run.name: run for run in task_runs(prefect_server, run_id, expected=3)}
    validate = by_name["validate"]
    assert validate.state.is_failed()
    assert validate.run_count == 1 and validate.empirical_policy.retries == 0
    assert not any(name.startswith(("tokenize", "finetune", "distill", "register")) for name in by_name)

    summary = artifacts(prefect_server, run_id)["validation-summary"].data
    assert "Data validation FAILED" in summary and "train.tsv" in summary
    assert versions(root) == before
    assert registry(root).get_model_version_by_alias(STUDENT, "champion").version == champion


def test_flow_fails_clearly_when_the_workspace_stays_locked(prefect_server: Server, tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "ws")
    params_before = (root / "params.yaml").read_text()
    with workspace_lock(root, "flow run 'long-job' (1234)"):
        code, output, run_id = run_flow(
            root, ["--lock-timeout", "2", "--no-sync-remote", "-S", "seed=7"], prefect_server.env, timeout=600
        )
    assert code == 1, output
    assert run_id is not None
    message = wait_final(prefect_server, run_id, 60).state.message
    assert "is locked by flow run 'long-job' (1234)" in message and "gave up after waiting 2 s" in message
    # It touched nothing: no settings applied, no stage run.
    assert (root / "params.yaml").read_text() == params_before
    assert not (root / "dvc.lock").exists()


@pytest.mark.slow  # a minute or more: the temporary server migrates a fresh database first
def test_serverless_run_on_an_up_to_date_workspace_skips_every_stage(deployed: Deployed, tmp_path: Path) -> None:
    """No server: Prefect starts its temporary one (on a fresh database here, hence the long startup timeout)."""
    env = {key: value for key, value in workspace_env().items() if key != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    # From another folder: stage names must still come out relative to the workspace.
    code, output, _ = run_flow(deployed.root, ["--no-sync-remote"], env, cwd=tmp_path)
    assert code == 0, output
    outcome = json.loads(output[output.index("{") : output.rindex("}") + 1])
    assert outcome and set(outcome.values()) == {"skipped (up to date)"}


def test_settings_are_checked_and_params_yaml_is_never_written(tmp_path: Path) -> None:
    """Profiles and overrides go through DVC's --set-param machinery, then distilflow's settings check."""
    from distilflow.orchestration.settings import SettingsRejected, checked_overrides, profile_overrides

    root = make_workspace(tmp_path / "ws")
    original = (root / "params.yaml").read_text()
    with pytest.raises(SettingsRejected, match=r"distill\.temprature"):
        checked_overrides(root, ["distill.temprature=3.0"])
    with pytest.raises(SettingsRejected, match=r"finetune\.max_steps"):
        checked_overrides(root, ["finetune.max_steps=-1"])
    checked_overrides(root, [*profile_overrides("smoke", root), 'data.path="../glue data/SST-2"'])
    assert (root / "params.yaml").read_text() == original
    with pytest.raises(SettingsRejected, match="no params profile 'nope'; known: smoke"):
        profile_overrides("nope", root)


def test_a_profile_run_is_an_experiment_and_the_next_plain_run_uses_gits_params(
    deployed: Deployed, prefect_server: Server, tmp_path: Path
) -> None:
    """The documented smoke run, as the Prefect UI's profile parameter: recorded by DVC, workspace untouched."""
    root = tmp_path / "ws"
    shutil.copytree(deployed.root, root, symlinks=True)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A"], root)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "results"], root)
    lock_before = (root / "dvc.lock").read_text()
    code, output, run_id = run_flow(root, ["--profile", "smoke", "--no-sync-remote"], prefect_server.env)
    assert code == 0, output
    assert run_id is not None
    assert run(["git", "diff", "--exit-code", "params.yaml", "dvc.lock"], root).stdout == ""
    assert (root / "dvc.lock").read_text() == lock_before
    name = json.loads(output[output.index("{") : output.rindex("}") + 1])["experiment"]
    shown = json.loads(run(["dvc", "exp", "show", "--json"], root).stdout)
    names = {rev.get("name") for base in shown for exp in base.get("experiments") or [] for rev in exp["revs"]}
    assert name in names, names
    params = {
        rev.get("name"): rev["data"]["params"]["params.yaml"]["data"]
        for base in shown
        for exp in base.get("experiments") or []
        for rev in exp["revs"]
    }
    assert params[name]["register"]["promote"] is False  # the profile's settings live in the experiment

    code, output, _ = run_flow(root, ["--no-sync-remote"], prefect_server.env)
    assert code == 0, output
    outcome = json.loads(output[output.index("{") : output.rindex("}") + 1])
    stage_outcomes = {stage: result for stage, result in outcome.items() if stage != "registry"}
    assert set(stage_outcomes.values()) == {"skipped (up to date)"}, outcome  # git's params: nothing to redo


def test_kill_9_of_the_flow_leaves_no_process_writing(prefect_server: Server, tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "ws")
    process = subprocess.Popen(
        [sys.executable, str(root / "flows" / "pipeline.py"), str(root), "--no-sync-remote"],
        cwd=root,
        env=prefect_server.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while not [pid for pid, cmd in workspace_processes(root) if "distilflow" in cmd and "stage" in cmd]:
            assert process.poll() is None and time.monotonic() < deadline, "no stage started"
            time.sleep(0.2)
        process.kill()  # SIGKILL: no handler runs, only the kernel's parent-death signal
        process.wait(30)
        deadline = time.monotonic() + 20
        while (left := workspace_processes(root)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not left, f"still running in the workspace after the flow died: {left}"
        assert read_holder(root) is None  # and the lock is free for the next run
    finally:
        if process.poll() is None:
            process.kill()


def workspace_processes(root: Path) -> list[tuple[int, str]]:
    """Live processes whose working directory is the workspace (the flow's dvc and stage children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if Path(os.readlink(entry / "cwd")) != root.resolve():
                continue
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = next(line for line in (entry / "status").read_text().splitlines() if line.startswith("State:"))
        except (OSError, StopIteration):
            continue
        if "zombie" not in state:
            found.append((int(entry.name), command))
    return found


def test_registry_follows_dvc_when_register_is_up_to_date(
    deployed: Deployed, prefect_server: Server, tmp_path: Path
) -> None:
    """A workspace whose register outputs are up to date but whose MLflow store lacks them (a copy, a pulled
    clone, a new worker): the flow makes the store hold the student dvc.lock records, once."""
    root = tmp_path / "ws"
    shutil.copytree(deployed.root, root, symlinks=True)
    for store in ("mlruns.db", "mlartifacts", ".distilflow"):
        target = root / store
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    code, output, _ = run_flow(root, ["--no-sync-remote"], prefect_server.env)
    assert code == 0, output
    outcome = json.loads(output[output.index("{") : output.rindex("}") + 1])
    assert outcome["register"] == "skipped (up to date)" and outcome["registry"] == "synced"
    assert STUDENT in {name for name, _ in versions(root)}
    code, output, _ = run_flow(root, ["--no-sync-remote"], prefect_server.env)
    assert json.loads(output[output.index("{") : output.rindex("}") + 1])["registry"] == "already registered"
    assert len([name for name, _ in versions(root) if name == STUDENT]) == 1


@pytest.mark.parametrize(
    ("decision", "headline"),
    [
        ({"promote": True, "promoted": True}, "v3: promoted to @champion"),
        ({"promote": True, "promoted": False}, "v3: not promoted (the gate passed; promotion was switched off"),
        ({"promote": False, "promoted": False}, "v3: not promoted (the gate refused it)"),
    ],
)
def test_promotion_artifact_tells_gate_verdict_from_what_happened(
    tmp_path: Path, decision: dict[str, Any], headline: str
) -> None:
    from distilflow.orchestration.dvc_output import RAN
    from distilflow.orchestration.reports import promotion_markdown
    from distilflow.workflows.pipeline import SKIPPED

    reports = tmp_path / "reports"
    (reports / "lineage").mkdir(parents=True)
    (reports / "promotion.json").write_text(
        json.dumps(
            {
                "model": STUDENT,
                "version": "3",
                "reasons": ["accuracy 0.9 ≥ floor 0.7"],
                "run_id": "r3",
                "previous_champion_version": "2",
                **decision,
            }
        )
    )
    (reports / "lineage" / "evaluate_student.json").write_text(json.dumps({"distill": "d1", "finetune": "f1"}))
    text = promotion_markdown(tmp_path, RAN)
    assert text is not None and text.startswith(f"# {STUDENT} {headline}")
    assert f"(http://127.0.0.1:5000/#/models/{STUDENT}/versions/3)" in text
    assert "[r3](http://127.0.0.1:5000/#/runs/r3)" in text and "| distill | [d1](" in text
    assert "up to date in this run" not in text
    assert "up to date in this run" in (promotion_markdown(tmp_path, SKIPPED) or "")


def test_only_the_deployed_checkout_and_allowed_folders_pass_the_root_check(tmp_path: Path) -> None:
    from distilflow.orchestration.settings import ALLOWED_ROOTS_ENV, RootRefused, checked_workspace

    project, extra = tmp_path / "project", tmp_path / "extra"
    env = {ALLOWED_ROOTS_ENV: f"{extra}{os.pathsep}"}
    assert checked_workspace(f"{project}/", project, env) == project.resolve()
    assert checked_workspace(str(extra), project, env) == extra.resolve()
    with pytest.raises(RootRefused, match=f"allowed: {project.resolve()}, {extra.resolve()}\\."):
        checked_workspace(str(project / "inner"), project, env)  # a folder inside an allowed one is another folder
    with pytest.raises(RootRefused, match="sets DISTILFLOW_ALLOWED_ROOTS in its own job variables"):
        checked_workspace(str(extra), project, env, run_sets_allow_list=True)


def test_a_deployed_run_is_refused_a_root_its_deployment_does_not_allow(prefect_server: Server, tmp_path: Path) -> None:
    """The `root` parameter is anyone's to set; the worker would run `dvc repro` there as its own user."""
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from distilflow.orchestration.settings import ALLOWED_ROOTS_ENV

    root = make_workspace(tmp_path / "ws")
    extra, elsewhere = tmp_path / "extra", tmp_path / "elsewhere"
    elsewhere.mkdir()
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(root / name, elsewhere / name)
    pool, name = "distilflow-root-check-pool", "root-check"
    command = [sys.executable, "flows/deploy.py", "--root", str(root), "--name", name, "--pool", pool]
    deploy = run_checked_deploy([*command, "--allow-root", str(extra), "--paused"], root, prefect_server.env)
    assert f"deployment {FLOW_NAME}/{name}" in deploy
    with temporary_settings(updates={PREFECT_API_URL: prefect_server.url}):
        refused: Any = run_deployment(f"{FLOW_NAME}/{name}", parameters={"root": str(elsewhere)}, timeout=0)
        widened: Any = run_deployment(
            f"{FLOW_NAME}/{name}",
            parameters={"root": str(elsewhere)},
            job_variables={"env": {ALLOWED_ROOTS_ENV: str(elsewhere)}},  # a run trying to allow itself
            timeout=0,
        )
    worker = subprocess.Popen(
        [str(Path(sys.executable).parent / "prefect"), "worker", "start", "--pool", pool, "--type", "process"],
        cwd=tmp_path,
        env=prefect_server.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        refused, widened = wait_final(prefect_server, refused.id, 300), wait_final(prefect_server, widened.id, 300)
    finally:
        stop(worker, timeout=10)
    assert refused.state.is_failed() and widened.state.is_failed()
    allowed = f"allowed: {root.resolve()}, {extra.resolve()}. Add a folder with `python flows/deploy.py --allow-root"
    assert f"root {elsewhere.resolve()} is not a workspace this deployment may run in; {allowed}" in str(
        refused.state.message
    )
    assert f"this run sets {ALLOWED_ROOTS_ENV} in its own job variables" in str(widened.state.message)
    assert sorted(path.name for path in elsewhere.iterdir()) == ["dvc.yaml", "params.yaml"], "something ran there"


def run_checked_deploy(command: list[str], root: Path, env: dict[str, str]) -> str:
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def mlflow_ui_command(port: int, root: Path) -> list[str]:
    mlflow = str(Path(sys.executable).parent / "mlflow")
    store = f"sqlite:///{root / 'mlruns.db'}"
    return [
        mlflow,
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        store,
        "--workers",
        "1",
    ]


@pytest.fixture(scope="module")
def ui_run(deployed: Deployed, prefect_server: Server) -> Iterator[UiRun]:
    """The deployed flow's first run as a person opens it: the Prefect UI beside the API, MLflow's UI on the store."""
    url = prefect_server.env["DISTILFLOW_MLFLOW_UI"]
    port = int(url.rsplit(":", 1)[1])
    log = deployed.root.parent / "mlflow-ui.log"
    server = start_server(mlflow_ui_command(port, deployed.root), prefect_server.env, f"{url}/health", 300, log, 1)
    try:
        promotion = artifacts(prefect_server, deployed.first.id)["promotion-decision"].data
        links = dict(re.findall(r"\[([^\]]+)\]\((http[^)]+)\)", promotion))
        stages = sorted(yaml.safe_load((deployed.root / "dvc.lock").read_text())["stages"])
        prefect_ui = prefect_server.url.removesuffix("/api")
        log_lines = log_text(prefect_server, deployed.first.id)
        yield UiRun(deployed.root, prefect_ui, url, deployed.first.id, links, stages, log_lines)
    finally:
        stop_server(server)


def test_a_team_servers_promotions_take_one_slot_of_a_prefect_concurrency_limit(
    prefect_server: Server, tmp_path: Path
) -> None:
    """With a tracking server, the registry lock is a Prefect global concurrency limit of one slot per model: a
    second holder (another process, as another worker would be) waits, and gives up with a message, not a move."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from distilflow.registry.lock import RegistryBusy, lock_name, registry_lock
    from distilflow.runtime.env_vars import exported

    model, server_uri = "distilflow-locktest-student", "http://127.0.0.1:5999"
    second = [
        sys.executable,
        "-c",
        "import sys; from pathlib import Path; from distilflow.registry.lock import registry_lock\n"
        f"with registry_lock({server_uri!r}, {model!r}, Path({str(tmp_path)!r}), wait_s=3): print('acquired')",
    ]
    with (
        exported("PREFECT_API_URL", prefect_server.url),
        temporary_settings(updates={PREFECT_API_URL: prefect_server.url}),
        registry_lock(server_uri, model, tmp_path),
    ):
        waited = subprocess.run(second, env=prefect_server.env, capture_output=True, text=True, timeout=120)
        assert waited.returncode != 0 and "acquired" not in waited.stdout
        assert RegistryBusy.__name__ in waited.stderr and lock_name(model) in waited.stderr, waited.stderr[-2000:]
    free = subprocess.run(second, env=prefect_server.env, capture_output=True, text=True, timeout=120)
    assert free.returncode == 0 and "acquired" in free.stdout, free.stderr[-2000:]
    with prefect_server.client() as client:
        assert client.read_global_concurrency_limit_by_name(lock_name(model)).limit == 1
