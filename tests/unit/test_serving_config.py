"""The served model's config (serving.classifier.ServingConfig) takes its settings from register.serving only."""

from __future__ import annotations

import dataclasses

from distilflow.config.params import Params
from distilflow.config.release_params import ServingParams
from distilflow.registry.packaging import CHARS_PER_TOKEN, serving_config
from distilflow.serving.classifier import ServingConfig
from distilflow.tasks import get_task

SHARED = ("max_rows", "max_chars", "threads", "max_body_bytes", "export")


def test_the_settings_shared_with_register_serving_have_no_second_default() -> None:
    served = {field.name: field for field in dataclasses.fields(ServingConfig)}
    shared = sorted(name for name in served if name in ServingParams.model_fields)
    assert shared == sorted(SHARED)
    for name in shared:
        assert served[name].default is dataclasses.MISSING, f"ServingConfig.{name} declares its own default"
        assert served[name].default_factory is dataclasses.MISSING, f"ServingConfig.{name} declares its own default"


def test_a_packaged_model_serves_with_the_register_serving_settings() -> None:
    params = Params()
    settings = params.register_.serving
    config = serving_config(get_task("sst2"), params)
    assert (config.max_rows, config.threads, config.max_body_bytes) == (
        settings.max_rows,
        settings.threads,
        settings.max_body_bytes,
    )
    assert settings.max_chars is None  # null: the character cap follows the token cap
    assert config.max_chars == CHARS_PER_TOKEN * params.tokenize.max_length
    explicit = Params.model_validate({"register": {"serving": {"max_chars": 500}}})
    assert serving_config(get_task("sst2"), explicit).max_chars == 500
