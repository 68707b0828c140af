"""Prefect flow for distilflow: one task per dvc.yaml stage, in dvc.yaml's order, DVC deciding what reruns.

The graph is read from dvc.yaml, never written here a second time. One in-process DVC status check at the start
finds the stages whose code, params or dependencies changed; those, and any stage downstream of one that really
ran, go through ``dvc repro --single-item STAGE`` so that DVC decides and records everything in dvc.lock. The
others become Completed tasks named "STAGE: skipped (up to date)" without starting DVC once per stage, which
keeps the flow close to a bare ``dvc repro`` on an unchanged workspace (bench/flow_overhead.py measures it).

Its entry point is flows/pipeline.py: ``python flows/pipeline.py --help`` runs it without a server, and the
deployment loads ``flows/pipeline.py:pipeline`` (``make deploy``: flows/deploy.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from distilflow.orchestration.retries import StageFailed, retry_unless_deterministic, transient_reasons
from distilflow.orchestration.settings import (
    FLOW_NAME,
    allowed_workspace,
    checked_overrides,
    flow_arguments,
    prefect_defaults,
    settings_overrides,
)

os.environ.update(prefect_defaults())  # before Prefect is imported: `python flows/pipeline.py` needs no started server

from prefect import flow, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run as current_flow_run
from prefect.tasks import exponential_backoff

from distilflow.config.loading import load_params
from distilflow.orchestration import run_cache
from distilflow.orchestration.dvc_output import (
    RAN,
    RESTORED,
    pull_failures,
    pulled_anything,
    repro_outcome,
    stage_exit_code,
)
from distilflow.orchestration.dvc_plan import StagePlan, read_plan
from distilflow.orchestration.registry_marker import mark_registry, registry_in_step
from distilflow.orchestration.reports import (
    evaluation_table,
    findings_text,
    mlflow_view,
    promotion_markdown,
    read_json,
    stages_off,
    validation_markdown,
    validation_message,
)
from distilflow.orchestration.stage_process import dvc_command, run_logged, run_logger, subprocess_env
from distilflow.paths import Paths
from distilflow.runtime.host import shared_host
from distilflow.runtime.locking import LockHolder, workspace_lock
from distilflow.runtime.warm import HOST_ENV
from distilflow.tracking.runs import configure_mlflow

# The checkout whose src/ this package was imported from. flows/*.py put their own project's src/ first, so a
# deployment's run (from a worker's clone too) finds its own checkout here, as the flow files once found theirs.
PROJECT_ROOT = Path(__file__).resolve().parents[3]
# Transient failures (a hub download, a remote MLflow or DVC remote) get this many retries, 10 s, 20 s, 40 s apart.
RETRIES = 3
BACKOFF_S = 10.0
DEFAULT_LOCK_TIMEOUT_S = 6 * 3600.0
SKIPPED = "skipped (up to date)"


class ValidationFailed(RuntimeError):
    """The data did not pass the validate stage; the message is the validation summary."""


# ---------------------------------------------------------------------------------------------- tasks


@task(name="dvc exp run --temp", task_run_name="dvc exp run --temp", cache_policy=NO_CACHE)
def run_experiment(root: str, overrides: list[str], name: str, pipeline_id: str | None = None) -> str:
    """The whole pipeline with ``overrides`` as a DVC experiment in a temporary copy of the repo.

    ``dvc exp show`` lists it afterwards and ``dvc exp apply NAME`` brings it into the workspace; until then the
    workspace (params.yaml, dvc.lock, outputs) is exactly as git and the last plain run left it, so the next
    plain run uses git's params. Stage runs and registered models go to this workspace's MLflow store, not to
    the temporary copy.
    """
    workspace = Path(root)
    env = subprocess_env(pipeline_id)
    env["MLFLOW_TRACKING_URI"] = configure_mlflow(load_params(workspace / "params.yaml"), Paths.at(workspace))
    command = dvc_command("exp", "run", "--temp", "--name", name)
    for override in overrides:
        command += ["--set-param", override]
    with shared_host(env) as host:
        code, tail = run_logged(command, workspace, {**env, HOST_ENV: host})
    if code != 0:
        raise StageFailed("experiment", stage_exit_code(tail), tail, deterministic=True)
    run_logger().info("experiment %s recorded: dvc exp show lists it, dvc exp apply %s brings it here", name, name)
    return name


@task(name="plan (dvc status)", task_run_name="plan (dvc status)", cache_policy=NO_CACHE)
def plan_stages(root: str) -> StagePlan:
    plan = read_plan(Path(root))
    logger = run_logger()
    logger.info("stages in dvc.yaml order: %s", " → ".join(plan.order))
    for stage, changes in plan.changed.items():
        text = "; ".join(changes)
        logger.info("%s changed: %s", stage, text if len(text) <= 400 else text[:400] + " …")
    if not plan.changed:
        logger.info("every stage is up to date")
    return plan


@task(task_run_name="{stage}", cache_policy=NO_CACHE)
def run_stage(
    stage: str, root: str, pipeline_id: str | None = None, host: str | None = None, pull: bool = False
) -> str:
    """``dvc repro --single-item STAGE``: DVC reruns it only if its deps, params or code changed.

    ``host``: the flow run's warm stage host (``distilflow.runtime.host``), which saves the stage its imports.
    ``pull``: ``--pull``, so a stage whose run another machine pushed (``dvc push --run-cache``) is restored from
    the remote, outputs and all, instead of run again (the run-cache entry alone does not hold the outputs).
    """
    env = subprocess_env(pipeline_id)
    if host:
        env[HOST_ENV] = host
    command = dvc_command("repro", "--single-item", *(["--pull"] if pull else []), stage)
    code, tail = run_logged(command, Path(root), env)
    if code != 0:
        stage_code = stage_exit_code(tail)
        # distilflow exits 2 when it rejects its settings: the same settings fail the same way on every retry.
        raise StageFailed(stage, stage_code, tail, deterministic=stage_code == 2)
    return repro_outcome(tail)


@task(task_run_name="{stage}: " + SKIPPED, cache_policy=NO_CACHE)
def skip_stage(stage: str) -> str:
    """DVC's status found nothing changed for this stage or upstream of it: nothing to do."""
    return SKIPPED


