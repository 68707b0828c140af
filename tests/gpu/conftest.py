"""The CUDA path's tests that call the library directly: no DVC workspace, MLflow, Prefect or Great Expectations.

They run where ``tests/conftest.py`` cannot (its fixtures build DVC workspaces): scripts/gpu_check.py runs them on
the lent GPU machine with ``--confcutdir tests/gpu``, so only this file's fixtures load. In the default suite the
``gpu`` marker deselects them.
"""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _needs_cuda() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
