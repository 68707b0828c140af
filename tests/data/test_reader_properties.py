"""Bad input at volume (issue #31): Hypothesis writes GLUE files with faults at known lines, for every task layout.

Properties, for every generated file:
(a) a clean file reads back exactly: every field, after decoding, equal to what was written; the row count equal;
(b) every injected fault is named at its exact line, with its rule and column, and nothing else is; nothing raises;
(c) no row is silently changed or dropped: rows kept + rows reported = rows written.

The reader (``read_raw`` + ``normalise``, as ``validate_folder`` calls them, and the row account it builds) sees
``READER_FILES`` files per run. Great Expectations costs about 0.2 s a run, so ``FOLDERS`` task folders (one file
per split) go through the whole ``validate_folder``, with content faults too and a random severity for the label
rules, checking each finding's ``FILE:LINE`` message. The figures go to ``record("glue-reader-property", ...)``.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distilflow.config.data_params import ValidateParams
from distilflow.data.glue_io import RowProblem, read_raw, required_columns
from distilflow.data.validation import validate_folder
from distilflow.data.validation.accounting import keep_rows
from distilflow.data.validation.findings import RowAccount, shown
from distilflow.tasks import LABEL, LINE, GlueTask
from tests.data.glue_faults import CONTENT_FAULTS, LABEL_FAULTS, STRUCTURAL, TASK_LIST, GlueFile, glue_files
from tests.reliability_record import record

# Bad input at volume belongs to the reliability suite (`make test-faults`, which CI runs; docs/reliability.md).
pytestmark = pytest.mark.faults
READER_FILES = 2000
FOLDERS = 15
LABEL_RULES = ("label_not_in_set", "missing_label", "score_not_numeric", "score_out_of_range")


@dataclass
class Tally:
    files_tried: int = 0
    clean_files: int = 0
    clean_files_read_back_exactly: int = 0
    faulty_files: int = 0
    faulty_files_with_findings: int = 0
    faults_injected: int = 0
    faults_named_at_their_line: int = 0
    rows_written: int = 0
    rows_kept: int = 0
    rows_reported: int = 0
    rows_silently_changed: int = 0
    folders_validated: int = 0
    folder_files: int = 0
    findings_with_file_line: int = 0
    row_dropped_findings: int = 0
    """Rows dropped by a label rule set to warning or off, each named by a row_dropped finding."""
    faults_by_kind: Counter[str] = field(default_factory=Counter)
    files_by_task: Counter[str] = field(default_factory=Counter)


def _expected_value(task: GlueTask, target: str, text: str) -> object:
    if target != LABEL:
        return text
    return float(text) if task.labels is None else task.labels.index(text)


def _changed_rows(file: GlueFile, frame: pd.DataFrame, problem_lines: set[int]) -> int:
    """Rows kept with any field not as written, kept rows never written, and written rows neither kept nor named."""
    columns = file.task.columns(file.split)
    wanted = required_columns(file.task)
    kept = {int(line): index for index, line in enumerate(frame[LINE].tolist())}
    values = {target: frame[target].tolist() for target in wanted.values()}  # plain lists: iloc per row is slow
    changed = len(set(kept) - {line.number for line in file.rows})
    for line in file.rows:
        if line.number in problem_lines:
            changed += line.number in kept  # named as a problem, yet kept
            continue
        if line.number not in kept or line.fields is None:
            changed += 1
            continue
        at = kept[line.number]
        expected = {t: _expected_value(file.task, t, line.fields[columns.index(c)]) for c, t in wanted.items()}
        changed += any(values[target][at] != value for target, value in expected.items())
    return changed


def _read(file: GlueFile, path: Path) -> tuple[pd.DataFrame, RowAccount, list[RowProblem]]:
    """The file as ``validate_folder`` reads it: the kept rows, the row account and every problem named."""
    path.write_bytes(file.render())
    raw = read_raw(file.task, path, file.split)
    frames, accounts = keep_rows(file.task, {file.split: raw})  # raises unless read == kept + dropped
    account = accounts[file.split]
    # An unreadable header's account drops every data line under the header's rule; the reader named line 1.
    problems = set(raw.problems) | (set(account.dropped) if raw.readable else set())
    return frames.get(file.split, raw.frame), account, sorted(problems, key=lambda p: p.line)


def _check_reader(file: GlueFile, path: Path, tally: Tally) -> None:
    frame, account, problems = _read(file, path)
    got = sorted((p.line, p.rule, p.column) for p in problems)
    expected = sorted((line.number, line.rule, line.column) for line in file.faults)
    named = {(p.line, p.rule, p.column) for p in problems} & set(expected)
    header_lost = file.task.header and file.lines[0].rule is not None
    changed = 0 if header_lost else _changed_rows(file, frame, {p.line for p in problems})

    tally.files_tried += 1
    tally.files_by_task[file.task.name] += 1
    tally.faults_by_kind.update(file.kinds)
    tally.faults_injected += len(expected)
    tally.faults_named_at_their_line += len(named)
    tally.rows_written += len(file.rows)
    tally.rows_kept += account.kept
    tally.rows_reported += len(account.dropped)
    tally.rows_silently_changed += changed
    if expected:
        tally.faulty_files += 1
        tally.faulty_files_with_findings += len(named) == len(expected)
    else:
        tally.clean_files += 1
        tally.clean_files_read_back_exactly += changed == 0 and not problems and len(frame) == len(file.rows)

    assert got == expected, (file.kinds, got, expected)
    assert changed == 0, (file.kinds, frame.to_dict("records"))
    assert account.read == len(file.rows) and account.kept + len(account.dropped) == len(file.rows)
    if header_lost:
        assert account.kept == 0 and [p.line for p in account.dropped] == [line.number for line in file.rows]


@st.composite
def _folders(draw: st.DrawFn) -> tuple[GlueTask, dict[str, GlueFile], str]:
    task = draw(st.sampled_from(TASK_LIST))
    kinds = STRUCTURAL + LABEL_FAULTS + CONTENT_FAULTS
    files = {split: draw(glue_files(task, split, prefix=f"{split}-", kinds=kinds)) for split in task.splits}
    return task, files, draw(st.sampled_from(["error", "warning", "off"]))


def _dropping_rule(detail: str) -> str:
    match = re.match(r"left out of data/validated by (\w+) ", detail)
    assert match, detail
    return match.group(1)


def _check_folder(task: GlueTask, files: dict[str, GlueFile], severity: str, folder: Path, tally: Tally) -> None:
    """The whole validation: each fault an error at its FILE:LINE (or a row_dropped there), no other error."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for split, file in files.items():
        (folder / f"{split}.tsv").write_bytes(file.render())
    report = validate_folder(task, folder, ValidateParams(severity=dict.fromkeys(LABEL_RULES, severity)))

    expected_errors: set[tuple[str, int, str | None, str | None]] = set()
    expected_drops: set[tuple[str, int, str | None, str | None]] = set()
    for split, file in files.items():
        name = shown(folder / f"{split}.tsv")
        for line in file.faults:
            relaxed = line.rule in LABEL_RULES and severity != "error"
            (expected_drops if relaxed else expected_errors).add((name, line.number, line.rule, line.column))
        account = report.accounts[split]
        assert account.read == len(file.rows) == account.kept + len(account.dropped)
        if split in report.frames and not (task.header and file.lines[0].rule):
            assert _changed_rows(file, report.frames[split], {p.line for p in account.dropped}) == 0
    errors = {(f.file, f.line, f.rule, f.column) for f in report.findings if f.severity == "error"}
    drops = {(f.file, f.line, _dropping_rule(f.detail), f.column) for f in report.findings if f.rule == "row_dropped"}
    assert errors == expected_errors and drops == expected_drops, (errors, expected_errors, drops, expected_drops)
    assert report.ok == (not expected_errors)
    tally.row_dropped_findings += len(drops)
    for finding in report.findings:
        if finding.line is not None:
            assert finding.format().startswith(f"{finding.file}:{finding.line} ")
            tally.findings_with_file_line += 1
    tally.folders_validated += 1
    tally.folder_files += len(files)


