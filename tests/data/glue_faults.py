"""Hypothesis strategies for GLUE files with known faults at known lines, and what the reader must make of them.

A generated file is a list of lines, each either clean (its fields as written) or carrying one injected fault
with the rule and column the reader or the suite must name at that line. Benign variations (a byte order mark,
CRLF line ends, no final newline, texts such as ``null`` or an unbalanced quote, huge fields) must change nothing.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from hypothesis import strategies as st

from distilflow.data.glue_io import BOM, required_columns
from distilflow.tasks import TASKS, GlueTask

RAGGED, INVALID_UTF8, NUL, MISSING_COLUMN = "ragged_row", "invalid_utf8", "nul_byte", "missing_column"
# Faults the reader finds by itself; label faults need the label parser; content faults need the GX suite.
STRUCTURAL = ("extra_field", "missing_field", "blank_line", "invalid_utf8", "nul_byte")
LABEL_FAULTS = ("bad_label", "empty_label")
CONTENT_FAULTS = ("empty_text", "blank_text", "huge_text")
TASK_LIST = [TASKS[name] for name in sorted(TASKS)]
_LABELS = {task.name: st.sampled_from(task.labels) for task in TASK_LIST if task.labels}
TASK_CHOICE = st.sampled_from(TASK_LIST)

TEXT_CHARS = st.characters(codec="utf-8", exclude_characters="\t\n\r\x00")
ODD_TEXTS = st.sampled_from(
    ["null", "NA", "nan", '"', '"unbalanced', "  padded  ", "a\u2028b", "\x85", "\x0b\x0c", "mid\ufeffbom", "😀"]
)
TEXTS = st.one_of(st.text(TEXT_CHARS, max_size=20), ODD_TEXTS)
# Byte sequences no UTF-8 decoder accepts, whatever follows them at a character boundary.
BAD_BYTES = st.sampled_from([b"\xff", b"\x80", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\xc0\xaf", b"\xe9"])
BAD_SCORES = st.sampled_from(["n/a", "nan", "inf", "-", "٣", "1_0", "five", "3,5", "0x1", "1e999"])
# Columns no stage reads (MNLI's parses, STS-B's genre, ...) only need the right count: cheap draws keep 2,000 files
# a run fast. Strategies are built once here, not per draw (building one is a good part of a draw's cost).
UNREAD = st.sampled_from(["", "x", "null", "( (S) )", "main-captions", "2012test", "\ufeffid", "é"])
SCORES = st.integers(0, 5000)
ONE_IN_60 = st.integers(0, 60)
HUGE_WORDS = st.integers(30_000, 120_000)


@dataclass
class Line:
    number: int
    data: bytes
    """The line's bytes, without its line end."""
    fields: list[str] | None
    """The fields as written, when the line has as many as the file's columns."""
    rule: str | None = None
    """The rule that must name this line; None for a clean line."""
    column: str | None = None


@dataclass
class GlueFile:
    task: GlueTask
    split: str
    lines: list[Line]
    bom: bool = False
    crlf: set[int] = field(default_factory=set)
    final_newline: bool = True
    kinds: list[str] = field(default_factory=list)
    """The faults injected, by kind."""

    @property
    def first_data_line(self) -> int:
        return 2 if self.task.header else 1

    @property
    def rows(self) -> list[Line]:
        return self.lines[self.first_data_line - 1 :]

    @property
    def faults(self) -> list[Line]:
        return [line for line in self.lines if line.rule is not None]

    def render(self) -> bytes:
        ends = [b"\r\n" if line.number in self.crlf else b"\n" for line in self.lines]
        body = b"".join(line.data + end for line, end in zip(self.lines, ends, strict=True))
        if not self.final_newline and self.lines:
            body = body[: -len(ends[-1])]
        return (BOM.encode() if self.bom else b"") + body


def _label_index(task: GlueTask, columns: tuple[str, ...]) -> int:
    return columns.index(task.label_column)


