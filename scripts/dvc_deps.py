"""Which project modules a stage runs, read from the source (every ``import``, at any depth), not guessed.

A developer command (``make deps``) that rewrites the ``src/`` deps of dvc.yaml's stages from their imports;
tests/unit/test_dvc_graph.py fails when dvc.yaml and the imports disagree.
"""

from __future__ import annotations

from pathlib import Path

from distilflow.runtime.imports import PACKAGE, closure

REPO_ROOT = Path(__file__).resolve().parents[1]
SRC = REPO_ROOT / "src"
# What every `distilflow stage NAME` runs before the stage module: the CLI dispatches to this (see runtime/dispatch.py).
ENTRY_MODULE = "distilflow.runtime.dispatch"
# Modules a stage runs without importing them: register logs the served pyfunc as a model from code (by path).
RUN_BY_PATH = {"register": ("distilflow.serving.pyfunc_model",)}


def stage_code(stage: str) -> set[str]:
    """Repo-relative paths of every project source file ``distilflow stage STAGE`` runs."""
    modules = (f"{PACKAGE}.stages.{stage}", ENTRY_MODULE, *RUN_BY_PATH.get(stage, ()))
    return {str(path.relative_to(REPO_ROOT)) for path in closure(*modules, src=SRC)}


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
