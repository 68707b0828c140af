"""The GLUE suite spread over a Prefect work pool: ``distilflow glue --pool NAME`` (docs/team.md).

The parent deploys the task flow (``flows/glue.py:pooled_glue_task``) from the project's git repository at the
parent's commit (Prefect's git source: each worker clones that commit, never the parent's folder; the clone's
flows/glue.py imports the clone's own src/, so the worker runs the commit's code, flow included) and starts one
flow run per task with ``run_deployment``, all at once: the work pool's workers pick them up, as many at a time as
there are workers. What a task leaves travels through the team's servers: its student and runs through the MLflow
server, its results (the table's column) through a Prefect result block, its refusal or failure through the flow
run's state. A task already running anywhere is refused by the server-held slot ``distilflow-glue-<task>``
(``glue_suite.task_lock``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Any

from distilflow.orchestration.settings import prefect_defaults

os.environ.update(prefect_defaults())  # before Prefect is imported

from prefect import Flow, flow, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.runner.storage import GitRepository

TASK_ENTRYPOINT = "flows/glue.py:pooled_glue_task"
RESULTS_BLOCK = "distilflow-glue-results"
"""A LocalFileSystem block under the project's .team/ on one machine; a team makes an S3 block of this name."""
RESULTS_STORAGE = f"local-file-system/{RESULTS_BLOCK}"
"""The task flow's ``result_storage``: the block above, by slug."""
POLL_S = 3.0
WORKER_LABEL = "prefect.worker.name"


class PoolError(RuntimeError):
    """The suite cannot go to the pool: no server, no such pool, or code the workers could not check out."""


def _git(project: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=project, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PoolError(f"git {' '.join(args)} in {project} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def source_commit(project: Path) -> str:
    """The commit the workers will run. Refused when tracked files differ from it: workers clone the commit, so
    uncommitted edits would silently not run, while the table credited them."""
    commit = _git(project, "rev-parse", "HEAD")
    changed = _git(project, "status", "--porcelain", "--untracked-files=no")
    if changed:
        files = ", ".join(line[3:] for line in changed.splitlines()[:5])
        raise PoolError(
            f"{project} has uncommitted changes ({files}): the pool's workers run commit {commit[:12]}, not your "
            "edits. Commit them (or stash them), then run again"
        )
    return commit


def source_url(project: Path) -> str:
    """Where workers clone from: the ``origin`` remote when the project has one, else the project's own folder
    (one machine, or a path every worker mounts)."""
    with contextlib.suppress(PoolError):
        return _git(project, "remote", "get-url", "origin")
    return str(project)


def check_pool(pool: str) -> None:
    from prefect.exceptions import ObjectNotFound

    try:
        with get_client(sync_client=True) as client:
            client.read_work_pool(pool)
    except ObjectNotFound:
        raise PoolError(f"no work pool {pool!r} on the Prefect server (`distilflow team up` makes one)") from None
    except Exception as error:  # httpx connection errors and friends: say which server
        from prefect.settings import PREFECT_API_URL

        where = PREFECT_API_URL.value() or "no PREFECT_API_URL (a temporary server, which no worker sees)"
        raise PoolError(f"the Prefect server at {where} cannot be read: {error}") from None


def ensure_results_block(project: Path) -> None:
    """The block the task flows persist their results to (made under the project's .team/ when absent)."""
    from prefect.filesystems import LocalFileSystem

    try:
        LocalFileSystem.load(RESULTS_BLOCK)
    except ValueError:  # no such block
        folder = project / ".team" / "glue-results"
        folder.mkdir(parents=True, exist_ok=True)
        LocalFileSystem(basepath=str(folder)).save(RESULTS_BLOCK, overwrite=True)


def deploy_task_flow(project: Path, pool: str) -> tuple[str, str]:
    """Deploy the task flow at the project's commit; returns (deployment id, commit)."""
    commit = source_commit(project)
    check_pool(pool)
    ensure_results_block(project)
    source = GitRepository(url=source_url(project), commit_sha=commit)
    loaded = flow.from_source(source=source, entrypoint=TASK_ENTRYPOINT)
    assert isinstance(loaded, Flow)  # from_source returns a coroutine only inside an event loop
    deployment_id = loaded.deploy(
        name=f"glue-task-{commit[:12]}",
        work_pool_name=pool,
        description=f"distilflow GLUE task flow at commit {commit}",
        tags=["distilflow", "glue"],
        print_next_steps=False,
    )
    return str(deployment_id), commit


@task(name="run task on the pool", task_run_name="{task_name} on the pool", cache_policy=NO_CACHE)
def run_on_pool(deployment_id: str, task_name: str, parameters: dict[str, Any]) -> FlowRun:
    """One task's flow run on the pool, waited for; its final state says how it ended."""
    run = run_deployment(
        name=deployment_id,
        parameters=parameters,
        flow_run_name=task_name,
        timeout=None,
        poll_interval=POLL_S,
        as_subflow=True,
    )
    assert isinstance(run, FlowRun)  # a coroutine only inside an event loop
    return run


def worker_of(run: FlowRun) -> str | None:
    """The worker that ran ``run``, as the worker labelled the flow run."""
    labels = run.labels or {}
    value = labels.get(WORKER_LABEL)
    return str(value) if value is not None else None


def data_folder(folder: Path, project: Path) -> str:
    """A task's data folder as a worker finds it: relative to the project when inside it (the clone has it at the
    same place), else the absolute path (a folder every worker mounts)."""
    resolved = folder.resolve()
    with contextlib.suppress(ValueError):
        return str(resolved.relative_to(project.resolve()))
    return str(resolved)
