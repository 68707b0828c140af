"""dvc.yaml read as a file: the stage names, their order and their dependencies, without importing DVC.

dvc.yaml is the one place the graph is declared. Everything else that needs the stage list (the CLI's
``distilflow stage NAME``, the order of a model card's lineage, the tests that tie each stage's code
dependencies to what it imports) asks this module instead of keeping a copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from distilflow.config import yaml_io
from distilflow.paths import Paths

DVC_FILE = "dvc.yaml"
LOCK_FILE = "dvc.lock"


@dataclass(frozen=True)
class StageSpec:
    """One stage as dvc.yaml declares it; a ``foreach`` stage keeps its keys (``evaluate`` → teacher, student)."""

    name: str
    deps: tuple[str, ...]
    params: tuple[str, ...]
    outs: tuple[str, ...]
    foreach: tuple[str, ...] = ()

    @property
    def instances(self) -> tuple[str, ...]:
        """The names DVC gives the stage's instances: ``evaluate@teacher``, or the name itself."""
        return tuple(f"{self.name}@{key}" for key in self.foreach) or (self.name,)


def _paths(entries: list[Any] | None) -> tuple[str, ...]:
    """``deps``/``outs``/``metrics`` entries are strings or one-key mappings (``path: {cache: false}``)."""
    found: list[str] = []
    for entry in entries or []:
        found += [str(key) for key in entry] if isinstance(entry, dict) else [str(entry)]
    return tuple(found)


@cache
def _load(dvc_file: Path, mtime_ns: int) -> tuple[StageSpec, ...]:
    data = yaml_io.load(dvc_file.read_text(encoding="utf-8")) or {}
    specs = []
    for name, body in (data.get("stages") or {}).items():
        foreach = body.get("foreach")
        stage = body.get("do", body)
        specs.append(
            StageSpec(
                name=str(name),
                deps=_paths(stage.get("deps")),
                params=_paths(stage.get("params")),
                outs=_paths(stage.get("outs")) + _paths(stage.get("metrics")) + _paths(stage.get("plots")),
                foreach=tuple(str(key) for key in foreach) if isinstance(foreach, dict | list) else (),
            )
        )
    return tuple(specs)


def stages(root: Path) -> tuple[StageSpec, ...]:
    """The stages in dvc.yaml's order (which is also an order DVC can run them in)."""
    dvc_file = Path(root) / DVC_FILE
    if not dvc_file.is_file():
        raise FileNotFoundError(f"{dvc_file}: no dvc.yaml; run distilflow from the project folder (or pass --root)")
    return _load(dvc_file.resolve(), dvc_file.stat().st_mtime_ns)


def stage_names(root: Path) -> tuple[str, ...]:
    return tuple(spec.name for spec in stages(root))


def lineage_order(root: Path) -> tuple[str, ...]:
    """Stage keys as lineage.json writes them, in pipeline order: a foreach instance is ``NAME_KEY``.

    Empty outside a project folder (a model registered from elsewhere): callers then order by name.
    """
    if not (Path(root) / DVC_FILE).is_file():
        return ()
    return tuple(
        f"{spec.name}_{key}" if spec.foreach else spec.name for spec in stages(root) for key in (spec.foreach or ("",))
    )


def lock_out_md5(lock: dict[str, Any], stage: str, path: str) -> str | None:
    """The md5 a parsed dvc.lock records for output ``path`` of ``stage``; None when it has none."""
    for out in (lock.get("stages") or {}).get(stage, {}).get("outs", []) or []:
        if out.get("path") == path:
            return str(out.get("md5")) if out.get("md5") else None
    return None


def data_md5(lock: dict[str, Any], root: Path) -> str | None:
    """The data version: DVC's md5 of what ingest wrote (data/raw), as a parsed dvc.lock records it."""
    paths = Paths.at(root)
    return lock_out_md5(lock, "ingest", paths.relative(paths.raw_dir))


def read_lock(root: Path) -> dict[str, Any] | None:
    lock = Path(root) / LOCK_FILE
    if not lock.is_file():
        return None
    content: dict[str, Any] = yaml_io.load(lock.read_text(encoding="utf-8")) or {}
    return content


def workspace_data_md5(root: Path) -> str | None:
    """The data version this workspace's dvc.lock records; None before the first repro."""
    lock = read_lock(root)
    return data_md5(lock, root) if lock is not None else None
