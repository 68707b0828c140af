"""Process-wide settings applied once at the CLI's entry, kept out of heavy modules so `--help` stays fast."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from distilflow.config.data_params import PACKAGED_TEACHER
from distilflow.config.params import Params

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
    apply_hub_mode()


TRUE_VALUES = {"1", "ON", "YES", "TRUE"}  # what huggingface_hub, datasets and evaluate read as true


def apply_hub_mode(env: Mapping[str, str] = os.environ) -> None:
    """Give the hub libraries already imported the offline mode ``env`` says, as their import would have.

    They read the variables once, into constants, when imported. A fresh stage decides the mode before it imports
    them; a stage forked from the warm host (runtime/host.py) finds them imported with the host's environment, in
    which the mode was not decided yet. Transformers asks huggingface_hub's constant, so it follows.
    """
    hub_offline = (env.get("HF_HUB_OFFLINE") or env.get("TRANSFORMERS_OFFLINE") or "").upper() in TRUE_VALUES
    imported: dict[str, Any] = {
        name: sys.modules.get(name) for name in ("huggingface_hub.constants", "datasets.config", "evaluate.config")
    }
    if (hub := imported["huggingface_hub.constants"]) is not None:
        hub.HF_HUB_OFFLINE = hub_offline
    if (datasets_config := imported["datasets.config"]) is not None:
        own = env.get("HF_DATASETS_OFFLINE")
        datasets_offline = hub_offline if own is None else own.upper() in TRUE_VALUES
        datasets_config.HF_HUB_OFFLINE = datasets_config.HF_DATASETS_OFFLINE = datasets_offline
    if (evaluate_config := imported["evaluate.config"]) is not None:
        evaluate_config.HF_EVALUATE_OFFLINE = env.get("HF_EVALUATE_OFFLINE", "AUTO").upper() in TRUE_VALUES


def machine_facts() -> dict[str, Any]:
    """What a benchmark result needs to be read against: cores, platform, torch build and the load it ran under."""
    import torch  # here, not at the top: the CLI imports this module before it knows whether it needs torch

    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "load_average": os.getloadavg(),
    }
