"""Typed view of ``params.yaml``: the root model ``Params``, one field per section, and its flat ``section.key``
views. The sections live by concern in ``data_params``, ``training_params`` and ``release_params``; reading the
file (and the errors a person sees) in ``loading``. Every model forbids unknown keys, so a typo such as
``distill.temprature`` fails with the key and the file named instead of running with a default.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import ConfigDict, Field, field_validator

from distilflow.config.data_params import DataParams, ModelParams, TokenizeParams, ValidateParams
from distilflow.config.release_params import EvaluateParams, GlueParams, RegisterParams
from distilflow.config.section import Section
from distilflow.config.training_params import (
    AugmentParams,
    DistillParams,
    FinetuneParams,
    PretrainParams,
    RunParams,
)
from distilflow.tasks import TASKS


class Params(Section):
    task: str = "sst2"
    seed: int = 42
    run: RunParams = RunParams()
    data: DataParams = DataParams()
    validate_: ValidateParams = Field(ValidateParams(), alias="validate")
    model: ModelParams = ModelParams()
    tokenize: TokenizeParams = TokenizeParams()
    finetune: FinetuneParams = FinetuneParams.model_validate({})
    evaluate: EvaluateParams = EvaluateParams()
    augment: AugmentParams = AugmentParams()
    pretrain: PretrainParams = PretrainParams()
    distill: DistillParams = DistillParams.model_validate({})
    register_: RegisterParams = Field(RegisterParams(), alias="register")
    glue: GlueParams = GlueParams()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str) -> str:
        if value not in TASKS:
            raise ValueError(f"unknown GLUE task; known: {', '.join(sorted(TASKS))}")
        return value


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested sections as flat ``section.key`` pairs (an empty mapping stays one value)."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name))
        else:
            flat[name] = value
    return flat


def params_at(params: Params, keys: Iterable[str]) -> dict[str, Any]:
    """The settings under dvc.yaml ``params:`` keys (a whole section, or one dotted key) as flat ``section.key``
    pairs, the form MLflow params take: a stage logs exactly what DVC tracks for it."""
    wanted = tuple(keys)
    flat = flatten(params.model_dump(by_alias=True))
    return {
        name: value for name, value in flat.items() if any(name == key or name.startswith(f"{key}.") for key in wanted)
    }
