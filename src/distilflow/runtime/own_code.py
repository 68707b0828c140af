"""Which distilflow a stage runs: the code DVC hashed for it, never another copy of the package.

DVC hashes a workspace's own ``src/`` as the stages' deps, but ``distilflow`` on PATH imports the package it was
installed from (the project's live ``src/``, editable). A GLUE workspace or a ``dvc exp run --temp`` copy holds its
own ``src/``: when that copy differs from the imported package, the stage command re-executes itself on the copy
(:func:`foreign_code`) with the copy first on PYTHONPATH, an environment the warm stage host refuses (its children
import distilflow afresh from the installed package's folder). Edit ``src/`` during a run and what ``dvc.lock``
records is what ran.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # src/distilflow
OWN_CODE_ENV = "DISTILFLOW_OWN_CODE"  # set on the re-executed process: a second mismatch is an error, not a loop


def code_digest(folder: Path = PACKAGE_DIR) -> str:
    """sha256 over the package's Python files (paths and bytes): equal digests run the same code."""
    digest = hashlib.sha256()
    for file in sorted(path for path in folder.rglob("*.py") if "__pycache__" not in path.parts):
        digest.update(file.relative_to(folder).as_posix().encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


def stage_code(root: Path) -> Path:
    """The package a stage in ``root`` must run: the workspace's own ``src/distilflow`` if it has one."""
    copy = Path(root) / "src" / "distilflow"
    return copy.resolve() if (copy / "__init__.py").is_file() else PACKAGE_DIR


def foreign_code(root: Path) -> Path | None:
    """The workspace's own package when this process imported a different one; None when they are the same code."""
    code = stage_code(root)
    if code == PACKAGE_DIR or code_digest(code) == code_digest():
        return None
    return code


def run_own_code(root: Path) -> None:
    """Re-execute this command on the workspace's own ``src/`` when it differs from the imported package; return
    when they are the same code. The warm host's address is dropped: that host imports the other package."""
    from distilflow.runtime.warm import HOST_ENV

    copy = foreign_code(root)
    if copy is None:
        return
    if os.environ.get(OWN_CODE_ENV):
        message = f"cannot import the workspace's own distilflow from {copy} (PYTHONPATH is not honoured?)"
        print(message, file=sys.stderr)
        raise SystemExit(2)
    env = {key: value for key, value in os.environ.items() if key != HOST_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(copy.parent), env.get("PYTHONPATH")]))
    env[OWN_CODE_ENV] = "1"
    print(f"distilflow: running this workspace's own code ({copy}), not the installed package's", file=sys.stderr)
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "distilflow", *sys.argv[1:]], env)
