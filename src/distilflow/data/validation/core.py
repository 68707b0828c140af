"""Validate a GLUE task folder: strict read, derived cross-row columns, the task's GX suite, summary and report."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from distilflow.config.data_params import ValidateParams
from distilflow.config.rules import ERROR, OFF, RULES, WARNING
from distilflow.data.glue_io import RawSplit, display_column, parse_scores, read_raw, split_path
from distilflow.data.validation.accounting import keep_rows
from distilflow.data.validation.findings import Finding, RowAccount, RuleCount, ValidationReport, shown
from distilflow.data.validation.suites import (
    CONFLICT_WITH,
    DUP_OF,
    ID,
    ID_IN_SPLIT,
    PIECES,
    SCORE,
    SPLIT,
    TRAIN_LINE,
    Outcome,
    class_column,
    parse_class_column,
    suite_for,
)
from distilflow.data.validation.summary import build_summary, summary_json
from distilflow.tasks import LABEL, LINE, GlueTask

# BERT's basic tokenizer splits on whitespace and around punctuation before WordPiece, so this count is a
# lower bound on the tokens a text becomes: anything above the budget is certainly truncated.
_PIECE_REGEX = r"\w+|[^\w\s]"
_VALUE_CHARS = 80
_HISTOGRAM_BINS = 20


def _value(text: object) -> str:
    """A value as the message shows it: quoted (so whitespace is visible) and cut to a readable length."""
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return "''"
    text = str(text)
    if len(text) > _VALUE_CHARS:
        text = text[: _VALUE_CHARS - 1] + "…"
    return repr(text)


def _text_key(frame: pd.DataFrame, task: GlueTask) -> pd.Series:
    """Whitespace-normalised text(s) of each row; NA where a text is missing, so such rows never match."""
    key: pd.Series | None = None
    for name in task.fields:
        # str.split() + join in Python is several times faster here than pandas' regex replace.
        texts = [" ".join(text.split()) if isinstance(text, str) else "" for text in frame[name].tolist()]
        part = pd.Series(texts, index=frame.index, dtype="str")
        part = part.where(part != "")
        key = part if key is None else key + "\t" + part
    assert key is not None
    return key


@dataclass
class _Prepared:
    raw: RawSplit
    frame: pd.DataFrame
    """The GX view: raw text with empty fields as NA, plus the derived per-row columns the suite checks."""
    key: pd.Series


def _prepare(task: GlueTask, raw: RawSplit, train: _Prepared | None) -> _Prepared:
    frame = raw.frame.copy()
    frame.insert(0, SPLIT, raw.split)
    columns = [*task.fields, LABEL, *([ID] if task.id_column else [])]
    for name in columns:
        frame[name] = frame[name].where(frame[name] != "")
    if task.id_column:
        frame[ID_IN_SPLIT] = raw.split + "\t" + frame[ID]  # ids must be unique within a file, not across files
    pieces = sum(
        (frame[name].fillna("").str.count(_PIECE_REGEX) for name in task.fields), start=pd.Series(0, index=frame.index)
    )
    frame[PIECES] = pieces.astype("int64")
    key = _text_key(frame, task)
    labelled_key = key + "\t" + frame[LABEL]
    first = frame.groupby(labelled_key, dropna=True, sort=False)[LINE].transform("first")
    frame[DUP_OF] = first.where(first != frame[LINE]).astype("Int64")
    if task.labels is None:
        frame[SCORE] = parse_scores(frame[LABEL])  # the reader's parser: the suite checks what is kept
    else:
        frame[CONFLICT_WITH] = _conflicts(frame, key)
        valid = frame[LABEL].isin(task.labels)
        for index, label in enumerate(task.labels):
            frame[class_column(raw.split, index)] = (frame[LABEL] == label).astype("float64").where(valid)
    if train is None:
        frame[TRAIN_LINE] = pd.array([pd.NA] * len(frame), dtype="Int64")
    else:
        first_in_train = train.frame[LINE].groupby(train.key, dropna=True, sort=False).first()
        frame[TRAIN_LINE] = key.map(first_in_train).astype("Int64")
    return _Prepared(raw, frame, key)


def _conflicts(frame: pd.DataFrame, key: pd.Series) -> pd.Series:
    """For rows whose text also appears with another label: the first line carrying a different label."""
    labels_per_key = frame[LABEL].groupby(key, dropna=True, sort=False).transform("nunique")
    out = pd.Series(pd.NA, index=frame.index, dtype="Int64")
    suspects = frame.loc[labels_per_key > 1, [LINE, LABEL]]
    for _, group in suspects.groupby(key[suspects.index], sort=False):
        pairs = list(zip(group.index, group[LINE], group[LABEL], strict=True))
        for index, _line, label in pairs:
            out[index] = next(other_line for _, other_line, other in pairs if other != label)
    return out


class _Collector:
    """Turns reader problems and GX outcomes into capped findings plus exact counts."""

    def __init__(self, task: GlueTask, settings: ValidateParams) -> None:
        self.task = task
        self.settings = settings
        self.findings: list[Finding] = []
        self.counts: list[RuleCount] = []
        self.error_lines: set[tuple[str, int]] = set()
        """(split, line) of every row with an error finding: such a run fails, so nothing of it is written."""

    def add(self, finding: Finding, count: int = 1) -> None:
        self.findings.append(finding)
        self.counts.append(
            RuleCount(finding.split, finding.file, finding.rule, finding.column, finding.severity, count)
        )

    def add_reader_problems(self, raw: RawSplit) -> None:
        limit = self.settings.max_errors_reported
        by_rule: dict[tuple[str, str | None], int] = {}
        for problem in raw.problems:
            self.error_lines.add((raw.split, problem.line))
            key = (problem.rule, problem.column)
            by_rule[key] = by_rule.get(key, 0) + 1
            if by_rule[key] <= limit:
                self.findings.append(
                    Finding(
                        shown(raw.path),
                        problem.line,
                        problem.column,
                        problem.rule,
                        problem.value,
                        ERROR,
                        raw.split,
                        problem.detail,
                    )
                )
        self.counts += [
            RuleCount(raw.split, shown(raw.path), rule, column, ERROR, count)
            for (rule, column), count in by_rule.items()
        ]

    def add_outcome(self, prepared: dict[str, _Prepared], outcome: Outcome, train_file: str) -> None:
        if outcome.success:
            return
        if outcome.rule == "class_balance":
            self._add_class_balance(prepared, outcome)
            return
        lines_by_split: dict[str, list[int]] = {}
        for split, line in outcome.rows:
            lines_by_split.setdefault(split, []).append(line)
        for split, lines in lines_by_split.items():
            self._add_rows(prepared[split], outcome, sorted(lines), train_file)

    def add_drops(self, account: RowAccount) -> None:
        """A ``row_dropped`` finding for each dropped row no error names: its rule is ``warning`` or ``off``."""
        severity = self.settings.severity.get("row_dropped", RULES["row_dropped"].severity)
        # A reader rule is always an error (the run fails); any other drop is checked against the errors actually
        # found, not the rule's severity, so a row the suite passed but the label parser refused is still named.
        silent = [
            problem
            for problem in account.dropped
            if not RULES[problem.rule].fixed and (account.split, problem.line) not in self.error_lines
        ]
        for problem in silent[: self.settings.max_errors_reported]:
            rule_severity = self.settings.severity.get(problem.rule, RULES[problem.rule].severity)
            detail = (
                f"left out of data/validated by {problem.rule} (validate.severity {rule_severity}): {problem.detail}"
            )
            column = problem.column
            self.findings.append(
                Finding(
                    account.file, problem.line, column, "row_dropped", problem.value, severity, account.split, detail
                )
            )
        if silent:
            self.counts.append(RuleCount(account.split, account.file, "row_dropped", None, severity, len(silent)))

    def _add_class_balance(self, prepared: dict[str, _Prepared], outcome: Outcome) -> None:
        task, settings = self.task, self.settings
        assert task.labels is not None and outcome.column is not None
        split, index = parse_class_column(outcome.column, tuple(prepared))
        share = outcome.observed or 0.0
        detail = (
            f"class share {share:.1%} outside the allowed band "
            f"{settings.class_share_min:.0%}..{settings.class_share_max:.0%}"
        )
        file = shown(prepared[split].raw.path)
        label = _value(task.labels[index])
        self.add(Finding(file, None, task.label_column, "class_balance", label, outcome.severity, split, detail))

    def _add_rows(self, prepared: _Prepared, outcome: Outcome, lines: list[int], train_file: str) -> None:
        settings, raw = self.settings, prepared.raw
        file, split, count = shown(raw.path), raw.split, len(lines)
        severity, tolerance_note = outcome.severity, ""
        rows = max(len(prepared.frame), 1)
        share_max = {"conflicting_labels": settings.conflict_share_max, "train_dev_leakage": settings.leakage_share_max}
        if outcome.rule in share_max and severity == ERROR and count / rows <= share_max[outcome.rule]:
            # GLUE itself repeats a few texts across labels and splits; a handful must not stop the pipeline.
            severity = WARNING
            name = "conflict_share_max" if outcome.rule == "conflicting_labels" else "leakage_share_max"
            tolerance_note = f"; {count / rows:.2%} of rows, within validate.{name}={share_max[outcome.rule]:g}"

        if severity == ERROR:
            self.error_lines.update((split, line) for line in lines)
        column = self._column(outcome.column)
        frame = prepared.frame.set_index(LINE, drop=False)
        source = raw.frame.set_index(LINE)
        for line in lines[: settings.max_errors_reported]:
            value, detail = self._describe(outcome, frame.loc[line], source.loc[line], train_file)
            self.findings.append(
                Finding(file, line, column, outcome.rule, value, severity, split, detail + tolerance_note)
            )
        self.counts.append(RuleCount(split, file, outcome.rule, column, severity, count))

    def _column(self, column: str | None) -> str | None:
        if column == PIECES:
            return "+".join(self.task.file_columns)
        if column == ID_IN_SPLIT:
            return self.task.id_column
        if column in (DUP_OF, CONFLICT_WITH, TRAIN_LINE):
            return "+".join(self.task.file_columns)
        if column == SCORE:
            return self.task.label_column
        return None if column is None else display_column(self.task, column)

    def _describe(self, outcome: Outcome, row: pd.Series, source: pd.Series, train_file: str) -> tuple[str, str]:
        """(value, detail) for one failing row: the value as written in the file, the detail saying why."""
        task, settings, rule = self.task, self.settings, outcome.rule
        text = str(source[outcome.column]) if outcome.column in task.fields else ""
        texts = _value(" | ".join(str(source[name]) for name in task.fields))
        label = _value(source[LABEL])
        if rule == "empty_text":
            return "''", "text is empty"
        if rule == "blank_text":
            return _value(text), f"only whitespace ({len(text)} characters)"
        if rule == "text_too_short":
            return _value(text), f"{len(text)} characters, fewer than validate.min_chars={settings.min_chars}"
        if rule == "text_too_long":
            return _value(text), f"{len(text)} characters, more than validate.max_chars={settings.max_chars}"
        if rule == "long_text":
            return texts, f"{row[PIECES]} pieces, more than validate.long_text_tokens={settings.long_text_tokens}"
        if rule in ("missing_label", "missing_id"):
            return "''", f"{self._column(outcome.column)} is empty"
        if rule == "label_not_in_set":
            return label, f"allowed labels: {', '.join(task.labels or ())}"
        if rule == "score_not_numeric":
            return label, "not a decimal number"
        if rule == "score_out_of_range":
            low, high = task.score_range
            return label, f"allowed range {low:g}..{high:g}"
        if rule == "duplicate_id":
            return _value(source[ID]), "the same id is on another row"
        if rule == "duplicate_example":
            return texts, f"same text and label as line {row[DUP_OF]}"
        if rule == "conflicting_labels":
            return texts, f"labelled {source[LABEL]!r} here, differently at line {row[CONFLICT_WITH]}"
        if rule == "train_dev_leakage":
            return texts, f"same text at {train_file}:{row[TRAIN_LINE]}"
        raise AssertionError(f"no description for rule {rule!r}")  # every suite rule is handled above


def _histogram(values: pd.Series) -> dict[str, list[float]]:
    if values.empty:
        return {"edges": [], "counts": []}
    counts, edges = np.histogram(values.to_numpy(dtype="float64"), bins=_HISTOGRAM_BINS)
    return {"edges": [float(edge) for edge in edges], "counts": [int(count) for count in counts]}


def _split_stats(task: GlueTask, prepared: _Prepared) -> dict[str, Any]:
    frame = prepared.frame
    chars = sum((frame[name].fillna("").str.len() for name in task.fields), start=pd.Series(0, index=frame.index))
    stats: dict[str, Any] = {
        "chars": {"min": int(chars.min()), "mean": round(float(chars.mean()), 2), "max": int(chars.max())}
        if len(frame)
        else {"min": 0, "mean": 0.0, "max": 0},
        "pieces_p95": int(frame[PIECES].quantile(0.95)) if len(frame) else 0,
        "pieces_max": int(frame[PIECES].max()) if len(frame) else 0,
    }
    if task.labels is not None:
        valid = frame[LABEL][frame[LABEL].isin(task.labels)]
        total = max(len(valid), 1)
        stats["class_counts"] = {label: int((valid == label).sum()) for label in task.labels}
        stats["class_shares"] = {label: round(int((valid == label).sum()) / total, 4) for label in task.labels}
    else:
        # Finite only: a score like 1e999 is reported as out of range, and must not crash the statistics.
        scores = frame[SCORE][np.isfinite(frame[SCORE])]
        stats["score"] = (
            {"min": float(scores.min()), "mean": round(float(scores.mean()), 4), "max": float(scores.max())}
            if len(scores)
            else {"min": 0.0, "mean": 0.0, "max": 0.0}
        )
    stats["_chars_histogram"] = _histogram(chars)
    if task.labels is None:
        stats["_score_histogram"] = _histogram(frame[SCORE][np.isfinite(frame[SCORE])])
    return stats


def _read_folder(
    task: GlueTask, data_dir: Path, max_rows: dict[str, int], collector: _Collector
) -> dict[str, RawSplit]:
    """Each split file the task needs, read strictly; a missing file or a reader problem becomes a finding."""
    raws: dict[str, RawSplit] = {}
    for split in task.splits:
        path = split_path(data_dir, split)
        if not path.is_file():
            detail = f"expected {path.name} for task {task.name} in {data_dir}"
            collector.add(Finding(shown(path), None, None, "missing_file", _value(path.name), ERROR, split, detail))
            continue
        raws[split] = read_raw(task, path, split, max_rows=max_rows.get(split))
        collector.add_reader_problems(raws[split])
    return raws


def _prepare_splits(task: GlueTask, raws: dict[str, RawSplit], collector: _Collector) -> dict[str, _Prepared]:
    """The GX view of every readable split with rows; a split without rows is an ``empty_split`` finding."""
    prepared: dict[str, _Prepared] = {}
    train = None
    for split, raw in raws.items():
        if not raw.readable:
            continue
        if raw.frame.empty:
            severity = collector.settings.severity.get("empty_split", RULES["empty_split"].severity)
            if severity != OFF:
                detail = "the file has a header but no data rows" if task.header else "the file has no rows"
                collector.add(Finding(shown(raw.path), None, None, "empty_split", "'0 rows'", severity, split, detail))
            continue
        prepared[split] = _prepare(task, raw, train if split != "train" else None)
        if split == "train":
            train = prepared[split]
    return prepared


def validate_folder(
    task: GlueTask,
    data_dir: Path,
    settings: ValidateParams,
    *,
    report_dir: Path | None = None,
    max_rows: dict[str, int] | None = None,
) -> ValidationReport:
    """Run every rule on the task's split files in ``data_dir``; write ``index.html`` and ``summary.json`` to
    ``report_dir`` when given. Never raises for bad data: the report says what is wrong (``ok`` is False)."""
    started = time.perf_counter()
    data_dir = Path(data_dir)
    collector = _Collector(task, settings)
    raws = _read_folder(task, data_dir, max_rows or {}, collector)
    prepared = _prepare_splits(task, raws, collector)
    suite = suite_for(task, settings, tuple(prepared)) if prepared else None
    if suite is not None:
        combined = pd.concat([item.frame for item in prepared.values()], ignore_index=True)
        train_file = shown(split_path(data_dir, "train"))
        for outcome in suite.run(combined):
            collector.add_outcome(prepared, outcome, train_file)

    frames, accounts = keep_rows(task, raws)
    for account in accounts.values():
        collector.add_drops(account)
    stats = {split: _split_stats(task, item) for split, item in prepared.items()}
    report = ValidationReport(
        task=task.name,
        data_dir=data_dir,
        ok=not any(count.severity == ERROR and count.count > 0 for count in collector.counts),
        summary={},
        findings=sorted(
            collector.findings,
            key=lambda f: (f.severity != ERROR, task.splits.index(f.split), f.line or 0, f.rule, f.column or ""),
        ),
        counts=collector.counts,
        frames=frames,
        accounts=accounts,
    )
    report.summary = build_summary(task, settings, report, raws, stats, suite, time.perf_counter() - started)
    if report_dir is not None:
        from distilflow.data.validation.html_report import write_report

        report.report_path = write_report(report, Path(report_dir), stats)
        report.summary["elapsed_seconds"] = round(time.perf_counter() - started, 3)
        (Path(report_dir) / "summary.json").write_text(summary_json(report.summary), encoding="utf-8")
    return report
