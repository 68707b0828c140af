"""The GLUE suite's workspaces: one git + DVC project per task, made from this project, and what each one's run left.

A task's workspace holds what a clone holds (``scratch_workspace.workspace_items``) with the project's full
params.yaml changed, in this order, by: the task and its data folder, the task's recipe
(``flows/profiles/glue/<task>.yaml``), then ``glue.profile`` (e.g. smoke); ``glue.recipes`` makes those changes.
Every workspace shares the project's MLflow store (so each task's student is registered as
``distilflow-<task>-student`` beside the project's own models) and the project's DVC cache (so identical outputs
are stored once). docs/glue.md says why a workspace per task and not a DVC experiment per task. Nothing here knows
about Prefect: distilflow.workflows.glue calls it.

Runs that overlap (docs/glue.md, "Running the suite while someone else does"): a task's run holds its workspace's
task lock from before ``prepare_workspace`` until its results are read, and a second run of that task is refused at
once (``TaskRunning``) naming the first; the table is written by one writer at a time
(``glue.table_file.write_table``), merged with the table as it is at that moment; a column's run record names the
commit its code was copied from (``SOURCE_FILE`` in the workspace), not the project's commit when the task finished.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from distilflow.orchestration.scratch_workspace import (
    copy_items,
    git_commit,
    make_workspace,
    workspace_items,
    write_params,
)
from distilflow.paths import Paths
from distilflow.registry.lock import SlotTaken, server_slot
from distilflow.runtime.locking import LockHolder, WorkspaceLocked, workspace_lock
from distilflow.tasks import GlueTask, get_task
from distilflow.team.settings import DVC_REMOTE_ENV
from distilflow.training.search import read_summary

# params.yaml sections the flows read and no stage does (this module's `glue`): `dvc exp run -S glue.tasks=...`
# reruns nothing, by design; a test checks that every other key feeds a stage, and that no stage lists these.
FLOW_ONLY_SECTIONS = ("glue",)

WORKSPACE_COMMIT = "distilflow glue: params for this task"
RESULTS_COMMIT = "distilflow glue: results"
SOURCE_FILE = "glue-source.json"
"""In each workspace, committed with its params: the project commit its code was copied from."""
TASK_LOCK_NAME = "glue-task.lock"
"""In each workspace's lock folder, beside (not instead of) the pipeline's lock, which the task's run takes too."""
TASK_SLOT_PREFIX = "distilflow-glue-"
"""With a Prefect server (PREFECT_API_URL): the global concurrency limit ``distilflow-glue-<task>`` holds a task for
one run across every machine and worker, as the file lock does on one machine."""


class TaskRunning(RuntimeError):
    """Another run holds this task's workspace. Refused at once, not queued: the queued run would rewrite the
    workspace's params and code right after the first run's results, for a reason nobody remembers by then."""


def _share_dvc_cache(workspace: Path, root: Path) -> None:
    """Point the workspace's DVC cache at the project's (``.dvc/config.local``, git-ignored by DVC), and its default
    remote at the team's when ``$DISTILFLOW_TEAM_DVC_REMOTE`` names one (``distilflow team env``): then the run
    pulls what any worker computed before (DVC's run cache) and pushes what it computes (``team_remote``)."""
    cache = Paths.at(root).root / ".dvc" / "cache"
    config = f"[cache]\n    dir = {cache}\n"
    if remote := team_remote():
        config += f"[core]\n    remote = team\n['remote \"team\"']\n    url = {remote}\n"
    (workspace / ".dvc").mkdir(exist_ok=True)
    (workspace / ".dvc" / "config.local").write_text(config, encoding="utf-8")


def team_remote() -> str | None:
    """The team's DVC remote (a folder or ``s3://...``), as ``distilflow team env`` exports it; None alone."""
    return os.environ.get(DVC_REMOTE_ENV) or None


def _git_changed(workspace: Path) -> bool:
    status = subprocess.run(
        ["git", "status", "--porcelain"], cwd=workspace, capture_output=True, text=True, check=True
    ).stdout
    return bool(status.strip())


