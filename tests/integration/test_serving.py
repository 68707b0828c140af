"""A real `mlflow models serve` of the registered champion, started by the test on loopback, over real HTTP."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pytest
from mlflow.pyfunc import PyFuncModel

from distilflow.servers import free_port, start_server, stop_server
from distilflow.serving import serve_command, serve_env
from distilflow.stages import register
from distilflow.tasks import get_task
from tests import conftest
from tests.integration import registry_helpers
from tests.integration.registry_helpers import client_for, empty_store, project, set_student, write_onnx_export

__all__ = ["empty_store"]  # a fixture, imported for pytest to find
STUDENT = "distilflow-sst2-student"
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


# In the default suite: the three tests share this one server, whose start (registration included) is the module's
# cost (39 s of 46 s measured with `pytest tests/integration/test_serving.py --durations=6`); the tests take ~2 s.
@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, empty_store: Path) -> Iterator[tuple[str, PyFuncModel]]:
    root = tmp_path_factory.mktemp("serving") / "p"
    # Served as ONNX, the form the pipeline's `auto` choice usually packages (and a server without torch starts
    # in a third of the time); the torch form answers through the same code (test_registry.py).
    overrides = {"register": {"serving": {"export": "onnx"}, **registry_helpers.ANY_METRIC}}
    params, paths = project(root, overrides=overrides, store=empty_store)
    client_for(paths)
    set_student(paths, get_task("sst2"), 0.8)
    write_onnx_export(paths.student_dir, agrees=True)
    assert register.run(params, paths)["decision"]["serving"]["backend"] == "onnx"
    process, url = start_mlflow_server(
        f"models:/{STUDENT}@champion", f"sqlite:///{paths.mlflow_db}", root / "serve.log"
    )
    try:
        yield url, mlflow.pyfunc.load_model(f"models:/{STUDENT}@champion")
    finally:
        stop_server(process)


def post(url: str, body: object | str, content_type: str = "application/json") -> httpx.Response:
    data = body if isinstance(body, str) else json.dumps(body)
    return httpx.post(f"{url}/invocations", content=data, headers={"Content-Type": content_type}, timeout=60)


def test_server_answers_ping_and_predicts_like_the_in_process_model(served: tuple[str, PyFuncModel]) -> None:
    url, model = served
    assert httpx.get(f"{url}/ping", timeout=5).status_code == 200
    texts = dev_sentences(32)
    expected = model.predict(texts)
    for body in (
        {"inputs": texts},
        {"dataframe_split": {"columns": ["sentence"], "data": [[text] for text in texts]}},
        {"dataframe_records": [{"sentence": text} for text in texts]},
    ):
        response = post(url, body)
        assert response.status_code == 200, response.text
        predictions = response.json()["predictions"]
        assert [row["label"] for row in predictions] == list(expected["label"])
        assert np.allclose([row["score"] for row in predictions], expected["score"], atol=1e-5)
        assert not any(row["truncated"] for row in predictions)


BAD_REQUESTS = [
    ("invalid JSON", '{"inputs": ["unterminated', "valid JSON"),
    ("unknown format key", {"text": ["fine"]}, "exactly one of the input fields"),
    ("wrong columns", {"dataframe_records": [{"review": "fine"}]}, "reads columns ['sentence']"),
    ("number as text", {"dataframe_records": [{"sentence": "fine"}, {"sentence": 5}]}, "row 1: int"),
    ("null as text", {"inputs": ["fine", None]}, "row 1: missing"),
    ("empty string", {"inputs": [" "]}, "row 0: empty string"),
    ("empty list", {"inputs": []}, "has 0 inputs"),
    ("empty table", {"dataframe_records": []}, "has 0 inputs"),
    ("too many rows", {"inputs": ["fine"] * 257}, "257 rows in one request; send at most 256"),
]


def test_every_bad_request_kind_gets_a_4xx_with_a_message(served: tuple[str, PyFuncModel]) -> None:
    url, _ = served
    for kind, body, message in BAD_REQUESTS:
        response = post(url, body)
        assert 400 <= response.status_code < 500, (kind, response.status_code, response.text[:500])
        assert message in response.json()["message"], (kind, response.text[:500])
    wrong_type = post(url, "sentence\nfine", content_type="text/plain")
    assert wrong_type.status_code == 415 and "content types" in wrong_type.text
    # Over-long text is truncated, not rejected, and the answer says so.
    long = post(url, {"inputs": ["a moving film . " * 300, "fine"]})
    assert long.status_code == 200
    assert [row["truncated"] for row in long.json()["predictions"]] == [True, False]
    # The server survived all of it.
    assert httpx.get(f"{url}/ping", timeout=5).status_code == 200
    assert post(url, {"inputs": ["still here"]}).status_code == 200


def test_a_2_mb_body_gets_413_unparsed_and_the_server_keeps_answering(served: tuple[str, PyFuncModel]) -> None:
    url, _ = served
    huge = json.dumps({"inputs": ["a" * 2_000_000]})
    declared = post(url, huge)
    assert declared.status_code == 413 and "over 1000000 bytes" in declared.json()["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit counts what arrives
        data = huge.encode()
        for start in range(0, len(data), 65536):
            yield data[start : start + 65536]

    chunked = httpx.post(
        f"{url}/invocations", content=chunks(), headers={"Content-Type": "application/json"}, timeout=60
    )
    assert chunked.status_code == 413
    assert httpx.get(f"{url}/ping", timeout=5).status_code == 200
    just_under = post(url, {"inputs": ["fine . " * 100_000]})  # ~700 kB: parsed, answered, truncated
    assert just_under.status_code == 200 and just_under.json()["predictions"][0]["truncated"] is True
