"""The one place that reads DVC's console output (orchestration.dvc_output), against the messages of the installed DVC:
an upgrade that rewords one of them fails here, not in a flow run that quietly misreads a stage."""

from __future__ import annotations

import inspect

import dvc.exceptions
import dvc.stage
import dvc.stage.cache
import dvc.stage.exceptions
import dvc.utils.humanize
import pytest

from distilflow.orchestration.dvc_output import (
    RAN,
    RESTORED,
    UNCHANGED,
    pull_failures,
    pulled_anything,
    repro_outcome,
    stage_exit_code,
)


@pytest.mark.parametrize(
    ("module", "message"),
    [
        (dvc.stage, "Stage '%s' didn't change, skipping"),
        (dvc.stage.cache, "Stage '%s' is cached - skipping run, checking out outputs"),
        (dvc.stage.exceptions, ", exited with {status}"),
        (dvc.exceptions, "Checkout failed for following targets:"),
        (dvc.utils.humanize, '"{} file{} {}"'),  # dvc pull's summary: "3 files fetched"
    ],
)
def test_the_messages_read_are_the_installed_dvcs(module: object, message: str) -> None:
    assert message in inspect.getsource(module)  # type: ignore[arg-type]


def test_a_repro_outcome_and_a_failed_stages_exit_code() -> None:
    assert repro_outcome("Stage 'tokenize' didn't change, skipping\n") == UNCHANGED
    assert repro_outcome("Stage 'finetune' is cached - skipping run, checking out outputs\n") == RESTORED
    assert repro_outcome("Running stage 'finetune':\n> distilflow stage finetune\n") == RAN
    failed = "ERROR: failed to reproduce 'validate': failed to run: distilflow stage validate, exited with 2"
    assert stage_exit_code(f"Running stage 'validate':\n{failed}") == 2
    assert stage_exit_code("ERROR: unexpected error - no such remote") is None


def test_what_dvc_pull_got_and_what_it_could_not_check_out() -> None:
    said = [
        "WARNING: Some of the cache files do not exist neither locally nor on remote.",
        "ERROR: failed to pull data from the cloud - Checkout failed for following targets:",
        "models/teacher",
        "data/raw",
        "Is your cache up to date?",
        "<https://error.dvc.org/missing-files>",
    ]
    assert pull_failures(said) == ["data/raw", "models/teacher"]
    assert not pulled_anything(said)
    assert pulled_anything(["1 file fetched", "2 files added"])
    assert pull_failures(["Everything is up to date."]) == []
