"""Figures the reliability suites leave for ``docs/reliability.md`` (``bench/reliability.py`` collects them).

A suite that counts something worth publishing (cases tried, faults injected and survived, requests rejected
cleanly) calls :func:`record`. Outside ``make bench-reliability`` the variable is unset and nothing is written, so
a plain ``make test`` leaves no files behind.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

RESULTS_DIR_VAR = "DISTILFLOW_RELIABILITY_DIR"


def record(name: str, figures: dict[str, Any]) -> Path | None:
    """Write ``figures`` as ``<dir>/<name>.json`` when the suite runs under the reliability script."""
    folder = os.environ.get(RESULTS_DIR_VAR)
    if not folder:
        return None
    path = Path(folder) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    return path
