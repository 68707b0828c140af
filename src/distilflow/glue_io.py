"""Strict reader and writer for GLUE split files (the download script's TSVs).

``pandas.read_csv`` is the wrong tool for these files: with its default quoting a stray ``"`` swallows
following lines, a row with an extra tab is shifted or dropped with ``on_bad_lines``, invalid UTF-8 raises
without a line number, and texts such as ``null`` or ``NA`` silently become NaN. This module splits the
bytes itself (the files never quote: csv.QUOTE_NONE semantics) and reports each such row by its 1-based line
number instead, so the validate stage can name the exact spot a person has to fix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from distilflow.tasks import LABEL, LINE, GlueTask

ID = "id"
BOM = "\ufeff"

# Rule names shared with distilflow.validation (which owns their severities and descriptions).
INVALID_UTF8 = "invalid_utf8"
RAGGED_ROW = "ragged_row"
MISSING_COLUMN = "missing_column"
MISSING_LABEL = "missing_label"
LABEL_NOT_IN_SET = "label_not_in_set"
SCORE_NOT_NUMERIC = "score_not_numeric"


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


def _decode_lines(data: bytes) -> tuple[list[str | None], list[RowProblem]]:
    """Split bytes into lines; undecodable lines become None and are reported with the bad bytes."""
    try:
        return list(data.decode("utf-8").split("\n")), []
    except UnicodeDecodeError:
        pass
    lines: list[str | None] = []
    problems: list[RowProblem] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            lines.append(raw.decode("utf-8"))
        except UnicodeDecodeError as error:
            lines.append(None)
            field_index = raw.count(b"\t", 0, error.start)
            bad = raw[max(0, error.start - 24) : error.end + 24]
            problems.append(
                RowProblem(
                    line=number,
                    rule=INVALID_UTF8,
                    column=f"field {field_index + 1}",
                    value=_snippet(repr(bad)),
                    detail=f"byte {raw[error.start]:#04x} at byte offset {error.start} is not UTF-8 ({error.reason})",
                )
            )
    return lines, problems


def read_raw(task: GlueTask, path: Path, split: str = "train", max_rows: int | None = None) -> RawSplit:
    """Read one split file as text, reporting undecodable, ragged and header problems by line number.

    Rows with problems are left out of the frame (their fields cannot be trusted to be in the right column);
    the caller treats any problem as an error, so leaving them out never hides anything.
    """
    path = Path(path)
    lines, problems = _decode_lines(path.read_bytes())
    if lines and lines[-1] == "":
        lines.pop()  # the final newline, not an empty row
    if lines and lines[0] is not None and lines[0].startswith(BOM):
        lines[0] = lines[0][len(BOM) :]

    wanted = required_columns(task)
    first_data_line = 1
    if task.header:
        header_line = lines[0] if lines else ""
        if header_line is None:  # an undecodable header is already reported as invalid_utf8
            return RawSplit(split, path, (), _empty_frame(wanted), problems, readable=False)
        columns = tuple(header_line.rstrip("\r").split("\t"))
        first_data_line = 2
        missing = [name for name in wanted if name not in columns]
        if missing:
            problems.extend(
                RowProblem(
                    line=1,
                    rule=MISSING_COLUMN,
                    column=name,
                    value=_snippet(repr(header_line)),
                    detail=f"header has no column {name!r}; expected columns {list(file_columns(task, split))}",
                )
                for name in missing
            )
            return RawSplit(split, path, columns, _empty_frame(wanted), problems, readable=False)
    else:
        columns = task.layout

    width = len(columns)
    positions = [(columns.index(name), target) for name, target in wanted.items()]
    values: dict[str, list[str]] = {target: [] for target in wanted.values()}
    line_numbers: list[int] = []
    for number, line in enumerate(lines[first_data_line - 1 :], start=first_data_line):
        if max_rows is not None and len(line_numbers) >= max_rows:
            break
        if line is None:
            continue
        if line.endswith("\r"):  # tolerate CRLF files written on Windows
            line = line[:-1]
        parts = line.split("\t")
        if len(parts) != width:
            problems.append(
                RowProblem(
                    line=number,
                    rule=RAGGED_ROW,
                    column=None,
                    value=_snippet(repr(line)),
                    detail=f"{len(parts)} tab-separated fields, expected {width} ({', '.join(columns)})",
                )
            )
            continue
        line_numbers.append(number)
        for index, target in positions:
            values[target].append(parts[index])

    frame = pd.DataFrame({LINE: pd.array(line_numbers, dtype="int64"), **values})
    frame = frame[[LINE, *task.fields, LABEL, *([ID] if task.id_column else [])]]
    problems.sort(key=lambda problem: problem.line)
    return RawSplit(split, path, columns, frame, problems)


def _empty_frame(wanted: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({LINE: pd.array([], dtype="int64"), **{target: [] for target in wanted.values()}})


def label_values(task: GlueTask, raw_labels: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Parse raw label strings: (values, ok mask). Class ids for classification, floats for regression."""
    if task.labels is None:
        scores = pd.to_numeric(raw_labels, errors="coerce").astype("float64")
        return scores, scores.notna() & scores.map(math.isfinite).astype(bool)
    ids = raw_labels.map({value: index for index, value in enumerate(task.labels)})
    ok = ids.notna()
    return ids.fillna(-1).astype("int64"), ok


def normalise(task: GlueTask, raw: pd.DataFrame) -> tuple[pd.DataFrame, list[RowProblem]]:
    """Map raw labels to class ids (or float scores); rows whose label cannot be parsed are reported and left out."""
    values, ok = label_values(task, raw[LABEL])
    problems: list[RowProblem] = []
    for line, value in zip(raw.loc[~ok, LINE], raw.loc[~ok, LABEL], strict=True):
        if value == "":
            rule, detail = MISSING_LABEL, "label is empty"
        elif task.labels is None:
            rule, detail = SCORE_NOT_NUMERIC, "score is not a finite number"
        else:
            rule, detail = LABEL_NOT_IN_SET, f"label must be one of {list(task.labels)}"
        problems.append(RowProblem(int(line), rule, task.label_column, repr(value), detail))
    frame = raw.loc[ok].copy()
    frame[LABEL] = values[ok]
    return frame.reset_index(drop=True), problems


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
