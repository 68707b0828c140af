"""What limits each task's student, read from the table's numbers: the teacher, the distillation, or the gate.

The diagnosis compares two gains over the task's strongest cheap baseline (``glue.suite.cheap_predictions``): the
teacher's, which bounds what distillation can pass on, and the share of it the student kept. Which one falls short
names where the next effort goes (issue #33): a stronger teacher, a better distillation, or, when both are fine,
the margin the gate's bootstrap asks for on a small dev set. It says nothing about causes it cannot see in these
numbers (the size of the transfer set, for one).
"""

from __future__ import annotations

from distilflow.glue.table_schema import GlueTable, TaskEntry
from distilflow.tasks import get_task

TEACHER_GAIN_FLOOR = 5.7
"""Points (x 100) over the baseline below which the teacher leaves a student too little to inherit. Chosen, not
fitted: about the 95 % half-width of one accuracy near 0.5 on a dev set of 300 rows (1.96 * sqrt(0.25 / 300) =
5.7 points), so such a teacher may be no better than the baseline at all."""
KEPT_GAIN_FLOOR = 0.5
"""Share of the teacher's gain over the baseline below which the distillation, not the teacher, is the limit."""


def limit(entry: TaskEntry) -> str:
    """One sentence: which of teacher, distillation or gate limits this task's student, with the numbers."""
    if entry.teacher is None or entry.student is None or entry.baseline is None:
        return "not diagnosed: the teacher, student or baseline score is missing"
    teacher_gain = entry.teacher - entry.baseline
    student_gain = entry.student - entry.baseline
    gains = f"teacher {teacher_gain:+.1f} over the baseline, student {student_gain:+.1f}"
    if teacher_gain < TEACHER_GAIN_FLOOR:
        return f"the teacher: {gains}; a stronger teacher comes before any distillation setting"
    kept = student_gain / teacher_gain
    if kept < KEPT_GAIN_FLOOR:
        return f"the distillation: {gains}, so the student keeps {kept:.0%} of the teacher's gain"
    if entry.registered.promoted:
        return f"none at the gate: {gains}, the student keeps {kept:.0%} of the teacher's gain"
    return f"the gate's margin: {gains} ({kept:.0%} kept), yet not clear of the baseline in enough resamples"


def limit_lines(table: GlueTable) -> list[str]:
    """A line per task: the limit, then the gate's own first reason when it refused the student."""
    lines = []
    for name, entry in table.per_task.items():
        gate = "promoted" if entry.registered.promoted else "refused"
        reason = f" Gate: {entry.registered.reasons[0]}" if entry.registered.reasons and gate == "refused" else ""
        lines.append(f"- {get_task(name).dir_name} ({gate}): limited by {limit(entry)}.{reason}")
    return lines
