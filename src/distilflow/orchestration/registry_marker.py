"""Whether this workspace's MLflow registry holds the student dvc.lock records, told by a marker file.

The register stage's outputs can be up to date without the registry having seen them (restored from DVC's
run-cache, or pulled into a fresh clone): the flow compares the marker with what dvc.lock says and syncs when they
differ (``follow_registry`` in distilflow.workflows.pipeline).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from distilflow.config.params import Params
from distilflow.orchestration.reports import read_json
from distilflow.paths import Paths
from distilflow.runtime.dvc_files import lock_out_md5, read_lock
from distilflow.runtime.locking import LOCK_DIR
from distilflow.tracking.runs import tracking_uri

REGISTRY_MARKER = "registry.json"  # in LOCK_DIR: which student this workspace's registry was last made to hold


def registry_state(root: Path, params: Params) -> dict[str, Any]:
    """What the registry must reflect: dvc.lock's student weights, in this workspace's tracking store."""
    paths = Paths.at(root)
    lock = read_lock(root) or {}
    return {
        "student_md5": lock_out_md5(lock, "distill", paths.relative(paths.student_dir)),
        "tracking_uri": tracking_uri(params, paths),
        "store_exists": paths.mlflow_db.exists(),
    }


def registry_in_step(root: Path, params: Params) -> bool:
    """Whether the marker says the registry was last made to hold what dvc.lock records now."""
    return read_json(root / LOCK_DIR / REGISTRY_MARKER) == registry_state(root, params)


def mark_registry(root: Path, params: Params) -> None:
    """Record that the registry holds what dvc.lock records now."""
    marker = root / LOCK_DIR / REGISTRY_MARKER
    marker.parent.mkdir(exist_ok=True)
    marker.write_text(json.dumps(registry_state(root, params)) + "\n", encoding="utf-8")
