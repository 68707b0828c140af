"""The GLUE table: one row per model, one column per task and official metric, the GLUE average, and beside it the
student's size and speed ratios and each task's trivial baseline.

``build_glue_table`` is a pure function of the per-task results (``glue_suite.task_results``: each workspace's
``metrics/eval.json``, its baseline and its registration, with the run that made them) and the published rows
(``evaluation/references.py``); it returns ``metrics/glue.json``'s content. ``render_markdown`` turns that into
``reports/glue.md``; ``draw`` into ``plots/glue.png``. Scores are x 100, as GLUE and the papers print them, so
distilflow's rows and the published ones line up. The table's type is ``table_schema.GlueTable``.

A run of some tasks keeps the other tasks of the table before it (``results_from_table`` reads them back,
``merge_results`` combines): a column is replaced only by a run of its task, and each column names its run. An
SST-2 teacher takes an hour on a CPU, so rerunning every task to refresh one column is not a choice people make.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from distilflow.evaluation.markdown import markdown_table
from distilflow.evaluation.references import Reference
from distilflow.glue.limits import limit_lines
from distilflow.glue.table_schema import (
    STUDENT_MODEL,
    TEACHER_MODEL,
    Column,
    GlueTable,
    Registered,
    Row,
    RunRecord,
    TaskEntry,
)
from distilflow.tasks import TASKS, GlueTask, get_task

RATIO_KEYS = (
    ("parameters_smaller_x", "params smaller"),
    ("size_smaller_x", "size smaller"),
    ("latency_p50_speedup_x", "p50 latency speed-up"),
    ("latency_p95_speedup_x", "p95 latency speed-up"),
    ("throughput_speedup_x", "throughput speed-up"),
)
RUN_SOURCE = "distilflow: each task workspace's metrics/eval.json (dev), from the run its column names"
BASELINE_MODEL = "trivial baseline"
BASELINE_SOURCE = (
    "the strongest cheap model on each task's dev rows: the majority class, or for STS-B the two sentences' word-set "
    "overlap scaled to 0-5 (distilflow.glue.suite.cheap_predictions)"
)
COMPARED_REFERENCE = "BERT-Tiny (L2/H128)"
"""The published row each task's line in the per-task table sets the student against (pre-trained BERT-Tiny)."""


def official_columns(task: GlueTask) -> list[tuple[str, str]]:
    """(metric key, heading) of GLUE's official metrics for ``task``, headline first: CoLA MCC, STS-B
    Pearson/Spearman, MRPC and QQP F1/accuracy, MNLI matched/mismatched accuracy, accuracy elsewhere."""
    short = {
        "matthews_correlation": "MCC",
        "accuracy": "acc",
        "f1": "F1",
        "pearson": "Pearson",
        "spearmanr": "Spearman",
    }
    if len(task.dev_splits) > 1:
        suffix = {"dev_matched": "m", "dev_mismatched": "mm"}  # GLUE's MNLI-m and MNLI-mm
        return [
            (f"{split}_{metric}", f"{task.dir_name} {short.get(metric, metric)}-{suffix.get(split, split)}")
            for metric in task.metrics
            for split in task.dev_splits
        ]
    ordered = [task.primary_metric, *(metric for metric in task.metrics if metric != task.primary_metric)]
    return [(metric, f"{task.dir_name} {short.get(metric, metric)}") for metric in ordered]


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _task_score(scores: Mapping[str, float], task: GlueTask) -> float | None:
    """GLUE's per-task score: the mean of the task's official metrics (those the row has)."""
    values = [scores[key] for key, _ in official_columns(task) if scores.get(key) is not None]
    return sum(values) / len(values) if values else None


def _row(
    model: str, kind: str, split: str, source: str, scores: Mapping[str, Mapping[str, float]], tasks: Sequence[str]
) -> Row:
    kept: dict[str, dict[str, float]] = {}
    task_scores: dict[str, float] = {}
    for name in tasks:
        task = get_task(name)
        values = {
            key: value
            for key, _ in official_columns(task)
            if (value := _finite(scores.get(name, {}).get(key))) is not None
        }
        if values:
            kept[name] = values
            score = _task_score(values, task)
            if score is not None:
                task_scores[name] = score
    complete = bool(tasks) and len(task_scores) == len(tasks)
    return Row(
        model=model,
        kind=kind,
        split=split,
        source=source,
        scores=kept,
        task_scores=task_scores,
        average=sum(task_scores.values()) / len(task_scores) if complete else None,
        tasks_scored=len(task_scores),
    )


