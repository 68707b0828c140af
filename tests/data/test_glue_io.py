"""The strict GLUE reader and writer: what pandas would silently drop, shift or coerce is kept or reported."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

from distilflow.data.glue_io import file_columns, read_raw, read_split, write_split
from distilflow.tasks import LABEL, LINE, TASKS
from tests.data.validation_helpers import FIXTURES


def _write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def test_bom_header_is_read() -> None:
    raw = read_raw(TASKS["mrpc"], FIXTURES / "MRPC" / "train.tsv")
    assert raw.columns[0] == "Quality" and raw.problems == []
    frame, problems = read_split(TASKS["mrpc"], FIXTURES / "MRPC" / "train.tsv")
    assert problems == [] and frame[LABEL].tolist() == [1, 0, 1, 0, 1, 1]
    assert frame["sentence1"].iloc[0].startswith('Amrozi accused his brother , whom he called " the witness "')


def test_text_is_never_coerced_or_merged(tmp_path: Path) -> None:
    # pandas' defaults would turn "null"/"NA" into NaN and let the lone quote swallow the next line.
    path = _write(tmp_path / "train.tsv", 'sentence\tlabel\nnull\t0\nNA\t1\n"an unbalanced quote\t0\nnan\t1\n')
    frame, problems = read_split(TASKS["sst2"], path)
    assert problems == []
    assert frame["sentence"].tolist() == ["null", "NA", '"an unbalanced quote', "nan"]
    assert frame[LINE].tolist() == [2, 3, 4, 5]


def test_crlf_line_endings_are_tolerated(tmp_path: Path) -> None:
    path = _write(tmp_path / "train.tsv", "sentence\tlabel\r\ngood\t1\r\nbad\t0\r\n")
    frame, problems = read_split(TASKS["sst2"], path)
    assert problems == [] and frame["sentence"].tolist() == ["good", "bad"] and frame[LABEL].tolist() == [1, 0]


def test_invalid_utf8_and_ragged_rows_are_reported_by_line(tmp_path: Path) -> None:
    data = b"sentence\tlabel\nfine\t1\ncaf\xe9 au lait\t0\ntoo\tmany\tfields\t1\nstill read\t0\n"
    raw = read_raw(TASKS["sst2"], _write(tmp_path / "train.tsv", data))
    assert [(p.line, p.rule, p.column) for p in raw.problems] == [
        (3, "invalid_utf8", "field 1"),
        (4, "ragged_row", None),
    ]
    assert "0xe9" in raw.problems[0].detail and "expected 2" in raw.problems[1].detail
    assert raw.frame[LINE].tolist() == [2, 5] and raw.frame["sentence"].tolist() == ["fine", "still read"]


def test_missing_column_stops_reading(tmp_path: Path) -> None:
    raw = read_raw(TASKS["qnli"], _write(tmp_path / "train.tsv", "index\tquestion\tlabel\n0\tWhy?\tentailment\n"))
    assert not raw.readable and raw.frame.empty
    assert [(p.line, p.rule, p.column) for p in raw.problems] == [(1, "missing_column", "sentence")]


def test_bad_labels_are_problems_not_guesses(tmp_path: Path) -> None:
    path = _write(tmp_path / "train.tsv", "sentence\tlabel\na\t1\nb\t2\nc\t\nd\t0\n")
    frame, problems = read_split(TASKS["sst2"], path)
    assert frame["sentence"].tolist() == ["a", "d"] and frame[LABEL].tolist() == [1, 0]
    assert [(p.line, p.rule) for p in problems] == [(3, "label_not_in_set"), (4, "missing_label")]
    scores = _write(tmp_path / "dev.tsv", "\t".join(file_columns(TASKS["stsb"])) + "\n0\tg\tf\ty\to\ts\ts\ta\tb\tx\n")
    frame, problems = read_split(TASKS["stsb"], scores)
    assert frame.empty and [(p.line, p.rule) for p in problems] == [(2, "score_not_numeric")]


def test_max_rows_reads_only_the_first_rows() -> None:
    raw = read_raw(TASKS["cola"], FIXTURES / "CoLA" / "train.tsv", max_rows=3)
    assert raw.frame[LINE].tolist() == [1, 2, 3]


@pytest.mark.parametrize("name", sorted(TASKS))
def test_write_split_round_trips(name: str, tmp_path: Path) -> None:
    task = TASKS[name]
    for split in task.splits:
        source = FIXTURES / task.dir_name / f"{split}.tsv"
        frame, problems = read_split(task, source)
        assert problems == []
        written = write_split(task, frame.drop(columns=[LINE]), tmp_path / f"{split}.tsv")
        again, problems = read_split(task, written)
        assert problems == []
        pd.testing.assert_frame_equal(again, frame)
        data = written.read_bytes()
        assert data.startswith(b"\xef\xbb\xbf") == (name == "mrpc")  # MRPC keeps GLUE's byte order mark
        header = data.decode("utf-8").lstrip("\ufeff").split("\n")[0]
        assert (header == "\t".join(file_columns(task, split))) == task.header
    if name == "sst2":  # no columns beyond text and label: the file comes back byte for byte
        assert (tmp_path / "train.tsv").read_bytes() == (FIXTURES / "SST-2" / "train.tsv").read_bytes()


def test_write_split_refuses_what_the_format_cannot_hold(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tab or newline"):
        write_split(TASKS["sst2"], pd.DataFrame({"sentence": ["one\ttwo"], LABEL: [1]}), tmp_path / "train.tsv")
    with pytest.raises(ValueError, match=r"label ids \[-1\]"):  # the hub's unlabelled test rows
        write_split(
            TASKS["rte"], pd.DataFrame({"sentence1": ["a"], "sentence2": ["b"], LABEL: [-1]}), tmp_path / "x.tsv"
        )


def test_reader_is_fast(tmp_path: Path) -> None:
    rows = "".join(f"a short movie review number {index} , quite good \t{index % 2}\n" for index in range(70_000))
    path = _write(tmp_path / "train.tsv", "sentence\tlabel\n" + rows)
    started = time.perf_counter()
    frame, problems = read_split(TASKS["sst2"], path)
    assert time.perf_counter() - started < 2.0
    assert len(frame) == 70_000 and problems == []


def test_a_file_holding_only_a_byte_order_mark_is_empty(tmp_path: Path) -> None:
    # The BOM used to be stripped after the final-newline check, leaving one blank (ragged) row behind.
    raw = read_raw(TASKS["cola"], _write(tmp_path / "train.tsv", b"\xef\xbb\xbf"))
    assert raw.problems == [] and raw.frame.empty and raw.read == 0


def test_nul_bytes_are_reported_by_line_and_field(tmp_path: Path) -> None:
    # BERT's tokenizer deletes NUL without a word; in a TSV one means a binary or UTF-16 file, or a corrupt copy.
    raw = read_raw(TASKS["sst2"], _write(tmp_path / "train.tsv", "sentence\tlabel\nfine\t1\nbro\x00ken\t0\n"))
    assert [(p.line, p.rule, p.column) for p in raw.problems] == [(3, "nul_byte", "field 1")]
    assert raw.frame[LINE].tolist() == [2] and (raw.read, raw.unread) == (2, 0)


def test_lines_past_the_row_limit_are_counted_not_reported(tmp_path: Path) -> None:
    data = b"sentence\tlabel\nfine\t1\ngood\t0\ncaf\xe9\t0\n"
    raw = read_raw(TASKS["sst2"], _write(tmp_path / "train.tsv", data), max_rows=2)
    assert raw.problems == [] and (raw.read, raw.unread) == (2, 1)


def test_scores_parse_as_the_suite_checks_them(tmp_path: Path) -> None:
    header = "\t".join(file_columns(TASKS["stsb"])) + "\n"
    rows = [f"{i}\tg\tf\ty\to\ts\ts\ta{i}\tb{i}\t{score}\n" for i, score in enumerate(["3.2", "٣", "1_0", "1e999"])]
    frame, problems = read_split(TASKS["stsb"], _write(tmp_path / "dev.tsv", header + "".join(rows)))
    assert frame[LABEL].tolist() == [3.2]
    assert [(p.line, p.rule) for p in problems] == [
        (3, "score_not_numeric"),
        (4, "score_not_numeric"),
        (5, "score_out_of_range"),
    ]
