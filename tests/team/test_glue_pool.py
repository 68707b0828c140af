"""The team journey: `distilflow glue --pool` on the team stack (PostgreSQL under MLflow and Prefect, two process
workers), the single-sentence and pair demos (SST-2, MRPC) plus an RTE task whose worker is killed mid-task, and,
while the pool runs, a second run of a running task from another process, which the Prefect server's slot refuses.
The regression demo (STS-B) runs in tests/integration/test_glue_suite.py, in `make test`: on the pool as well, it
cost the journey a third pipeline and ~40 s of CI's 15 minutes.

One suite run (the session's stack, this module's fixture) serves every test. Marked ``team``: `make test-team`.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from distilflow.paths import Paths
from tests.integration.test_glue_suite import check_served_model
from tests.team.conftest import DISTILFLOW, prefect_settings, user_env

pytestmark = pytest.mark.team
DEMOS = ("sst2", "mrpc")
KILLED = "rte"
POOL = "distilflow-process"
POOLED_FLOW = "distilflow-glue-task-on-worker"
SUITE_TIMEOUT_S = 1500.0
KILL_AFTER_S = 8.0  # after the killed task took its slot: its workspace is made and its first stages run


@dataclass
class PoolRun:
    root: Path
    env: dict[str, str]
    returncode: int
    output: str
    glue_root: Path | None = None
    killed_pid: int | None = None
    refused: subprocess.CompletedProcess[str] | None = None
    refused_task: str | None = None
    flow_runs: list[Any] = field(default_factory=list)

    @property
    def table(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(Paths.at(self.root).glue_metrics_file.read_text())
        return data


def write_rte(folder: Path, mrpc: Path) -> None:
    """An RTE folder in GLUE's layout, its pairs taken from the MRPC demo (the project has no RTE demo)."""
    folder.mkdir(parents=True)
    for split in ("train", "dev"):
        rows = pd.read_csv(mrpc / f"{split}.tsv", sep="\t", quoting=csv.QUOTE_NONE, encoding="utf-8-sig")
        rte = pd.DataFrame(
            {
                "index": range(len(rows)),
                "sentence1": rows["#1 String"],
                "sentence2": rows["#2 String"],
                "label": ["entailment" if quality == 1 else "not_entailment" for quality in rows["Quality"]],
            }
        )
        rte.to_csv(folder / f"{split}.tsv", sep="\t", index=False, quoting=csv.QUOTE_NONE)


def slot_taken(env: dict[str, str], task: str) -> bool:
    """Whether the task's server-held slot (``glue_suite.task_lock``) is taken: its run is past the clone."""
    import httpx

    url = f"{env['PREFECT_API_URL']}/v2/concurrency_limits/distilflow-glue-{task}"
    user, _, password = env["PREFECT_API_AUTH_STRING"].partition(":")
    answer = httpx.get(url, auth=(user, password), timeout=10)
    return answer.status_code == 200 and int(answer.json().get("active_slots", 0)) > 0


def pooled_runs(env: dict[str, str]) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with prefect_settings(env), get_client(sync_client=True) as client:
        return list(client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[POOLED_FLOW]))))


def wait_for(what: str, condition: Callable[[], bool], suite: subprocess.Popen[str], deadline: float) -> None:
    while not condition():
        if suite.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"the suite ended (or time ran out) before {what}")
        time.sleep(1.0)


def kill_flow_run_process(env: dict[str, str], task: str) -> int:
    """kill -9 of the task's flow-run process, found by the pid its worker recorded (``host:pid``)."""
    runs = [run for run in pooled_runs(env) if run.name == task and run.infrastructure_pid]
    assert runs, f"no flow run of {task} with a process yet"
    pid = int(str(runs[0].infrastructure_pid).rsplit(":", 1)[-1])
    os.kill(pid, signal.SIGKILL)
    return pid


