"""No row leaves the data without being counted and named (issue #31, "Validation can drop rows in silence").

Every data line validation reads is either kept for ``data/validated`` or dropped; each dropped row is a finding
that names its file, line and rule, whatever the severity of the rule that dropped it, and the counts add up:
rows read = rows written + rows dropped, per split, in ``metrics/validate.json``, the summary and the report.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from distilflow.config.data_params import ValidateParams
from distilflow.config.loading import parse_params
from distilflow.data.validation import validate_folder
from distilflow.paths import Paths
from distilflow.tasks import LINE, TASKS
from tests.data.validation_helpers import make_project

# The issue's case: a 4-row dev file, two of its labels outside SST-2's {0, 1}.
FOUR_ROW_DEV = "sentence\tlabel\na fine film\t1\na film with a bad label\t2\na dull film\t0\nanother bad one\tyes\n"


@pytest.mark.parametrize("severity", ["off", "warning"])
def test_issue_31_four_row_dev_file_counts_and_names_every_drop(
    severity: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    mlflow_store: str,
) -> None:
    from distilflow.stages import validate as stage

    project = make_project(tmp_path, "SST-2")
    project.file("dev.tsv").write_text(FOUR_ROW_DEV, encoding="utf-8")
    params = parse_params({"task": "sst2", "validate": {"severity": {"label_not_in_set": severity}}})
    paths = Paths.at(project.root)
    monkeypatch.chdir(project.root)  # as DVC runs stages

    stage.run(params, paths)

    metric = json.loads(paths.metrics_file("validate").read_text())
    assert metric["ok"] is True
    assert (metric["read_dev"], metric["rows_dev"], metric["dropped_dev"], metric["dropped"]) == (4, 2, 2, 2)
    assert metric["read_dev"] == metric["rows_dev"] + metric["dropped_dev"]
    # off: the drop is the only finding; warning: the rule's own finding, plus the drop.
    assert metric["warnings"] == (2 if severity == "off" else 4) and metric["errors"] == 0
    written = pd.read_parquet(paths.validated_dir / "dev.parquet")
    assert written[LINE].tolist() == [2, 4] and written["label"].tolist() == [1, 0]

    out = capsys.readouterr().out
    for line, value in ((3, "'2'"), (5, "'yes'")):
        expected = f"data/raw/dev.tsv:{line} column=label rule=row_dropped value={value} severity=warning"
        assert any(text.startswith(expected) and "label_not_in_set" in text for text in out.splitlines()), out
    assert "data/raw/dev.tsv: 4 read, 2 kept, 2 dropped (label_not_in_set 2)" in out

    summary = json.loads((project.report_dir / "summary.json").read_text())
    dev = summary["splits"]["dev"]
    assert (dev["read"], dev["rows"], dev["dropped"]) == (4, 2, 2)
    assert dev["dropped_lines"] == {"label_not_in_set": [3, 5]}
    assert summary["rules"]["row_dropped"] == {"severity": "warning", "checked": True, "errors": 0, "warnings": 2}
    html = (project.report_dir / "index.html").read_text(encoding="utf-8")
    assert "rows dropped" in html and "2 (label_not_in_set 2)" in html and "row_dropped" in html


def _write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text, encoding="utf-8")


STSB_HEADER = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"


def _stsb_row(index: int, score: str) -> str:
    return (
        f"{index}\tg\tf\t2012\t{index}\tnone\tnone\tA man plays {index} flutes.\tA man plays music {index}.\t{score}\n"
    )


@pytest.mark.parametrize(
    ("task", "dev", "rule", "line"),
    [
        ("sst2", "sentence\tlabel\ngood\t1\nbad\tpositive\nfine\t0\n", "label_not_in_set", 3),
        ("sst2", "sentence\tlabel\ngood\t1\nbad\t\nfine\t0\n", "missing_label", 3),
        ("stsb", STSB_HEADER + _stsb_row(0, "3.0") + _stsb_row(1, "n/a") + _stsb_row(2, "1.0"), "score_not_numeric", 3),
        # "٣" is a digit to \d but to no number parser: it used to pass the suite and vanish from the frame.
        ("stsb", STSB_HEADER + _stsb_row(0, "3.0") + _stsb_row(1, "٣") + _stsb_row(2, "1.0"), "score_not_numeric", 3),
        (
            "stsb",
            STSB_HEADER + _stsb_row(0, "3.0") + _stsb_row(1, "1e999") + _stsb_row(2, "1"),
            "score_out_of_range",
            3,
        ),
    ],
    ids=["label-not-in-set", "missing-label", "score-not-numeric", "non-ascii-digit", "score-overflow"],
)
@pytest.mark.parametrize("severity", ["off", "warning", "error"])
def test_every_rule_that_drops_a_row_names_it(
    task: str, dev: str, rule: str, line: int, severity: str, tmp_path: Path
) -> None:
    project = make_project(tmp_path, TASKS[task].dir_name)
    _write(project.raw, "dev.tsv", dev)
    report = validate_folder(TASKS[task], project.raw, ValidateParams(severity={rule: severity}))
    account = report.accounts["dev"]
    assert (account.read, account.kept, [(p.line, p.rule) for p in account.dropped]) == (3, 2, [(line, rule)])
    assert len(report.frames["dev"]) == account.kept and line not in report.frames["dev"][LINE].tolist()
    named = {(f.rule, f.severity) for f in report.findings if f.line == line and f.file.endswith("dev.tsv")}
    if severity == "error":  # the run fails and writes nothing; the error names the row
        assert not report.ok and named == {(rule, "error")}
    else:
        assert report.ok and ("row_dropped", "warning") in named
        assert named == {("row_dropped", "warning")} | ({(rule, "warning")} if severity == "warning" else set())


@pytest.mark.parametrize(
    ("task", "rule", "break_line"),
    [
        ("sst2", "empty_text", ("sentence\tlabel\n\t1\nfine\t0\nworse\t1\n", 2)),
        ("sst2", "blank_text", ("sentence\tlabel\n   \t1\nfine\t0\nworse\t1\n", 2)),
        ("sst2", "text_too_long", ("sentence\tlabel\n" + "word " * 500 + "\t1\nfine\t0\nworse\t1\n", 2)),
        ("sst2", "long_text", ("sentence\tlabel\n" + "word " * 200 + "\t1\nfine\t0\nworse\t1\n", 2)),
        ("sst2", "duplicate_example", ("sentence\tlabel\nfine\t1\nfine\t1\nworse\t0\n", 2)),
        ("sst2", "conflicting_labels", ("sentence\tlabel\nfine\t1\nfine\t0\nworse\t0\n", 3)),
        ("stsb", "score_out_of_range", (STSB_HEADER + _stsb_row(0, "5.5") + _stsb_row(1, "2") + _stsb_row(2, "1"), 2)),
        ("stsb", "duplicate_id", (STSB_HEADER + _stsb_row(0, "4") + _stsb_row(0, "2") + _stsb_row(2, "1"), 3)),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_other_rules_off_keep_their_rows(task: str, rule: str, break_line: tuple[str, int], tmp_path: Path) -> None:
    """Only an unreadable label drops a row: every other rule, when off, keeps the row it would have flagged."""
    dev, line = break_line
    project = make_project(tmp_path, TASKS[task].dir_name)
    _write(project.raw, "dev.tsv", dev)
    report = validate_folder(TASKS[task], project.raw, ValidateParams(severity={rule: "off"}))
    account = report.accounts["dev"]
    assert (account.read, account.kept, account.dropped) == (3, 3, ())
    assert line in report.frames["dev"][LINE].tolist()
    assert not any(f.rule == "row_dropped" for f in report.findings)


def test_row_limit_and_unreadable_header_are_counted(tmp_path: Path) -> None:
    project = make_project(tmp_path, "QNLI")
    _write(project.raw, "dev.tsv", "index\tquestion\tlabl\n0\tWhy?\tBecause.\tentailment\n1\tHow?\tSo.\tentailment\n")
    report = validate_folder(TASKS["qnli"], project.raw, ValidateParams(), max_rows={"train": 2})
    train, dev = report.accounts["train"], report.accounts["dev"]
    assert (train.read, train.kept, train.unread) == (2, 2, 4)
    assert report.summary["splits"]["train"]["unread"] == 4
    assert (dev.read, dev.kept) == (2, 0) and [(p.line, p.rule) for p in dev.dropped] == [
        (2, "missing_column"),
        (3, "missing_column"),
    ]
    assert not report.ok and "dev.tsv: 2 read, 0 kept, 2 dropped (missing_column 2)" in report.format_findings()
