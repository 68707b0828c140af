"""The schema of the GLUE table (``metrics/glue.json``): typed rows, per-task entries and run records.

Every file carries ``schema_version``. A file without it was written before the field existed (version 1):
:func:`migrate` brings it to today's version in one place, so nothing else reads an older shape. A file written by a
newer distilflow, or one that does not match the schema, is refused with ``UnreadableTable`` saying which.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SCHEMA_VERSION = 2
TEACHER_MODEL = "teacher (distilflow)"
STUDENT_MODEL = "student (distilflow)"
VERSION_1_MODELS = {"teacher (this run)": TEACHER_MODEL, "student (this run)": STUDENT_MODEL}
"""Row names of version-1 tables written before runs were kept across tables."""


class UnreadableTable(ValueError):
    """``metrics/glue.json`` is not a GLUE table this distilflow can read (truncated, hand-edited, or newer)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Column(_Strict):
    """One column of the main table: a task's official metric (x 100)."""

    task: str
    metric: str
    heading: str


class Row(_Strict):
    """One model: its official metrics per task (x 100), each task's score, and the GLUE average."""

    model: str
    kind: str  # run | baseline | published
    split: str
    source: str
    scores: dict[str, dict[str, float]]
    task_scores: dict[str, float]
    average: float | None  # None unless the row has a score for every task of the table
    tasks_scored: int
    parameters_millions: float | None = None  # published rows only


class Registered(_Strict):
    """What a task's register stage decided about its student."""

    model: str | None = None
    version: str | None = None
    promoted: bool = False
    reasons: list[str] = Field(default_factory=list)


class RunRecord(_Strict):
    """Which run made a task's column (``glue.suite.run_record``); ``kept``: carried over from an earlier table."""

    command: str | None = None
    commit: str | None = None
    finished_at: str | None = None
    worker: str | None = None
    flow_run: str | None = None
    kept: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The fields a run recorded (unset ones left out), as the per-task results carry it."""
        return self.model_dump(exclude_defaults=True)


class TaskEntry(_Strict):
    """Per task: the headline metric of each model (x 100), the student's ratios, its registration, its run."""

    metric: str
    teacher: float | None
    student: float | None
    baseline: float | None
    student_minus_baseline: float | None
    published_bert_tiny: float | None
    ratios: dict[str, float]
    registered: Registered
    run: RunRecord
    settings: dict[str, str] = Field(default_factory=dict)  # per model: what its selection protocol chose


class GlueTable(_Strict):
    """``metrics/glue.json``: the tasks that ran, the rows, per-task details and the suite's outcome."""

    schema_version: int = SCHEMA_VERSION
    command: str | None
    tasks: list[str]
    columns: list[Column]
    rows: list[Row]
    average: dict[str, float | None]  # per non-published row
    per_task: dict[str, TaskEntry]
    failed: dict[str, str]
    skipped: dict[str, str]

    def row(self, model: str) -> Row | None:
        return next((row for row in self.rows if row.model == model), None)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "the GLUE table") -> GlueTable:
        """Parse (and migrate) a table; ``UnreadableTable`` names ``source`` and what is wrong."""
        try:
            data = json.loads(text)
        except ValueError as error:
            raise UnreadableTable(f"{source}: not JSON ({error})") from None
        if not isinstance(data, dict):
            raise UnreadableTable(f"{source}: not a GLUE table (a JSON object)")
        try:
            return cls.model_validate(migrate(data, source))
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()[:5])
            raise UnreadableTable(f"{source}: not a version-{SCHEMA_VERSION} GLUE table ({problems})") from None


def migrate(data: dict[str, Any], source: str) -> dict[str, Any]:
    """``data`` in today's schema. Version 1 (no ``schema_version``): rows could carry the older "(this run)" names,
    published rows alone had ``parameters_millions``, and a table written before per-task run records names its one
    command for every column (a later version-1 table kept such columns with no command: they stay without one)."""
    version = data.get("schema_version", 1)
    if version == SCHEMA_VERSION:
        return data
    if version != 1:
        raise UnreadableTable(
            f"{source}: schema_version {version}; this distilflow reads versions 1 to {SCHEMA_VERSION} "
            "(written by a newer distilflow? update, or rerun with `distilflow glue --fresh`)"
        )
    migrated = dict(data, schema_version=SCHEMA_VERSION)
    migrated["rows"] = [
        {**row, "model": VERSION_1_MODELS.get(row.get("model"), row.get("model"))} for row in data.get("rows", [])
    ]
    migrated["average"] = {VERSION_1_MODELS.get(name, name): value for name, value in data.get("average", {}).items()}
    per_task = data.get("per_task", {})
    one_command = not any("run" in entry for entry in per_task.values()) and data.get("command")
    migrated["per_task"] = {
        name: {**entry, "run": entry.get("run") or ({"command": data["command"]} if one_command else {})}
        for name, entry in per_task.items()
    }
    return migrated
