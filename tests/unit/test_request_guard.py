"""The checks `distilflow.serving.body_limit` makes before MLflow's scoring server parses a request, and what it takes
out
of MLflow's error answers. The same code answers real HTTP in tests/integration/test_serving.py."""

from __future__ import annotations

import codecs
import json

import pytest

from distilflow.serving.body_limit import (
    MAX_JSON_DEPTH,
    MAX_MESSAGE_CHARS,
    Refusal,
    check_invocation,
    json_depth,
    readable_error,
)

SINGLE = ("sentence",)
PAIR = ("question1", "question2")


def refusal(
    body: bytes | str, content_type: str | None = "application/json", fields: tuple[str, ...] = SINGLE
) -> Refusal | None:
    data = body.encode() if isinstance(body, str) else body
    return check_invocation(content_type, data, fields)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ('{"inputs": ["fine"]}', "application/json"),
        ('{"inputs": ["fine"]}', "application/json; charset=UTF-8"),
        (codecs.BOM_UTF8 + b'{"inputs": ["fine"]}', "application/json"),
        ('{"inputs": [["fine"]]}', "application/json"),  # one text per row, as a one-column table
        ('{"dataframe_records": [{"sentence": "fine"}]}', "application/json"),
        ("junk the guard leaves to MLflow's own 415", "application/json; charset=latin-1"),
        (b"PAR1...", "application/vnd.apache.parquet"),
    ],
)
def test_requests_the_guard_lets_through(body: bytes | str, content_type: str) -> None:
    assert refusal(body, content_type) is None


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        ('{"inputs": ["fine"]}', None, 415, "no Content-Type header"),
        ('{"inputs": ["fine"]}', "", 415, "no Content-Type header"),
        ("sentence\nfine", "text/csv", 415, "not text/csv"),
        (b'{"inputs": ["\xff"]}', "application/json", 400, "not UTF-8: byte 0xff at offset 13"),
        ('{"inputs": ["fine"]}'.encode("utf-16"), "application/json", 400, "not UTF-8"),
        ('{"inputs": ["fine"]', "application/json", 400, "not valid JSON: Expecting ',' delimiter"),
        ('{"inputs": ["a\x01"]}', "application/json", 400, "not valid JSON: Invalid control character"),
        ("", "application/json", 400, "not valid JSON"),
        ('{"inputs": ' + "[" * 100_000 + "]" * 100_000 + "}", "application/json", 400, "nested deeper than 32"),
        ('{"inputs": ' + "[" * 40 + '"a"' + "]" * 40 + "}", "application/json", 400, "nested deeper than 32"),
        ('{"inputs": [["a", "b"]]}', "application/json", 400, "row 0 holds 2 values"),
        ('{"dataframe_records": [{"sentence": "a", "sentence2": "b"}]}', "application/json", 400, "'sentence2'"),
        ('{"dataframe_split": {"columns": ["sentence", "x"], "data": [["a", "b"]]}}', "application/json", 400, "x"),
    ],
)
def test_requests_the_guard_refuses_with_a_message(
    body: bytes | str, content_type: str | None, status: int, message: str
) -> None:
    answer = refusal(body, content_type)
    assert answer is not None and answer.status == status and message in answer.message, answer
    assert len(answer.message) < 400


def test_a_pair_model_takes_two_values_per_row_and_refuses_three() -> None:
    assert refusal('{"inputs": [["a", "b"]]}', fields=PAIR) is None
    answer = refusal('{"instances": [["a", "b", "c"]]}', fields=PAIR)
    assert answer is not None and "row 0 holds 3 values; this model reads 2 texts per row" in answer.message


def test_json_depth_counts_nesting_and_stops_past_the_limit() -> None:
    assert [json_depth(value, 10) for value in ("a", [], {"a": ["b"]}, [[[1]], 2])] == [0, 1, 2, 3]
    assert json_depth(json.loads("[" * 500 + "]" * 500), MAX_JSON_DEPTH) == MAX_JSON_DEPTH + 1


def test_an_error_answer_loses_its_stack_trace_and_the_echo_of_the_request() -> None:
    echoed = "x" * 50_000
    body = json.dumps(
        {
            "error_code": "INVALID_PARAMETER_VALUE",
            "message": f"Failed to predict data '['{echoed}', 5]'. \nError: every text must be a non-empty string",
            "stack_trace": 'Traceback (most recent call last):\n  File "/srv/site-packages/x.py", line 1',
        }
    ).encode()
    answer = json.loads(readable_error(body))
    assert answer == {"error_code": "INVALID_PARAMETER_VALUE", "message": "every text must be a non-empty string"}
    long = json.loads(readable_error(json.dumps({"message": "y" * 10_000}).encode()))["message"]
    assert len(long) <= MAX_MESSAGE_CHARS + 10 and " [...] " in long
    assert readable_error(b"The scoring server only supports UTF-8") == b"The scoring server only supports UTF-8"
