"""The flow's retry policy: which stage failures could be transient (a download, a remote server) and which not.

A stage is retried only when its settings make it talk to the network; a failure with local inputs (bad data,
rejected settings) would fail the same way again, so it fails at once with the stage's own message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from distilflow.config.data_params import PACKAGED_TEACHER
from distilflow.config.loading import ParamsError, load_params
from distilflow.paths import Paths
from distilflow.tracking.runs import tracking_uri

# MLflow stores that live on this machine: their failures are not network hiccups.
LOCAL_TRACKING_SCHEMES = {"", "file", "sqlite"}


class StageFailed(RuntimeError):
    """A stage's ``dvc repro`` exited non-zero; ``deterministic`` marks failures a retry cannot fix."""

    def __init__(self, stage: str, exit_code: int | None, output: str, deterministic: bool) -> None:
        super().__init__(f"stage {stage} failed (stage command exit code {exit_code}):\n{output}")
        self.stage = stage
        self.output = output
        self.exit_code = exit_code
        self.deterministic = deterministic


def transient_reasons(stage: str, root: Path) -> list[str]:
    """Why a failure of ``stage`` could be transient under the current params; empty means never retry it.

    Decided from the stage name and params.yaml: ingest with ``data.source: hub`` downloads GLUE; tokenize and
    finetune download the teacher when ``model.teacher`` is a hub id; every stage that logs to MLflow talks to a
    server when the tracking URI is remote. validate reads local files only, so its failures (bad data) are
    always deterministic and never retried.
    """
    base = stage.split("@", 1)[0]
    if base == "validate":
        return []
    try:
        params = load_params(root / "params.yaml")
    except ParamsError:
        return []  # the stage itself will report the bad settings; retrying cannot fix them
    reasons: list[str] = []
    uri = tracking_uri(params, Paths.at(root))
    if urlsplit(uri).scheme not in LOCAL_TRACKING_SCHEMES:
        reasons.append(f"logs to the remote MLflow server {uri}")
    if base == "ingest" and params.data.source == "hub":
        reasons.append("downloads nyu-mll/glue from the Hugging Face hub")
    teacher = params.model.teacher
    if (
        base in ("tokenize", "finetune")
        and teacher != PACKAGED_TEACHER
        and not (Path(teacher).exists() or (root / teacher).exists())
    ):
        reasons.append(f"downloads the teacher {teacher} from the Hugging Face hub")
    return reasons


def retry_unless_deterministic(task_: Any, task_run: Any, state: Any) -> bool:
    """Retry a transient-capable stage, except when it failed in a way no retry can fix (rejected settings)."""
    error = state.data if isinstance(state.data, BaseException) else None
    return not (isinstance(error, StageFailed) and error.deterministic)