@contextlib.contextmanager
def task_lock(task: str, workspace: Path, owner: str) -> Iterator[LockHolder]:
    """Hold ``task``'s workspace for one run, from before ``prepare_workspace`` until its results are read.

    Refused at once with ``TaskRunning`` naming the holder (``owner``: the command and flow run; pid, host, since)
    when another run holds it. The kernel drops the lock when its holder dies, so a killed run never blocks the next.
    """
    stack = contextlib.ExitStack()
    try:  # only the taking is refused: a WorkspaceLocked from inside the run (the pipeline's own lock) is not ours
        holder = stack.enter_context(workspace_lock(workspace, owner, timeout_s=0.0, name=TASK_LOCK_NAME))
    except WorkspaceLocked as locked:
        who = locked.holder.describe() if locked.holder else "another run (it has not written its name yet)"
        raise TaskRunning(
            f"{task} is already running in {workspace}: {who}. A second run of a task is refused, not queued; "
            "run it again when that one has finished (or stop it)"
        ) from None
    if os.environ.get("PREFECT_API_URL"):  # a team: runs on other machines and workers meet at the server
        try:
            stack.enter_context(server_slot(f"{TASK_SLOT_PREFIX}{task}", wait_s=None))
        except SlotTaken:
            stack.close()
            raise TaskRunning(
                f"{task} is already running on the team's Prefect server (concurrency limit "
                f"{TASK_SLOT_PREFIX}{task}): {_server_holder(task) or 'another run'}. A second run of a task is "
                "refused, not queued; run it again when that one has finished (or stop it)"
            ) from None
        _server_holder(task, f"{owner}, since {ended_now()}")
    with stack:
        yield holder


def _server_holder(task: str, owner: str | None = None) -> str | None:
    """Who holds ``task`` on the server, kept in a Prefect variable beside its slot: read, or written when
    ``owner`` is given (only by the holder, so it names the run that holds the slot, or the last one that did)."""
    from prefect.variables import Variable

    name = f"{TASK_SLOT_PREFIX}{task}-holder"
    if owner is not None:
        Variable.set(name, owner[:4000], overwrite=True)
        return owner
    value = Variable.get(name, default=None)
    return str(value) if value is not None else None


def code_commit(root: Path) -> str | None:
    """The project's git commit, ``+changes`` when its tracked files differ from it; None outside git."""

    def git(*args: str) -> str | None:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "--short=12", "HEAD")
    if commit and git("status", "--porcelain", "--untracked-files=no"):
        commit += "+changes"
    return commit


