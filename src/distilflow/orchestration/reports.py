"""The Markdown and tables the Prefect flow publishes as artifacts: validation, evaluation, promotion.

Built from the files the stages wrote (reports/, metrics/), so an artifact says what DVC recorded, whether the
stage ran in this flow run or earlier.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from distilflow.orchestration.dvc_output import DVC_NOISE, RAN
from distilflow.paths import Paths
from distilflow.runtime.dvc_files import lineage_order
from distilflow.tracking.runs import read_lineage
from distilflow.tracking.tags import STAGE_TAG, ui_query

MLFLOW_UI_ENV = "DISTILFLOW_MLFLOW_UI"
DEFAULT_MLFLOW_UI = "http://127.0.0.1:5000"


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


def validation_markdown(
    summary: dict[str, Any], root: Path, findings: str | None = None, report_url: str | None = None
) -> str:
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
    if report_url:
        lines += [
            "",
            f"Full report: [index.html in the validate run's MLflow artifacts]({report_url}); on disk `{report}`.",
        ]
    else:
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


def stage_label(stage: str) -> str:
    """dvc.yaml's name of a lineage key: evaluate_teacher → evaluate@teacher."""
    return stage.replace("_", "@", 1) if stage.startswith("evaluate_") else stage


def stage_rows(root: Path, runs: dict[str, str], off: dict[str, str], query: str) -> list[str]:
    """One table row per dvc.yaml stage in pipeline order: its MLflow run, or why it has none."""
    ui = mlflow_ui()
    order = list(lineage_order(root))
    stages = order + sorted(set(runs) - set(order))
    rows = ["| stage | MLflow run |", "|---|---|"]
    for stage in stages:
        if stage in runs:
            rows.append(f"| {stage_label(stage)} | [{runs[stage]}]({ui}/#/runs/{runs[stage]}{query}) |")
        else:
            rows.append(f"| {stage_label(stage)} | {off.get(stage, 'no MLflow run recorded')} |")
    return rows


def promotion_markdown(
    root: Path,
    register_outcome: str,
    runs: dict[str, str] | None = None,
    off: dict[str, str] | None = None,
    query: str = "",
    experiment_id: str | None = None,
) -> str | None:
    """The gate's decision with links into the MLflow UI. ``runs``: {stage: run id} (default: the evaluated
    models' lineage files); ``off``: stages switched off in the settings; ``query``: the experiment kind's view."""
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
        f"- Model version: [{name} v{version}]({ui}/#/models/{quote(name)}/versions/{version}{query})",
        f"- Previous champion: {f'v{previous}' if previous else 'none'}",
        f"- Register run: [{decision.get('run_id')}]({ui}/#/runs/{decision.get('run_id')}{query})",
    ]
    if experiment_id:
        lines.append(f"- Experiment: [training runs]({ui}/#/experiments/{experiment_id}/runs{query})")
    serving = decision.get("serving")
    if isinstance(serving, dict) and serving.get("backend"):
        lines.append(f"- Serving: {serving.get('export', '')} on {serving['backend']}")
    if runs is None:
        runs = read_lineage(paths, "evaluate_teacher", "evaluate_student")
    if runs or off:
        lines += ["", *stage_rows(root, runs, off or {}, query)]
    lines += ["", f"Links open the MLflow UI at {ui} (`make ui`); set {MLFLOW_UI_ENV} to point elsewhere."]
    return "\n".join(lines)


@dataclass
class MlflowView:
    """Where the workspace's runs are in the MLflow UI: the experiment, the view its kind opens, stage runs."""

    experiment_id: str | None = None
    query: str = ""
    runs: dict[str, str] = field(default_factory=dict)
    problem: str | None = None  # why the store could not be read

    def run_url(self, run_id: str, path: str = "") -> str:
        return f"{mlflow_ui()}/#/experiments/{self.experiment_id}/runs/{run_id}{path}{self.query}"


def mlflow_view(workspace: Path) -> MlflowView:
    """The experiment and every stage's latest run id: lineage files first, then the store for stages that write
    none (report). A store that cannot be read only costs the artifacts their links."""
    import mlflow

    from distilflow.config.loading import load_params
    from distilflow.tracking.runs import configure_mlflow

    paths = Paths.at(workspace)
    params = load_params(paths.params_file)
    runs = read_lineage(paths, "evaluate_teacher", "evaluate_student", "validate")
    try:
        configure_mlflow(params, paths)
        experiment = mlflow.get_experiment_by_name(f"distilflow-{params.task}")
        if experiment is None:
            return MlflowView(runs=runs)
        view = MlflowView(experiment.experiment_id, ui_query(dict(experiment.tags)), runs)
        for stage in ("report",):
            found = mlflow.MlflowClient().search_runs(
                [experiment.experiment_id],
                filter_string=f"tags.`{STAGE_TAG}` = '{stage}'",
                order_by=["attributes.start_time DESC"],
                max_results=1,
            )
            if found:
                view.runs.setdefault(stage, found[0].info.run_id)
    except Exception as error:  # the artifacts are a courtesy: never fail a finished pipeline over a link
        return MlflowView(runs=runs, problem=str(error))
    return view


def stages_off(workspace: Path) -> dict[str, str]:
    """Stages that DVC runs but that make no MLflow run with these settings, and why."""
    from distilflow.config.loading import load_params

    if load_params(Paths.at(workspace).params_file).pretrain.enabled:
        return {}
    return {"pretrain": "off in params.yaml (pretrain.enabled: false): DVC records it, no MLflow run"}


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
    lines = [line for line in (output[start:] if start >= 0 else output).splitlines() if not line.startswith(DVC_NOISE)]
    headline = next((index for index, line in enumerate(lines) if line.startswith("validation of ")), len(lines))
    rows, totals = lines[:headline], lines[headline:]
    if len(rows) > keep:
        rows = [*rows[:keep], f"... {len(rows) - keep} more lines: see the report"]
    return "\n".join(rows + totals)
