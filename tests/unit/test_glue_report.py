"""The GLUE table builder on small hand-made results: rows, official metric columns, the average, the baseline."""

from __future__ import annotations

import json
from typing import Any

import pytest

from distilflow.evaluation.references import Reference
from distilflow.glue.table import (
    build_glue_table,
    main_table,
    merge_results,
    official_columns,
    render_markdown,
    results_from_table,
    task_table,
)
from distilflow.glue.table_schema import SCHEMA_VERSION, GlueTable, Row, UnreadableTable
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


def rows_by_model(table: GlueTable) -> dict[str, Row]:
    return {row.model: row for row in table.rows}


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
    assert table.tasks == ["sst2", "mrpc", "stsb"]
    assert [(c.task, c.metric) for c in table.columns] == [
        ("sst2", "accuracy"),
        ("mrpc", "f1"),
        ("mrpc", "accuracy"),
        ("stsb", "pearson"),
        ("stsb", "spearmanr"),
    ]
    rows = rows_by_model(table)
    assert list(rows) == [
        "teacher (distilflow)",
        "student (distilflow)",
        "trivial baseline",
        "BERT-Tiny (L2/H128) (published)",
        "Full (published)",
    ]  # a published row with no task that ran is left out
    student = rows["student (distilflow)"]
    assert student.scores["mrpc"] == pytest.approx({"f1": 80.0, "accuracy": 70.0})  # x 100, no speed keys
    # per task the mean of its official metrics, then the mean over tasks
    assert student.task_scores == pytest.approx({"sst2": 80.0, "mrpc": 75.0, "stsb": 40.0})
    assert student.average == pytest.approx((80 + 75 + 40) / 3)
    assert table.average["teacher (distilflow)"] == pytest.approx((90 + 85 + 70) / 3)
    # the baseline has only Pearson for STS-B: its task score is what it has
    assert rows["trivial baseline"].task_scores["stsb"] == 0.0
    assert rows["Full (published)"].average == pytest.approx(80.0)
    assert rows["BERT-Tiny (L2/H128) (published)"].average is None  # lacks STS-B
    assert rows["BERT-Tiny (L2/H128) (published)"].tasks_scored == 2
    assert rows["BERT-Tiny (L2/H128) (published)"].split == "test"


def test_per_task_baseline_ratios_and_registration() -> None:
    table = build_glue_table(RESULTS, [TINY])
    mrpc = table.per_task["mrpc"]
    assert mrpc.metric == "f1"
    assert mrpc.baseline == pytest.approx(80.0)  # x 100, like the published column beside it
    assert mrpc.student_minus_baseline == pytest.approx(0.0)
    assert mrpc.published_bert_tiny == pytest.approx(81.1)
    assert mrpc.ratios["throughput_speedup_x"] == 18.0
    assert mrpc.registered.model == "distilflow-x-student"
    header, body = task_table(table)
    assert "baseline" in header
    assert [row[0] for row in body] == ["SST-2", "MRPC", "STS-B"]
    assert body[0][2:5] == ["90.0", "80.0", "50.0"]  # teacher, student, baseline


def test_mnli_reports_matched_and_mismatched() -> None:
    mnli = {"dev_matched_accuracy": 0.7, "dev_mismatched_accuracy": 0.6, "accuracy": 0.7}
    baseline = {"dev_matched_accuracy": 0.35, "dev_mismatched_accuracy": 0.35}
    table = build_glue_table({"mnli": result(mnli, mnli, baseline)}, [])
    student = rows_by_model(table)["student (distilflow)"]
    assert student.scores["mnli"] == pytest.approx({"dev_matched_accuracy": 70.0, "dev_mismatched_accuracy": 60.0})
    assert student.average == pytest.approx(65.0)
    assert table.per_task["mnli"].metric == "dev_matched_accuracy"


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
    assert table.failed == {"cola": "StageFailed: validate"}


def run(command: str, commit: str) -> dict[str, str]:
    return {"command": command, "commit": commit, "finished_at": "2026-12-02T10:00:00Z"}


def test_a_table_gives_back_the_results_it_was_built_from() -> None:
    results = {name: {**entry, "run": run("distilflow glue", "abc")} for name, entry in RESULTS.items()}
    results["sst2"]["settings"] = {"teacher": "learning rate 0.0002, pooling mean (10 trials)", "student": "as written"}
    table = build_glue_table(results, [TINY, FULL], command="distilflow glue")
    again = build_glue_table(results_from_table(table), [TINY, FULL], command="distilflow glue")
    assert again.tasks == table.tasks
    for name, entry in table.per_task.items():
        back = again.per_task[name]
        for key in ("teacher", "student", "baseline", "student_minus_baseline", "published_bert_tiny"):
            assert getattr(back, key) == pytest.approx(getattr(entry, key)), (name, key)
        assert back.ratios == pytest.approx(entry.ratios)
        assert (back.metric, back.registered, back.run) == (entry.metric, entry.registered, entry.run)
        assert back.settings == entry.settings
    assert "teacher: learning rate 0.0002, pooling mean (10 trials); student: as written" in render_markdown(table)
    for before, after in zip(table.rows, again.rows, strict=True):
        assert after.model == before.model
        assert after.task_scores == pytest.approx(before.task_scores)
        assert after.average == pytest.approx(before.average)
    assert GlueTable.from_json(table.to_json()) == table  # what metrics/glue.json holds reads back the same


