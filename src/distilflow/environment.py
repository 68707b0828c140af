"""Process-wide settings applied once at the CLI's entry, kept out of heavy modules so `--help` stays fast."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from distilflow.config import PACKAGED_TEACHER, Params

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE")


def hub_offline_by_default() -> None:
    """Without a network, hub look-ups hang on retries; default to offline unless the user chose otherwise."""
    for variable in OFFLINE_VARIABLES:
        os.environ.setdefault(variable, "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def needs_hub(params: Params, root: Path) -> bool:
    """True when the settings name something only the Hugging Face hub can provide."""
    teacher = params.model.teacher
    teacher_is_local = teacher == PACKAGED_TEACHER or (root / teacher).exists() or Path(teacher).exists()
    return params.data.source == "hub" or not teacher_is_local


def configure_hub(params: Params, root: Path) -> None:
    """Offline unless the settings ask for the hub, so the embedded default never waits on a network."""
    if not needs_hub(params, root):
        hub_offline_by_default()


def machine_facts() -> dict[str, Any]:
    """What a benchmark result needs to be read against: cores, platform, torch build and the load it ran under."""
    import torch  # here, not at the top: the CLI imports this module before it knows whether it needs torch

    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "load_average": os.getloadavg(),
    }
