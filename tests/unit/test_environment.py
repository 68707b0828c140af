"""Process-wide settings and the machine facts benchmarks record."""

from __future__ import annotations

import os

import pytest
import torch

from distilflow.environment import OFFLINE_VARIABLES, hub_offline_by_default, machine_facts


def test_hub_offline_by_default_keeps_the_users_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in OFFLINE_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # a user with a network asked for the hub
    hub_offline_by_default()
    assert os.environ["HF_HUB_OFFLINE"] == "0"
    assert os.environ["HF_DATASETS_OFFLINE"] == "1"
    assert os.environ["HF_EVALUATE_OFFLINE"] == "1"


def test_machine_facts_describe_this_process() -> None:
    facts = machine_facts()
    assert facts["cpus"] == os.cpu_count()
    assert facts["torch"] == torch.__version__
    assert len(facts["load_average"]) == 3 and all(load >= 0 for load in facts["load_average"])
