"""The Markdown and tables the Prefect flow publishes as artifacts: validation, evaluation, promotion.

Built from the files the stages wrote (reports/, metrics/), so an artifact says what DVC recorded, whether the
stage ran in this flow run or earlier.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from distilflow.paths import Paths

MLFLOW_UI_ENV = "DISTILFLOW_MLFLOW_UI"
DEFAULT_MLFLOW_UI = "http://127.0.0.1:5000"
RAN = "ran"


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _number(value: Any) -> Any:
    """Floats to 4 significant decimals for the table; other values (counts, names) as they are."""
    if isinstance(value, float):
        return float(f"{value:.4g}") if abs(value) < 1 else round(value, 4)
    return value


def validation_markdown(summary: dict[str, Any], root: Path, findings: str | None = None) -> str:
    verdict = "passed" if summary.get("ok") else "FAILED"
    lines = [
        f"# Data validation {verdict}",
        "",
        f"Task **{summary.get('task')}**, data `{summary.get('data_dir')}`: **{summary.get('errors', 0)} error(s)**, "
        f"{summary.get('warnings', 0)} warning(s).",
        "",
        "| split | file | rows | errors | warnings |",
        "|---|---|---:|---:|---:|",
    ]
    for split, entry in (summary.get("splits") or {}).items():
        lines.append(
            f"| {split} | `{Path(str(entry.get('file', ''))).name}` | {entry.get('rows', 0)} | "
            f"{entry.get('errors', 0)} | {entry.get('warnings', 0)} |"
        )
    hits = {
        name: entry
        for name, entry in (summary.get("rules") or {}).items()
        if entry.get("errors") or entry.get("warnings")
    }
    if hits:
        lines += ["", "| rule | severity | errors | warnings |", "|---|---|---:|---:|"]
        lines += [
            f"| {name} | {entry.get('severity')} | {entry.get('errors', 0)} | {entry.get('warnings', 0)} |"
            for name, entry in hits.items()
        ]
    if findings:
        lines += ["", "The validator's message:", "", "```", findings.strip(), "```"]
    report = Paths.at(root).validation_report_dir / "index.html"
    lines += ["", f"Full report: `{report}` (open it in a browser)."]
    return "\n".join(lines)


def evaluation_table(root: Path) -> list[dict[str, Any]] | None:
    """One row per metric, teacher and student side by side."""
    paths = Paths.at(root)
    teacher = read_json(paths.metrics_file("eval_teacher"))
    student = read_json(paths.metrics_file("eval_student"))
    if teacher is None or student is None:
        return None

    def scalar(value: Any) -> bool:
        return isinstance(value, int | float | str) and not isinstance(value, bool)

    keys = [key for key in teacher if key in student] + [key for key in student if key not in teacher]
    keys = [key for key in keys if scalar(teacher.get(key, "")) and scalar(student.get(key, ""))]
    return [
        {"metric": key, "teacher": _number(teacher.get(key, "")), "student": _number(student.get(key, ""))}
        for key in keys
    ]


def mlflow_ui() -> str:
    return os.environ.get(MLFLOW_UI_ENV, DEFAULT_MLFLOW_UI).rstrip("/")


def promotion_markdown(root: Path, register_outcome: str) -> str | None:
    paths = Paths.at(root)
    decision = read_json(paths.reports_dir / "promotion.json")
    if decision is None:
        return None
    ui = mlflow_ui()
    name = str(decision.get("model", ""))
    version = str(decision.get("version", ""))
    passed = bool(decision.get("promote"))  # the gate's verdict
    promoted = bool(decision.get("promoted", passed))  # what happened: register.promote=false can veto the move
    if promoted:
        headline = "promoted to @champion"
    elif passed:
        headline = "not promoted (the gate passed; promotion was switched off for this run)"
    else:
        headline = "not promoted (the gate refused it)"
    lines = [f"# {name} v{version}: {headline}", ""]
    if register_outcome != RAN:
        lines += ["_register was up to date in this run: this is the decision recorded when it last ran._", ""]
    lines += [f"- {reason}" for reason in decision.get("reasons", [])]
    previous = decision.get("previous_champion_version")
    lines += [
        "",
        f"- Model version: [{name} v{version}]({ui}/#/models/{quote(name)}/versions/{version})",
        f"- Previous champion: {f'v{previous}' if previous else 'none'}",
        f"- Register run: [{decision.get('run_id')}]({ui}/#/runs/{decision.get('run_id')})",
    ]
    serving = decision.get("serving")
    if isinstance(serving, dict) and serving.get("backend"):
        lines.append(f"- Serving: {serving.get('export', '')} on {serving['backend']}")
    lineage = {}
    for role in ("teacher", "student"):
        lineage.update(read_json(paths.reports_dir / f"eval_{role}" / "lineage.json") or {})
    if lineage:
        lines += ["", "| stage | MLflow run |", "|---|---|"]
        lines += [f"| {stage} | [{run_id}]({ui}/#/runs/{run_id}) |" for stage, run_id in sorted(lineage.items())]
    lines += ["", f"Links open the MLflow UI at {ui} (`make ui`); set {MLFLOW_UI_ENV} to point elsewhere."]
    return "\n".join(lines)


def validation_message(summary: dict[str, Any] | None, failure: Exception) -> str:
    if summary is None:
        return f"validation failed before writing its summary:\n{failure}"
    rules = ", ".join(
        f"{name} ({entry.get('errors', 0)})"
        for name, entry in (summary.get("rules") or {}).items()
        if entry.get("errors")
    )
    return (
        f"data validation FAILED for {summary.get('task')} in {summary.get('data_dir')}: "
        f"{summary.get('errors', 0)} error(s), {summary.get('warnings', 0)} warning(s); failing rules: "
        f"{rules or 'none recorded'}. See the 'validation-summary' artifact and reports/validation/index.html."
    )


def findings_text(output: str, keep: int = 20) -> str:
    """The validator's own message without DVC's lines around it: the first ``keep`` failing rows, then its
    per-rule totals (the HTML report lists every row)."""
    start = output.find("validate failed:")
    lines = [
        line
        for line in (output[start:] if start >= 0 else output).splitlines()
        if not line.startswith(("ERROR: failed to reproduce", "Running stage", "> "))
    ]
    headline = next((index for index, line in enumerate(lines) if line.startswith("validation of ")), len(lines))
    rows, totals = lines[:headline], lines[headline:]
    if len(rows) > keep:
        rows = [*rows[:keep], f"... {len(rows) - keep} more lines: see the report"]
    return "\n".join(rows + totals)
