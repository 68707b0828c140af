"""Facts that must be written twice (a Makefile cannot import Python) are tied to their one source here."""

from __future__ import annotations

import re

from distilflow.config.loading import load_params
from distilflow.config.params import flatten
from distilflow.orchestration.settings import PREFECT_ENV_DEFAULTS
from tests.conftest import REPO_ROOT, SMOKE_PROFILE


def test_the_makefile_exports_the_flows_prefect_defaults() -> None:
    exported = dict(re.findall(r"^export (PREFECT_[A-Z_]+) :?= (\S+)$", (REPO_ROOT / "Makefile").read_text(), re.M))
    assert {key: exported.get(key) for key in PREFECT_ENV_DEFAULTS} == PREFECT_ENV_DEFAULTS


def test_every_profile_key_is_a_params_yaml_key() -> None:
    documented = set(flatten(load_params(REPO_ROOT / "params.yaml").model_dump(by_alias=True)))
    assert set(flatten(SMOKE_PROFILE)) <= documented
