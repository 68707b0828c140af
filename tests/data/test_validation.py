"""The validate gate: every kind of bad input stops it with file, line and rule named; good data passes.

Each bad-input case writes a real file into a throwaway project and runs ``distilflow validate`` on it. The
default suite runs the CLI command in-process (Great Expectations takes seconds to import, once per process);
the ``slow`` suite runs every case again as a ``python -m distilflow`` subprocess.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from distilflow.config.data_params import ValidateParams
from distilflow.config.loading import ParamsError, parse_params
from distilflow.config.params import Params
from distilflow.data.validation import RULES, DataValidationError, validate_folder
from distilflow.paths import Paths
from distilflow.tasks import LABEL, LINE, TASKS
from tests.data.validation_helpers import (
    FIXTURES,
    CliResult,
    Project,
    cli_args,
    make_project,
    run_cli_in_process,
    run_cli_subprocess,
)


def _set_field(project: Project, name: str, line: int, column: int, value: str) -> None:
    lines = project.lines(name)
    parts = lines[line - 1].split("\t")
    parts[column] = value
    lines[line - 1] = "\t".join(parts)
    project.write_lines(name, lines)


def _append(project: Project, name: str, row: str) -> None:
    lines = [line for line in project.lines(name) if line]
    project.write_lines(name, [*lines, row, ""])


def _copy_line(project: Project, source: str, line: int, target: str) -> None:
    _append(project, target, project.lines(source)[line - 1])


def _flip_label(project: Project) -> None:
    text, label = project.lines("train.tsv")[3].split("\t")
    _append(project, "train.tsv", f"{text}\t{1 - int(label)}")


def _invalid_utf8(project: Project) -> None:
    data = project.file("train.tsv").read_bytes().split(b"\n")
    data[6] = data[6].replace(b"stupor", b"stup\xff\xfer")  # Latin-1 bytes pasted into a UTF-8 file
    project.file("train.tsv").write_bytes(b"\n".join(data))


def _all_one_label(project: Project) -> None:
    lines = [line.split("\t") for line in project.lines("train.tsv") if line]
    project.write_lines("train.tsv", ["\t".join([parts[0], "1", "", parts[3]]) for parts in lines] + [""])


def _nul_byte(project: Project) -> None:
    data = project.file("dev.tsv").read_bytes().split(b"\n")
    data[3] = data[3].replace(b" ", b"\x00", 1)  # a NUL, as a UTF-16 or binary file carries them
    project.file("dev.tsv").write_bytes(b"\n".join(data))


def _insert_blank_line(project: Project) -> None:
    lines = project.lines("train.tsv")
    project.write_lines("train.tsv", [*lines[:4], "", *lines[4:]])


@dataclass(frozen=True)
class Case:
    """One kind of bad input: how to break a fixture, and where the message must point."""

    id: str
    task: str
    break_it: Callable[[Project], None]
    file: str
    line: int | None
    rule: str
    params: dict[str, object] = field(default_factory=dict)


CASES = [
    Case(
        "missing-column", "sst2", lambda p: _set_field(p, "train.tsv", 1, 1, "labl"), "train.tsv", 1, "missing_column"
    ),
    Case("empty-text", "sst2", lambda p: _set_field(p, "train.tsv", 3, 0, ""), "train.tsv", 3, "empty_text"),
    Case("whitespace-only-text", "rte", lambda p: _set_field(p, "dev.tsv", 3, 2, "   "), "dev.tsv", 3, "blank_text"),
    Case("empty-label-field", "qnli", lambda p: _set_field(p, "train.tsv", 4, 3, ""), "train.tsv", 4, "missing_label"),
    Case(
        "label-outside-set",
        "mnli",
        lambda p: _set_field(p, "dev_matched.tsv", 3, 15, "entailmnt"),
        "dev_matched.tsv",
        3,
        "label_not_in_set",
    ),
    Case(
        "score-above-range",
        "stsb",
        lambda p: _set_field(p, "train.tsv", 5, 9, "5.5"),
        "train.tsv",
        5,
        "score_out_of_range",
    ),
    Case(
        "score-not-numeric", "stsb", lambda p: _set_field(p, "dev.tsv", 2, 9, "n/a"), "dev.tsv", 2, "score_not_numeric"
    ),
    Case("empty-id", "stsb", lambda p: _set_field(p, "train.tsv", 3, 0, ""), "train.tsv", 3, "missing_id"),
    Case("duplicate-id", "qqp", lambda p: _set_field(p, "train.tsv", 6, 0, "402555"), "train.tsv", 6, "duplicate_id"),
    Case("conflicting-labels", "sst2", _flip_label, "train.tsv", 14, "conflicting_labels"),
    Case(
        "train-dev-leakage",
        "mrpc",
        lambda p: _copy_line(p, "train.tsv", 2, "dev.tsv"),
        "dev.tsv",
        6,
        "train_dev_leakage",
    ),
    Case(
        "class-imbalance-as-error",
        "cola",
        _all_one_label,
        "train.tsv",
        None,
        "class_balance",
        {"severity": {"class_balance": "error"}},
    ),
    Case("invalid-utf8", "cola", _invalid_utf8, "train.tsv", 7, "invalid_utf8"),
    Case("ragged-row", "qqp", lambda p: _set_field(p, "dev.tsv", 3, 5, "0\textra"), "dev.tsv", 3, "ragged_row"),
    Case("blank-line", "sst2", _insert_blank_line, "train.tsv", 5, "ragged_row"),
    Case("nul-byte", "rte", _nul_byte, "dev.tsv", 4, "nul_byte"),
    Case(
        "dropped-row-as-error",
        "sst2",
        lambda p: _set_field(p, "dev.tsv", 3, 1, "2"),
        "dev.tsv",
        3,
        "row_dropped",
        {"severity": {"label_not_in_set": "off", "row_dropped": "error"}},
    ),
    Case(
        "text-too-long",
        "rte",
        lambda p: _set_field(p, "train.tsv", 2, 1, "word " * 500),
        "train.tsv",
        2,
        "text_too_long",
    ),
    Case(
        "text-too-short",
        "sst2",
        lambda p: _set_field(p, "train.tsv", 9, 0, "a "),
        "train.tsv",
        9,
        "text_too_short",
        {"min_chars": 3},
    ),
    Case(
        "long-text-as-error",
        "qnli",
        lambda p: _set_field(p, "train.tsv", 3, 2, "very " * 150 + "long."),
        "train.tsv",
        3,
        "long_text",
        {"long_text_tokens": 100, "severity": {"long_text": "error"}},
    ),
    Case(
        "duplicate-example-as-error",
        "wnli",
        lambda p: _copy_line(p, "train.tsv", 3, "train.tsv"),
        "train.tsv",
        8,
        "duplicate_example",
        {"severity": {"duplicate_example": "error"}},
    ),
    Case(
        "missing-split-file",
        "mnli",
        lambda p: p.file("dev_mismatched.tsv").unlink(),
        "dev_mismatched.tsv",
        None,
        "missing_file",
    ),
    Case(
        "header-only-file",
        "sst2",
        lambda p: p.write_lines("dev.tsv", ["sentence\tlabel", ""]),
        "dev.tsv",
        None,
        "empty_split",
    ),
]


def _prepare(case: Case, tmp_path: Path) -> tuple[Project, list[str]]:
    project = make_project(tmp_path, TASKS[case.task].dir_name)
    case.break_it(project)
    params = project.write_params(case.params) if case.params else None
    return project, cli_args(case.task, project, params)


def _check_failure(case: Case, project: Project, result: CliResult, before: dict[str, str]) -> None:
    assert result.exit_code == 1, result.stdout + result.stderr
    message = result.stderr
    path = str(project.file(case.file))
    location = path if case.line is None else f"{path}:{case.line}"
    assert f"rule={case.rule}" in message
    lines = message.splitlines()
    assert any(line.startswith(location + " ") and f"rule={case.rule}" in line for line in lines), message
    assert "FAILED" in message
    assert project.snapshot() == before, "a failed validation changed downstream outputs"
    summary = json.loads((project.report_dir / "summary.json").read_text())
    assert summary["ok"] is False and summary["rules"][case.rule]["errors"] >= 1
    assert (project.report_dir / "index.html").is_file()


def test_every_rule_has_a_bad_input_case() -> None:
    assert {case.rule for case in CASES} == set(RULES)
    assert len({case.id for case in CASES}) == len(CASES) >= 12


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_stops_the_cli(case: Case, tmp_path: Path) -> None:
    project, args = _prepare(case, tmp_path)
    before = project.snapshot()
    _check_failure(case, project, run_cli_in_process(args), before)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_stops_the_cli_subprocess(case: Case, tmp_path: Path) -> None:
    project, args = _prepare(case, tmp_path)
    before = project.snapshot()
    _check_failure(case, project, run_cli_subprocess(args), before)


def test_cli_subprocess_exit_code_and_message(tmp_path: Path) -> None:
    """One real process boundary in the fast suite: exit status and stderr as DVC and a shell see them."""
    case = next(case for case in CASES if case.id == "ragged-row")
    project, args = _prepare(case, tmp_path)
    before = project.snapshot()
    _check_failure(case, project, run_cli_subprocess(args), before)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_fixture_folder_validates_clean(name: str) -> None:
    task = TASKS[name]
    report = validate_folder(task, FIXTURES / task.dir_name, ValidateParams())
    assert report.ok, report.format_findings()
    assert report.findings == [] and report.counts == []
    assert set(report.frames) == set(task.splits)
    for split, frame in report.frames.items():
        assert list(frame.columns) == [LINE, *task.fields, LABEL, *(["id"] if task.id_column else [])]
        assert len(frame) == report.summary["rows"][split] > 0
        first_data_line = 2 if task.header else 1
        assert frame[LINE].iloc[0] == first_data_line and frame[LINE].is_monotonic_increasing
        if task.labels is None:
            assert frame[LABEL].dtype == "float64" and frame[LABEL].between(*task.score_range).all()
        else:
            assert frame[LABEL].dtype == "int64" and set(frame[LABEL]) <= set(range(task.num_labels))
    json.dumps(report.summary, allow_nan=False)


def test_clean_folder_passes_the_cli(tmp_path: Path) -> None:
    project = make_project(tmp_path, "MRPC")  # BOM in the header, quotes in the texts
    result = run_cli_in_process(cli_args("mrpc", project, None))
    assert result.exit_code == 0, result.stderr
    assert "passed: 0 error(s), 0 warning(s)" in result.stdout


def test_warnings_do_not_fail_and_are_listed(tmp_path: Path) -> None:
    project = make_project(tmp_path, "SST-2")
    _copy_line(project, "train.tsv", 5, "train.tsv")  # a repeated example: a warning by default
    report = validate_folder(TASKS["sst2"], project.raw, ValidateParams())
    assert report.ok and report.errors == 0 and report.warnings == 1
    assert f"{project.file('train.tsv')}:14 column=sentence rule=duplicate_example" in report.format_findings()


def test_conflicts_within_tolerance_are_warnings(tmp_path: Path) -> None:
    project = make_project(tmp_path, "SST-2")
    _flip_label(project)
    strict = validate_folder(TASKS["sst2"], project.raw, ValidateParams())
    tolerant = validate_folder(TASKS["sst2"], project.raw, ValidateParams(conflict_share_max=0.2))
    assert not strict.ok and tolerant.ok
    assert {f.severity for f in tolerant.findings if f.rule == "conflicting_labels"} == {"warning"}
    assert [f.line for f in strict.findings if f.rule == "conflicting_labels"] == [4, 14]


def test_off_rule_is_not_checked(tmp_path: Path) -> None:
    project = make_project(tmp_path, "SST-2")
    _flip_label(project)
    report = validate_folder(TASKS["sst2"], project.raw, ValidateParams(severity={"conflicting_labels": "off"}))
    assert report.ok and not any(f.rule == "conflicting_labels" for f in report.findings)


def test_findings_are_capped_but_counted(tmp_path: Path) -> None:
    project = make_project(tmp_path, "SST-2")
    lines = project.lines("train.tsv")
    project.write_lines("train.tsv", [lines[0], *(f"   \t{i % 2}" for i in range(30)), ""])
    report = validate_folder(TASKS["sst2"], project.raw, ValidateParams(max_errors_reported=5))
    listed = [f for f in report.findings if f.rule == "blank_text"]
    assert [f.line for f in listed] == [2, 3, 4, 5, 6]
    assert report.summary["rules"]["blank_text"]["errors"] == 30
    message = report.format_findings(limit=3)
    assert "... and 27 more blank_text errors" in message
    assert any(line.split()[:3] == ["error", "blank_text", "30"] for line in message.splitlines())


def test_report_renders_offline(tmp_path: Path) -> None:
    project = make_project(tmp_path, "SST-2")
    _flip_label(project)
    validate_folder(TASKS["sst2"], project.raw, ValidateParams(), report_dir=project.report_dir)
    html = (project.report_dir / "index.html").read_text(encoding="utf-8")
    # No network: nothing fetched from a CDN, no scripts, every chart inline.
    assert "http://" not in html and "https://" not in html and "<script" not in html and "<link" not in html
    assert html.count("<svg") >= 4 and "conflicting_labels" in html and "FAILED" in html
    summary = json.loads((project.report_dir / "summary.json").read_text())
    assert summary["rules"]["conflicting_labels"]["errors"] == 2 and summary["splits"]["train"]["rows"] == 13


def test_severity_keys_are_checked() -> None:
    with pytest.raises(ParamsError, match="unknown validation rule 'class_balanse'"):
        parse_params({"validate": {"severity": {"class_balanse": "error"}}})
    with pytest.raises(ParamsError, match="always an error"):
        parse_params({"validate": {"severity": {"ragged_row": "warning"}}})
    with pytest.raises(ParamsError, match="cannot be off"):
        parse_params({"validate": {"severity": {"row_dropped": "off"}}})
    with pytest.raises(ParamsError, match="class_share_min"):
        parse_params({"validate": {"class_share_min": 0.6, "class_share_max": 0.4}})


def _params(tmp_path: Path, **validate: object) -> tuple[Params, Paths]:
    return parse_params({"task": "sst2", "validate": validate}), Paths.at(tmp_path / "project")


def test_stage_writes_validated_splits_report_and_metric(tmp_path: Path, mlflow_store: str) -> None:
    from distilflow.stages import validate as stage

    make_project(tmp_path, "SST-2")
    params, paths = _params(tmp_path)
    result = stage.run(params, paths)
    frames = {split: pd.read_parquet(paths.validated_dir / f"{split}.parquet") for split in ("train", "dev")}
    assert len(frames["train"]) == 12 and len(frames["dev"]) == 5
    assert sorted(p.name for p in paths.validated_dir.iterdir()) == ["dev.parquet", "train.parquet"]
    metric = json.loads(paths.metrics_file("validate").read_text())
    assert metric == {
        "ok": True,
        "errors": 0,
        "warnings": 0,
        "dropped": 0,
        "rows_train": 12,
        "read_train": 12,
        "dropped_train": 0,
        "rows_dev": 5,
        "read_dev": 5,
        "dropped_dev": 0,
    }
    summary = json.loads((paths.reports_dir / "validation" / "summary.json").read_text())
    assert summary["rows"] == {"train": 12, "dev": 5} and summary["rules"]["label_not_in_set"]["checked"]
    assert result["metrics"]["ok"] == 1.0 and result["metrics"]["rows_train"] == 12.0
    assert all(Path(artifact).is_file() for artifact in result["artifacts"])


def test_stage_failure_leaves_downstream_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_store: str
) -> None:
    from distilflow.stages import validate as stage

    project = make_project(tmp_path, "SST-2")
    _set_field(project, "train.tsv", 7, 1, "positive")
    before = project.snapshot()
    params, paths = _params(tmp_path)
    monkeypatch.chdir(project.root)  # as DVC runs stages: paths in the message are then relative to the project
    with pytest.raises(DataValidationError) as raised:
        stage.run(params, paths)
    assert "data/raw/train.tsv:7 column=label rule=label_not_in_set value='positive'" in str(raised.value)
    assert project.snapshot() == before
    metric = json.loads(paths.metrics_file("validate").read_text())
    assert metric["ok"] is False and metric["errors"] == 1
    assert (project.report_dir / "index.html").is_file()
    assert [path.name for path in raised.value.artifacts] == ["index.html", "summary.json"]
