"""What the benchmark scripts share: where the project and the GLUE data are, how a script's settings are made
(params.yaml plus explicit overrides), the split reader and the result file. Importing it changes nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from distilflow.config.loading import parse_params
from distilflow.config.params import Params, flatten
from distilflow.paths import Paths

ROOT = Path(__file__).resolve().parents[1]
PARAMS_FILE = Paths.at(ROOT).params_file
GLUE_DIR = Path(os.environ.get("DISTILFLOW_GLUE_DIR", ROOT.parent / "shared" / "data" / "glue"))
SST2_DIR = GLUE_DIR / "SST-2"
RESULTS_DIR = ROOT / "bench" / "results"
CACHE_DIR = ROOT / "bench" / "cache"
SCORE_BATCH_SIZE = 256  # dev scoring batch (inference only: the metric does not depend on it)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass(frozen=True)
class ParamFlag:
    """A command-line flag that sets one params.yaml key; its default is the key's value (plus the script's
    own overrides), never a number typed again here."""

    flag: str
    key: str
    kind: type = float
    help: str = ""

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")


def _lookup(raw: dict[str, Any], key: str) -> Any:
    value: Any = raw
    for part in key.split("."):
        value = value[part]
    return value


def _set(raw: dict[str, Any], key: str, value: Any) -> None:
    """Change an existing key (as ``dvc exp run --set-param`` does without ``+``): a misspelt key fails."""
    *sections, last = key.split(".")
    node = raw
    for part in sections:
        if not isinstance(node.get(part), dict):
            raise SystemExit(f"{key}: no such section in {PARAMS_FILE.name}")
        node = node[part]
    if last not in node:
        raise SystemExit(f"{key}: no such key in {PARAMS_FILE.name}")
    node[last] = value


def with_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of the raw params with flat ``section.key`` overrides applied."""
    changed: dict[str, Any] = json.loads(json.dumps(raw))
    for key, value in overrides.items():
        _set(changed, key, value)
    return changed


def changed(params: Params, changes: dict[str, Any]) -> Params:
    """``params`` with nested ``changes`` (as params.yaml's sections) applied and checked."""
    return parse_params(with_overrides(params.model_dump(by_alias=True), flatten(changes)))


