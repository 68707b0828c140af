"""What ``distilflow stage NAME`` does, dvc.yaml's command for every stage: settings, lock, then the stage.

The stage list is dvc.yaml's; stage NAME is the module ``distilflow.stages.NAME`` with one ``run(params, paths)``.
This module and what it imports run in every stage, so every stage's ``deps`` in dvc.yaml list them (a test
derives each stage's code dependencies from its imports and compares).
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

from distilflow.config.params import load_params
from distilflow.paths import Paths
from distilflow.runtime.dvc_files import stage_names
from distilflow.runtime.locking import LockHolder, die_with_parent, workspace_lock
from distilflow.runtime.process import configure_hub
from distilflow.runtime.progress import quiet_library_bars_off_terminal

# A stage started outside a holder of the workspace lock (a bare `dvc repro`) fails at once rather than waiting:
# its `dvc repro` holds DVC's own repo lock meanwhile, which would stall the holder's next DVC command.
LOCK_TIMEOUT_ENV = "DISTILFLOW_STAGE_LOCK_TIMEOUT_S"


class UnknownStage(ValueError):
    """The name is not a stage of this project's dvc.yaml."""


def run_stage(name: str, root: Path, params_file: Path | None = None, which: str | None = None) -> Any:
    """Run stage ``name`` of the project at ``root`` under the workspace lock; returns what the stage returns."""
    die_with_parent()
    quiet_library_bars_off_terminal()  # before the stage imports datasets or transformers
    paths = Paths.at(root)
    params = load_params(params_file or paths.params_file)
    known = stage_names(paths.root)
    if name not in known:
        raise UnknownStage(f"unknown stage {name!r}; dvc.yaml's stages: {', '.join(known)}")
    configure_hub(params, paths.root)

    def waiting(holder: LockHolder | None) -> None:
        who = holder.describe() if holder else "another run"
        print(f"stage {name}: the workspace is in use by {who}", file=sys.stderr)

    timeout = float(os.environ.get(LOCK_TIMEOUT_ENV, "0"))
    with workspace_lock(paths.root, f"distilflow stage {name}", timeout_s=timeout, on_wait=waiting):
        module = importlib.import_module(f"distilflow.stages.{name}")
        kwargs: dict[str, Any] = {"which": which} if which is not None else {}
        return module.run(params, paths, **kwargs)
