"""What DVC knows before anything runs: dvc.yaml's stages in dependency order, and which of them changed.

One in-process ``dvc status`` gives the flow its plan, so a stage that is up to date costs no DVC start.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# DVC's words for an output absent from the workspace or from the local cache: a remote may have it.
MISSING_STATES = {"deleted", "not in cache"}


@dataclass
class StagePlan:
    """What DVC knows before anything runs: the stage order, each stage's upstream stages, what changed."""

    order: list[str]
    upstream: dict[str, list[str]]
    changed: dict[str, list[str]] = field(default_factory=dict)
    missing_outputs: list[str] = field(default_factory=list)
    remote: str | None = None


def _addressing(stage: Any) -> str:
    return str(stage.addressing)


def read_plan(root: Path) -> StagePlan:
    """dvc.yaml's stages in dependency order (foreach stages expand to NAME@KEY, ties in file order) and status."""
    import networkx as nx
    from dvc.repo import Repo

    # DVC names stages relative to the working directory (``sub/dvc.yaml:name`` from elsewhere), and those names
    # are what ``dvc repro`` takes in the workspace: look from there.
    with contextlib.chdir(root), Repo(str(root)) as repo:
        stages = list(repo.index.stages)
        position = {_addressing(stage): index for index, stage in enumerate(stages)}
        graph = repo.index.graph
        # DVC's graph points from a stage to the stages it depends on; reversed, a topological order runs them.
        forward = graph.reverse(copy=True)
        ordered = [
            _addressing(stage)
            for stage in nx.lexicographical_topological_sort(forward, key=lambda stage: position[_addressing(stage)])
            if _addressing(stage) in position
        ]
        upstream = {
            _addressing(stage): sorted(
                _addressing(dep) for dep in graph.successors(stage) if _addressing(dep) in position
            )
            for stage in stages
        }
        changed: dict[str, list[str]] = {}
        missing: list[str] = []
        for name, entries in repo.status().items():
            changed[name] = [describe_change(entry) for entry in entries] or ["changed"]
            outs = [entry["changed outs"] for entry in entries if isinstance(entry, dict) and "changed outs" in entry]
            missing += [path for detail in outs for path, state in detail.items() if state in MISSING_STATES]
        remote = repo.config.get("core", {}).get("remote")
    return StagePlan(order=ordered, upstream=upstream, changed=changed, missing_outputs=missing, remote=remote)


# A fresh clone's dvc.lock names outputs DVC does not have and every code file as changed: a line per stage
# listing twenty files tells a person no more than the first few and a count.
MAX_DETAILS = 4


def describe_change(entry: Any) -> str:
    """DVC's status entry as one line, e.g. ``changed deps: params.yaml (distill.temperature: modified)``."""
    if not isinstance(entry, dict):
        return str(entry)

    def detail(node: Any) -> str:
        if not isinstance(node, dict):
            return str(node)
        items = [
            f"{key} ({detail(value)})" if isinstance(value, dict) else f"{key}: {value}" for key, value in node.items()
        ]
        more = len(items) - MAX_DETAILS
        return ", ".join(items[:MAX_DETAILS] + ([f"and {more} more"] if more > 0 else []))

    return "; ".join(f"{kind}: {detail(value)}" for kind, value in entry.items())
