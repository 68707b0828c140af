"""The bundled GLUE metric against scikit-learn / SciPy, its edge-case contract, and offline loading.

Reference values are computed independently with sklearn and SciPy on the same vectors (cast the
way the metric's features cast them), plus a few hand-worked numbers so that a shared mistake in
both would still show. Every test runs with the network blocked: any connection attempt fails.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

import distilflow.metrics as glue_metrics
from distilflow.metrics import (
    GLUE_METRIC_PATH,
    GLUE_TASKS,
    compute_glue_metrics,
    load_glue_metric,
)
from distilflow.tasks import TASKS

ACCURACY_TASKS = ("sst2", "mnli", "mnli_matched", "mnli_mismatched", "qnli", "rte", "wnli", "hans")
ACC_F1_TASKS = ("mrpc", "qqp")

BINARY_CASES: list[tuple[list[int], list[int]]] = [
    # (predictions, references)
    ([0, 1, 1, 0, 1, 0, 0, 1], [0, 1, 0, 0, 1, 1, 0, 1]),  # TP=3 TN=3 FP=1 FN=1
    ([1, 1, 1, 1, 0, 1, 1, 1, 1, 0], [1, 0, 1, 1, 0, 1, 1, 1, 0, 1]),  # imbalanced towards 1
    ([0, 0, 0, 1, 0, 0, 0], [0, 1, 0, 1, 1, 0, 0]),  # few positives predicted
    ([1, 0, 1, 0], [0, 1, 0, 1]),  # every prediction wrong
    ([1, 0, 0, 1, 1], [1, 0, 0, 1, 1]),  # every prediction right
]
MULTICLASS_CASES: list[tuple[list[int], list[int]]] = [
    ([0, 1, 2, 2, 1, 0, 2, 1, 0], [0, 1, 2, 1, 1, 0, 0, 2, 0]),
    ([2, 2, 2, 0, 1], [0, 1, 2, 0, 1]),
]
STSB_CASES: list[tuple[list[float], list[float]]] = [
    ([0.1, 1.3, 2.2, 3.9, 4.4, 5.0], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]),
    ([4.8, 0.2, 3.3, 3.3, 1.7, 2.9, 0.5], [5.0, 0.0, 2.6, 4.2, 1.4, 3.8, 0.0]),  # ties in both
    ([5.0, 4.0, 3.0, 2.0, 1.0], [0.0, 1.5, 2.0, 3.5, 4.0]),  # strongly negative
    ([2.5, 2.7], [1.0, 0.0]),  # two points: correlation is exactly -1
]


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[Any, ...]]]:
    """Fail any network access, so a test passing proves the metric needs none."""
    attempts: list[tuple[Any, ...]] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args)
        raise OSError(f"network access attempted in a GLUE metric test: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield attempts
    assert attempts == [], f"the GLUE metric tried to reach the network: {attempts}"


def _quiet(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a sklearn/SciPy reference that warns on the degenerate inputs under test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _assert_plain_finite_floats(result: dict[str, float]) -> None:
    for key, value in result.items():
        assert type(value) is float, f"{key} is {type(value).__name__}, not a plain float"
        assert math.isfinite(value), f"{key} is {value}"
    json.dumps(result, allow_nan=False)


# --- cross-checks against scikit-learn / SciPy -------------------------------------------------


@pytest.mark.parametrize("task", ACCURACY_TASKS)
@pytest.mark.parametrize(("predictions", "references"), BINARY_CASES + MULTICLASS_CASES)
def test_accuracy_tasks_match_sklearn(task: str, predictions: list[int], references: list[int]) -> None:
    result = compute_glue_metrics(task, predictions, references)
    assert set(result) == {"accuracy", "glue_score"}
    assert result["accuracy"] == pytest.approx(accuracy_score(references, predictions), abs=1e-12)
    assert result["glue_score"] == result["accuracy"]
    _assert_plain_finite_floats(result)


@pytest.mark.parametrize("task", ACC_F1_TASKS)
@pytest.mark.parametrize(("predictions", "references"), BINARY_CASES)
def test_accuracy_and_f1_tasks_match_sklearn(task: str, predictions: list[int], references: list[int]) -> None:
    result = compute_glue_metrics(task, predictions, references)
    assert set(result) == {"accuracy", "f1", "glue_score"}
    assert result["accuracy"] == pytest.approx(accuracy_score(references, predictions), abs=1e-12)
    assert result["f1"] == pytest.approx(_quiet(f1_score, references, predictions, zero_division=0.0), abs=1e-12)
    assert result["glue_score"] == pytest.approx((result["accuracy"] + result["f1"]) / 2, abs=1e-12)
    _assert_plain_finite_floats(result)


@pytest.mark.parametrize(("predictions", "references"), BINARY_CASES)
def test_cola_matches_sklearn_mcc(predictions: list[int], references: list[int]) -> None:
    result = compute_glue_metrics("cola", predictions, references)
    assert set(result) == {"matthews_correlation", "glue_score"}
    expected = matthews_corrcoef(references, predictions)
    assert result["matthews_correlation"] == pytest.approx(expected, abs=1e-12)
    assert result["glue_score"] == result["matthews_correlation"]
    _assert_plain_finite_floats(result)


@pytest.mark.parametrize(("predictions", "references"), STSB_CASES)
def test_stsb_matches_scipy(predictions: list[float], references: list[float]) -> None:
    result = compute_glue_metrics("stsb", predictions, references)
    assert set(result) == {"pearson", "spearmanr", "glue_score"}
    # The metric's features are float32, so the reference sees the same rounding.
    preds = np.asarray(predictions, dtype=np.float32).astype(np.float64)
    refs = np.asarray(references, dtype=np.float32).astype(np.float64)
    assert result["pearson"] == pytest.approx(pearsonr(preds, refs).statistic, abs=1e-9)
    assert result["spearmanr"] == pytest.approx(spearmanr(preds, refs).statistic, abs=1e-9)
    assert result["glue_score"] == pytest.approx((result["pearson"] + result["spearmanr"]) / 2, abs=1e-12)
    _assert_plain_finite_floats(result)


def test_hand_worked_values() -> None:
    """Known answers, so a mistake shared with the sklearn/SciPy references would still show."""
    predictions, references = BINARY_CASES[0]  # TP=3 TN=3 FP=1 FN=1
    assert compute_glue_metrics("sst2", predictions, references)["accuracy"] == 0.75
    mrpc = compute_glue_metrics("mrpc", predictions, references)
    assert mrpc["f1"] == pytest.approx(0.75)  # precision = recall = 3/4
    assert mrpc["glue_score"] == pytest.approx(0.75)
    # MCC = (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (9 - 1) / 16
    assert compute_glue_metrics("cola", predictions, references)["matthews_correlation"] == pytest.approx(0.5)
    assert compute_glue_metrics("cola", [1, 0, 1, 0], [0, 1, 0, 1])["matthews_correlation"] == pytest.approx(-1.0)
    stsb = compute_glue_metrics("stsb", [2.5, 2.7], [1.0, 0.0])
    assert stsb["pearson"] == pytest.approx(-1.0)
    assert stsb["spearmanr"] == pytest.approx(-1.0)
    assert stsb["glue_score"] == pytest.approx(-1.0)
    mixed = compute_glue_metrics("mrpc", [1, 1, 0, 0], [1, 0, 0, 0])  # acc 3/4, F1 = 2/3
    assert mixed["glue_score"] == pytest.approx((0.75 + 2 / 3) / 2)


def test_numpy_inputs_and_integral_floats_are_accepted() -> None:
    predictions, references = BINARY_CASES[1]
    as_lists = compute_glue_metrics("qqp", predictions, references)
    as_int_arrays = compute_glue_metrics("qqp", np.asarray(predictions), np.asarray(references))
    as_float_ids = compute_glue_metrics("qqp", np.asarray(predictions, dtype=np.float32), references)
    assert as_lists == as_int_arrays == as_float_ids


# --- edge cases: defined values, never NaN, no warnings -----------------------------------------


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize(
    ("predictions", "references"),
    [
        ([1, 1, 1, 1], [0, 1, 0, 1]),  # constant predictions
        ([0, 1, 1, 0], [1, 1, 1, 1]),  # one class in the references
        ([0, 0, 0], [0, 0, 0]),  # one class everywhere, all correct
        ([1], [1]),  # a single example
    ],
)
def test_mcc_is_zero_for_a_single_class(predictions: list[int], references: list[int]) -> None:
    result = compute_glue_metrics("cola", predictions, references)
    assert result == {"matthews_correlation": 0.0, "glue_score": 0.0}
    _assert_plain_finite_floats(result)
    assert _quiet(matthews_corrcoef, references, predictions) == 0.0  # the value sklearn gives too


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize(
    ("predictions", "references"),
    [
        ([2.5, 2.5, 2.5, 2.5], [0.0, 1.0, 4.0, 5.0]),  # collapsed regressor
        ([0.3, 1.2, 4.4, 2.0], [3.0, 3.0, 3.0, 3.0]),  # constant gold scores
        ([1.0, 1.0], [2.0, 2.0]),  # both constant
        ([4.2], [3.8]),  # a single pair
    ],
)
def test_correlations_are_zero_for_constant_vectors(predictions: list[float], references: list[float]) -> None:
    result = compute_glue_metrics("stsb", predictions, references)
    assert result == {"pearson": 0.0, "spearmanr": 0.0, "glue_score": 0.0}
    _assert_plain_finite_floats(result)
    if len(predictions) > 1:  # SciPy's answer, which the metric must not pass on
        assert math.isnan(_quiet(spearmanr, predictions, references).statistic)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("task", ACC_F1_TASKS)
def test_f1_without_any_positive_is_zero(task: str) -> None:
    result = compute_glue_metrics(task, [0, 0, 0, 0], [0, 0, 0, 0])
    assert result == {"accuracy": 1.0, "f1": 0.0, "glue_score": 0.5}
    _assert_plain_finite_floats(result)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("task", ("sst2", "mrpc", "qqp", "rte", "mnli"))
def test_one_class_only_scores(task: str) -> None:
    all_positive = compute_glue_metrics(task, [1, 1, 1], [1, 1, 1])
    assert all_positive["accuracy"] == 1.0
    assert all_positive.get("f1", 1.0) == 1.0
    all_negative_predicted = compute_glue_metrics(task, [0, 0, 0], [1, 1, 1])
    assert all_negative_predicted["accuracy"] == 0.0
    assert all_negative_predicted.get("f1", 0.0) == 0.0
    _assert_plain_finite_floats(all_positive)
    _assert_plain_finite_floats(all_negative_predicted)


@pytest.mark.parametrize("task", GLUE_TASKS)
def test_empty_inputs_raise(task: str) -> None:
    with pytest.raises(ValueError, match="empty"):
        compute_glue_metrics(task, [], [])


@pytest.mark.parametrize("task", ("sst2", "stsb", "cola"))
def test_module_itself_rejects_empty_inputs(task: str) -> None:
    metric = load_glue_metric(task)
    with pytest.raises(ValueError, match="empty"):
        metric.compute(predictions=[], references=[])


def test_length_mismatch_raises_and_leaves_the_cached_module_clean() -> None:
    with pytest.raises(ValueError, match=r"(?i)mismatch"):
        compute_glue_metrics("sst2", [0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="empty"):
        compute_glue_metrics("sst2", [], [])
    # Rows from the failed calls must not leak into the next one.
    assert compute_glue_metrics("sst2", [0, 0], [0, 1])["accuracy"] == 0.5
    assert compute_glue_metrics("sst2", [1], [1])["accuracy"] == 1.0


@pytest.mark.parametrize(
    ("task", "predictions", "message"),
    [
        ("sst2", [0.2, 0.9], "argmax"),  # probabilities would be truncated to class 0
        ("mrpc", [[0.1, 0.9], [0.8, 0.2]], "one-dimensional"),  # unreduced logits
        ("stsb", [[1.0], [2.0]], "one-dimensional"),  # regression head output not squeezed
        ("stsb", [float("nan"), 1.0], "NaN"),
        ("cola", [1, float("inf")], "NaN or infinite"),
        ("rte", ["entailment", "not_entailment"], "numeric"),
    ],
)
def test_inputs_that_would_be_silently_miscast_raise(task: str, predictions: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compute_glue_metrics(task, predictions, [0, 1])


def test_unknown_task_raises() -> None:
    import evaluate

    with pytest.raises(ValueError, match="unknown GLUE metric config 'sst-2'"):
        compute_glue_metrics("sst-2", [0], [0])
    with pytest.raises(ValueError, match="unknown GLUE metric config"):
        load_glue_metric("mnli-mm")
    with pytest.raises(KeyError, match="configuration name"):  # the module errs like the hub's
        evaluate.load(GLUE_METRIC_PATH, config_name="not_a_task")


# --- loading by path, offline ---------------------------------------------------------------------


def test_glue_metric_path_points_at_the_module_folder() -> None:
    path = Path(GLUE_METRIC_PATH)
    assert path.is_absolute()
    assert path.name == "glue"  # evaluate loads <folder>/<folder name>.py
    assert (path / "glue.py").is_file()
    assert path.parent == Path(glue_metrics.__file__).resolve().parent


@pytest.mark.parametrize("task", GLUE_TASKS)
def test_module_loads_by_path_offline(task: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import evaluate
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    # evaluate and huggingface_hub read the variables at import; set what they already read.
    monkeypatch.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)

    metric = evaluate.load(GLUE_METRIC_PATH, config_name=task, keep_in_memory=True)
    assert isinstance(metric, evaluate.Metric)
    assert metric.name == "glue"
    assert metric.config_name == task
    dtype = "float32" if task == "stsb" else "int64"
    assert metric.features["predictions"].dtype == dtype
    assert metric.features["references"].dtype == dtype
    assert "GLUE" in metric.citation
    assert metric.description
    result = metric.compute(predictions=[0, 1, 1], references=[0, 1, 0])
    assert set(result) | {"glue_score"} == set(compute_glue_metrics(task, [0, 1, 1], [0, 1, 0]))


def test_load_glue_metric_uses_the_local_module_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    import evaluate

    calls: list[tuple[str, str | None]] = []
    real_load = evaluate.load

    def spy(path: str, config_name: str | None = None, **kwargs: Any) -> Any:
        calls.append((path, config_name))
        return real_load(path, config_name=config_name, **kwargs)

    monkeypatch.setattr(evaluate, "load", spy)
    metric = load_glue_metric("rte")
    assert calls == [(GLUE_METRIC_PATH, "rte")]
    assert metric.compute(predictions=[1, 0], references=[1, 1]) == {"accuracy": 0.5}


def test_hub_source_asks_evaluate_for_the_hub_glue_and_gets_the_same_contract(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Offline, the hub path is only checked for what it asks for; its NaN is mapped to 0.0."""
    import evaluate

    class HubLikeStsb:  # what the hub's glue returns for a constant prediction vector
        def compute(self, **_: Any) -> dict[str, Any]:
            return {"pearson": np.float64("nan"), "spearmanr": np.float64("nan")}

    calls: list[tuple[str, str | None]] = []

    def fake_load(path: str, config_name: str | None = None, **kwargs: Any) -> Any:
        calls.append((path, config_name))
        return HubLikeStsb()

    monkeypatch.setattr(evaluate, "load", fake_load)
    glue_metrics._cached_metric.cache_clear()
    try:
        result = compute_glue_metrics("stsb", [2.0, 2.0, 2.0], [1.0, 2.0, 3.0], source="hub")
    finally:
        glue_metrics._cached_metric.cache_clear()
    assert calls == [("glue", "stsb")]
    assert result == {"pearson": 0.0, "spearmanr": 0.0, "glue_score": 0.0}
    _assert_plain_finite_floats(result)


