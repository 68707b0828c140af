"""validate: the gate between ``data/raw`` and tokenization.

Bad data stops the pipeline here with a message naming file, line, column, rule and value. On failure the
report and JSON summary are still written (they are how a person finds the problem) but ``data/validated``
is left untouched, so no later stage can pick up half-checked data.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from distilflow.config.params import Params
from distilflow.data.validation import DataValidationError, ValidationReport, validate_folder
from distilflow.paths import Paths
from distilflow.tasks import get_task
from distilflow.tracking.runs import stage_run, write_json, write_lineage


def stage_metrics(report: ValidationReport) -> dict[str, float]:
    """Flat numbers for MLflow: the DVC metric (verdict, counts, rows), class shares per split, rules hit, time."""
    summary = report.summary
    metrics = {key: float(value) for key, value in dvc_metrics(report).items()}
    metrics["elapsed_seconds"] = float(summary["elapsed_seconds"])
    for split, entry in summary["splits"].items():
        for label, share in entry.get("class_shares", {}).items():
            metrics[f"class_share_{split}_{label}"] = float(share)
    for rule, entry in summary["rules"].items():
        if entry["errors"] or entry["warnings"]:
            metrics[f"rule_{rule}"] = float(entry["errors"] + entry["warnings"])
    return metrics


def dvc_metrics(report: ValidationReport) -> dict[str, Any]:
    """metrics/validate.json: the verdict, and per split the rows read, written to data/validated and dropped.

    ``rows_<split>`` counts rows written: a failed run writes none. On a passing run read = written + dropped.
    """
    metrics: dict[str, Any] = {
        "ok": report.ok,
        "errors": report.errors,
        "warnings": report.warnings,
        "dropped": report.dropped,
    }
    for split, entry in report.summary["splits"].items():
        metrics[f"rows_{split}"] = entry["rows"] if report.ok else 0
        metrics[f"read_{split}"] = entry["read"]
        metrics[f"dropped_{split}"] = entry["dropped"]
    return metrics


def _write_splits(report: ValidationReport, target: Path) -> list[Path]:
    """Write every split to a sibling folder first, then swap it in: a crash never leaves a mix of old and new.

    Each file is read back before the swap: its row count must be the rows read less the rows dropped.
    """
    import pyarrow.parquet as pq

    staging = target.with_name(target.name + ".tmp")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    for split, frame in report.frames.items():
        frame.to_parquet(staging / f"{split}.parquet", index=False)
        account = report.accounts[split]
        written = pq.read_metadata(staging / f"{split}.parquet").num_rows
        if written != account.read - len(account.dropped):
            raise RuntimeError(f"{split}: wrote {written} rows, but {account.format()}")
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)
    return sorted(target.glob("*.parquet"))


def run(params: Params, paths: Paths) -> dict[str, Any]:
    """Validate ``data/raw`` for ``params.task``; raise DataValidationError (message = findings) when it fails.

    Returns ``metrics`` (flat numbers) and ``artifacts`` (report page and JSON summary) for the caller to log.
    """
    task = get_task(params.task)
    settings = params.validate_
    reports = paths.validation_report_dir
    if reports.exists():
        shutil.rmtree(reports)  # a stale page from an earlier run must not pass for this one
    max_rows = {
        split: limit
        for split in task.splits
        if (limit := params.data.max_train_rows if split == "train" else params.data.max_dev_rows) is not None
    }
    # A failing validation is still a run worth keeping: MLflow marks it FAILED, with the report attached.
    with stage_run("validate", params, paths) as tracked:
        report = validate_folder(task, paths.raw_dir, settings, report_dir=reports, max_rows=max_rows)
        # validate_folder wrote the full summary (per rule, per split) beside the report; the DVC metric stays a
        # few flat columns, so `dvc exp show` is not flooded with one column per rule.
        summary_file = paths.validation_summary_file
        write_json(paths.metrics_file("validate"), dvc_metrics(report))
        artifacts = [reports / "index.html", summary_file]
        metrics = stage_metrics(report)
        tracked.log_metrics(metrics)
        for artifact in artifacts:
            tracked.log_artifact(artifact, "validation")
        if not report.ok:
            raise DataValidationError(report.format_findings(settings.max_errors_reported), report, artifacts)

        # DVC and the flow keep a stage's output: every dropped row and warning is named there, not only on disk.
        print(report.format_findings(settings.max_errors_reported))
        _write_splits(report, paths.validated_dir)
        # Carry the ingest run's id forward. Its lineage file is no dvc.yaml dependency on purpose: a new ingest run
        # of the same files is the same data version and reruns nothing; the run that first read them stays named.
        write_lineage(paths, "validate", tracked.run_id, "ingest")
    return {"metrics": metrics, "artifacts": artifacts, "summary": report.summary}
