"""What ``distilflow stage NAME`` does, dvc.yaml's command for every stage: settings, lock, then the stage.

The one stage dispatch: the CLI parses and calls :func:`stage_command`, the warm host's child calls it with the
same parsed call, and flows run the command. Nothing above this layer decides how a stage runs.

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

from distilflow.errors import UserError
from distilflow.paths import Paths
from distilflow.runtime.dvc_files import stage_names, stages
from distilflow.runtime.locking import LockHolder, WorkspaceLocked, die_with_parent, workspace_lock
from distilflow.runtime.own_code import run_own_code
from distilflow.runtime.progress import quiet_library_bars_off_terminal
from distilflow.runtime.store_health import store_fault
from distilflow.runtime.warm import delegate

# A stage started outside a holder of the workspace lock (a bare `dvc repro`) fails at once rather than waiting:
# its `dvc repro` holds DVC's own repo lock meanwhile, which would stall the holder's next DVC command.
LOCK_TIMEOUT_ENV = "DISTILFLOW_STAGE_LOCK_TIMEOUT_S"


class UnknownStage(UserError, ValueError):
    """The name is not a stage of this project's dvc.yaml."""


def run_stage(name: str, root: Path, params_file: Path | None = None, which: str | None = None) -> Any:
    """Run stage ``name`` of the project at ``root`` under the workspace lock; returns what the stage returns."""
    # pydantic and the hub settings: not imported by a caller that hands its call to the warm host
    from distilflow.config.declared import declared
    from distilflow.config.loading import load_params
    from distilflow.runtime.process import configure_hub

    die_with_parent()
    quiet_library_bars_off_terminal()  # before the stage imports datasets or transformers
    paths = Paths.at(root)
    params = load_params(params_file or paths.params_file)
    spec = next((spec for spec in stages(paths.root) if spec.name == name), None)
    if spec is None:
        known = ", ".join(stage_names(paths.root))
        raise UnknownStage(f"unknown stage {name!r}; dvc.yaml's stages: {known}")
    configure_hub(params, paths.root)

    def waiting(holder: LockHolder | None) -> None:
        who = holder.describe() if holder else "another run"
        print(f"stage {name}: the workspace is in use by {who}", file=sys.stderr)

    timeout = float(os.environ.get(LOCK_TIMEOUT_ENV, "0"))
    with workspace_lock(paths.root, f"distilflow stage {name}", timeout_s=timeout, on_wait=waiting):
        module = importlib.import_module(f"distilflow.stages.{name}")
        kwargs: dict[str, Any] = {"which": which} if which is not None else {}
        # The stage reads only what dvc.yaml declares for it: anything else fails, naming the key to declare.
        return module.run(declared(params, spec.params, name), paths, **kwargs)


def stage_command(name: str, root: str, params_file: str | None = None, which: str | None = None) -> int:
    """``distilflow stage NAME`` once parsed; returns its exit code.

    The stage runs on the workspace's own code (:func:`run_own_code`), in a flow's warm host when one is up and
    fits, or here. A person's error (bad settings, data, registry state, a busy workspace, a broken store) is one
    line on stderr; a bug keeps its traceback.
    """
    run_own_code(Path(root))
    call = {"name": name, "root": root, "params_file": params_file, "which": which}
    warm = delegate(sys.argv, call)  # a flow run's warm host, if one is up and fits; None: run it here
    if warm is not None:
        return warm
    try:
        run_stage(name, Path(root), Path(params_file) if params_file else None, which)
    except Exception as error:
        from distilflow.config.loading import ParamsError

        if isinstance(error, UnknownStage | ParamsError | WorkspaceLocked | FileNotFoundError):
            return _refused(str(error), 2)
        if isinstance(error, UserError):
            return _refused(f"{name} failed: {error}", 1)
        fault = store_fault(error)
        if fault is None:
            raise
        return _refused(f"{name} failed: {fault}", 1)
    return 0


def _refused(message: str, code: int) -> int:
    print(message, file=sys.stderr)
    return code
