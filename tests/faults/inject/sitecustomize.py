"""Fault injection for real processes: ``kill -9`` this very process the moment a named function returns.

Put this folder first on PYTHONPATH and set ``DISTILFLOW_KILL_AFTER=module:Qualified.name``: when ``module`` is
imported, the function is wrapped so that the process sends itself SIGKILL right after the call returns (no
``finally``, no atexit, no flush: what a power cut or the OOM killer leaves). ``DISTILFLOW_KILL_WHEN_ARG=VALUE``
kills only on a call that got VALUE among its arguments (``set_registered_model_alias(name, "champion", v)``);
``DISTILFLOW_KILL_ON_CALL=N`` only on the N-th such call (the third trial of a search, not its first).

Production code carries no hook for this: the test names the seam from outside, as a debugger would.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import os
import signal
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

TARGET = os.environ.get("DISTILFLOW_KILL_AFTER", "")
WHEN_ARG = os.environ.get("DISTILFLOW_KILL_WHEN_ARG")
ON_CALL = int(os.environ.get("DISTILFLOW_KILL_ON_CALL", "1"))
_calls = [0]


def _killing(function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = function(*args, **kwargs)
        if WHEN_ARG is None or WHEN_ARG in [*map(str, args), *map(str, kwargs.values())]:
            _calls[0] += 1
        if _calls[0] == ON_CALL:
            sys.stderr.write(f"fault injection: SIGKILL after {TARGET}\n")
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    return wrapper


def _patch(module: ModuleType, qualname: str) -> None:
    owner: Any = module
    *path, name = qualname.split(".")
    for part in path:
        owner = getattr(owner, part)
    setattr(owner, name, _killing(getattr(owner, name)))


class _PatchAfterImport(importlib.abc.MetaPathFinder):
    def __init__(self, module: str, qualname: str) -> None:
        self.module, self.qualname = module, qualname

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.module:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        execute = spec.loader.exec_module
        qualname = self.qualname

        def exec_module(module: ModuleType) -> None:
            execute(module)
            _patch(module, qualname)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if TARGET:
    _module, _, _qualname = TARGET.partition(":")
    if _module in sys.modules:
        _patch(sys.modules[_module], _qualname)
    else:
        sys.meta_path.insert(0, _PatchAfterImport(_module, _qualname))