def test_reader_and_validation_properties_at_volume(tmp_path: Path) -> None:
    # Files go to memory where the system has it: a disk write and read per example is a third of the run's time.
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else tmp_path) as folder:
        _run_properties(Path(folder))


def _run_properties(tmp_path: Path) -> None:
    tally = Tally()
    started, cpu_started = time.perf_counter(), time.process_time()
    no_db = {"deadline": None, "database": None, "suppress_health_check": list(HealthCheck)}

    @settings(max_examples=READER_FILES, **no_db)  # type: ignore[arg-type]
    @given(file=glue_files())
    def reader_property(file: GlueFile) -> None:
        _check_reader(file, tmp_path / f"{file.split}.tsv", tally)

    @settings(max_examples=FOLDERS, **no_db)  # type: ignore[arg-type]
    @given(case=_folders())
    def validation_property(case: tuple[GlueTask, dict[str, GlueFile], str]) -> None:
        _check_folder(*case, tmp_path / "folder", tally)

    reader_property()
    reader_seconds = time.perf_counter() - started
    validation_property()
    figures = {item.name: getattr(tally, item.name) for item in fields(tally)}
    figures |= {"faults_by_kind": dict(tally.faults_by_kind), "files_by_task": dict(tally.files_by_task)}
    figures |= {"reader_seconds": round(reader_seconds, 1), "seconds": round(time.perf_counter() - started, 1)}
    figures["cpu_seconds"] = round(time.process_time() - cpu_started, 1)  # wall time follows the machine's load
    record("glue-reader-property", figures)
    print(figures)
    assert tally.files_tried >= READER_FILES and tally.folders_validated >= FOLDERS
    assert set(tally.files_by_task) == {task.name for task in TASK_LIST}  # single, pair and regression layouts
    assert tally.rows_silently_changed == 0
    assert tally.rows_kept + tally.rows_reported == tally.rows_written
    assert (
        tally.faulty_files_with_findings == tally.faulty_files
        and tally.clean_files_read_back_exactly == tally.clean_files
    )