def _percent(value: Any) -> float | None:
    number = _finite(value)
    return None if number is None else number * 100


def _scaled(results: Mapping[str, Mapping[str, Any]], role: str) -> dict[str, dict[str, float]]:
    return {
        name: {key: float(value) * 100 for key, value in result[role].items() if isinstance(value, int | float)}
        for name, result in results.items()
    }


def build_glue_table(
    results: Mapping[str, Mapping[str, Any]],
    references: Sequence[Reference],
    failed: Mapping[str, str] | None = None,
    skipped: Mapping[str, str] | None = None,
    command: str | None = None,
) -> GlueTable:
    """``metrics/glue.json`` (every score x 100): the tasks that ran, the rows (teacher, student, trivial baseline,
    then every published row with a score for a task that ran), per-task details and the suite's outcome.

    ``results`` maps a task to ``{"teacher": {metric: 0..1}, "student": {...}, "baseline": {...}, "ratios": {...},
    "registered": {...}, "run": {...}}`` (``glue_suite.task_results``, ``run``: the command, commit and time that
    made them, plus ``kept: true`` for a task carried over from an earlier table); published scores are x 100.
    The GLUE average is the mean of the per-task scores over the tasks that ran (each task's score being the mean of
    its official metrics, as GLUE averages them); a row that lacks one of those tasks has none.
    """
    tasks = list(results)
    rows = _model_rows(results, references, tasks)
    compared = next((row for row in rows if row.model == f"{COMPARED_REFERENCE} (published)"), None)
    return GlueTable(
        command=command,
        tasks=tasks,
        columns=[
            Column(task=name, metric=key, heading=heading)
            for name in tasks
            for key, heading in official_columns(get_task(name))
        ],
        rows=rows,
        average={row.model: row.average for row in rows if row.kind != "published"},
        per_task={name: _task_entry(get_task(name), result, compared) for name, result in results.items()},
        failed=dict(failed or {}),
        skipped=dict(skipped or {}),
    )


def _model_rows(
    results: Mapping[str, Mapping[str, Any]], references: Sequence[Reference], tasks: Sequence[str]
) -> list[Row]:
    """Teacher, student and trivial baseline of this suite, then each published row that scored a task that ran."""
    rows = [
        _row(TEACHER_MODEL, "run", "dev", RUN_SOURCE, _scaled(results, "teacher"), tasks),
        _row(STUDENT_MODEL, "run", "dev", RUN_SOURCE, _scaled(results, "student"), tasks),
        _row(BASELINE_MODEL, "baseline", "dev", BASELINE_SOURCE, _scaled(results, "baseline"), tasks),
    ]
    for reference in references:
        row = _row(f"{reference.model} (published)", "published", reference.split, reference.source,
                   reference.scores, tasks)  # fmt: skip
        if row.scores:
            row.parameters_millions = reference.parameters_millions
            rows.append(row)
    return rows


def _task_entry(task: GlueTask, result: Mapping[str, Any], compared: Row | None) -> TaskEntry:
    """The task's headline metric for each model (x 100), the student's ratios, its registration and its run."""
    primary = task.primary_metric if len(task.dev_splits) == 1 else f"{task.dev_splits[0]}_{task.primary_metric}"
    teacher = _percent(result["teacher"].get(primary))
    student = _percent(result["student"].get(primary))
    baseline = _percent(result["baseline"].get(primary))
    registered = dict(result.get("registered", {}))
    if registered.get("version") is not None:
        registered["version"] = str(registered["version"])  # MLflow's versions are strings; a test may write 1
    return TaskEntry(
        metric=primary,
        teacher=teacher,
        student=student,
        baseline=baseline,
        student_minus_baseline=None if student is None or baseline is None else student - baseline,
        published_bert_tiny=None if compared is None else compared.scores.get(task.name, {}).get(primary),
        ratios={key: float(result["ratios"][key]) for key, _ in RATIO_KEYS if key in result["ratios"]},
        registered=Registered(**registered),
        run=RunRecord(**dict(result.get("run") or {})),
        settings=dict(result.get("settings") or {}),
    )


