"""Which project modules a stage runs, read from the source (every ``import``, at any depth), not guessed.

A developer command (``make deps``) that rewrites the ``src/`` deps of dvc.yaml's stages from their imports;
tests/unit/test_dvc_graph.py fails when dvc.yaml and the imports disagree.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SRC = REPO_ROOT / "src"
PACKAGE = "distilflow"
# What every `distilflow stage NAME` runs before the stage module: the CLI dispatches to this (see runtime/dispatch.py).
ENTRY_MODULE = "distilflow.runtime.dispatch"
# Modules a stage runs without importing them: register logs the served pyfunc as a model from code (by path).
RUN_BY_PATH = {"register": ("distilflow.serving.pyfunc_model",)}


def module_file(module: str) -> Path | None:
    base = SRC.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported(file: Path) -> set[str]:
    """Project modules ``file`` imports; ``from distilflow import plots`` names the module plots."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == PACKAGE}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == PACKAGE:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names if module_file(f"{node.module}.{a.name}")}
    return found


def closure(*modules: str) -> set[Path]:
    """The files of ``modules`` and of everything they import within the package, parent packages included."""
    seen: set[str] = set()
    pending = list(modules)
    while pending:
        module = pending.pop()
        parts = module.split(".")
        for depth in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__.py and a/b/__init__.py
            name = ".".join(parts[:depth])
            if name in seen or module_file(name) is None:
                continue
            seen.add(name)
            file = module_file(name)
            assert file is not None
            pending += sorted(_imported(file))
    return {file for name in seen if (file := module_file(name)) is not None}


def stage_code(stage: str) -> set[str]:
    """Repo-relative paths of every project source file ``distilflow stage STAGE`` runs."""
    modules = (f"{PACKAGE}.stages.{stage}", ENTRY_MODULE, *RUN_BY_PATH.get(stage, ()))
    return {str(path.relative_to(REPO_ROOT)) for path in closure(*modules)}


def dep_of(file: str) -> str:
    """A file inside a domain package stands for its package folder; a shared leaf (paths.py, tasks.py, ...) for
    itself. A stage depends on the packages it imports, so its deps read as a handful of folders (issue #32)."""
    parts = file.split("/")  # src/distilflow/<package>/.../module.py
    if len(parts) > 3 and parts[2] != "stages":
        return "/".join(parts[:3])
    return file


def code_deps(stage: str) -> list[str]:
    """The code ``deps`` dvc.yaml should list for ``stage``: its module first, then the rest sorted."""
    found = {dep_of(file) for file in stage_code(stage)}
    own = f"src/{PACKAGE}/stages/{stage}.py"
    return [own, *sorted(found - {own})]


def rewrite_dvc_yaml(dvc_yaml: Path) -> None:
    """Replace each stage's ``src/`` deps with :func:`code_deps`, leaving every other line as it is."""
    import re

    lines, stage, in_deps, written = dvc_yaml.read_text().splitlines(), "", False, False
    result: list[str] = []
    for line in lines:
        if match := re.match(r"^  (\w+):\s*$", line):
            stage = match.group(1)
        if re.match(r"^\s+deps:\s*$", line):
            result.append(line)
            in_deps, written = True, False
            continue
        if in_deps and (entry := re.match(r"^(\s+)- (.*)$", line)):
            if not written:
                result += [f"{entry.group(1)}- {dep}" for dep in code_deps(stage)]
                written = True
            if not entry.group(2).startswith("src/"):
                result.append(line)
            continue
        in_deps = False
        result.append(line)
    dvc_yaml.write_text("\n".join(result) + "\n")


if __name__ == "__main__":  # python -m scripts.dvc_deps: bring dvc.yaml's code deps up to date
    rewrite_dvc_yaml(REPO_ROOT / "dvc.yaml")
