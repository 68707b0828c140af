"""flows/*.py are entry points only: each exposes distilflow.workflows' own flow objects, as a deployment loads them
(by file, ``flows/NAME.py:FLOW``), and a copy's entry point runs the copy's code, as a pool worker's clone must."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from distilflow.orchestration.settings import FLOW_ENTRYPOINT
from tests.conftest import REPO_ROOT


@pytest.fixture
def entry_loader(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Prefect's loader of a deployment's entrypoint; the sys.path entries and module names it leaves are undone."""
    from prefect.flows import load_flow_from_entrypoint

    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield lambda entrypoint: load_flow_from_entrypoint(str(REPO_ROOT / entrypoint))
    for name in set(sys.modules) - before:
        if not name.startswith(("distilflow", "prefect")):
            del sys.modules[name]


def test_the_entry_points_expose_the_packages_own_flows(entry_loader: Any) -> None:
    from distilflow.workflows import glue, glue_pool, pipeline

    assert entry_loader(FLOW_ENTRYPOINT) is pipeline.pipeline  # flows/deploy.py's nightly deployment
    assert entry_loader(glue_pool.TASK_ENTRYPOINT) is glue.pooled_glue_task  # `distilflow glue --pool`'s
    assert entry_loader("flows/glue.py:glue") is glue.glue
    assert entry_loader("flows/glue.py:glue_task") is glue.glue_task


def test_the_glue_pool_entry_point_is_the_packages_module() -> None:
    import importlib.util

    from distilflow.workflows import glue_pool

    spec = importlib.util.spec_from_file_location("flows_glue_pool_entry", REPO_ROOT / "flows" / "glue_pool.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.run_on_pool is glue_pool.run_on_pool and module.deploy_task_flow is glue_pool.deploy_task_flow


LOAD_AS_A_WORKER_DOES = """
import json, sys
from prefect.flows import load_flow_from_entrypoint
flow = load_flow_from_entrypoint(sys.argv[1])
import distilflow
from distilflow.workflows import glue
said = {"package": distilflow.__file__, "project": str(glue.PROJECT_ROOT), "flow": flow.fn.__code__.co_filename}
print(json.dumps(said))
"""


def test_a_copys_entry_point_runs_the_copys_code_and_takes_the_copy_for_its_project(tmp_path: Path) -> None:
    """A pool worker loads flows/glue.py:pooled_glue_task from its clone: the flow's body and the project it works in
    must be the clone's (the parent's commit), not those of the distilflow installed in the worker's environment."""
    copy = tmp_path / "clone"
    shutil.copytree(
        REPO_ROOT / "src" / "distilflow", copy / "src" / "distilflow", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(REPO_ROOT / "flows", copy / "flows", ignore=shutil.ignore_patterns("__pycache__", "profiles"))
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    command = [sys.executable, "-c", LOAD_AS_A_WORKER_DOES, "flows/glue.py:pooled_glue_task"]
    done = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    said = {key: Path(value).resolve() for key, value in json.loads(done.stdout.strip().splitlines()[-1]).items()}
    package = copy.resolve() / "src" / "distilflow"
    assert said == {
        "package": package / "__init__.py",
        "project": copy.resolve(),
        "flow": package / "workflows" / "glue.py",
    }


def test_the_training_source_digest_is_the_stages_import_closure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A stage resumes what another process wrote whatever else either process imported (the CLI, the flows, the
    warm host's own modules); an edit to code the stage runs sets the checkpoint aside, an edit elsewhere does not."""
    from distilflow.training.checkpoints import source_digest

    stage = "distilflow.stages.finetune"
    before = source_digest(stage)
    for name in ("distilflow.workflows.planted", "distilflow.training.planted"):
        module = types.ModuleType(name)
        module.__file__ = str(REPO_ROOT / "flows" / "glue.py")
        monkeypatch.setitem(sys.modules, name, module)
    import distilflow.cli
    import distilflow.runtime.host  # noqa: F401 - what a stage the warm host forked has imported

    assert source_digest(stage) == before
    src = tmp_path / "src"
    shutil.copytree(REPO_ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__"))
    assert source_digest(stage, src=src) == before  # the same code elsewhere: a clone or a GLUE workspace
    with (src / "distilflow" / "workflows" / "glue.py").open("a") as file:
        file.write("# an edit to the flows\n")
    assert source_digest(stage, src=src) == before
    with (src / "distilflow" / "training" / "loop.py").open("a") as file:
        file.write("# an edit to the training loop\n")
    assert source_digest(stage, src=src) != before
