"""Environment variables a block sets for itself and its children, put back as they were when it ends.

Standard library only: the stage host's callers import this before deciding whether to run a stage themselves.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def environment_kept(*names: str) -> Iterator[None]:
    """Whatever the block does to these variables of ``os.environ`` is undone when it ends."""
    before = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def exported(name: str, value: str | None) -> Iterator[str | None]:
    """``name`` set to ``value`` (None: unset) in this process for the block, so every child inherits it."""
    with environment_kept(name):
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
        yield value
