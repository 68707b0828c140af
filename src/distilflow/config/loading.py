"""Reading ``params.yaml`` into :class:`Params`, with errors that name the key, the file and, for a key that
moved, where it lives now."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from distilflow.config import yaml_io
from distilflow.config.params import Params
from distilflow.errors import UserError

# Keys that moved to another section: an old params.yaml (or a `dvc exp run -S` of the old key) gets where to
# write it instead of a bare "unknown key".
MOVED_KEYS = {
    "finetune.device": "run.device",
    "finetune.precision": "run.precision",
    "finetune.eval_batch_size": "run.eval_batch_size",
}
MOVED_KEYS_DOC = "docs/finetune.md#devices"


class ParamsError(UserError, ValueError):
    """params.yaml is missing, not YAML, or has unknown or ill-typed keys."""


def _describe(error: ValidationError, source: str) -> str:
    lines = [f"invalid settings in {source}:"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        if item["type"] == "extra_forbidden" and key in MOVED_KEYS:
            lines.append(f"  - {key} moved to {MOVED_KEYS[key]} ({MOVED_KEYS_DOC}): write it under that section")
        elif item["type"] == "extra_forbidden":
            lines.append(f"  - {key}: unknown key (check the spelling against params.yaml's documented keys)")
        else:
            lines.append(f"  - {key}: {item['msg']} (got {item.get('input')!r})")
    return "\n".join(lines)


def parse_params(raw: dict[str, Any], source: str = "params.yaml") -> Params:
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise ParamsError(_describe(error, source)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: no such params file")
    try:
        raw = yaml_io.load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: top level must be a mapping of sections")
    return parse_params(raw, str(path))
