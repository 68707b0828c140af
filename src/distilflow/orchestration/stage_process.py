"""The processes the pipeline flow starts (DVC, ``distilflow``): their environment, and their output in the run log.

The pipeline flow and the GLUE flows (distilflow.workflows) share these; nothing here decides what runs.
"""

from __future__ import annotations

import collections
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from distilflow.tracking.runs import PIPELINE_ID_ENV

TAIL_LINES = 200  # of a failed command's output, kept for the error message and the validation artifact


def subprocess_env(pipeline_id: str | None) -> dict[str, str]:
    """The stage commands need this interpreter's console scripts (``distilflow``) even when a worker runs us."""
    env = dict(os.environ)
    scripts = str(Path(sys.executable).parent)
    if env.get("PATH", "").split(os.pathsep)[0] != scripts:  # once: a host started with this env must match it
        env["PATH"] = f"{scripts}{os.pathsep}{env.get('PATH', '')}"
    # Each progress-bar refresh becomes a log line in the UI: one every 10 s is plenty (tqdm reads TQDM_*).
    env.setdefault("TQDM_MININTERVAL", "10")
    # tracking.configure_mlflow sets this in our own environment once a flow task touches MLflow: set from the start,
    # so a warm stage host started before that still serves the stages started after it.
    env.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if pipeline_id:
        env[PIPELINE_ID_ENV] = pipeline_id
    return env


def run_logger() -> Any:
    """The flow/task run's logger (its lines reach the UI); the module logger when called outside a run."""
    # Imported here: the flow sets Prefect's settings in the environment before Prefect is first imported.
    from prefect import get_run_logger
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


def run_logged(command: list[str], root: Path, env: dict[str, str]) -> tuple[int, str]:
    """Run a command, streaming every line to the Prefect log (the UI shows progress live); return code and tail."""
    logger = run_logger()
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    with subprocess.Popen(
        command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    ) as process:
        if process.stdout is None:  # never: stdout=PIPE; says so to the type checker without an assert
            raise RuntimeError(f"{command[0]}: no output pipe")
        for line in process.stdout:
            line = line.rstrip()
            if line:
                logger.info(line)
                tail.append(line)
    return process.returncode, "\n".join(tail)


def dvc_command(*args: str) -> list[str]:
    """``dvc ARGS`` in a child that dies with this process (``dvc_child``): a killed flow leaves no DVC running."""
    return [sys.executable, "-m", "distilflow.orchestration.dvc_child", *args]