def prepare_workspace(root: Path, workspace: Path, overrides: dict[str, Any]) -> Path:
    """Make (or bring up to date) the task's workspace: the project's pipeline and code, its params.yaml changed by
    ``overrides``, and the commit that code came from (``SOURCE_FILE``), committed. An existing workspace keeps its
    DVC outputs, so DVC reruns only what changed. The caller holds ``task_lock``: this rewrites params and code."""
    source = {"commit": code_commit(root)}  # read as the code is copied: the project may move on during the run
    if not (workspace / "dvc.yaml").is_file():
        make_workspace(root, workspace, overrides)
    else:
        copy_items(root, workspace, workspace_items(root))
        write_params(workspace, overrides)
    (workspace / SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n", encoding="utf-8")
    if _git_changed(workspace):
        git_commit(workspace, WORKSPACE_COMMIT)
    _share_dvc_cache(workspace, root)
    return workspace


def source_record(workspace: Path) -> dict[str, Any]:
    """What ``prepare_workspace`` recorded of the code it copied (``{"commit": ...}``); empty for a workspace made
    before the record existed."""
    file = workspace / SOURCE_FILE
    if not file.is_file():
        return {}
    data: dict[str, Any] = json.loads(file.read_text(encoding="utf-8"))
    return data


def commit_results(workspace: Path) -> None:
    """Record the run's tracked results (metrics, reports, plots, dvc.lock) in the workspace's own git history."""
    if _git_changed(workspace):
        git_commit(workspace, RESULTS_COMMIT)


def _read_json(file: Path) -> dict[str, Any]:
    if not file.is_file():
        raise FileNotFoundError(f"{file}: missing; did the task's pipeline run to the end?")
    data: dict[str, Any] = json.loads(file.read_text(encoding="utf-8"))
    return data


def baseline_scores(task: GlueTask, workspace: Path) -> dict[str, float]:
    """The strongest cheap model's GLUE metrics on each dev split the workspace scored, keyed as
    ``metrics/eval_<model>.json`` keys them (``dev_matched_accuracy`` for MNLI's): the majority class for a
    classification task; for a similarity task (STS-B) the two sentences' word-set overlap scaled to the score range,
    which reaches Pearson 65.0 on real STS-B dev where the mean score's 0.0 says nothing (``cheap_predictions``)."""
    import pandas as pd

    from distilflow.metrics import compute_glue_metrics
    from distilflow.tasks import LABEL

    scores: dict[str, float] = {}
    for split in task.dev_splits:
        dev = pd.read_parquet(Paths.at(workspace).validated_dir / f"{split}.parquet")
        references = dev[LABEL].to_numpy()
        found = compute_glue_metrics(task.name, cheap_predictions(task, dev), references)
        if len(task.dev_splits) > 1:
            scores.update({f"{split}_{key}": value for key, value in found.items()})
        else:
            scores.update(found)
    return scores


def cheap_predictions(task: GlueTask, dev: Any) -> Any:
    """What the table's baseline row answers on ``dev`` (a validated split): word overlap for a similarity pair
    task, else the trivial model of ``dev_scoring`` (majority class; mean score)."""
    import numpy as np

    from distilflow.registry.served_scoring import baseline_predictions, word_overlap
    from distilflow.tasks import LABEL

    if task.is_regression and task.is_pair:
        first, second = task.fields
        overlap = np.array([word_overlap(a, b) for a, b in zip(dev[first], dev[second], strict=True)])
        low, high = task.score_range
        return low + overlap * (high - low)
    return baseline_predictions(task, dev[LABEL].to_numpy())


SEARCHED_STAGES = {"teacher": "finetune", "student": "distill"}


def chosen_settings(workspace: Path) -> dict[str, str]:
    """Per model, in words: what its stage's selection protocol chose on the held-out slice (the ``selected_*`` of
    its metrics file) and from how many trials, or that it trained as its recipe wrote."""
    settings = {}
    for model, stage in SEARCHED_STAGES.items():
        file = Paths.at(workspace).metrics_file(stage)
        metrics = _read_json(file) if file.is_file() else {}
        chosen, trials = read_summary(metrics)
        words = ", ".join(
            f"{name.replace('_', ' ')} {value:g}" if isinstance(value, float) else f"{name} {value}"
            for name, value in chosen.items()
        )
        settings[model] = f"{words} ({trials} trials)" if chosen else "as the recipe writes"
    return settings


def task_results(task: str, workspace: Path) -> dict[str, Any]:
    """What the table needs from one task's finished workspace: the report stage's ``metrics/eval.json`` (teacher,
    student, ratios), the trivial baseline on the same dev rows, and the register stage's decision."""
    paths = Paths.at(workspace)
    evaluation = _read_json(paths.metrics_file("eval"))
    promotion = _read_json(paths.reports_dir / "promotion.json")
    return {
        "teacher": evaluation["teacher"],
        "student": evaluation["student"],
        "ratios": evaluation.get("ratios", {}),
        "baseline": baseline_scores(get_task(task), workspace),
        "registered": {
            "model": promotion.get("model"),
            "version": promotion.get("version"),
            "promoted": bool(promotion.get("promoted")),
            "reasons": list(promotion.get("reasons", []))[:3],
        },
        "settings": chosen_settings(workspace),
        "workspace": str(workspace),
        "source": source_record(workspace),
    }


def ended_now() -> str:
    """Now in UTC, to the second, as run records write it (ISO 8601 strings compare in time order)."""
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def run_record(
    source: Mapping[str, Any] | None, command: str | None, where: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Which run made a task's column: the command, the commit its code was copied from (``source_record``, read
    under the task's lock; ``+changes`` when the project's files differed from it) and when it finished (UTC);
    on a work pool (``where``), the worker and the flow run."""
    record = {"command": command, "commit": (source or {}).get("commit"), "finished_at": ended_now()}
    return {**record, **(where or {})}


def summary_lines(
    results: Mapping[str, Any],
    failed: Mapping[str, str],
    skipped: Mapping[str, str],
    kept: Mapping[str, Mapping[str, Any]] | None = None,
    refused: Mapping[str, str] | None = None,
) -> list[str]:
    """One line per task: what ran and was registered, what failed and why, what was refused because another run
    holds it, what was skipped, what the table kept from an earlier (or another) run."""
    lines = []
    for name, result in results.items():
        registered = result["registered"]
        promoted = "promoted to @champion" if registered["promoted"] else "not promoted"
        lines.append(f"{name}: ok, {registered['model']} v{registered['version']} registered ({promoted})")
    lines += [f"{name}: FAILED: {reason}" for name, reason in failed.items()]
    lines += [f"{name}: REFUSED: {reason}" for name, reason in (refused or {}).items()]
    lines += [f"{name}: skipped: {reason}" for name, reason in skipped.items()]
    for name, run in (kept or {}).items():
        lines.append(f"{name}: kept in the table from an earlier run (commit {run.get('commit') or 'not recorded'})")
    return lines