def results_from_table(table: GlueTable) -> dict[str, dict[str, Any]]:
    """The per-task results ``table`` was built from, as ``build_glue_table`` takes them (scores back to 0..1):
    the official metrics of teacher, student and baseline, the ratios, the registration and the run. Building a
    table from them gives ``table``'s rows and per-task entries again (a unit test holds it)."""
    rows = {row.model: row for row in table.rows}
    roles = {"teacher": TEACHER_MODEL, "student": STUDENT_MODEL, "baseline": BASELINE_MODEL}
    results: dict[str, dict[str, Any]] = {}
    for name in table.tasks:
        entry = table.per_task.get(name)
        result: dict[str, Any] = {
            role: {key: value / 100 for key, value in rows[model].scores.get(name, {}).items()} if model in rows else {}
            for role, model in roles.items()
        }
        result.update(
            ratios=dict(entry.ratios) if entry else {},
            registered=entry.registered.model_dump() if entry else {},
            run=entry.run.as_dict() if entry else {},
            settings=dict(entry.settings) if entry else {},
        )
        results[name] = result
    return results


def merge_results(
    this_run: Mapping[str, Mapping[str, Any]],
    earlier: Mapping[str, Mapping[str, Any]],
    attempted: Iterable[str],
    ended: Mapping[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """This run's results, plus the earlier table's tasks this run did not attempt (marked ``run.kept``), in GLUE's
    task order. A task this run attempted and failed is not kept: its old column would read as this run's.

    ``ended``: when each attempted task's run ended (UTC, as ``run.finished_at`` writes it; a finished task's own
    ``finished_at`` serves without it). The table is merged when the whole run ends, hours after its first task: a
    column another run wrote for that task since is newer than this run's, as the task's workspace is, and stays.
    """
    tried = set(attempted) | set(this_run)
    when = {name: str(result.get("run", {}).get("finished_at") or "") for name, result in this_run.items()}
    when.update(ended or {})
    combined = {name: dict(result) for name, result in this_run.items()}
    for name, result in earlier.items():
        finished = str((result.get("run") or {}).get("finished_at") or "")
        if name not in tried or (when.get(name) and finished > when[name]):
            combined[name] = {**result, "run": {**dict(result.get("run") or {}), "kept": True}}
    order = list(TASKS)
    return dict(sorted(combined.items(), key=lambda item: order.index(item[0])))


def run_lines(table: GlueTable) -> list[str]:
    """Per task, the run its column comes from: this run's command, or the earlier run it was kept from."""
    lines = []
    for name, entry in table.per_task.items():
        run = entry.run
        where = "kept from an earlier run" if run.kept else "this run"
        details = [f"`{run.command}`" if run.command else "command not recorded"]
        if run.commit:
            details.append(f"commit {run.commit}")
        if run.finished_at:
            details.append(f"finished {run.finished_at}")
        if run.worker:
            details.append(f"on {run.worker} (flow run {run.flow_run or '?'})")
        lines.append(f"- {get_task(name).dir_name}: {where}: {', '.join(details)}")
    return lines


def _cell(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _times(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def main_table(table: GlueTable) -> tuple[list[str], list[list[str]]]:
    """One row per model, one column per task and metric, then the GLUE average."""
    columns = table.columns
    header = ["model", "split", *(column.heading for column in columns), f"GLUE avg ({len(table.tasks)} tasks)"]
    body = []
    for row in table.rows:
        cells = [_cell(row.scores.get(column.task, {}).get(column.metric)) for column in columns]
        average = _cell(row.average) if row.average is not None else f"– ({row.tasks_scored} scored)"
        body.append([row.model, row.split, *cells, average])
    return header, body


def task_table(table: GlueTable) -> tuple[list[str], list[list[str]]]:
    """Per task: the headline metric of teacher, student, trivial baseline and published BERT-Tiny, the student's
    ratios against the teacher, and the registered student."""
    header = [
        "task",
        "metric",
        "teacher",
        "student",
        "baseline",
        "student − baseline",
        f"{COMPARED_REFERENCE} (published)",
        *(label for _, label in RATIO_KEYS),
        "registered student",
        "settings chosen on held-out train rows",
    ]
    body = []
    for name, entry in table.per_task.items():
        registered = entry.registered
        gate = "champion" if registered.promoted else "not promoted"
        body.append(
            [
                get_task(name).dir_name,
                entry.metric,
                _cell(entry.teacher),
                _cell(entry.student),
                _cell(entry.baseline),
                _cell(entry.student_minus_baseline),
                _cell(entry.published_bert_tiny),
                *(_times(entry.ratios.get(key)) for key, _ in RATIO_KEYS),
                f"{registered.model} v{registered.version} ({gate})",
                "; ".join(f"{model}: {words}" for model, words in entry.settings.items()) or "-",
            ]
        )
    return header, body


def render_markdown(table: GlueTable, command: str | None = None) -> str:
    header, body = main_table(table)
    task_header, task_body = task_table(table)
    sources = sorted({row.source for row in table.rows})
    outcome = [f"- {name}: failed: {reason}" for name, reason in table.failed.items()]
    outcome += [f"- {name}: skipped: {reason}" for name, reason in table.skipped.items()]
    return "\n".join(
        [
            "# distilflow GLUE: distilflow's teacher and student beside published models",
            "",
            *([f"Command: `{command}`", ""] if command else []),
            markdown_table(header, body),
            "",
            "## Per task: headline metric, trivial baseline, student ÷ teacher",
            "",
            markdown_table(task_header, task_body),
            "",
            "- Scores x 100 (CoLA: Matthews correlation; STS-B: Pearson/Spearman; MNLI: matched/mismatched). "
            "distilflow scores the dev sets; published test rows come from the GLUE server, so only dev rows are "
            "like for like.",
            "- GLUE average: the mean over the table's tasks of each task's score, the mean of its official metrics "
            "(as GLUE averages them); a row that lacks one of those tasks has none.",
            "- Ratios: teacher ÷ student for size and latency, student ÷ teacher for throughput (> 1 favours the "
            "student), from each task's report stage, both models timed back to back in one process.",
            *(f"- Source: {source}." for source in sources),
            "",
            "## What limits each task",
            "",
            *limit_lines(table),
            "",
            "## Runs: where each column comes from",
            "",
            "A run replaces the columns of the tasks it ran and keeps the others (`distilflow glue --fresh` starts "
            "over).",
            "",
            *run_lines(table),
            *(["", "## Not in the table", "", *outcome] if outcome else []),
            "",
        ]
    )


def draw(table: GlueTable, path: Path) -> Path:
    """Grouped bars: per task, the task score of teacher, student, trivial baseline and published BERT-Tiny."""
    import numpy as np
    from matplotlib.figure import Figure

    from distilflow.evaluation.plots import STUDENT_COLOUR, TEACHER_COLOUR, _save

    tasks = list(table.tasks)
    wanted = [
        (TEACHER_MODEL, TEACHER_COLOUR),
        (STUDENT_MODEL, STUDENT_COLOUR),
        (BASELINE_MODEL, "#8c8c8c"),
        (f"{COMPARED_REFERENCE} (published)", "#55a868"),
    ]
    rows = {row.model: row for row in table.rows}
    series = [(name, colour) for name, colour in wanted if name in rows]
    labels = [get_task(name).dir_name for name in tasks] + ["GLUE avg"]
    figure = Figure(figsize=(max(6.4, 1.6 + 1.3 * len(labels)), 4.4))  # wide enough for the title with one task
    axes = figure.subplots()
    positions = np.arange(len(labels))
    width = 0.8 / max(len(series), 1)
    for index, (name, colour) in enumerate(series):
        row = rows[name]
        values = [row.task_scores.get(task, np.nan) for task in tasks]
        values.append(row.average if row.average is not None else np.nan)
        axes.bar(positions + (index - (len(series) - 1) / 2) * width, values, width=width, color=colour, label=name)
    axes.set_xticks(positions, labels=labels)
    axes.axhline(0, color="black", linewidth=0.6)
    axes.set_ylabel("task score (mean of official metrics) x 100")
    axes.set_title("GLUE dev: distilflow's teacher and student, trivial baseline,\npublished BERT-Tiny (test)")
    axes.legend(fontsize=8, loc="lower right")
    return _save(figure, path)
