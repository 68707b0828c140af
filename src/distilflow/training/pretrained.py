"""What the pretrain stage leaves beside the student's starting weights, read back by distill."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SUMMARY_FILE = "pretrain.json"


def read_summary(folder: Path) -> dict[str, Any]:
    file = folder / SUMMARY_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{file} is missing; run the pretrain stage (dvc repro pretrain)")
    summary: dict[str, Any] = json.loads(file.read_text())
    return summary