@pytest.fixture(scope="module")
def pool_run(root: Path, team_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> PoolRun:
    env = {**team_env, **user_env(root)}
    glue_root = tmp_path_factory.mktemp("GLUE")
    for task in DEMOS:  # the demos, as a GLUE root holds them (inside the project: workers find them in their clone)
        (glue_root / task).symlink_to(root / "data" / "demo" / task)
    write_rte(glue_root / "RTE", root / "data" / "demo" / "mrpc")
    command = [DISTILFLOW, "glue", "--pool", POOL, "--glue-dir", str(glue_root), "--profile", "smoke"]
    deadline = time.monotonic() + SUITE_TIMEOUT_S
    suite = subprocess.Popen(command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run = PoolRun(root, env, -1, "", glue_root=glue_root)
    try:
        # The first task to take its slot: a second run of it, from this machine's own project, must be refused.
        wait_for("a task took its slot", lambda: any(slot_taken(env, task) for task in DEMOS), suite, deadline)
        run.refused_task = next(task for task in DEMOS if slot_taken(env, task))
        second = [DISTILFLOW, "glue", "--tasks", run.refused_task, "--glue-dir", str(glue_root), "--profile", "smoke"]
        run.refused = subprocess.run(second, cwd=root, env=env, capture_output=True, text=True, timeout=600)
        wait_for(f"{KILLED} took its slot", lambda: slot_taken(env, KILLED), suite, deadline)
        time.sleep(KILL_AFTER_S)
        run.killed_pid = kill_flow_run_process(env, KILLED)
        output, _ = suite.communicate(timeout=max(deadline - time.monotonic(), 1.0))
    finally:
        if suite.poll() is None:
            suite.kill()
            suite.communicate()
    run.returncode, run.output = suite.returncode, output
    run.flow_runs = pooled_runs(env)
    return run


def test_every_demo_runs_on_the_pool_and_the_killed_task_is_named_with_why(pool_run: PoolRun) -> None:
    assert pool_run.returncode == 1, pool_run.output[-4000:]  # one task failed: the killed one
    for task in DEMOS:
        assert f"{task}: ok, distilflow-glue-{task}-student v1 registered" in pool_run.output, pool_run.output[-4000:]
    line = next(line for line in pool_run.output.splitlines() if line.startswith(f"{KILLED}: FAILED:"))
    assert "Crashed" in line and "-9" in line, line  # the state and the exit status: killed by SIGKILL
    assert "worker-" in line  # and where it ran


def test_the_tasks_ran_on_two_workers_from_the_parents_commit(pool_run: PoolRun) -> None:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=pool_run.root, capture_output=True, text=True, check=True)
    finished = [run for run in pool_run.flow_runs if run.state and run.state.is_completed()]
    assert sorted(run.name for run in finished) == sorted(DEMOS)
    workers = {run.labels.get("prefect.worker.name") for run in finished}
    assert len(workers) == 2, workers
    table = pool_run.table
    assert table["tasks"] == list(DEMOS)
    for task in DEMOS:
        record = table["per_task"][task]["run"]
        assert record["commit"] == commit.stdout.strip()[:12]  # the workers' clones, at the parent's commit
        assert record["worker"] in workers and "--pool distilflow-process" in record["command"]
        assert record["flow_run"] in {str(run.id) for run in finished}
    assert list(table["failed"]) == [KILLED]
    assert set(table["skipped"]) == {"cola", "stsb", "qqp", "mnli", "qnli", "wnli"}  # absent folders, named


def test_the_second_run_of_a_running_task_is_refused_naming_the_first(pool_run: PoolRun) -> None:
    refused = pool_run.refused
    assert refused is not None and refused.returncode == 1, refused
    said = refused.stdout + refused.stderr
    assert f"{pool_run.refused_task}: REFUSED: " in said, said[-3000:]
    assert "already running on the team's Prefect server" in said
    assert "--pool distilflow-process" in said  # the first run's command
    # The refused run wrote nothing: the column is the pool run's.
    assert "--pool" in pool_run.table["per_task"][pool_run.refused_task]["run"]["command"]


def test_each_student_is_gated_in_the_postgresql_registry_and_nothing_claims_the_killed_task(
    pool_run: PoolRun,
) -> None:
    os.environ.update(pool_run.env)  # the autouse fixture puts the environment back after the test
    url = pool_run.env["MLFLOW_TRACKING_URI"]
    client = MlflowClient(tracking_uri=url, registry_uri=url)
    for task in DEMOS:
        version = client.get_model_version(f"distilflow-glue-{task}-student", "1")
        assert version.tags.get("distilflow.registry.gate") in {"passed", "refused"}, version.tags
        assert version.run_id and client.get_run(version.run_id).data.tags  # its register run, on the server
    names = {model.name for model in client.search_registered_models()}
    assert not {name for name in names if name.startswith(f"distilflow-glue-{KILLED}-")}, names
    assert KILLED not in pool_run.table["per_task"]
    report = Paths.at(pool_run.root).glue_report_file.read_text()
    assert f"- {KILLED}: failed:" in report


def test_an_anonymous_client_cannot_move_a_glue_students_alias(pool_run: PoolRun) -> None:
    url = pool_run.env["MLFLOW_TRACKING_URI"]
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        os.environ.pop(key, None)
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    anonymous = MlflowClient(tracking_uri=url, registry_uri=url)
    with pytest.raises(MlflowException) as refused:
        anonymous.set_registered_model_alias("distilflow-glue-sst2-student", "champion", "1")
    assert refused.value.get_http_status_code() == 401


def test_the_table_has_official_metrics_the_average_and_the_baseline(pool_run: PoolRun) -> None:
    table = pool_run.table
    assert [(column["task"], column["metric"]) for column in table["columns"]] == [
        ("sst2", "accuracy"),
        ("mrpc", "f1"),
        ("mrpc", "accuracy"),
    ]
    rows = {row["model"]: row for row in table["rows"]}
    models = {"teacher (distilflow)", "student (distilflow)", "trivial baseline", "BERT-Tiny (L2/H128) (published)"}
    assert models <= set(rows)
    for model in ("teacher (distilflow)", "student (distilflow)", "trivial baseline"):
        row = rows[model]
        assert set(row["task_scores"]) == set(DEMOS)
        assert math.isfinite(row["average"])
        assert row["average"] == pytest.approx(sum(row["task_scores"].values()) / len(DEMOS))
    assert table["per_task"]["mrpc"]["baseline"] > 50  # the baseline beside the models: always "paraphrase", F1 > 0
    assert table["per_task"]["sst2"]["ratios"]["parameters_smaller_x"] > 1
    paths = Paths.at(pool_run.root)
    report = paths.glue_report_file.read_text()
    for heading in ("SST-2 acc", "MRPC F1", "MRPC acc", "GLUE avg (2 tasks)"):
        assert heading in report
    assert "on worker-" in report  # each column's run names its worker and flow run
    assert paths.glue_plot_file.stat().st_size > 10_000


def test_the_pair_student_serves_from_the_team_registry(pool_run: PoolRun) -> None:
    os.environ.update(pool_run.env)
    check_served_model(pool_run.env["MLFLOW_TRACKING_URI"], "mrpc", regression=False)
