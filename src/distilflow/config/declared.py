"""A stage's settings: the part of Params its dvc.yaml ``params:`` declare, and nothing else.

DVC reruns a stage when a param it lists changes, and only then: a stage that read an unlisted setting would go on
being "up to date" after an edit of it. So ``distilflow stage NAME`` hands the stage a view of Params that answers
only what the stage declares (a whole section, or dotted keys inside one) and fails loudly on anything else, naming
the key and where to declare it. Code that records *where* results go rather than what they are (the MLflow store,
the params hash tag) takes the whole settings through :func:`whole`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from pydantic import BaseModel

from distilflow.config.params import Params


class UndeclaredParam(RuntimeError):
    """A stage read a setting its dvc.yaml ``params:`` do not list: a bug in the stage or in dvc.yaml."""


def _is_declared(key: str, keys: tuple[str, ...]) -> bool:
    return any(key == declared or key.startswith(f"{declared}.") for declared in keys)


class DeclaredParams:
    """Read-only view of a settings node (Params or a section) limited to dvc.yaml's ``params:`` keys."""

    __slots__ = ("_keys", "_node", "_prefix", "_stage")

    def __init__(self, node: BaseModel, keys: tuple[str, ...], stage: str, prefix: str = "") -> None:
        self._node, self._keys, self._stage, self._prefix = node, keys, stage, prefix

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # copy, pickle and friends probe dunders: not settings
            raise AttributeError(name)
        field = type(self._node).model_fields.get(name)
        if field is None:
            where = self._prefix.rstrip(".") or "params"
            raise UndeclaredParam(
                f"stage {self._stage} reads {where}.{name}: only its declared settings can be read one by one "
                f"(dvc.yaml params: {', '.join(self._keys)})"
            )
        key = self._prefix + (field.alias or name)  # params.yaml's name: register_ is `register`
        value = getattr(self._node, name)
        if _is_declared(key, self._keys):
            return value
        if isinstance(value, BaseModel) and any(declared.startswith(f"{key}.") for declared in self._keys):
            return DeclaredParams(value, self._keys, self._stage, f"{key}.")
        raise UndeclaredParam(
            f"stage {self._stage} reads {key}, which its dvc.yaml params: do not list, so DVC would not rerun it "
            f"when {key} changes: add `- {key}` under stage {self._stage}'s params in dvc.yaml"
        )

    def __repr__(self) -> str:
        return f"DeclaredParams({self._stage}: {', '.join(self._keys)})"


def declared(params: Params, keys: Iterable[str], stage: str) -> Params:
    """``params`` as stage ``stage`` may read it: the keys of its dvc.yaml ``params:`` (typed as Params for callers,
    which read attributes only)."""
    return cast(Params, DeclaredParams(params, tuple(keys), stage))


def whole(params: Params) -> Params:
    """The full settings behind a stage's view, for bookkeeping that is not part of the stage's result."""
    if isinstance(params, DeclaredParams):
        return cast(Params, object.__getattribute__(params, "_node"))
    return params
