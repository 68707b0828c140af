"""Prefect flow for distilflow: one task per dvc.yaml stage, in dvc.yaml's order.

The graph is read from dvc.yaml, never written here a second time; each task runs ``dvc repro -s STAGE`` so
DVC still decides what is up to date and skips it. Run it without a server: ``python flows/pipeline.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# Prefect's temporary server needs more than its default 20 s to migrate a fresh database on 2 cores.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from prefect import flow, get_run_logger, task

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def stage_order(root: Path) -> list[str]:
    """dvc.yaml's stages in dependency order (foreach stages expand to NAME@KEY), ties kept in file order."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph
        declared = [stage.addressing for stage in repo.index.stages]
        position = {name: index for index, name in enumerate(declared)}
        by_name = {stage.addressing: stage for stage in repo.index.stages}
        # DVC's graph points from a stage to the stages it depends on.
        forward = graph.reverse(copy=True)
        order = list(nx.lexicographical_topological_sort(forward, key=lambda s: position[s.addressing]))
        return [stage.addressing for stage in order if stage.addressing in by_name]


class StageFailed(RuntimeError):
    pass


@task(task_run_name="{stage}")
def run_stage(stage: str, root: str) -> str:
    """``dvc repro -s``: runs the stage only if its deps, params or code changed."""
    logger = get_run_logger()
    process = subprocess.run(
        ["dvc", "repro", "--single-item", stage], cwd=root, capture_output=True, text=True, check=False
    )
    output = process.stdout + process.stderr
    logger.info(output[-5000:])
    if process.returncode != 0:
        raise StageFailed(f"stage {stage} failed (exit {process.returncode}):\n{output[-5000:]}")
    return "skipped" if "didn't change, skipping" in output else "ran"


@flow(name="distilflow-pipeline", log_prints=True)
def pipeline(root: str = str(PROJECT_ROOT)) -> dict[str, str]:
    """Run every stage of dvc.yaml in order; DVC skips the ones that are up to date."""
    results: dict[str, str] = {}
    for stage in stage_order(Path(root)):
        results[stage] = run_stage(stage, root)
    return results


if __name__ == "__main__":
    outcome = pipeline(root=sys.argv[1] if len(sys.argv) > 1 else str(PROJECT_ROOT))
    print(outcome)
