"""Entry point of the GLUE suite's flows (``distilflow.workflows.glue``): one pipeline run per GLUE task, then the
table.

``python flows/glue.py --help`` runs the suite without a server, as ``distilflow glue`` does. A work pool's worker
loads ``flows/glue.py:pooled_glue_task`` from its clone of the parent's commit (``distilflow glue --pool``,
docs/team.md).

This project's own ``src/`` goes first on ``sys.path`` before distilflow is imported, so the worker runs its clone's
code, at the parent's commit, and takes its clone for the project. In a process that imported distilflow already
(the parent deploying the task flow), the flow is that process's.
"""

from __future__ import annotations

import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
if "distilflow" not in sys.modules and (SRC / "distilflow" / "__init__.py").is_file():
    sys.path.insert(0, str(SRC))

from distilflow.workflows.glue import glue, glue_task, main, pooled_glue_task  # noqa: E402

__all__ = ["glue", "glue_task", "main", "pooled_glue_task"]

if __name__ == "__main__":
    sys.exit(main())