def test_a_run_of_some_tasks_keeps_the_other_columns_and_names_their_run() -> None:
    earlier = results_from_table(
        build_glue_table(
            {name: {**entry, "run": run("glue --tasks all", "old")} for name, entry in RESULTS.items()}, []
        )
    )
    rerun = {"stsb": {**result({"pearson": 0.9}, {"pearson": 0.7}, {"pearson": 0.0}), "run": run("glue stsb", "new")}}
    columns = merge_results(rerun, earlier, attempted=["stsb", "mrpc"])  # MRPC was attempted and failed
    assert list(columns) == ["sst2", "stsb"]  # GLUE's order; the failed task's old column is not kept
    assert columns["sst2"]["run"] == {**run("glue --tasks all", "old"), "kept": True}
    assert columns["stsb"]["student"] == {"pearson": 0.7}
    table = build_glue_table(columns, [], failed={"mrpc": "StageFailed"})
    student = rows_by_model(table)["student (distilflow)"]
    assert student.task_scores == pytest.approx({"sst2": 80.0, "stsb": 70.0})
    text = render_markdown(table)
    assert "- SST-2: kept from an earlier run: `glue --tasks all`, commit old" in text
    assert "- STS-B: this run: `glue stsb`, commit new, finished 2026-12-02T10:00:00Z" in text


def test_a_table_from_before_runs_were_recorded_reads_back_under_todays_names() -> None:
    built = build_glue_table({"cola": result({"matthews_correlation": 0.24}, {"matthews_correlation": 0.09}, {})}, [])
    table = json.loads(built.to_json())
    del table["schema_version"]  # version 1: the row names and shape metrics/glue.json had before run records
    for row in table["rows"]:
        row["model"] = row["model"].replace("(distilflow)", "(this run)")
        if row["parameters_millions"] is None:
            del row["parameters_millions"]
    for entry in table["per_task"].values():
        del entry["run"]
    legacy = {**table, "command": "distilflow glue --tasks cola"}
    kept = merge_results({}, results_from_table(GlueTable.from_json(json.dumps(legacy))), attempted=[])
    assert kept["cola"]["student"] == pytest.approx({"matthews_correlation": 0.09})
    assert kept["cola"]["run"] == {"command": "distilflow glue --tasks cola", "kept": True}
    rows = rows_by_model(build_glue_table(kept, []))
    assert rows["teacher (distilflow)"].task_scores == pytest.approx({"cola": 24.0})


def test_a_column_kept_without_a_command_is_not_credited_to_the_run_that_kept_it() -> None:
    # The table after a `--tasks sst2` run that kept CoLA from a table without run records: CoLA has no command.
    columns = {
        "sst2": {**RESULTS["sst2"], "run": run("glue --tasks sst2", "first")},
        "cola": {**result({"matthews_correlation": 0.24}, {"matthews_correlation": 0.09}, {}), "run": {"kept": True}},
    }
    table = build_glue_table(columns, [], command="glue --tasks sst2")
    again = merge_results(
        {"sst2": {**RESULTS["sst2"], "run": run("glue --tasks sst2", "second")}},
        results_from_table(table),
        attempted=["sst2"],
    )
    assert again["cola"]["run"] == {"kept": True}
    assert "- CoLA: kept from an earlier run: command not recorded" in render_markdown(build_glue_table(again, []))


def test_a_column_a_later_run_wrote_outlives_this_runs_older_result_or_failure() -> None:
    """The table is merged when the whole run ends, hours after its first task: meanwhile another run of that task
    may have written a newer column (its workspace holds that run's outputs now)."""
    later = {
        name: {**entry, "run": run(f"glue {name}, later", "other") | {"finished_at": "2026-12-02T12:00:00Z"}}
        for name, entry in RESULTS.items()
    }
    mine = {"sst2": {**RESULTS["sst2"], "run": run("glue sst2,mrpc,stsb", "mine")}}  # finished at 10:00
    ended = {"sst2": "2026-12-02T10:00:00Z", "mrpc": "2026-12-02T10:30:00Z", "stsb": "2026-12-02T13:00:00Z"}
    columns = merge_results(mine, later, attempted=ended, ended=ended)
    assert columns["sst2"]["run"]["command"] == "glue sst2, later"  # newer than this run's SST-2
    assert columns["mrpc"]["run"]["command"] == "glue mrpc, later"  # newer than this run's failure
    assert "stsb" not in columns  # this run failed STS-B after the other run: the old column would read as this run's
    # Without ``ended``, a finished task's own finish time decides; a failed one has none, so its old column goes.
    plain = merge_results(mine, later, attempted=["sst2", "mrpc"])
    assert plain["sst2"]["run"]["command"] == "glue sst2, later" and "mrpc" not in plain


def test_the_committed_table_from_before_schema_versions_migrates() -> None:
    """metrics/glue.json as the suite wrote it before ``schema_version`` (version 1) reads as today's schema."""
    from tests.conftest import REPO_ROOT

    text = (REPO_ROOT / "metrics" / "glue.json").read_text(encoding="utf-8")
    table = GlueTable.from_json(text)
    assert table.schema_version == SCHEMA_VERSION
    assert table.tasks == json.loads(text)["tasks"]
    assert all(entry.run.command for entry in table.per_task.values())
    assert GlueTable.from_json(table.to_json()) == table


def test_a_table_of_another_schema_fails_with_a_clear_message() -> None:
    table = json.loads(build_glue_table(RESULTS, []).to_json())
    with pytest.raises(UnreadableTable, match=r"schema_version 99; this distilflow reads versions 1 to"):
        GlueTable.from_json(json.dumps({**table, "schema_version": 99}))
    del table["rows"][0]["scores"]
    with pytest.raises(
        UnreadableTable, match=r"GLUE table: not a version-2 GLUE table \(rows.0.scores: Field required"
    ):
        GlueTable.from_json(json.dumps(table))
    with pytest.raises(UnreadableTable, match="not JSON"):
        GlueTable.from_json('{"tasks": [')
