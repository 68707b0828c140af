"""Strict reader and writer for GLUE split files (the download script's TSVs).

``pandas.read_csv`` is the wrong tool for these files: with its default quoting a stray ``"`` swallows
following lines, a row with an extra tab is shifted or dropped with ``on_bad_lines``, invalid UTF-8 raises
without a line number, and texts such as ``null`` or ``NA`` silently become NaN. This module splits the
bytes itself (the files never quote: csv.QUOTE_NONE semantics) and reports each such row by its 1-based line
number instead, so the validate stage can name the exact spot a person has to fix.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from distilflow.tasks import LABEL, LINE, GlueTask

ID = "id"
BOM = "\ufeff"

# Rule names shared with distilflow.data.validation (which owns their severities and descriptions).
INVALID_UTF8 = "invalid_utf8"
RAGGED_ROW = "ragged_row"
MISSING_COLUMN = "missing_column"
MISSING_LABEL = "missing_label"
LABEL_NOT_IN_SET = "label_not_in_set"
SCORE_NOT_NUMERIC = "score_not_numeric"
SCORE_OUT_OF_RANGE = "score_out_of_range"
NUL_BYTE = "nul_byte"
# A plain decimal number as the STS-B files write scores; rejects "nan", "inf" and stray text. ASCII digits only:
# with ``\d`` a score such as "٣" passed the check but no number parser read it, so the row vanished unreported.
NUMBER_REGEX = r"^\s*[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*$"
_NUMBER = re.compile(NUMBER_REGEX)


@dataclass(frozen=True)
class RowProblem:
    """One row (or the header) that cannot be read as the task's layout says."""

    line: int
    rule: str
    column: str | None
    value: str
    detail: str


@dataclass
class RawSplit:
    """A split file as text: ``line``, the task's ``fields``, ``label`` (as written) and ``id`` columns."""

    split: str
    path: Path
    columns: tuple[str, ...]
    frame: pd.DataFrame
    problems: list[RowProblem] = field(default_factory=list)
    readable: bool = True
    """False when the header lacks a required column, so no row could be read."""
    read: int = 0
    """Data lines (the header excluded) the reader looked at: ``len(frame)`` plus one per row problem line."""
    unread: int = 0
    """Data lines past ``max_rows``, not looked at (``data.max_train_rows`` and the like)."""
    first_data_line: int = 1
    """Line number of the first data row (2 when the file has a header)."""


def split_path(data_dir: Path, split: str) -> Path:
    return Path(data_dir) / f"{split}.tsv"


def file_columns(task: GlueTask, split: str = "train") -> tuple[str, ...]:
    """Every column of the task's file for this split, in file order."""
    return task.columns(split)


def required_columns(task: GlueTask) -> dict[str, str]:
    """File column → normalised column, for the columns the pipeline reads."""
    wanted = dict(zip(task.file_columns, task.fields, strict=True))
    wanted[task.label_column] = LABEL
    if task.id_column:
        wanted[task.id_column] = ID
    return wanted


def display_column(task: GlueTask, column: str) -> str:
    """The column name a person sees in the file, for a normalised column name."""
    if column == LABEL:
        return task.label_column
    if column == ID and task.id_column:
        return task.id_column
    if column in task.fields:
        return task.file_columns[task.fields.index(column)]
    return column


