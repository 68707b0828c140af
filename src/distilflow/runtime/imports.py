"""Which project modules a piece of code runs, read from the source (every ``import``, at any depth), not from what
one process happens to have imported.

Two users: ``make deps`` (scripts/dvc_deps.py) writes each stage's code deps in dvc.yaml from it, and a training
stage's resume fingerprint (training.checkpoints.source_digest) hashes it, so a checkpoint written by a stage the warm
host forked resumes in a cold ``distilflow stage`` and the other way round.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "distilflow"
SRC = Path(__file__).resolve().parents[2]  # the folder holding the imported distilflow: a workspace's own src/ too


def module_file(module: str, src: Path = SRC) -> Path | None:
    base = src.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported(file: Path, src: Path = SRC) -> set[str]:
    """Project modules ``file`` imports; ``from distilflow import plots`` names the module plots."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == PACKAGE}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == PACKAGE:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names if module_file(f"{node.module}.{a.name}", src)}
    return found


def closure(*modules: str, src: Path = SRC) -> set[Path]:
    """The files of ``modules`` and of everything they import within the package, parent packages included."""
    files: dict[str, Path | None] = {}  # every module name met, and its file (None: not a module of the package)
    pending = list(modules)
    while pending:
        module = pending.pop()
        parts = module.split(".")
        for depth in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__.py and a/b/__init__.py
            name = ".".join(parts[:depth])
            if name in files:
                continue
            file = files[name] = module_file(name, src)
            if file is not None:
                pending += sorted(imported(file, src))
    return {file for file in files.values() if file is not None}
