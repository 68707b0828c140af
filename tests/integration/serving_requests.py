"""Hypothesis strategies for requests to a served distilflow model, each drawn with the answer it must get.

A :class:`Case` is the bytes on the wire, the Content-Type, and the expectation: ``rows`` predictions (a valid
request) or a refusal (any 4xx). The rules a valid request follows are the documented ones (docs/registry.md,
"Requests"): UTF-8 JSON (a leading BOM tolerated) with exactly one of ``inputs``, ``instances``,
``dataframe_records``, ``dataframe_split``; one row per text (pair tasks: per pair), 1 to ``max_rows`` rows; every
text a string with something besides whitespace and no lone surrogate; exactly the model's columns (its own names or
an alias) or plain lists. Everything else is drawn here as a mistake a client could make.
"""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass
from functools import cache
from typing import Any

from hypothesis import assume
from hypothesis import strategies as st

JSON_TYPE = "application/json"
# Characters that break naive text handling: NUL and other controls, BOM, zero-width and line separators, an
# astral emoji, combining marks, right-to-left text, the replacement character.
EDGE_CHARACTERS = "\x00\x01\x1f\x7f\u0085\ufeff\u200b\u2028\u2029\U0001f600\u0301\u05d0\ufffd\t\n\r"


@dataclass(frozen=True)
class ServedModel:
    """What the strategies need to know about the served model: its columns and request limits."""

    fields: tuple[str, ...]
    aliases: tuple[tuple[str, ...], ...]
    max_rows: int
    max_chars: int
    max_body_bytes: int

    @property
    def pair(self) -> bool:
        return len(self.fields) == 2


@dataclass(frozen=True)
class Case:
    """One request and the answer it must get: ``rows`` predictions, or (``rows is None``) a 4xx."""

    kind: str
    body: bytes
    content_type: str | None
    rows: int | None
    long_rows: tuple[int, ...] = ()
    """Rows with a text over ``max_chars``: their answer must say ``truncated``."""


def is_text(value: str) -> bool:
    """The model's rule for a text it will classify."""
    return bool(value.strip()) and not any(0xD800 <= ord(char) <= 0xDFFF for char in value)


@cache
def texts(max_size: int = 30) -> st.SearchStrategy[str]:
    """Texts the model must classify: any Unicode but surrogates (Hypothesis' default), edge characters mixed in."""
    alphabet = st.one_of(st.characters(), st.sampled_from(EDGE_CHARACTERS))
    return st.text(alphabet, min_size=1, max_size=max_size).filter(is_text)