def add_param_flags(
    parser: argparse.ArgumentParser, flags: Sequence[ParamFlag], script_overrides: dict[str, Any]
) -> None:
    """The flags that set params keys, and ``--set KEY=VALUE`` for any other key."""
    base = with_overrides(yaml.safe_load(PARAMS_FILE.read_text(encoding="utf-8")), flatten(script_overrides))
    group = parser.add_argument_group("settings (params.yaml, then this script's overrides, then these)")
    for item in flags:
        default = _lookup(base, item.key)
        text = f"{item.help + '; ' if item.help else ''}{item.key} (default {default})"
        if item.kind is bool:
            group.add_argument(item.flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            group.add_argument(item.flag, type=item.kind, default=None, help=text)
    group.add_argument(
        "--set",
        dest="set_params",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change any params.yaml key, e.g. --set distill.temperature=4 (VALUE is YAML; repeatable; wins over "
        "the flags above)",
    )


def settings_from(
    args: argparse.Namespace,
    flags: Sequence[ParamFlag],
    script_overrides: dict[str, Any],
    flag_overrides: dict[str, Any] | None = None,
) -> tuple[Params, dict[str, Any]]:
    """params.yaml with the script's overrides, then the flags given (and ``flag_overrides``, flat keys that other
    flags of the script mean), then ``--set``: the settings and every override applied (flat ``section.key``, as
    the result file records them)."""
    overrides = flatten(script_overrides)
    for item in flags:
        value = getattr(args, item.dest)
        if value is not None:
            overrides[item.key] = value
    overrides.update(flag_overrides or {})
    for pair in args.set_params:
        key, equals, value = pair.partition("=")
        if not equals:
            raise SystemExit(f"--set {pair}: expected KEY=VALUE")
        overrides[key.strip()] = yaml.safe_load(value)
    raw = with_overrides(yaml.safe_load(PARAMS_FILE.read_text(encoding="utf-8")), overrides)
    return parse_params(raw, f"{PARAMS_FILE.name} with {overrides}"), overrides


def command_line(script: str, argv: Sequence[str]) -> str:
    """How the run was started, as the result file records it."""
    return shlex.join(["python", f"bench/{script}", *argv])


@dataclass(frozen=True)
class Settings:
    """One benchmark run's settings: its own knobs (``args``), the params they start from, how it was called."""

    script: str
    args: argparse.Namespace
    params: Params
    overrides: dict[str, Any]
    argv: list[str]

    @classmethod
    def parse(
        cls,
        script: str,
        parser: argparse.ArgumentParser,
        argv: Sequence[str] | None,
        flags: Sequence[ParamFlag],
        script_overrides: dict[str, Any],
        flag_overrides: Callable[[argparse.Namespace], dict[str, Any]] | None = None,
    ) -> Settings:
        """``argv`` (default: the command line) parsed: the benchmark's knobs and its params."""
        argv = list(sys.argv[1:] if argv is None else argv)
        add_param_flags(parser, flags, script_overrides)
        args = parser.parse_args(argv)
        extra = flag_overrides(args) if flag_overrides else None
        params, overrides = settings_from(args, flags, script_overrides, extra)
        return cls(script, args, params, overrides, argv)

    def with_params(self, changes: dict[str, Any]) -> Params:
        """These params with nested ``changes`` (as params.yaml's sections) applied and checked."""
        return changed(self.params, changes)

    def provenance(self) -> dict[str, Any]:
        """What a result file records first: the command, and what it changed from params.yaml."""
        return {
            "command": command_line(self.script, self.argv),
            "params_file": PARAMS_FILE.name,
            "params_overrides": self.overrides,
        }


def dev_scores(workspace: Path, model: str, task: str) -> dict[str, float]:
    """A workspace's trained model (``models/MODEL``) scored once on its tokenized dev split: training chose its
    checkpoint on the held-out slice of train, so this is the number it never saw."""
    from distilflow.metrics import compute_glue_metrics

    predictions, references = dev_predictions(workspace, model, task)
    return compute_glue_metrics(task, predictions.tolist(), references.tolist())


def dev_predictions(workspace: Path, model: str, task: str) -> tuple[Any, Any]:
    """``models/MODEL``'s answers on the workspace's tokenized dev split, and the labels (numpy arrays in dev's
    order): what a paired bootstrap between two models of the same dev rows needs."""
    import numpy as np
    from datasets import load_from_disk

    from distilflow.models.inference import logits_to_predictions, predict_logits
    from distilflow.models.loading import load_classifier, load_tokenizer
    from distilflow.tasks import get_task

    dev = load_from_disk(str(workspace / "data" / "tokenized"))["dev"]
    pad_id = load_tokenizer(str(workspace / "models" / model)).pad_token_id
    logits = predict_logits(load_classifier(workspace / "models" / model), dev, 64, pad_id)
    return np.asarray(logits_to_predictions(logits, get_task(task))), np.asarray(dev["labels"])


def write_result(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")


def read_encoded_split(task: Any, folder: Path, split: str, tokenizer: Any, max_length: int, limit: int | None) -> Any:
    """A GLUE split read strictly (distilflow.data.glue_io) and tokenized as the tokenize stage does."""
    from distilflow.data.glue_io import read_split
    from distilflow.stages.tokenize import encode

    file = folder / f"{split}.tsv"
    if not file.is_file():
        raise SystemExit(f"{file} not found: point --data-dir (or DISTILFLOW_GLUE_DIR) at the GLUE SST-2 folder")
    frame, problems = read_split(task, file, split, max_rows=limit)
    if problems:
        log(f"{split}: {len(problems)} unreadable rows skipped (first: {problems[0]})")
    return encode(frame, task, tokenizer, max_length)