def _snippet(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _decode_lines(data: bytes) -> tuple[list[str | None], dict[int, RowProblem]]:
    """Split bytes into lines; undecodable lines become None, their problem keyed by line number.

    The caller reports a line's problem only if it reads that line, so lines past ``max_rows`` stay unreported.
    """
    try:
        return list(data.decode("utf-8").split("\n")), {}
    except UnicodeDecodeError:
        pass
    lines: list[str | None] = []
    problems: dict[int, RowProblem] = {}
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError as error:
            lines.append(None)
            field_index = raw.count(b"\t", 0, error.start)
            bad = raw[max(0, error.start - 24) : error.end + 24]
            problems[number] = RowProblem(
                line=number,
                rule=INVALID_UTF8,
                column=f"field {field_index + 1}",
                value=_snippet(repr(bad)),
                detail=f"byte {raw[error.start]:#04x} at byte offset {error.start} is not UTF-8 ({error.reason})",
            )
    return lines, problems


def _nul_problem(number: int, line: str) -> RowProblem:
    """A NUL byte: a binary or UTF-16 file, or a corrupt copy; BERT's tokenizer would delete it without a word."""
    offset = line.index("\0")
    tabs = line.count("\t", 0, offset)
    return RowProblem(
        line=number,
        rule=NUL_BYTE,
        column=f"field {tabs + 1}",
        value=_snippet(repr(line)),
        detail=f"NUL byte at character offset {offset}",
    )


def _header(task: GlueTask, split: str, line: str | None, problems: list[RowProblem]) -> tuple[str, ...] | None:
    """The header's columns, or None (with the problem added) when the task's columns cannot be found in it."""
    if line is None:  # an undecodable header is already reported as invalid_utf8
        return None
    if "\0" in line:
        problems.append(_nul_problem(1, line))
        return None
    columns = tuple(line.rstrip("\r").split("\t"))
    missing = [name for name in required_columns(task) if name not in columns]
    problems.extend(
        RowProblem(
            line=1,
            rule=MISSING_COLUMN,
            column=name,
            value=_snippet(repr(line)),
            detail=f"header has no column {name!r}; expected columns {list(file_columns(task, split))}",
        )
        for name in missing
    )
    return None if missing else columns


def _row_problem(number: int, line: str, width: int, columns: tuple[str, ...]) -> RowProblem | None:
    """Why a decoded data line cannot be split into the file's columns; None when it can."""
    if "\0" in line:
        return _nul_problem(number, line)
    parts = line.count("\t") + 1
    if parts == width:
        return None
    return RowProblem(
        line=number,
        rule=RAGGED_ROW,
        column=None,
        value=_snippet(repr(line)),
        detail=f"{parts} tab-separated fields, expected {width} ({', '.join(columns)})",
    )


def read_raw(task: GlueTask, path: Path, split: str = "train", max_rows: int | None = None) -> RawSplit:
    """Read one split file as text, reporting undecodable, ragged and header problems by line number.

    Rows with problems are left out of the frame (their fields cannot be trusted to be in the right column)
    and counted: ``read`` is always ``len(frame)`` plus the number of data lines with a problem. Such problems
    are always errors, so leaving them out never lets bad data pass.
    """
    path = Path(path)
    lines, undecodable = _decode_lines(path.read_bytes())
    # The BOM goes first: a file holding only a BOM (and no newline) is empty, not one blank row.
    if lines and lines[0] is not None and lines[0].startswith(BOM):
        lines[0] = lines[0][len(BOM) :]
    if lines and lines[-1] == "":
        lines.pop()  # the final newline, not an empty row

    wanted = required_columns(task)
    problems: list[RowProblem] = [undecodable[1]] if task.header and 1 in undecodable else []
    first = 2 if task.header else 1
    columns = _header(task, split, lines[0] if lines else "", problems) if task.header else task.layout
    if columns is None:  # every data line is lost with the header: the caller counts them all as dropped
        return RawSplit(split, path, (), _empty_frame(wanted), problems, False, max(len(lines) - 1, 0), 0, first)

    width = len(columns)
    positions = [(columns.index(name), target) for name, target in wanted.items()]
    values: dict[str, list[str]] = {target: [] for target in wanted.values()}
    line_numbers: list[int] = []
    body = lines[first - 1 :]
    read = 0
    for number, line in enumerate(body, start=first):
        if max_rows is not None and len(line_numbers) >= max_rows:
            break
        read += 1
        if line is not None and line.endswith("\r"):  # tolerate CRLF files written on Windows
            line = line[:-1]
        problem = undecodable.get(number) if line is None else _row_problem(number, line, width, columns)
        if problem is not None:
            problems.append(problem)
            continue
        assert line is not None
        line_numbers.append(number)
        parts = line.split("\t")
        for index, target in positions:
            values[target].append(parts[index])

    order = [*task.fields, LABEL, *([ID] if task.id_column else [])]  # built in order: no reindexing copy
    frame = pd.DataFrame({LINE: pd.array(line_numbers, dtype="int64"), **{name: values[name] for name in order}})
    problems.sort(key=lambda problem: problem.line)
    return RawSplit(split, path, columns, frame, problems, True, read, len(body) - read, first)


def _empty_frame(wanted: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({LINE: pd.array([], dtype="int64"), **{target: [] for target in wanted.values()}})


def _score(text: object) -> float:
    """A score as a float; NaN unless the text is a plain decimal number (the ``score_not_numeric`` rule's regex)."""
    return float(text) if isinstance(text, str) and _NUMBER.match(text) else math.nan


def parse_scores(raw_scores: pd.Series) -> pd.Series:
    """Scores as floats, NaN where not numeric: one parser for the reader and the validation suite, so a value the
    suite passes is never one the reader cannot read (``float`` alone takes ``1_0``; ``\\d`` takes ``٣``)."""
    return pd.Series([_score(text) for text in raw_scores.tolist()], index=raw_scores.index, dtype="float64")


def label_values(task: GlueTask, raw_labels: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Parse raw label strings: (values, ok mask). Class ids for classification, floats for regression."""
    texts = raw_labels.tolist()  # plain lists: pandas' per-call overhead dominates on the small files tests write
    if task.labels is None:
        scores = [_score(text) for text in texts]
        ok = [math.isfinite(score) for score in scores]
        return pd.Series(scores, index=raw_labels.index, dtype="float64"), pd.Series(ok, index=raw_labels.index)
    ids = {value: index for index, value in enumerate(task.labels)}
    values = [ids.get(text, -1) for text in texts]
    ok = [value >= 0 for value in values]
    return pd.Series(values, index=raw_labels.index, dtype="int64"), pd.Series(ok, index=raw_labels.index, dtype=bool)


def _label_problem(task: GlueTask, line: int, value: str, score: float) -> RowProblem:
    """Why a row's label cannot be read, under the rule the validation suite reports it by."""
    if value == "":
        rule, detail = MISSING_LABEL, "label is empty"
    elif task.labels is not None:
        rule, detail = LABEL_NOT_IN_SET, f"label must be one of {list(task.labels)}"
    elif math.isnan(score):
        rule, detail = SCORE_NOT_NUMERIC, "score is not a decimal number"
    else:  # digits too many for a float: the suite sees infinity, outside the range
        rule, detail = SCORE_OUT_OF_RANGE, "score overflows to infinity"
    return RowProblem(line, rule, task.label_column, _snippet(repr(value)), detail)


def normalise(task: GlueTask, raw: pd.DataFrame) -> tuple[pd.DataFrame, list[RowProblem]]:
    """Map raw labels to class ids (or float scores); rows whose label cannot be parsed are reported and left out.

    Every row of ``raw`` ends up either in the returned frame or as one returned problem, never neither.
    """
    values, ok = label_values(task, raw[LABEL])
    keep = ok.to_numpy(dtype=bool)
    problems = [
        _label_problem(task, int(line), str(value), float(score))
        for line, value, score, good in zip(raw[LINE].tolist(), raw[LABEL].tolist(), values.tolist(), keep, strict=True)
        if not good
    ]
    frame = raw.reset_index(drop=True) if keep.all() else raw[keep].reset_index(drop=True)
    frame[LABEL] = values.to_numpy()[keep]
    if len(frame) + len(problems) != len(raw):
        raise RuntimeError(f"normalise lost rows: {len(raw)} in, {len(frame)} kept, {len(problems)} reported")
    return frame, problems


def read_split(
    task: GlueTask, path: Path, split: str | None = None, max_rows: int | None = None
) -> tuple[pd.DataFrame, list[RowProblem]]:
    """Read one split into the normalised frame (``line``, fields, ``label``[, ``id``]) plus every row problem."""
    path = Path(path)
    raw = read_raw(task, path, split or path.stem, max_rows=max_rows)
    frame, label_problems = normalise(task, raw.frame)
    return frame, sorted([*raw.problems, *label_problems], key=lambda problem: problem.line)


def _label_text(task: GlueTask, labels: pd.Series) -> list[str]:
    if task.labels is None:
        return [repr(value) for value in labels.astype("float64").tolist()]
    if pd.api.types.is_numeric_dtype(labels):
        names, ids = task.labels, labels.astype("int64").tolist()
        bad = [value for value in ids if not 0 <= value < len(names)]
        if bad:  # the hub marks unlabelled test rows -1, which indexing would quietly turn into the last class
            raise ValueError(f"label ids {sorted(set(bad))} outside 0..{len(names) - 1} for task {task.name}")
        return [names[index] for index in ids]
    return [str(value) for value in labels.tolist()]  # already the file's label strings


def write_split(task: GlueTask, frame: pd.DataFrame, path: Path, split: str | None = None) -> Path:
    """Write a normalised frame as the task's GLUE file, so every source goes through the one strict reader.

    Columns no stage reads (MRPC's sentence ids, STS-B's genre, MNLI's parses) are taken from the frame when
    it has them under their file names, else left empty. Texts holding a tab or newline cannot be written in
    this format (the files never quote), so they raise instead of silently producing a ragged row.
    """
    path = Path(path)
    split = split or (path.stem if path.stem in task.splits else "train")
    columns = file_columns(task, split)
    rows = len(frame)
    by_file: dict[str, list[str]] = {}
    for file_column, target in required_columns(task).items():
        if target == LABEL:
            by_file[file_column] = _label_text(task, frame[LABEL])
        elif target == ID and ID not in frame.columns:
            by_file[file_column] = [str(index) for index in range(rows)]
        else:
            by_file[file_column] = ["" if value is None else str(value) for value in frame[target].tolist()]
    for name in columns:
        if name not in by_file:
            by_file[name] = [str(value) for value in frame[name].tolist()] if name in frame.columns else [""] * rows
    for name, texts in by_file.items():
        for row, text in enumerate(texts):
            if "\t" in text or "\n" in text or "\r" in text:
                raise ValueError(f"row {row} column {name!r}: a tab or newline cannot be written to a GLUE TSV")
    ordered: Sequence[list[str]] = [by_file[name] for name in columns]
    body = ["\t".join(values) for values in zip(*ordered, strict=True)]
    header = [] if not task.header else ["\t".join(columns)]
    text = "\n".join([*header, *body]) + "\n"
    if task.bom_header:
        text = BOM + text
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="")
    return path
