"""Entry point of the pipeline flow (``distilflow.workflows.pipeline``): one task per dvc.yaml stage, DVC deciding
what reruns.

Without a server: ``python flows/pipeline.py --help`` (``make pipeline``). Scheduled: ``make deploy``
(flows/deploy.py), whose deployment loads ``flows/pipeline.py:pipeline`` from this checkout or a clone of it.

This project's own ``src/`` goes first on ``sys.path`` before distilflow is imported, so a run from a copy of the
project (a worker's clone, a GLUE or scratch workspace) runs that copy's code and takes that copy for its project,
as when the flow's body lived in this file. In a process that imported distilflow already (a deploying process
reading the flow's parameters), the flow is that process's.
"""

from __future__ import annotations

import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
if "distilflow" not in sys.modules and (SRC / "distilflow" / "__init__.py").is_file():
    sys.path.insert(0, str(SRC))

from distilflow.workflows.pipeline import main, pipeline  # noqa: E402

__all__ = ["main", "pipeline"]

if __name__ == "__main__":
    sys.exit(main())