def test_loaded_module_is_cached_per_task() -> None:
    assert glue_metrics._cached_metric("sst2", "local") is glue_metrics._cached_metric("sst2", "local")
    assert glue_metrics._cached_metric("sst2", "local") is not glue_metrics._cached_metric("rte", "local")


def test_importing_the_package_does_not_import_evaluate() -> None:
    src = Path(glue_metrics.__file__).resolve().parents[2]
    code = "import sys, distilflow.metrics as m; print(m.GLUE_METRIC_PATH); assert 'evaluate' not in sys.modules"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == GLUE_METRIC_PATH


@pytest.mark.slow
def test_loads_in_a_fresh_offline_process(tmp_path: Path) -> None:
    """End to end as a user runs it: env vars set before evaluate is imported, network blocked.

    Marked slow only because importing evaluate in a new process takes ~8 s (it imports torch).
    """
    script = textwrap.dedent(
        f"""
        import json, socket

        def refuse(*args, **kwargs):
            raise SystemExit(f"network access attempted: {{args!r}}")

        socket.socket.connect = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse

        import evaluate

        metric = evaluate.load({GLUE_METRIC_PATH!r}, config_name="mrpc")
        print(json.dumps(metric.compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0]), allow_nan=False))
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"accuracy": 0.75, "f1": pytest.approx(2 / 3)}


# --- registry consistency -------------------------------------------------------------------------


def test_config_names_match_the_module() -> None:
    import evaluate

    module = type(evaluate.load(GLUE_METRIC_PATH, config_name="sst2", keep_in_memory=True))
    assert set(sys.modules[module.__module__].CONFIG_NAMES) == set(GLUE_TASKS)


def test_every_tasks_primary_metric_is_a_result_of_its_metric_config() -> None:
    for task, primary in ((name, spec.primary_metric) for name, spec in TASKS.items()):
        sample = ([0.0, 1.0, 2.0], [0.0, 2.0, 1.0]) if task == "stsb" else ([0, 1, 1], [0, 1, 0])
        assert primary in compute_glue_metrics(task, *sample)