@cache
def long_texts(model: ServedModel) -> st.SearchStrategy[str]:
    """A text past ``max_chars`` (cut, then truncated to the token limit), built cheaply from a repeated unit."""
    return st.builds(
        lambda unit, extra: (unit * (model.max_chars // len(unit) + 1))[: model.max_chars + extra],
        st.sampled_from(["a moving film . ", "ü ", "😀", "word"]),
        st.integers(1, 500),
    )


@cache
@st.composite
def cell_texts(draw: st.DrawFn, model: ServedModel) -> str:
    """A valid text; one in ten or so over ``max_chars`` (they cost the server the most, so not more)."""
    return draw(long_texts(model) if draw(st.integers(0, 9)) == 0 else texts())


@cache
def rows_of(model: ServedModel, min_rows: int = 1, max_rows: int = 6) -> st.SearchStrategy[list[list[str]]]:
    """Rows of valid texts (one per field)."""
    text = cell_texts(model)
    return st.lists(
        st.lists(text, min_size=len(model.fields), max_size=len(model.fields)), min_size=min_rows, max_size=max_rows
    )


def encode(payload: Any, draw: st.DrawFn, escaped: bool = False) -> tuple[bytes, str]:
    """A JSON payload as a client might send it: ASCII-escaped or raw UTF-8, compact or indented, with or without
    a UTF-8 BOM, and a Content-Type with or without its charset. ``escaped``: always ASCII-escaped (a lone
    surrogate has no UTF-8 form)."""
    ascii_only = escaped or draw(st.booleans())
    text = json.dumps(payload, ensure_ascii=ascii_only, indent=draw(st.sampled_from([None, 1])))
    body = text.encode("utf-8")
    if draw(st.integers(0, 9)) == 0:
        body = codecs.BOM_UTF8 + body
    content_type = draw(st.sampled_from([JSON_TYPE, f"{JSON_TYPE}; charset=utf-8", f"{JSON_TYPE};charset=UTF-8"]))
    return body, content_type


def valid_payload(model: ServedModel, rows: list[list[str]], draw: st.DrawFn) -> tuple[str, Any]:
    """The same rows in one of the accepted request formats; returns the format's name and the payload."""
    names = draw(st.sampled_from([model.fields, *model.aliases]))
    plain: list[Any] = [row[0] for row in rows] if not model.pair else rows
    options: list[tuple[str, Any]] = [
        ("inputs", {"inputs": plain}),
        ("instances", {"instances": plain}),
        ("dataframe_records", {"dataframe_records": [dict(zip(names, row, strict=True)) for row in rows]}),
        ("dataframe_split", {"dataframe_split": {"columns": list(names), "data": rows}}),
        ("dataframe_split without columns", {"dataframe_split": {"data": rows}}),
    ]
    if not model.pair and len(rows) == 1:
        options.append(("inputs as one string", {"inputs": rows[0][0]}))
    return draw(st.sampled_from(options))


@cache
@st.composite
def valid_requests(draw: st.DrawFn, model: ServedModel) -> Case:
    rows = draw(rows_of(model))
    kind, payload = valid_payload(model, rows, draw)
    body, content_type = encode(payload, draw)
    assume(len(body) <= model.max_body_bytes)  # many long texts, escaped, can pass the limit: not this case
    long_rows = tuple(i for i, row in enumerate(rows) if any(len(text) > model.max_chars for text in row))
    return Case(f"valid/{kind}", body, content_type, len(rows), long_rows)


# --- mistakes ---------------------------------------------------------------------------------------------------

WHITESPACE = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2028\u3000"
INVALID_UTF8 = [b"\xff", b"\xfe", b"\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\xf5\x80\x80\x80", b"\xc3"]
WRONG_CONTENT_TYPES = [
    None,
    "",
    "text/plain",
    "text/csv",
    "application/xml",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/json; charset=latin-1",
    "application/json; charset=utf-16",
    "application/json; boundary=x",
    "Application/JSON",
    "application/jsonx",
    "application/vnd.apache.parquet",
]


@cache
def not_a_text() -> st.SearchStrategy[Any]:
    """JSON values a client might put where a text belongs."""
    return st.one_of(
        st.text(st.sampled_from(WHITESPACE), max_size=4),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.booleans(),
        st.none(),
        st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
        st.lists(st.integers(), max_size=3),
    )


def with_lone_surrogate(text: str, draw: st.DrawFn) -> str:
    """TEXT with one lone surrogate inserted: a neighbour is never the other half of a pair (a valid text has no
    lone surrogates, and an astral character escapes as high+low, so high-before-high or low-after-low)."""
    at = draw(st.integers(0, len(text)))
    return text[:at] + chr(draw(st.integers(0xD800, 0xDFFF))) + text[at:]


def refused(kind: str, payload: Any, draw: st.DrawFn) -> Case:
    body, content_type = encode(payload, draw, escaped=kind.startswith("lone surrogate"))
    return Case(kind, body, content_type, None)


@cache
@st.composite
def bad_texts(draw: st.DrawFn, model: ServedModel) -> Case:
    """Valid rows with one text replaced: whitespace only, a number, null, NaN, a list, an object, a surrogate."""
    rows = draw(rows_of(model, max_rows=4))
    row, column = draw(st.integers(0, len(rows) - 1)), draw(st.integers(0, len(model.fields) - 1))
    if draw(st.booleans()):
        kind, bad = "lone surrogate", with_lone_surrogate(rows[row][column], draw)
        if not draw(st.integers(0, 4)):  # raw in the body: a surrogate encoded as UTF-8 bytes is not UTF-8
            rows[row][column] = bad
            body = json.dumps({"inputs": [r if model.pair else r[0] for r in rows]}, ensure_ascii=False)
            return Case("raw surrogate bytes", body.encode("utf-8", "surrogatepass"), JSON_TYPE, None)
    else:
        bad = draw(not_a_text())
        kind = f"not a text ({type(bad).__name__})"
    rows[row][column] = bad
    shape, payload = valid_payload(model, rows, draw)
    return refused(f"{kind}/{shape}", payload, draw)


@cache
@st.composite
def wrong_columns(draw: st.DrawFn, model: ServedModel) -> Case:
    """Valid texts under the wrong columns: other names, one missing, one extra, a value too many per row."""
    rows = draw(rows_of(model, max_rows=4))
    accepted = [set(names) for names in (model.fields, *model.aliases)]
    mistake = draw(st.sampled_from(["other names", "missing", "extra column", "extra value per row"]))
    names: list[str] = list(draw(st.sampled_from([model.fields, *model.aliases])))
    if mistake == "other names":
        names = draw(st.lists(st.text(max_size=12), min_size=len(names), max_size=len(names), unique=True))
        if set(names) in accepted:
            names = [f"{name}_x" for name in names]
    elif mistake == "missing":
        names = names[:-1]
        rows = [row[:-1] for row in rows]
    else:
        names.append(draw(st.text(max_size=12).filter(lambda name: name not in names)))
        rows = [[*row, draw(texts())] for row in rows]
    if mistake == "extra value per row" or (mistake == "missing" and not names):
        return refused(f"columns/{mistake}", {draw(st.sampled_from(["inputs", "instances"])): rows}, draw)
    shape = draw(st.sampled_from(["dataframe_records", "dataframe_split"]))
    if shape == "dataframe_records":
        payload: Any = {shape: [dict(zip(names, row, strict=True)) for row in rows]}
    else:
        payload = {shape: {"columns": names, "data": rows}}
    return refused(f"columns/{mistake}/{shape}", payload, draw)


@cache
@st.composite
def too_many_rows(draw: st.DrawFn, model: ServedModel) -> Case:
    count = draw(st.integers(model.max_rows + 1, model.max_rows + 64))
    row = [draw(texts(max_size=8)) for _ in model.fields]
    shape, payload = valid_payload(model, [list(row) for _ in range(count)], draw)
    return refused(f"too many rows/{shape}", payload, draw)


@cache
@st.composite
def too_large(draw: st.DrawFn, model: ServedModel) -> Case:
    """A body over ``max_body_bytes``: refused (413) before it is parsed."""
    size = draw(st.integers(model.max_body_bytes + 1, model.max_body_bytes + 50_000))
    text = "a" * size
    rows = [[text] * len(model.fields)]
    shape, payload = valid_payload(model, rows, draw)
    return refused(f"body too large/{shape}", payload, draw)


@cache
def wrong_shapes(model: ServedModel) -> st.SearchStrategy[Case]:
    """JSON that is not a request: another top-level type, unknown or several format keys, a format key holding
    the wrong type, or an empty table (the text in them is fine; the shape is the mistake)."""
    junk = st.one_of(st.integers(), st.floats(), st.booleans(), st.none(), st.text(max_size=10))
    text, column = "a fine film", model.fields[0]
    payloads = st.one_of(
        st.lists(st.just(text), max_size=3),
        junk,
        st.dictionaries(st.text(max_size=10).filter(lambda key: key not in FORMAT_KEYS), junk, max_size=3),
        st.just({"inputs": [text], "instances": [text]}),
        st.just({"dataframe_records": [{column: text}], "inputs": [text]}),
        st.builds(
            lambda key, value: {key: value},
            st.sampled_from(["inputs", "instances"]),
            st.one_of(
                junk.filter(lambda value: not isinstance(value, str)), st.sampled_from([[], {}, {column: [text]}])
            ),
        ),
        st.builds(
            lambda value: {"dataframe_records": value},
            st.one_of(junk, st.sampled_from([[], {column: text}]), st.lists(st.integers(), min_size=1)),
        ),
        st.builds(
            lambda value: {"dataframe_split": value},
            st.one_of(
                junk,
                st.sampled_from(
                    [[], {"columns": list(model.fields)}, {"data": 5}, {"columns": list(model.fields), "data": []}]
                ),
            ),
        ),
    )
    return st.builds(lambda payload, data: refused("wrong shape", payload, data.draw), payloads, st.data())


@cache
@st.composite
def deep_json(draw: st.DrawFn, model: ServedModel) -> Case:
    """A text wrapped in lists: a few levels (a row value that is not a text) up to far past any parser's limit."""
    # From 3: {"inputs": [["a"]]} is a valid one-column table, and an object 2 deep is still a row value.
    depth = draw(st.one_of(st.integers(3, 40), st.integers(40, 100_000)))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a": ', "}")]))
    nested = opener * depth + json.dumps(draw(texts())) + closer * depth
    key = draw(st.sampled_from(["inputs", "instances"]))
    if draw(st.booleans()):
        body = f'{{"{key}": {nested}}}'
    else:  # the nesting inside one row of a valid request
        others = ", ".join(json.dumps(text) for text in draw(st.lists(texts(), max_size=2)))
        row = f"[{nested}, {json.dumps(draw(texts()))}]" if model.pair else nested
        body = f'{{"{key}": [{others}{", " if others else ""}{row}]}}'
    return Case(f"nested JSON/{'past 32' if depth > 32 else 'up to 32'}", body.encode(), JSON_TYPE, None)


@cache
@st.composite
def not_json(draw: st.DrawFn, model: ServedModel) -> Case:
    """Bodies that are not UTF-8 JSON: junk bytes, plain text, a cut-off request, raw control characters in a
    string, invalid UTF-8 inside a valid request, the request in UTF-16, UTF-32 or Latin-1."""
    rows = [[draw(texts()) for _ in model.fields]]
    request, _ = encode(valid_payload(model, rows, draw)[1], draw)
    kind = draw(
        st.sampled_from(
            ["junk bytes", "plain text", "cut off", "raw control", "invalid UTF-8", "UTF-16", "UTF-32", "Latin-1"]
        )
    )
    if kind == "junk bytes":
        body = draw(st.binary(max_size=200))
    elif kind == "plain text":
        body = draw(st.text(max_size=80)).encode()
    elif kind == "cut off":
        body = request[: draw(st.integers(0, len(request) - 1))]
    elif kind == "raw control":
        control = chr(draw(st.integers(0, 0x1F)))
        body = f'{{"inputs": ["{draw(texts()).replace(chr(92), "").replace(chr(34), "")}{control}x"]}}'.encode()
    elif kind == "invalid UTF-8":
        at = draw(st.integers(0, len(request)))
        body = request[:at] + draw(st.sampled_from(INVALID_UTF8)) + request[at:]
    elif kind == "Latin-1":
        # Ending in é (0xE9, a UTF-8 lead byte) before the closing quote: never valid UTF-8 by accident.
        text = draw(st.text(st.characters(min_codepoint=0xA0, max_codepoint=0xFF), max_size=10)) + "\xe9"
        body = json.dumps({"inputs": [[text] * len(model.fields)]}, ensure_ascii=False).encode("latin-1")
    else:
        body = json.dumps({"inputs": [[text] for text in rows[0]]}).encode(
            draw(
                st.sampled_from(
                    ["utf-16", "utf-16-le", "utf-16-be"] if kind == "UTF-16" else ["utf-32", "utf-32-le", "utf-32-be"]
                )
            )
        )
    return Case(f"not JSON/{kind}", body, JSON_TYPE, None)


@cache
@st.composite
def wrong_content_types(draw: st.DrawFn, model: ServedModel) -> Case:
    rows = [[draw(texts()) for _ in model.fields]]
    body, _ = encode(valid_payload(model, rows, draw)[1], draw)
    content_type = draw(st.sampled_from(WRONG_CONTENT_TYPES))
    return Case(f"content type/{content_type!r}", body, content_type, None)


FORMAT_KEYS = ("dataframe_split", "dataframe_records", "inputs", "instances")


@cache
def bad_requests(model: ServedModel) -> st.SearchStrategy[Case]:
    return st.one_of(
        bad_texts(model),
        bad_texts(model),
        wrong_columns(model),
        wrong_columns(model),
        wrong_shapes(model),
        not_json(model),
        not_json(model),
        deep_json(model),
        too_many_rows(model),
        wrong_content_types(model),
        too_large(model),
    )


@cache
@st.composite
def requests(draw: st.DrawFn, model: ServedModel) -> Case:
    """About one valid request in three, the rest mistakes."""
    return draw(valid_requests(model) if draw(st.integers(0, 2)) == 0 else bad_requests(model))
