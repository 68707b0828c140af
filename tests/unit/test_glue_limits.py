"""The GLUE table's "What limits each task": teacher, distillation or gate, from the task's own numbers."""

from __future__ import annotations

from distilflow.glue.limits import limit, limit_lines
from distilflow.glue.table_schema import GlueTable, Registered, RunRecord, TaskEntry


def entry(teacher: float | None, student: float | None, baseline: float | None, promoted: bool) -> TaskEntry:
    reasons = [] if promoted else ["above the baseline's margin in 50.4 % of resamples, not 95 %"]
    return TaskEntry(
        metric="accuracy",
        teacher=teacher,
        student=student,
        baseline=baseline,
        student_minus_baseline=None if student is None or baseline is None else student - baseline,
        published_bert_tiny=None,
        ratios={},
        registered=Registered(model="distilflow-rte-student", version="1", promoted=promoted, reasons=reasons),
        run=RunRecord(),
    )


def test_a_teacher_barely_above_the_baseline_is_the_limit() -> None:
    # RTE as issue #33 measured it: teacher 57.8, student 54.5, majority baseline 52.7.
    said = limit(entry(57.8, 54.5, 52.7, promoted=False))
    assert said.startswith("the teacher:") and "teacher +5.1 over the baseline, student +1.8" in said


def test_a_student_that_keeps_little_of_a_strong_teachers_gain_is_a_distillation_limit() -> None:
    # CoLA as reports/glue.md has it: teacher 24.3 MCC, student 10.4, baseline 0.
    said = limit(entry(24.3, 10.4, 0.0, promoted=False))
    assert said.startswith("the distillation:") and "keeps 43%" in said


def test_a_good_student_is_limited_by_the_gate_only_when_refused() -> None:
    assert limit(entry(89.8, 83.6, 50.9, promoted=True)).startswith("none at the gate:")
    assert limit(entry(89.8, 83.6, 50.9, promoted=False)).startswith("the gate's margin:")


def test_missing_scores_are_said_not_guessed() -> None:
    assert limit(entry(None, 54.5, 52.7, promoted=False)).startswith("not diagnosed")


def test_each_task_gets_one_line_with_the_gates_reason_when_refused() -> None:
    table = GlueTable(
        command=None,
        tasks=["rte", "sst2"],
        columns=[],
        rows=[],
        average={},
        per_task={"rte": entry(57.8, 54.5, 52.7, promoted=False), "sst2": entry(89.8, 83.6, 50.9, promoted=True)},
        failed={},
        skipped={},
    )
    lines = limit_lines(table)
    assert lines[0].startswith("- RTE (refused): limited by the teacher") and "Gate: above the baseline" in lines[0]
    assert lines[1].startswith("- SST-2 (promoted): limited by none at the gate") and "Gate:" not in lines[1]
