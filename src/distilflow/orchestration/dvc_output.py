"""What ``dvc repro`` and ``dvc pull`` said, read from their console output: the one place that parses DVC's words.

Why parse at all: DVC gives these answers no structured form. ``dvc status --json`` is the only one of these
commands with JSON output (``dvc_plan.read_plan`` uses its Python form, ``Repo.status``); ``dvc repro`` and
``dvc pull`` print sentences. Their Python API (``Repo.reproduce``, ``Repo.pull``) would return stages and stats,
but only inside the process that runs them, and the flow runs DVC in a child process (``dvc_child``) so that killing
the flow kills DVC and its stage at once. Even ``Repo.reproduce`` does not tell a stage restored from the run-cache
from one that ran. So each answer below is matched against DVC's own message (dvc 3.x: ``dvc/stage/__init__.py``,
``dvc/stage/cache.py``, ``dvc/stage/exceptions.py``, ``dvc/commands/data_sync.py``); tests/unit/test_dvc_output.py
holds the messages, so an upgrade that rewords one fails there.
"""

from __future__ import annotations

import re

RAN = "ran"
RESTORED = "restored from DVC's run-cache"
UNCHANGED = "unchanged (DVC skipped it)"

_EXITED = re.compile(r"exited with (-?\d+)")  # StageCmdFailedError: "failed to run: CMD, exited with N"
_UNCHANGED = "didn't change, skipping"  # Stage.reproduce: "Stage 'NAME' didn't change, skipping"
_RESTORED = "is cached - skipping run"  # StageCache: "Stage 'NAME' is cached - skipping run, checking out outputs"
_PULL_FAILED = "Checkout failed for following targets:"  # CheckoutError, then one target per line
_PULL_FAILED_END = ("Is your cache up to date?", "<http")
_PULLED = re.compile(r"^\d+ files? (fetched|added|modified)")  # the summary when something came
DVC_NOISE = ("ERROR: failed to reproduce", "Running stage", "> ")
"""How DVC's own lines around a stage's output begin (its error, its announcement, the command it echoes)."""


def stage_exit_code(output: str) -> int | None:
    """The exit code of the stage command DVC ran last, when DVC says it failed; None when it does not say."""
    exited = _EXITED.findall(output)
    return int(exited[-1]) if exited else None


def repro_outcome(output: str) -> str:
    """What a successful ``dvc repro --single-item STAGE`` did: ``UNCHANGED`` (nothing to do), ``RESTORED`` (outputs
    checked out from the run-cache: downstream stages must check theirs) or ``RAN``."""
    if _UNCHANGED in output:
        return UNCHANGED
    return RESTORED if _RESTORED in output else RAN


def pull_failures(lines: list[str]) -> list[str]:
    """The outputs DVC lists after "Checkout failed for following targets:" in ``dvc pull``'s output."""
    found = [index for index, line in enumerate(lines) if line.endswith(_PULL_FAILED)]
    targets: list[str] = []
    for line in lines[found[0] + 1 :] if found else []:
        if line.startswith(_PULL_FAILED_END):
            break
        targets.append(line)
    return sorted(targets)


def pulled_anything(lines: list[str]) -> bool:
    """Whether ``dvc pull``'s summary says any file came (fetched into the cache, or added or modified here)."""
    return any(_PULLED.search(line) for line in lines)
