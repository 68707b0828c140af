"""Prefect flow for the whole GLUE benchmark: one subflow per task folder found, then the table.

Each task's subflow (``distilflow-glue-task``) makes or refreshes the task's workspace (``glue_suite``: the project's
params.yaml with the task, its recipe ``flows/profiles/glue/<task>.yaml`` and ``glue.profile``), runs the pipeline
flow there (``workflows.pipeline``: DVC decides what reruns) and reads what the run left. Subflows are called with
``return_state=True``: a task that fails is reported with its reason and the others still run. The parent writes
``reports/glue.md``, ``metrics/glue.json`` and ``plots/glue.png`` in the project from the tasks that finished, and
keeps the columns of the tasks it did not run from the table as it is when it writes (``--fresh``: only this run's).

Runs overlap safely (docs/glue.md): each subflow holds its task's lock from before ``prepare`` until its results are
read, so a second run of a running task is refused at once, naming the first, while its other tasks run; the table
is written under the project's table lock, merged with what other runs wrote meanwhile.

Without ``--pool`` the subflows run one after another in this process. With ``--pool NAME`` each task is a flow run
of ``pooled_glue_task`` on that Prefect work pool, all started at once (``run_tasks_on_pool``, ``workflows.glue_pool``):
the workers run the project's commit from git, and the tasks' results come back through the Prefect server and
MLflow's (docs/team.md).

``distilflow glue`` and ``make glue`` call ``main``; so does the entry point, ``python flows/glue.py`` (no server
needed), and a worker loads ``flows/glue.py:pooled_glue_task`` from its clone of the project.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distilflow.orchestration.settings import prefect_defaults

os.environ.update(prefect_defaults())  # before Prefect is imported

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from distilflow.config.loading import load_params
from distilflow.evaluation.references import REFERENCES
from distilflow.glue import recipes as glue_recipes
from distilflow.glue import suite as glue_suite
from distilflow.glue import table as glue_report
from distilflow.glue import table_file as glue_table_file
from distilflow.orchestration.stage_process import run_logger, subprocess_env
from distilflow.paths import Paths
from distilflow.runtime.env_vars import environment_kept
from distilflow.runtime.host import exported, shared_host
from distilflow.tasks import get_task
from distilflow.workflows import glue_pool
from distilflow.workflows.pipeline import PROJECT_ROOT, lock_owner, pipeline

GLUE_FLOW_NAME = "distilflow-glue"
TASK_FLOW_NAME = "distilflow-glue-task"
POOLED_TASK_FLOW_NAME = "distilflow-glue-task-on-worker"
REASON_CHARS = 800
REASON_LINES = 4


@task(name="prepare task workspace", cache_policy=NO_CACHE)
def prepare(task_name: str, folder: str, root: str, workspace: str, profile: str | None) -> str:
    project = Path(root)
    overrides = glue_recipes.task_overrides(
        load_params(Paths.at(project).params_file), task_name, Path(folder), project, profile
    )
    glue_recipes.share_artifact_store(task_name, overrides["register"]["tracking_uri"], project)
    made = glue_suite.prepare_workspace(project, Path(workspace), overrides)
    run_logger().info("%s: workspace %s (data %s)", task_name, made, overrides["data"]["path"])
    return str(made)


@task(name="read task results", cache_policy=NO_CACHE)
def collect(task_name: str, workspace: str) -> dict[str, Any]:
    glue_suite.commit_results(Path(workspace))
    return glue_suite.task_results(task_name, Path(workspace))


@flow(name=TASK_FLOW_NAME, flow_run_name="{task_name}")
def glue_task(
    task_name: str, folder: str, root: str, workspace: str, profile: str | None = None, command: str | None = None
) -> dict[str, Any]:
    """One GLUE task in its own workspace, holding the task's lock: prepare it, run the pipeline there, read its
    results. Raises ``glue_suite.TaskRunning``, before touching the workspace, when another run holds the task.

    Args:
        task_name: the GLUE task (sst2, cola, mrpc, ...).
        folder: the task's GLUE folder (train.tsv, dev.tsv, ...).
        root: the project whose pipeline, params.yaml, MLflow store and DVC cache the workspace uses.
        workspace: the task's workspace folder (made if absent).
        profile: a params profile applied after the task's recipe (NAME in flows/profiles/ or a YAML path).
        command: the command line that started the run, named to a second run that is refused.
    """
    owner = f"`{command or 'distilflow glue'}`, {lock_owner()}"
    with glue_suite.task_lock(task_name, Path(workspace), owner):
        made = prepare(task_name, folder, root, workspace, profile)
        # With a team remote (glue_suite.team_remote), pull what other workers computed and push what this one does.
        pipeline(root=made, sync_remote=glue_suite.team_remote() is not None)
        return collect(task_name, made)


@flow(
    name=POOLED_TASK_FLOW_NAME,
    flow_run_name="{task_name}",
    persist_result=True,
    result_storage=glue_pool.RESULTS_STORAGE,
)
def pooled_glue_task(
    task_name: str, folder: str, profile: str | None = None, command: str | None = None
) -> dict[str, Any]:
    """``glue_task`` on a pool's worker (``distilflow glue --pool``), in the clone of the parent's commit that the
    worker checked out: ``PROJECT_ROOT``, as the clone's flows/glue.py imports this package from the clone's src/.
    Its result (the table's column) persists to the results block, where the parent reads it.

    Args:
        task_name: the GLUE task.
        folder: its data folder, relative to the project (data in git) or absolute (a folder every worker mounts).
        profile: a params profile applied after the task's recipe.
        command: the parent's command line.
    """
    project = PROJECT_ROOT
    data = Path(folder) if Path(folder).is_absolute() else project / folder
    workspace = project / load_params(Paths.at(project).params_file).glue.workspaces / task_name
    with shared_host(subprocess_env(None)) as host, exported(host), environment_kept("MLFLOW_TRACKING_URI"):
        result = glue_task.fn(task_name, str(data), str(project), str(workspace), profile, command)
    return {**result, "worker": os.environ.get("PREFECT__WORKER_NAME")}


def refusal(state: Any) -> str | None:
    """Why a failed subflow was refused (another run holds its task), or None when it failed for another reason."""
    try:
        error = state.result(raise_on_failure=False)
    except Exception:  # unreadable: not a refusal, which is raised in this process and kept in memory
        return None
    return str(error) if isinstance(error, glue_suite.TaskRunning) else None


def failure_reason(state: Any) -> str:
    """The exception a failed subflow raised, in a few lines (its full log is in the subflow run)."""
    try:
        error = state.result(raise_on_failure=False)
    except Exception as raised:  # a result that cannot be read back says why itself
        error = raised
    text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(state.message)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # The first line says which stage; a failed command's last lines say why (DVC's and distilflow's errors).
    kept = lines if len(lines) <= REASON_LINES + 1 else [lines[0], "…", *lines[-REASON_LINES:]]
    reason = " / ".join(kept)
    return reason if len(reason) <= REASON_CHARS else "… " + reason[-REASON_CHARS:]


@dataclass
class Outcome:
    """What a suite run did with each task it found."""

    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # another run holds the task: its column is that run's
    ended: dict[str, str] = field(default_factory=dict)  # attempted tasks: when their run ended (a later run wins)


def run_tasks(
    present: dict[str, Path], project: Path, workspaces: Path, profile: str | None, command: str | None
) -> Outcome:
    """One subflow per task, one after another; a task that fails or is refused does not stop the next."""
    logger = run_logger()
    outcome = Outcome()
    # One warm stage host for every task's stages, not one per task (each costs the imports once more).
    with shared_host(subprocess_env(None)) if present else contextlib.nullcontext(None) as host, exported(host):
        for name, folder in present.items():
            workspace = str(workspaces / name)
            # mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI into this process (the pipeline flow's own MLflow
            # reads do): kept per task, or the next task's prepare would take it for the caller's choice of store
            # and skip share_artifact_store, and its stages' environment would differ from the warm host's.
            with environment_kept("MLFLOW_TRACKING_URI"):
                state = glue_task(name, str(folder), str(project), workspace, profile, command, return_state=True)
            if state.is_completed():
                result = state.result()
                outcome.results[name] = {**result, "run": glue_suite.run_record(result.get("source"), command)}
                outcome.ended[name] = outcome.results[name]["run"]["finished_at"]
            elif (why := refusal(state)) is not None:
                outcome.refused[name] = why
                logger.error("%s refused: %s", name, why)
            else:
                outcome.failed[name] = failure_reason(state)
                outcome.ended[name] = glue_suite.ended_now()
                logger.error("%s failed: %s", name, outcome.failed[name])
    return outcome


def run_tasks_on_pool(
    present: dict[str, Path], project: Path, pool: str, profile: str | None, command: str | None
) -> Outcome:
    """One flow run per task on the work pool, all started at once; each ends completed, refused or failed."""
    logger = run_logger()
    outcome = Outcome()
    deployment_id, commit = glue_pool.deploy_task_flow(project, pool)
    logger.info("task flow deployed at commit %s to pool %r: %d tasks", commit[:12], pool, len(present))
    parameters = {
        name: {
            "task_name": name,
            "folder": glue_pool.data_folder(folder, project),
            "profile": profile,
            "command": command,
        }
        for name, folder in present.items()
    }
    futures = {name: glue_pool.run_on_pool.submit(deployment_id, name, parameters[name]) for name in present}
    for name, future in futures.items():
        run = future.result()
        state, worker = run.state, glue_pool.worker_of(run) or "no worker"
        message = (state.message if state else None) or "no state"
        if state is not None and state.is_completed():
            result = state.result()
            where = {"worker": worker, "flow_run": str(run.id)}
            outcome.results[name] = {**result, "run": glue_suite.run_record(result.get("source"), command, where)}
            outcome.ended[name] = outcome.results[name]["run"]["finished_at"]
            logger.info("%s finished on %s (flow run %s)", name, worker, run.id)
        elif "TaskRunning:" in message:
            outcome.refused[name] = message.split("TaskRunning:", 1)[1].strip()
            logger.error("%s refused: %s", name, outcome.refused[name])
        else:  # failure_reason: the exception in a few lines, as for an in-process task (CrashedRun after a kill)
            name_of_state, reason = (state.name, failure_reason(state)) if state else ("unknown", message)
            outcome.failed[name] = f"{name_of_state} on {worker} (flow run {run.name}, {run.id}): {reason}"
            outcome.ended[name] = glue_suite.ended_now()
            logger.error("%s failed: %s", name, outcome.failed[name])
    return outcome


@flow(name=GLUE_FLOW_NAME)
def glue(
    glue_dir: str | None = None,
    tasks: list[str] | None = None,
    profile: str | None = None,
    root: str = str(PROJECT_ROOT),
    command: str | None = None,
    keep_earlier: bool = True,
    pool: str | None = None,
) -> dict[str, Any]:
    """Run the pipeline on every GLUE task folder under ``glue_dir`` and write the GLUE table.

    Args:
        glue_dir: folder with one folder per task (SST-2, CoLA, ... or sst2, mrpc, ...); empty: params.yaml glue.root.
        tasks: which tasks; empty: params.yaml glue.tasks.
        profile: applied to every task after its recipe; empty: params.yaml glue.profile.
        root: the project (params.yaml, pipeline, MLflow store, DVC cache); the table is written here.
        command: the command line that started the run, recorded in the report.
        keep_earlier: keep the table's tasks that this run does not attempt, each with its own run noted.
        pool: a Prefect work pool: each task runs there as its own flow run (``run_tasks_on_pool``); empty: here.
    """
    logger = run_logger()
    project = Path(root).resolve()
    paths = Paths.at(project)
    settings = load_params(paths.params_file).glue
    glue_root = Path(glue_dir) if glue_dir else project / settings.root
    present, absent = glue_recipes.find_task_folders(glue_root, list(tasks or settings.tasks))
    skipped = {name: glue_recipes.absent_reason(glue_root, get_task(name)) for name in absent}
    for name, reason in skipped.items():
        logger.warning("%s skipped: %s", name, reason)
    earlier: dict[str, dict[str, Any]] = {}
    if keep_earlier:  # checked before hours of training, so an unreadable table is reported at the start
        try:
            earlier = glue_table_file.earlier_results(paths.glue_metrics_file)
        except (ValueError, KeyError, TypeError) as error:
            logger.warning(
                "%s unreadable (%s): the new table holds this run's tasks only", paths.glue_metrics_file, error
            )
    chosen_profile = profile or settings.profile
    if pool:
        done = run_tasks_on_pool(present, project, pool, chosen_profile, command)
    else:
        done = run_tasks(present, project, project / settings.workspaces, chosen_profile, command)
    runs = {name: entry["run"] for name, entry in glue_report.merge_results({}, earlier, attempted=done.ended).items()}
    if done.results:  # read again and merged under the table lock: other runs may have written columns meanwhile
        outcome = (done.failed, skipped)
        table = glue_table_file.write_table(
            project, done.results, done.ended, REFERENCES, outcome, command, keep_earlier, warn=logger.warning
        )
        markdown = glue_report.render_markdown(table, command)
        create_markdown_artifact(markdown, key="glue-table", description="GLUE: one row per model, one column per task")
        runs = {name: entry.run.as_dict() for name, entry in table.per_task.items()}
    kept = {name: run for name, run in runs.items() if name not in done.results}
    summary = glue_suite.summary_lines(done.results, done.failed, skipped, kept, done.refused)
    for line in summary:
        logger.info(line)
    outcome_keys = {"failed": done.failed, "refused": done.refused, "skipped": skipped}
    return {"ran": list(done.results), "kept": list(kept), **outcome_keys, "summary": summary}


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Run the distilflow pipeline on every GLUE task folder under a root.")
    parser.add_argument("--glue-dir", help="one folder per task (default: params.yaml glue.root)")
    parser.add_argument("--tasks", help="comma-separated tasks, e.g. sst2,cola (default: params.yaml glue.tasks)")
    parser.add_argument("--profile", help="applied to every task after its recipe, e.g. smoke")
    parser.add_argument("--root", default=str(PROJECT_ROOT), help="the project (default: this one)")
    parser.add_argument(
        "--pool",
        help="a Prefect work pool: every task runs there at once, one flow run each, from this project's commit "
        '(needs PREFECT_API_URL: `eval "$(distilflow team env)"`; default: one after another in this process)',
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="a table of this run's tasks only (default: keep the earlier table's other tasks, each naming its run)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Exit 0 when every task found ran, 1 when one failed, was refused (another run holds it) or none was found;
    the summary says which and why."""
    args = arguments().parse_args(argv)
    tasks = [name.strip() for name in args.tasks.split(",") if name.strip()] if args.tasks else None
    glue_dir = str(Path(args.glue_dir).resolve()) if args.glue_dir else None
    command = shlex.join(["distilflow", "glue", *(argv if argv is not None else sys.argv[1:])])
    state = glue(
        glue_dir=glue_dir,
        tasks=tasks,
        profile=args.profile,
        root=args.root,
        command=command,
        keep_earlier=not args.fresh,
        pool=args.pool,
        return_state=True,
    )
    if not state.is_completed():
        print(f"glue {state.name}: {state.message}", file=sys.stderr)
        return 1
    outcome = state.result()
    print("\n".join(outcome["summary"]))
    if outcome["ran"]:
        print(f"table: {Paths.at(args.root).glue_report_file}")
    return 0 if outcome["ran"] and not outcome["failed"] and not outcome["refused"] else 1


if __name__ == "__main__":
    sys.exit(main())