PULL_TAIL_LINES = 5


@task(name="dvc pull", task_run_name="dvc pull", cache_policy=NO_CACHE)
def fetch_remote(root: str, remote: str) -> bool:
    """Check out what the remote holds for this dvc.lock (and its run-cache), so a fresh clone or worker
    restores unchanged stages instead of recomputing them. Best effort: what the remote lacks, DVC computes."""
    pulled = subprocess.run(
        dvc_command("pull", "--run-cache", "--remote", remote),
        cwd=root,
        env=subprocess_env(None),
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    )
    said = [line.strip() for line in (pulled.stdout + pulled.stderr).splitlines() if line.strip()]
    if pulled.returncode == 0:
        run_logger().info("dvc pull from remote %r: %s", remote, said[-1] if said else "done")
        return True
    # A fresh clone's first run, before anything was pushed: DVC lists every missing file and cache hash (2-3 KB
    # of warnings and an ERROR) for what is simply "not there yet". One line says it; other failures keep DVC's tail.
    missing = pull_failures(said)
    if missing and not pulled_anything(said):
        # Nothing came: the expected first run against an empty remote, not a failure (the run pushes at the end).
        run_logger().info(
            "first run: nothing to pull yet from remote %r (it holds none of %s); dvc repro computes them",
            remote,
            ", ".join(missing),
        )
        return False
    run_logger().warning(
        "dvc pull from remote %r got only part (or none) of the outputs; dvc repro computes the rest. %s",
        remote,
        f"Not on the remote: {', '.join(missing)}" if missing else "DVC said: " + " / ".join(said[-PULL_TAIL_LINES:]),
    )
    return False


@task(
    name="dvc push",
    task_run_name="dvc push",
    retries=RETRIES,
    retry_delay_seconds=exponential_backoff(BACKOFF_S),
    cache_policy=NO_CACHE,
)
def push_remote(root: str, remote: str) -> None:
    """This dvc.lock's outputs, then the run-cache with every file it restores (``orchestration.run_cache``)."""
    for command in (dvc_command("push", "--remote", remote), run_cache.command(remote)):
        code, tail = run_logged(command, Path(root), subprocess_env(None))
        if code != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{tail}")


