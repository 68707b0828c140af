"""The validation summary (``reports/validation/summary.json``): what DVC tracks as validate's metrics."""

from __future__ import annotations

import json
from typing import Any

from distilflow.config.data_params import ValidateParams
from distilflow.config.rules import ERROR, RULES, WARNING
from distilflow.data.glue_io import RawSplit, split_path
from distilflow.data.validation.findings import RowAccount, ValidationReport, shown
from distilflow.data.validation.suites import GxSuite, checked_rules, suite_name
from distilflow.tasks import GlueTask


def _lines_by_rule(account: RowAccount) -> dict[str, list[int]]:
    lines: dict[str, list[int]] = {}
    for problem in account.dropped:
        lines.setdefault(problem.rule, []).append(problem.line)
    return lines


def build_summary(
    task: GlueTask,
    settings: ValidateParams,
    report: ValidationReport,
    raws: dict[str, RawSplit],
    stats: dict[str, dict[str, Any]],
    suite: GxSuite | None,
    elapsed: float,
) -> dict[str, Any]:
    """summary.json: per-rule and per-split counts, the split statistics, the suite and the settings."""
    rules: dict[str, dict[str, Any]] = {}
    checked = checked_rules(task, settings)
    for name, rule in RULES.items():
        effective = settings.severity.get(name, rule.severity)
        rules[name] = {"severity": effective, "checked": name in checked, "errors": 0, "warnings": 0}
    for count in report.counts:
        rules[count.rule]["errors" if count.severity == ERROR else "warnings"] += count.count
    splits: dict[str, Any] = {}
    for split in task.splits:
        raw, account = raws.get(split), report.accounts.get(split)
        entry: dict[str, Any] = {
            "file": shown(raw.path) if raw else shown(split_path(report.data_dir, split)),
            # rows = the rows data/validated gets; read = rows + dropped, each dropped row listed with its rule.
            "rows": account.kept if account else 0,
            "read": account.read if account else 0,
            "dropped": len(account.dropped) if account else 0,
            "dropped_by_rule": account.by_rule() if account else {},
            "dropped_lines": _lines_by_rule(account) if account else {},
            "unread": account.unread if account else 0,
            "errors": sum(c.count for c in report.counts if c.split == split and c.severity == ERROR),
            "warnings": sum(c.count for c in report.counts if c.split == split and c.severity == WARNING),
        }
        entry.update({key: value for key, value in stats.get(split, {}).items() if not key.startswith("_")})
        splits[split] = entry
    return {
        "task": task.name,
        "kind": task.kind,
        "data_dir": shown(report.data_dir),
        "ok": report.ok,
        "errors": report.errors,
        "warnings": report.warnings,
        "rows": {split: entry["rows"] for split, entry in splits.items()},
        "rows_read": {split: entry["read"] for split, entry in splits.items()},
        "rows_dropped": {split: entry["dropped"] for split, entry in splits.items()},
        "elapsed_seconds": round(elapsed, 3),
        "splits": splits,
        "rules": rules,
        "suite": {
            "name": suite_name(task),
            "expectations": suite.size if suite else 0,
            "great_expectations": suite.gx_version if suite else None,
        },
        "settings": settings.model_dump(),
    }


def summary_json(summary: dict[str, Any]) -> str:
    # allow_nan=False: DVC and MLflow both choke on NaN, so a stray one must fail here, loudly.
    return json.dumps(summary, indent=2, sort_keys=False, allow_nan=False) + "\n"
