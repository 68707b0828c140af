"""A real `mlflow models serve` of the registered champion, started by the test on loopback, over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from mlflow.pyfunc import PyFuncModel

from tests.integration.registry_helpers import empty_store
from tests.integration.serving_helpers import dev_sentences, serve_champion

__all__ = ["empty_store"]  # a fixture, imported for pytest to find


# In the default suite: the tests share this one server, whose start (registration included) is the module's cost
# (39 s of 46 s measured with `pytest tests/integration/test_serving.py --durations=6`); the tests take ~2 s.
@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, empty_store: Path) -> Iterator[tuple[str, PyFuncModel]]:
    yield from serve_champion(tmp_path_factory.mktemp("serving") / "p", "sst2", empty_store)


def post(url: str, body: object, content_type: str | None = "application/json") -> httpx.Response:
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    headers = {} if content_type is None else {"Content-Type": content_type}
    return httpx.post(f"{url}/invocations", content=data, headers=headers, timeout=60)


def test_server_answers_ping_and_predicts_like_the_in_process_model(served: tuple[str, PyFuncModel]) -> None:
    url, model = served
    assert httpx.get(f"{url}/ping", timeout=5).status_code == 200
    texts = dev_sentences(32)
    expected = model.predict(texts)
    assert isinstance(expected, pd.DataFrame)
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
    ("wrong columns", {"dataframe_records": [{"review": "fine"}]}, "reads columns ['sentence'], no other"),
    ("extra column", {"dataframe_records": [{"sentence": "fine", "sentence2": "x"}]}, "'sentence2'"),
    ("two texts per row", {"inputs": [["fine", "x"]]}, "row 0 holds 2 values; this model reads 1 text per row"),
    ("number as text", {"dataframe_records": [{"sentence": "fine"}, {"sentence": 5}]}, "row 1: int"),
    ("null as text", {"inputs": ["fine", None]}, "row 1: missing"),
    ("empty string", {"inputs": [" "]}, "row 0: empty string"),
    ("empty list", {"inputs": []}, "has 0 inputs"),
    ("empty table", {"dataframe_records": []}, "has 0 inputs"),
    ("too many rows", {"inputs": ["fine"] * 257}, "257 rows in one request; send at most 256"),
    # Issue #31: a lone surrogate reached the tokenizer and came back as MLflow's error with its stack trace.
    ("lone surrogate", '{"inputs": ["fine \\ud800 film"]}', "row 0: lone surrogate U+D800 at character 5"),
    ("invalid UTF-8", b'{"inputs": ["\xff"]}', "not UTF-8: byte 0xff at offset 13"),
    ("nested past the limit", '{"inputs": ' + "[" * 5000 + "]" * 5000 + "}", "nested deeper than 32 levels"),
]


def test_every_bad_request_kind_gets_a_4xx_with_a_message(served: tuple[str, PyFuncModel]) -> None:
    url, _ = served
    for kind, body, message in BAD_REQUESTS:
        response = post(url, body)
        assert 400 <= response.status_code < 500, (kind, response.status_code, response.text[:500])
        assert message in response.json()["message"], (kind, response.text[:500])
        assert "stack_trace" not in response.text and len(response.text) < 1500, (kind, response.text[:500])
    wrong_type = post(url, "sentence\nfine", content_type="text/plain")
    assert wrong_type.status_code == 415 and "content types" in wrong_type.text
    # Without a Content-Type MLflow itself fails (a bare 500); CSV cannot carry this model's Any-typed columns.
    for content_type, message in ((None, "no Content-Type header"), ("text/csv", "not text/csv")):
        refused = post(url, "sentence\nfine", content_type=content_type)
        assert refused.status_code == 415 and message in refused.json()["message"], refused.text
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
