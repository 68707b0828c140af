"""Generated requests (Hypothesis) to real `mlflow models serve` of a single-sentence and a pair champion (issue #31).

Every generated request gets the answer its kind requires: a valid one, 200 and one prediction per row; anything
else, a 4xx with a message a person can read, never a 5xx, never a stack trace or a server path. The counts go to
``serving-property`` (tests/reliability_record.py). The strategies and the rules they follow are in
tests/integration/serving_requests.py.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from mlflow.pyfunc import PyFuncModel

from tests.integration.registry_helpers import empty_store
from tests.integration.serving_helpers import dev_sentences, serve_champion
from tests.integration.serving_requests import Case, ServedModel, requests
from tests.reliability_record import record

__all__ = ["empty_store"]  # a fixture, imported for pytest to find
# Bad input at volume belongs to the reliability suite (`make test-faults`, which CI runs; docs/reliability.md).
pytestmark = pytest.mark.faults


# The module's cost in the default suite is mostly these two servers' start (registration included).
@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, empty_store: Path) -> Iterator[tuple[str, PyFuncModel]]:
    yield from serve_champion(tmp_path_factory.mktemp("serving") / "p", "sst2", empty_store)


@pytest.fixture(scope="module")
def pair_served(tmp_path_factory: pytest.TempPathFactory, empty_store: Path) -> Iterator[tuple[str, PyFuncModel]]:
    """A pair task's champion: QQP reads question1/question2, and sentence1/sentence2 as every pair task does."""
    yield from serve_champion(tmp_path_factory.mktemp("serving-pair") / "p", "qqp", empty_store)


# Requests per run: the bar is 2,000 with zero 5xx. Derandomized, so every run sends the same requests and a
# failure reproduces; no example database, so CI and a laptop agree.
SINGLE_EXAMPLES = 1200
PAIR_EXAMPLES = 800
LEAKS = ("stack_trace", "Traceback (most recent call last)", "site-packages", 'File "/')


@dataclass
class Tally:
    """What the generated requests got, for the assertion and for tests/reliability_record.py."""

    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    leaks: int = 0
    valid: int = 0

    def add(self, case: Case, response: httpx.Response) -> None:
        self.sent += 1
        self.valid += case.rows is not None
        self.statuses[response.status_code] += 1
        self.kinds[case.kind.split("/")[0]] += 1
        self.leaks += any(leak in response.text for leak in LEAKS)

    def in_class(self, low: int) -> int:
        """Answers with a status from LOW to LOW + 99."""
        return sum(n for status, n in self.statuses.items() if low <= status < low + 100)

    def figures(self, seconds: float) -> dict[str, object]:
        return {
            "cases_tried": self.sent,
            "valid_cases": self.valid,
            "2xx": self.in_class(200),
            "4xx": self.in_class(400),
            "5xx": self.in_class(500),
            "stack_traces_or_paths_seen": self.leaks,
            "by_status": {str(status): n for status, n in sorted(self.statuses.items())},
            "by_kind": dict(sorted(self.kinds.items())),
            "seconds": round(seconds, 1),
        }


def served_model(model: PyFuncModel) -> tuple[ServedModel, tuple[str, ...] | None]:
    """The limits and columns the server really applies (its distilflow_serving.json), and the labels."""
    config = model.unwrap_python_model().config
    spec = ServedModel(config.fields, config.aliases, config.max_rows, config.max_chars, config.max_body_bytes)
    return spec, config.labels


def check_answer(case: Case, response: httpx.Response, labels: tuple[str, ...] | None) -> None:
    """A valid request: 200 and one prediction per row; anything else: a 4xx with a short message, no trace."""
    shown = (case.kind, response.status_code, response.text[:300])
    assert not any(leak in response.text for leak in LEAKS), shown
    if case.rows is not None:
        assert response.status_code == 200, shown
        predictions = response.json()["predictions"]
        assert len(predictions) == case.rows, shown
        for index, row in enumerate(predictions):
            assert labels is None or row["label"] in labels, shown
            assert 0.0 <= row["score"] <= 1.0 and isinstance(row["truncated"], bool), shown
            assert row["truncated"] or index not in case.long_rows, shown
        return
    assert 400 <= response.status_code < 500, shown
    is_json = response.headers.get("content-type", "").startswith("application/json")
    message = response.json()["message"] if is_json else response.text
    assert message.strip() and len(message) <= 1100, shown


def run_generated(url: str, model: PyFuncModel, examples: int, tally: Tally) -> None:
    spec, labels = served_model(model)
    with httpx.Client(base_url=url, timeout=60) as client:

        @settings(
            max_examples=examples,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=requests(spec))
        def check(case: Case) -> None:
            headers = {} if case.content_type is None else {"Content-Type": case.content_type}
            response = client.post("/invocations", content=case.body, headers=headers)
            tally.add(case, response)
            check_answer(case, response, labels)

        check()


def test_generated_requests_get_a_prediction_per_row_or_a_4xx_with_a_message(
    served: tuple[str, PyFuncModel], pair_served: tuple[str, PyFuncModel]
) -> None:
    tally, began = Tally(), time.perf_counter()
    run_generated(*served, SINGLE_EXAMPLES, tally)
    run_generated(*pair_served, PAIR_EXAMPLES, tally)
    figures = tally.figures(time.perf_counter() - began)
    record("serving-property", figures)
    assert tally.sent >= 2000 and tally.in_class(500) == 0 and tally.leaks == 0, figures
    assert httpx.get(f"{served[0]}/ping", timeout=5).status_code == 200


@pytest.mark.parametrize("server", ["served", "pair_served"])
def test_long_texts_cut_by_tokens_give_the_ids_full_truncation_gives(
    server: str, request: pytest.FixtureRequest
) -> None:
    """The serving path cuts a long text a token past ``max_length`` before the truncating tokenizer (whose
    overflow windows made a pair of long texts cost 200 ms); the model must see the same ids and flags as before."""
    classifier = request.getfixturevalue(server)[1].unwrap_python_model()
    config, words = classifier.config, " ".join(dev_sentences(300)).split()
    lengths = [3, 60, 62, 63, 64, 65, 120, 126, 127, 128, 129, 130, 200, 700, 2000]
    texts = [" ".join(words[start : start + n]) for start, n in enumerate(lengths)] + ["😀 x" * 3000, "é" * 5000]
    firsts = texts if len(config.fields) == 1 else [a for a in texts for _ in texts]
    columns = [firsts] if len(config.fields) == 1 else [firsts, [b for _ in texts for b in texts]]
    for start in range(0, len(firsts), 16):
        chunk = [column[start : start + 16] for column in columns]
        cut = [[text[: config.max_chars] for text in column] for column in chunk]
        expected = classifier.tokenizer.encode_batch(list(zip(*cut, strict=True)) if len(cut) == 2 else cut[0])
        arrays, truncated = classifier._encode([list(column) for column in chunk])
        assert arrays["input_ids"].tolist() == [encoding.ids for encoding in expected]
        assert arrays["token_type_ids"].tolist() == [encoding.type_ids for encoding in expected]
        flags = [
            bool(e.overflowing) or any(len(c[i]) > config.max_chars for c in chunk) for i, e in enumerate(expected)
        ]
        assert truncated.tolist() == flags
