"""Process-wide settings and the machine facts benchmarks record."""

from __future__ import annotations

import os

import pytest
import torch

from distilflow.runtime.process import OFFLINE_VARIABLES, apply_hub_mode, hub_offline_by_default, machine_facts


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


def test_the_hub_mode_reaches_libraries_imported_before_it_was_decided(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stage forked from the warm host finds huggingface_hub, datasets and evaluate imported with the variables
    unset; deciding offline afterwards must reach the constants they read at import, as in a fresh process."""
    import datasets.config
    import evaluate.config
    import huggingface_hub.constants
    import transformers.utils.hub

    for module, name in (
        (huggingface_hub.constants, "HF_HUB_OFFLINE"),
        (datasets.config, "HF_HUB_OFFLINE"),
        (datasets.config, "HF_DATASETS_OFFLINE"),
        (evaluate.config, "HF_EVALUATE_OFFLINE"),
    ):
        monkeypatch.setattr(module, name, False)  # as imported online; put back after the test
    apply_hub_mode({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1"})
    assert huggingface_hub.constants.HF_HUB_OFFLINE and transformers.utils.hub.is_offline_mode()
    assert (
        datasets.config.HF_HUB_OFFLINE and datasets.config.HF_DATASETS_OFFLINE and evaluate.config.HF_EVALUATE_OFFLINE
    )
    # The libraries' own rules: TRANSFORMERS_OFFLINE counts for the hub, and datasets follows the hub unless told.
    apply_hub_mode({"TRANSFORMERS_OFFLINE": "yes"})
    assert huggingface_hub.constants.HF_HUB_OFFLINE and datasets.config.HF_DATASETS_OFFLINE
    assert not evaluate.config.HF_EVALUATE_OFFLINE
    apply_hub_mode({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "0"})
    assert huggingface_hub.constants.HF_HUB_OFFLINE and not datasets.config.HF_DATASETS_OFFLINE