@task(name="registry follows DVC", task_run_name="registry follows DVC", cache_policy=NO_CACHE)
def follow_registry(root: str, register_outcome: str) -> str:
    """This workspace's MLflow store holds the student that dvc.lock records, however register's outputs came
    to be up to date: computed here, restored from the run-cache, or pulled into a fresh clone."""
    workspace = Path(root)
    params = load_params(Paths.at(workspace).params_file)
    if register_outcome != RAN and not registry_in_step(workspace, params):
        command = [str(Path(sys.executable).parent / "distilflow"), "sync-registry", "--root", root]
        code, tail = run_logged(command, workspace, subprocess_env(None))
        if code != 0:
            raise RuntimeError(f"distilflow sync-registry failed:\n{tail}")
        outcome = "synced"
    else:
        outcome = "registered by this run" if register_outcome == RAN else "already registered"
    mark_registry(workspace, params)
    return outcome


# ---------------------------------------------------------------------------------------------- artifacts


@task(name="publish validation summary", task_run_name="publish validation summary", cache_policy=NO_CACHE)
def publish_validation(root: str, findings: str | None = None) -> dict[str, Any] | None:
    summary_file = Paths.at(root).validation_summary_file
    summary = read_json(summary_file)
    if summary is None:
        run_logger().warning(f"no {summary_file} to publish")
        return None
    view = mlflow_view(Path(root))
    if view.problem:
        run_logger().warning("MLflow links left out of the artifacts: %s", view.problem)
    validate_run = view.runs.get("validate") if view.experiment_id else None
    report_url = view.run_url(validate_run, "/artifacts/validation/index.html") if validate_run else None
    create_markdown_artifact(
        validation_markdown(summary, Path(root), findings, report_url),
        key="validation-summary",
        description="Great Expectations validation of the input data",
    )
    if report_url:
        create_link_artifact(
            report_url,
            link_text="validation report (HTML, in the validate run's MLflow artifacts)",
            key="validation-report",
            description="The full Great Expectations report, every failing row named",
        )
    return summary


@task(name="publish evaluation and promotion", task_run_name="publish evaluation and promotion", cache_policy=NO_CACHE)
def publish_results(root: str, register_outcome: str) -> None:
    table = evaluation_table(Path(root))
    if table is not None:
        create_table_artifact(
            table, key="evaluation-metrics", description="GLUE dev metrics, latency and size of teacher and student"
        )
    view = mlflow_view(Path(root))
    markdown = promotion_markdown(
        Path(root), register_outcome, view.runs, stages_off(Path(root)), view.query, view.experiment_id
    )
    if markdown is not None:
        create_markdown_artifact(
            markdown, key="promotion-decision", description="Promotion gate decision and MLflow links"
        )


# ---------------------------------------------------------------------------------------------- the flow


def lock_owner() -> str:
    name, run_id = current_flow_run.get_name(), current_flow_run.get_id()
    return f"flow run {name!r} ({run_id})" if run_id else f"process {os.getpid()}"


@flow(name=FLOW_NAME, log_prints=True)
def pipeline(
    task: str | None = None,
    data_source: str | None = None,
    data_path: str | None = None,
    profile: str | None = None,
    overrides: list[str] | None = None,
    promote: bool | None = None,
    root: str = str(PROJECT_ROOT),
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
    sync_remote: bool = True,
) -> dict[str, str]:
    """Run dvc.yaml's stages in order; DVC skips the ones that are up to date.

    Args:
        task: GLUE task (sst2, cola, mrpc, stsb, qqp, mnli, qnli, rte, wnli); empty keeps params.yaml's.
        data_source: demo, local or hub; empty keeps params.yaml's.
        data_path: the GLUE task folder for data_source=local.
        profile: a params profile: NAME of flows/profiles/NAME.yaml, or a YAML file's path.
        overrides: params changes as KEY=VALUE, the syntax of `dvc exp run --set-param`, e.g. distill.alpha=0.5.
        promote: whether the register stage may move @champion; empty keeps params.yaml's register.promote.
        root: the project workspace (git + DVC) to run in.
        lock_timeout_s: how long to wait for another run holding this workspace before failing.
        sync_remote: with a default DVC remote configured, fetch its cache first and push results at the end.
    """
    logger = run_logger()
    workspace = allowed_workspace(root, PROJECT_ROOT)  # a deployed run works only where its deployment allows
    if not (workspace / "dvc.yaml").is_file():
        raise FileNotFoundError(f"{workspace} has no dvc.yaml: point root at a distilflow workspace")
    changes = settings_overrides(task, data_source, data_path, profile, overrides, promote, workspace)
    pipeline_id = str(current_flow_run.get_id() or "") or None

    def waiting(holder: LockHolder | None) -> None:
        who = holder.describe() if holder else "another run"
        logger.warning("workspace %s is in use by %s; waiting up to %g s", workspace, who, lock_timeout_s)

    results: dict[str, str] = {}
    if changes:
        checked_overrides(workspace, changes)  # refused settings fail here, before waiting for the lock
    with workspace_lock(workspace, lock_owner(), timeout_s=lock_timeout_s, on_wait=waiting):
        if changes:
            results["experiment"] = run_experiment(str(workspace), changes, experiment_name(), pipeline_id)
        else:
            results = run_stages(workspace, pipeline_id, sync_remote)
    logger.info("pipeline finished: %s", ", ".join(f"{stage}: {outcome}" for stage, outcome in results.items()))
    return results