@functools.cache
def ints(low: int, high: int) -> st.SearchStrategy[int]:
    """One strategy per range, built once: building (and validating) a strategy per draw doubled the run's time."""
    return st.integers(low, high)


@functools.cache
def pick(options: tuple[object, ...]) -> st.SearchStrategy[object]:
    return st.sampled_from(options)


def _clean_fields(
    draw: st.DrawFn, task: GlueTask, columns: tuple[str, ...], index: int, prefix: str | None
) -> list[str]:
    """One clean row. With ``prefix`` (full validation) texts are unique and never blank, so no content rule fires."""
    fields = []
    for name in columns:
        if name == task.label_column:
            value = draw(_LABELS[task.name]) if task.labels else _score(draw(SCORES))
        elif name == task.id_column:
            value = str(index)
        elif name not in task.file_columns:
            value = draw(UNREAD)
        elif prefix is not None:
            value = f"{prefix}{index}.{name} {draw(TEXTS)}"
        elif draw(ONE_IN_60) == 0:
            value = "huge " * draw(HUGE_WORDS)  # 150 kB to 600 kB in one field (past csv.field_size_limit's 128 kB)
        else:
            value = draw(TEXTS)
        fields.append(value)
    return fields


def _score(thousandths: int) -> str:
    return f"{thousandths / 1000:.3f}" if thousandths % 3 else str(thousandths // 1000)


def _position(draw: st.DrawFn, fields: list[str]) -> tuple[int, str, str]:
    """A field and a character boundary in it: (field index, the line's text before it, the text after)."""
    k = draw(ints(0, len(fields) - 1))
    at = draw(ints(0, len(fields[k])))
    before = "\t".join([*fields[:k], fields[k][:at]])
    after = "\t".join([fields[k][at:], *fields[k + 1 :]])
    return k, before, after


def _structural(draw: st.DrawFn, kind: str, fields: list[str]) -> tuple[bytes, str, str | None]:
    if kind == "extra_field":
        at = draw(ints(0, len(fields)))
        return "\t".join([*fields[:at], draw(TEXTS), *fields[at:]]).encode(), RAGGED, None
    if kind == "missing_field":
        at = draw(ints(0, len(fields) - 1))
        return "\t".join(fields[:at] + fields[at + 1 :]).encode(), RAGGED, None
    if kind == "blank_line":
        return draw(st.sampled_from(["", " ", "   "])).encode(), RAGGED, None
    k, before, after = _position(draw, fields)
    if kind == "invalid_utf8":
        return before.encode() + draw(BAD_BYTES) + after.encode(), INVALID_UTF8, f"field {k + 1}"
    return (before + "\x00" + after).encode(), NUL, f"field {k + 1}"


def _label_fault(draw: st.DrawFn, kind: str, task: GlueTask) -> tuple[str, str]:
    """(the label as written, the rule that must name it)."""
    if kind == "empty_label":
        return "", "missing_label"
    if task.labels is None:
        value = draw(BAD_SCORES)
        return value, "score_out_of_range" if value == "1e999" else "score_not_numeric"
    return str(draw(_bad_labels(task.labels))), "label_not_in_set"


@functools.cache
def _bad_labels(labels: tuple[str, ...]) -> st.SearchStrategy[str]:
    """Labels a task does not have: near misses (spaces, a BOM, a typo) and any other short text."""
    odd = st.sampled_from([" 1", "1 ", "yes", "entailmnt", "2", "-1", "1.0", "\ufeff1", "0\x0b"])

    def unknown(value: str) -> bool:
        return value not in labels

    return st.one_of(odd, st.text(TEXT_CHARS, min_size=1, max_size=8)).filter(unknown)


def _content_fault(draw: st.DrawFn, kind: str, task: GlueTask, columns: tuple[str, ...]) -> tuple[int, str, str]:
    """(text column index, the text as written, the rule)."""
    name = str(draw(pick(task.file_columns)))
    if kind == "empty_text":
        return columns.index(name), "", "empty_text"
    if kind == "blank_text":
        return columns.index(name), draw(st.sampled_from([" ", "   ", "\u3000", " \x0b "])), "blank_text"
    return columns.index(name), "huge " * draw(ints(500, 50_000)), "text_too_long"


def fault_line(draw: st.DrawFn, kind: str, task: GlueTask, columns: tuple[str, ...], line: Line) -> Line:
    """``line`` with one fault of ``kind``, and the rule and column that must name it."""
    assert line.fields is not None
    fields = list(line.fields)
    if kind in STRUCTURAL:
        data, rule, column = _structural(draw, kind, fields)
        return Line(line.number, data, None, rule, column)
    if kind in LABEL_FAULTS:
        fields[_label_index(task, columns)], rule = _label_fault(draw, kind, task)
        column = task.label_column
    else:
        index, fields[index], rule = _content_fault(draw, kind, task, columns)
        column = columns[index]
    return Line(line.number, "\t".join(fields).encode(), fields, rule, column)


def header_fault(draw: st.DrawFn, task: GlueTask, columns: tuple[str, ...]) -> Line:
    """A header that loses a column the task reads, or holds a byte that is not UTF-8."""
    if draw(st.booleans()):
        name = str(draw(pick(tuple(sorted(required_columns(task))))))
        renamed = [column + "x" if column == name else column for column in columns]
        return Line(1, "\t".join(renamed).encode(), None, MISSING_COLUMN, name)
    _, before, after = _position(draw, list(columns))
    k = before.count("\t")
    return Line(1, before.encode() + draw(BAD_BYTES) + after.encode(), None, INVALID_UTF8, f"field {k + 1}")


@st.composite
def glue_files(
    draw: st.DrawFn,
    task: GlueTask | None = None,
    split: str | None = None,
    prefix: str | None = None,
    kinds: tuple[str, ...] = STRUCTURAL + LABEL_FAULTS,
) -> GlueFile:
    """A GLUE file for ``task``'s ``split`` (drawn when not given): 0 to 6 rows, faults on up to 3 of them."""
    task = task or draw(TASK_CHOICE)
    split = split or str(draw(pick(task.splits)))
    columns = task.columns(split)
    lines = [Line(1, "\t".join(columns).encode(), list(columns))] if task.header else []
    count = draw(ints(1 if prefix is not None else 0, 6))
    for index in range(count):
        fields = _clean_fields(draw, task, columns, index, prefix)
        if not task.header and index == 0:  # a leading U+FEFF in a headerless file is a byte order mark
            fields[0] = fields[0].lstrip(BOM)
        lines.append(Line(len(lines) + 1, "\t".join(fields).encode(), fields))
    file = GlueFile(task, split, lines, bom=draw(st.booleans()), final_newline=draw(st.booleans()))
    crlf = draw(ints(0, 2 ** len(lines) - 1))  # one draw: bit i set = line i + 1 ends in CRLF
    file.crlf = {line.number for line in lines if crlf >> (line.number - 1) & 1}
    if task.header and draw(ints(0, 12)) == 0:
        file.lines[0] = header_fault(draw, task, columns)
        file.kinds.append(f"header_{file.lines[0].rule}")
    else:
        rows = list(range(file.first_data_line - 1, len(lines)))
        most = min(3, len(rows) - (1 if prefix is not None else 0))
        chosen = {rows[draw(ints(0, len(rows) - 1))] for _ in range(draw(ints(0, most)))} if most > 0 else set()
        for at in sorted(chosen):
            kind = str(draw(pick(kinds)))
            file.lines[at] = fault_line(draw, kind, task, columns, file.lines[at])
            file.kinds.append(kind)
    if file.lines and file.lines[-1].data == b"":
        file.final_newline = True  # without its newline, a blank last line is no line at all
    return file
