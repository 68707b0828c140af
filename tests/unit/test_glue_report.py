"""The GLUE table builder on small hand-made results: rows, official metric columns, the average, the baseline."""

from __future__ import annotations

from typing import Any

import pytest

from distilflow.glue_report import build_glue_table, main_table, official_columns, render_markdown, task_table
from distilflow.references import Reference
from distilflow.tasks import get_task

RATIOS = {
    "parameters_smaller_x": 5.0,
    "size_smaller_x": 5.0,
    "latency_p50_speedup_x": 6.0,
    "throughput_speedup_x": 18.0,
}


def result(teacher: dict[str, float], student: dict[str, float], baseline: dict[str, float]) -> dict[str, Any]:
    return {
        "teacher": {**teacher, "latency_p50_ms": 17.0, "parameters": 22.7e6},
        "student": student,
        "baseline": baseline,
        "ratios": RATIOS,
        "registered": {"model": "distilflow-x-student", "version": "1", "promoted": False, "reasons": []},
    }


RESULTS = {
    "sst2": result({"accuracy": 0.9}, {"accuracy": 0.8}, {"accuracy": 0.5}),
    "mrpc": result({"f1": 0.9, "accuracy": 0.8}, {"f1": 0.8, "accuracy": 0.7}, {"f1": 0.8, "accuracy": 0.666}),
    "stsb": result({"pearson": 0.8, "spearmanr": 0.6}, {"pearson": 0.5, "spearmanr": 0.3}, {"pearson": 0.0}),
}
TINY = Reference("BERT-Tiny (L2/H128)", 4.4, "test", "paper", {"sst2": {"accuracy": 83.2}, "mrpc": {"f1": 81.1}})
FULL = Reference(
    "Full", 10.0, "dev", "other paper", {"sst2": {"accuracy": 90.0}, "mrpc": {"f1": 80.0}, "stsb": {"pearson": 70.0}}
)
UNRELATED = Reference("Only CoLA", 1.0, "dev", "x", {"cola": {"matthews_correlation": 10.0}})


def rows_by_model(table: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["model"]: row for row in table["rows"]}


def test_official_metric_columns_per_task() -> None:
    assert [key for key, _ in official_columns(get_task("cola"))] == ["matthews_correlation"]
    assert [key for key, _ in official_columns(get_task("mrpc"))] == ["f1", "accuracy"]
    assert [key for key, _ in official_columns(get_task("qqp"))] == ["f1", "accuracy"]
    assert [key for key, _ in official_columns(get_task("stsb"))] == ["pearson", "spearmanr"]
    assert [key for key, _ in official_columns(get_task("mnli"))] == [
        "dev_matched_accuracy",
        "dev_mismatched_accuracy",
    ]
    assert [label for _, label in official_columns(get_task("mnli"))] == ["MNLI acc-m", "MNLI acc-mm"]


def test_rows_columns_and_the_glue_average() -> None:
    table = build_glue_table(RESULTS, [TINY, FULL, UNRELATED])
    assert table["tasks"] == ["sst2", "mrpc", "stsb"]
    assert [(c["task"], c["metric"]) for c in table["columns"]] == [
        ("sst2", "accuracy"),
        ("mrpc", "f1"),
        ("mrpc", "accuracy"),
        ("stsb", "pearson"),
        ("stsb", "spearmanr"),
    ]
    rows = rows_by_model(table)
    assert list(rows) == [
        "teacher (this run)",
        "student (this run)",
        "trivial baseline",
        "BERT-Tiny (L2/H128) (published)",
        "Full (published)",
    ]  # a published row with no task that ran is left out
    student = rows["student (this run)"]
    assert student["scores"]["mrpc"] == pytest.approx({"f1": 80.0, "accuracy": 70.0})  # x 100, no speed keys
    # per task the mean of its official metrics, then the mean over tasks
    assert student["task_scores"] == pytest.approx({"sst2": 80.0, "mrpc": 75.0, "stsb": 40.0})
    assert student["average"] == pytest.approx((80 + 75 + 40) / 3)
    assert table["average"]["teacher (this run)"] == pytest.approx((90 + 85 + 70) / 3)
    # the baseline has only Pearson for STS-B: its task score is what it has
    assert rows["trivial baseline"]["task_scores"]["stsb"] == 0.0
    assert rows["Full (published)"]["average"] == pytest.approx(80.0)
    assert rows["BERT-Tiny (L2/H128) (published)"]["average"] is None  # lacks STS-B
    assert rows["BERT-Tiny (L2/H128) (published)"]["tasks_scored"] == 2
    assert rows["BERT-Tiny (L2/H128) (published)"]["split"] == "test"


def test_per_task_baseline_ratios_and_registration() -> None:
    table = build_glue_table(RESULTS, [TINY])
    mrpc = table["per_task"]["mrpc"]
    assert mrpc["metric"] == "f1"
    assert mrpc["baseline"] == pytest.approx(80.0)  # x 100, like the published column beside it
    assert mrpc["student_minus_baseline"] == pytest.approx(0.0)
    assert mrpc["published_bert_tiny"] == pytest.approx(81.1)
    assert mrpc["ratios"]["throughput_speedup_x"] == 18.0
    assert mrpc["registered"]["model"] == "distilflow-x-student"
    header, body = task_table(table)
    assert "baseline" in header
    assert [row[0] for row in body] == ["SST-2", "MRPC", "STS-B"]
    assert body[0][2:5] == ["90.0", "80.0", "50.0"]  # teacher, student, baseline


def test_mnli_reports_matched_and_mismatched() -> None:
    mnli = {"dev_matched_accuracy": 0.7, "dev_mismatched_accuracy": 0.6, "accuracy": 0.7}
    baseline = {"dev_matched_accuracy": 0.35, "dev_mismatched_accuracy": 0.35}
    table = build_glue_table({"mnli": result(mnli, mnli, baseline)}, [])
    student = rows_by_model(table)["student (this run)"]
    assert student["scores"]["mnli"] == pytest.approx({"dev_matched_accuracy": 70.0, "dev_mismatched_accuracy": 60.0})
    assert student["average"] == pytest.approx(65.0)
    assert table["per_task"]["mnli"]["metric"] == "dev_matched_accuracy"


def test_markdown_names_failures_skips_and_sources() -> None:
    table = build_glue_table(RESULTS, [TINY], failed={"cola": "StageFailed: validate"}, skipped={"qqp": "no QQP"})
    header, body = main_table(table)
    assert header[-1] == "GLUE avg (3 tasks)"
    assert "SST-2 acc" in header and "MRPC F1" in header and "STS-B Pearson" in header
    assert body[1][-1] == f"{(80 + 75 + 40) / 3:.1f}"
    assert body[3][-1] == "– (2 scored)"
    text = render_markdown(table, "distilflow glue --glue-dir x")
    assert "`distilflow glue --glue-dir x`" in text
    assert "- cola: failed: StageFailed: validate" in text
    assert "- qqp: skipped: no QQP" in text
    assert "- Source: paper." in text
    assert table["failed"] == {"cola": "StageFailed: validate"}