def run_stages(workspace: Path, pipeline_id: str | None, sync_remote: bool) -> dict[str, str]:
    """dvc.yaml's stages with git's params.yaml, one task each; DVC decides what reruns."""
    logger = run_logger()
    results: dict[str, str] = {}
    plan = plan_stages(str(workspace))
    remote = plan.remote if sync_remote else None
    # Only a workspace missing outputs (a fresh clone, a new worker) or that never ran (a GLUE task's new workspace,
    # whose stages another worker may have run: DVC's run cache has them) has anything to gain from the remote;
    # fetching on every run would cost a DVC start and a remote listing for nothing.
    if remote and (plan.missing_outputs or not (workspace / "dvc.lock").is_file()):
        fetch_remote(str(workspace), remote)
    ran: set[str] = set()
    off = stages_off(workspace)
    # One warm host for the stages that run: each saves the ~6 s of importing torch, transformers and MLflow.
    with shared_host(subprocess_env(pipeline_id)) if plan.changed else contextlib.nullcontext() as host:
        for stage in plan.order:
            due = stage in plan.changed or any(up in ran for up in plan.upstream.get(stage, []))
            if not due:
                results[stage] = skip_stage(stage)
            else:
                reasons = transient_reasons(stage, workspace)
                runner = run_stage.with_options(
                    retries=RETRIES if reasons else 0,
                    retry_delay_seconds=exponential_backoff(BACKOFF_S) if reasons else 0,
                    retry_condition_fn=retry_unless_deterministic,
                )
                if reasons:
                    logger.info("%s may fail transiently (%s): up to %d retries", stage, "; ".join(reasons), RETRIES)
                if stage in off:
                    logger.info("%s: %s", stage, off[stage])
                try:
                    results[stage] = runner(stage, str(workspace), pipeline_id, host, pull=remote is not None)
                except StageFailed as failure:
                    if stage.split("@", 1)[0] == "validate":
                        summary = publish_validation(str(workspace), findings_text(failure.output))
                        raise ValidationFailed(validation_message(summary, failure)) from None
                    raise
                if results[stage] in (RAN, RESTORED):
                    ran.add(stage)
            if stage.split("@", 1)[0] == "validate":
                publish_validation(str(workspace))
    results["registry"] = follow_registry(str(workspace), results.get("register", SKIPPED))
    publish_results(str(workspace), results.get("register", SKIPPED))
    if remote and ran:  # new outputs exist only when a stage really ran
        push_remote(str(workspace), remote)
    return results


def experiment_name() -> str:
    """DVC experiment names must be valid git ref names; Prefect's run names are, once spaces are replaced."""
    name = current_flow_run.get_name() or f"flow-{os.getpid()}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "flow-run"


def main(argv: list[str] | None = None) -> int:
    args = flow_arguments(str(PROJECT_ROOT), DEFAULT_LOCK_TIMEOUT_S).parse_args(argv)
    state = pipeline(
        task=args.task,
        data_source=args.data_source,
        data_path=args.data_path,
        profile=args.profile,
        overrides=args.overrides,
        promote=args.promote,
        root=args.root,
        lock_timeout_s=args.lock_timeout,
        sync_remote=args.sync_remote,
        return_state=True,
    )
    print(f"flow run {state.state_details.flow_run_id}", file=sys.stderr)
    if not state.is_completed():
        print(f"pipeline {state.name}: {state.message}", file=sys.stderr)
        return 1
    print(json.dumps(state.result(), indent=2))
    return 0
