"""Serving a registered champion for the serving tests: a tiny student of a task, registered as ONNX, served by a real
`mlflow models serve` on loopback (tests/integration/test_serving.py, test_serving_properties.py)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import mlflow
from mlflow.pyfunc import PyFuncModel

from distilflow.serving.servers import free_port, serve_command, serve_env, start_server, stop_server
from distilflow.stages import register
from distilflow.tasks import get_task
from tests import conftest
from tests.integration import registry_helpers
from tests.integration.registry_helpers import client_for, project, set_student, write_onnx_export

START_TIMEOUT_S = 300


def dev_sentences(count: int) -> list[str]:
    lines = (conftest.REPO_ROOT / "data" / "demo" / "sst2" / "dev.tsv").read_text().splitlines()[1:]
    return [line.split("\t")[0] for line in lines[:count]]


def start_mlflow_server(model_uri: str, tracking_uri: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`mlflow models serve` of MODEL_URI on a free loopback port, answering ``/ping``; returns it and its URL."""
    port = free_port()
    env = {**serve_env(tracking_uri), "PATH": conftest.test_env()["PATH"]}
    url = f"http://127.0.0.1:{port}"
    return start_server(serve_command(model_uri, port), env, f"{url}/ping", START_TIMEOUT_S, log, poll_s=0.5), url


def serve_champion(root: Path, task: str, store: Path) -> Iterator[tuple[str, PyFuncModel]]:
    """Register a tiny student of TASK as champion in a project at ROOT, serve it, yield its URL and the model."""
    # Served as ONNX, the form the pipeline's `auto` choice usually packages (and a server without torch starts
    # in a third of the time); the torch form answers through the same code (test_registry.py).
    overrides = {"register": {"serving": {"export": "onnx"}, **registry_helpers.ANY_METRIC}}
    params, paths = project(root, task=task, overrides=overrides, store=store)
    client_for(paths)
    set_student(paths, get_task(task), 0.8)
    write_onnx_export(paths.student_dir, agrees=True)
    assert register.run(params, paths)["decision"]["serving"]["backend"] == "onnx"
    uri = f"models:/distilflow-{task}-student@champion"
    process, url = start_mlflow_server(uri, f"sqlite:///{paths.mlflow_db}", root / "serve.log")
    try:
        yield url, mlflow.pyfunc.load_model(uri)
    finally:
        stop_server(process)
