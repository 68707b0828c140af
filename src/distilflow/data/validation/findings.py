"""Findings (one failing row, or one whole-file fact) and the report that gathers them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from distilflow.config.rules import ERROR, RULES, WARNING
from distilflow.data.glue_io import RowProblem
from distilflow.errors import UserError


def shown(path: Path) -> str:
    """A path as messages and the summary show it: relative to the working folder when inside it.

    DVC runs stages from the project root, so findings read ``data/raw/train.tsv:12`` and the committed
    metric file does not change with the folder the project was cloned into.
    """
    path = Path(path)
    if path.is_absolute():
        try:
            return str(path.relative_to(Path.cwd()))
        except ValueError:
            return str(path)
    return str(path)


class DataValidationError(UserError):
    """The data failed an error-severity rule; ``str()`` is the message a person acts on."""

    def __init__(
        self, message: str, report: ValidationReport | None = None, artifacts: list[Path] | None = None
    ) -> None:
        super().__init__(message)
        self.report = report
        # The report page and JSON summary are written even on failure; a tracking wrapper should still log them.
        self.artifacts = artifacts or []


@dataclass(frozen=True)
class Finding:
    file: str
    line: int | None
    """1-based line in the file, as an editor shows it; None for facts about the whole file."""
    column: str | None
    rule: str
    value: str
    severity: str
    split: str
    detail: str = ""

    @property
    def location(self) -> str:
        return self.file if self.line is None else f"{self.file}:{self.line}"

    def format(self) -> str:
        parts = [self.location]
        if self.column is not None:
            parts.append(f"column={self.column}")
        parts += [f"rule={self.rule}", f"value={self.value}", f"severity={self.severity}"]
        text = " ".join(parts)
        return f"{text} ({self.detail})" if self.detail else text

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "rule": self.rule,
            "value": self.value,
            "severity": self.severity,
            "split": self.split,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class RuleCount:
    """How many rows of one split failed one rule on one column: exact, unlike the capped finding list."""

    split: str
    file: str
    rule: str
    column: str | None
    severity: str
    count: int


@dataclass(frozen=True)
class RowAccount:
    """Where every data line of one split file went: kept (for ``data/validated``) or dropped, each with its rule.

    Built only when ``read == kept + len(dropped)``: a row can leave the data only as one of ``dropped``.
    """

    split: str
    file: str
    read: int
    """Data lines looked at (the header excluded)."""
    kept: int
    dropped: tuple[RowProblem, ...]
    """One problem per dropped line: the line, the rule that dropped it, the column and value."""
    unread: int = 0
    """Data lines past ``data.max_*_rows``, not looked at."""

    def __post_init__(self) -> None:
        lines = [problem.line for problem in self.dropped]
        if self.read != self.kept + len(self.dropped) or len(set(lines)) != len(lines):
            # A bug in the reader or the checks, not in the data: stop before anything is written.
            raise RuntimeError(
                f"{self.file}: {self.read} rows read but {self.kept} kept and {len(self.dropped)} dropped "
                f"({len(set(lines))} distinct lines)"
            )

    def by_rule(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for problem in self.dropped:
            counts[problem.rule] = counts.get(problem.rule, 0) + 1
        return counts

    def format(self) -> str:
        """``dev.tsv: 4 read, 2 kept, 2 dropped (label_not_in_set 2)``."""
        text = f"{self.file}: {self.read} read, {self.kept} kept, {len(self.dropped)} dropped"
        if self.dropped:
            text += " (" + ", ".join(f"{rule} {count}" for rule, count in sorted(self.by_rule().items())) + ")"
        if self.unread:
            text += f", {self.unread} past the row limit not read"
        return text


@dataclass
class ValidationReport:
    task: str
    data_dir: Path
    ok: bool
    summary: dict[str, Any]
    findings: list[Finding]
    counts: list[RuleCount]
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    """The kept rows per split, as ``data/validated`` holds them."""
    accounts: dict[str, RowAccount] = field(default_factory=dict)
    report_path: Path | None = None

    @property
    def dropped(self) -> int:
        return sum(len(account.dropped) for account in self.accounts.values())

    @property
    def errors(self) -> int:
        return sum(count.count for count in self.counts if count.severity == ERROR)

    @property
    def warnings(self) -> int:
        return sum(count.count for count in self.counts if count.severity == WARNING)

    def format_findings(self, limit: int | None = None) -> str:
        """The human message: failing rows (at most ``limit`` per rule and file), then counts per rule.

        When there are errors only they are listed row by row: warnings would bury them, and the summary
        and the report still count every warning.
        """
        lines: list[str] = []
        severity = ERROR if self.errors else WARNING
        listed: dict[tuple[str, str], int] = {}
        for finding in self.findings:  # already in file order: a person fixes a file top to bottom
            key = (finding.file, finding.rule)
            if finding.severity != severity or (limit is not None and listed.get(key, 0) >= limit):
                continue
            listed[key] = listed.get(key, 0) + 1
            lines.append(finding.format())
        totals: dict[tuple[str, str], int] = {}
        for count in self.counts:
            if count.severity == severity:
                totals[(count.file, count.rule)] = totals.get((count.file, count.rule), 0) + count.count
        for (file, rule), total in totals.items():
            if total > listed.get((file, rule), 0):
                lines.append(f"  ... and {total - listed.get((file, rule), 0)} more {rule} {severity}s in {file}")
        lines.append(self.headline())
        lines += [f"  rows {account.format()}" for account in self.accounts.values()]
        for rule, by_severity in self._per_rule().items():
            for level, total in by_severity.items():
                lines.append(f"  {level:<8}{rule:<20}{total:>8}  {RULES[rule].description}")
        if self.report_path is not None:
            lines.append(f"report: {shown(self.report_path)}")
        return "\n".join(lines)

    def headline(self) -> str:
        verdict = "passed" if self.ok else "FAILED"
        return (
            f"validation of {self.task} in {shown(self.data_dir)} {verdict}: "
            f"{self.errors} error(s), {self.warnings} warning(s), {self.dropped} row(s) dropped"
        )

    def _per_rule(self) -> dict[str, dict[str, int]]:
        per_rule: dict[str, dict[str, int]] = {}
        for count in sorted(self.counts, key=lambda item: (item.severity != ERROR, item.rule)):
            by_severity = per_rule.setdefault(count.rule, {})
            by_severity[count.severity] = by_severity.get(count.severity, 0) + count.count
        return per_rule
