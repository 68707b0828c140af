"""register: log teacher and student as MLflow models that take raw text, and gate the student's promotion.

The work lives in :mod:`distilflow.registry.registration` (packaging in :mod:`distilflow.registry.packaging`, the gate
in
:mod:`distilflow.registry.gate`, aliases in :mod:`distilflow.registry.aliases`), so ``distilflow sync-registry`` can
run it too.
"""

from __future__ import annotations

from typing import Any

from distilflow.config.params import Params
from distilflow.paths import Paths
from distilflow.registry.registration import register

__all__ = ["run"]


def run(params: Params, paths: Paths, write_outputs: bool = True) -> dict[str, Any]:
    """Register, gate, promote (see :func:`distilflow.registry.registration.register`)."""
    return register(params, paths, write_outputs)
