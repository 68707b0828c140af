"""The GLUE suite's work-pool half (``distilflow.workflows.glue_pool``): ``distilflow glue --pool NAME`` deploys
``flows/glue.py:pooled_glue_task`` at the project's commit and starts one flow run per task with ``run_on_pool``.

This project's own ``src/`` goes first on ``sys.path`` before distilflow is imported, as in flows/glue.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
if "distilflow" not in sys.modules and (SRC / "distilflow" / "__init__.py").is_file():
    sys.path.insert(0, str(SRC))

from distilflow.workflows.glue_pool import TASK_ENTRYPOINT, deploy_task_flow, run_on_pool  # noqa: E402

__all__ = ["TASK_ENTRYPOINT", "deploy_task_flow", "run_on_pool"]
