"""What stands in front of `mlflow models serve`'s scoring app: a body limit, request checks, no stack traces out.

MLflow's scoring server (3.17) has no body limit of its own, so a 30 MB sentence costs memory and CPU before the
model can refuse it. It also answers some bad requests badly: a request without a Content-Type, or JSON nested
past Python's recursion limit, gets a bare 500 (the exception escapes its handler); a CSV or Parquet body it cannot
parse, and any exception a model raises that is not an ``MlflowException``, gets a 400 whose JSON carries
``stack_trace`` (file paths of the server's installation); an invalid JSON body is echoed back whole inside the
message. :class:`RequestGuard` answers those requests itself, with a status and a message a person can act on,
and takes ``stack_trace`` (it goes to the server's log instead) and any echo of the request out of the app's
error answers. The model's own checks (``distilflow.serving.classifier``) stay the place where a request's texts are
judged.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import sys
import types
from typing import Any, NamedTuple

INVOCATIONS_PATH = "/invocations"
JSON_TYPE = "application/json"
CSV_TYPE = "text/csv"
FORMAT_KEYS = ("dataframe_split", "dataframe_records", "inputs", "instances")
PREDICT_PREFIX = "Failed to predict data '"
PREDICT_SEPARATOR = "'. \nError: "
MAX_MESSAGE_CHARS = 1000
MAX_JSON_DEPTH = 32
"""The deepest a request needs is 4 (``{"dataframe_split": {"data": [[...]]}}``); 32 leaves room and stays far
below the recursion limit that MLflow's parser and pandas would otherwise hit."""
INLINE_PARSE_BYTES = 65_536
"""Bodies up to this size are parsed on the event loop (microseconds); larger ones in a worker thread, so a
1 MB body does not stall every other connection while it parses."""


class Refusal(NamedTuple):
    """An answer the guard gives instead of the app."""

    status: int
    error_code: str
    message: str


def check_invocation(content_type: str | None, body: bytes, fields: tuple[str, ...]) -> Refusal | None:
    """Why a POST to /invocations cannot be scored, judged before MLflow parses it; None lets MLflow have it.

    Content types are read the way MLflow reads them (the part before ``;``, exact), so what MLflow would answer
    with its own 415 (another type, a charset other than UTF-8, unknown parameters) still gets that answer.
    """
    parts = [part.strip() for part in (content_type or "").split(";")]
    if not parts[0]:
        return Refusal(415, "UNSUPPORTED_MEDIA_TYPE", f"no Content-Type header; send Content-Type: {JSON_TYPE}")
    if parts[0] == CSV_TYPE:
        # This model's columns are typed Any (docs/registry.md), which MLflow's CSV reader cannot turn into
        # pandas types: every CSV body would fail inside MLflow with a misleading "not valid CSV".
        return Refusal(415, "UNSUPPORTED_MEDIA_TYPE", f"this model reads {JSON_TYPE} (or Parquet), not {CSV_TYPE}")
    if parts[0] != JSON_TYPE or any(part.replace(" ", "").lower() != "charset=utf-8" for part in parts[1:]):
        return None
    return check_json(body, fields)


def check_json(body: bytes, fields: tuple[str, ...]) -> Refusal | None:
    """A JSON body MLflow can parse without echoing it, failing or recursing; None if it is one.

    RFC 8259 makes networked JSON UTF-8 and lets a parser ignore a leading byte-order mark, so a UTF-8 BOM is
    accepted and UTF-16 or UTF-32 is not (MLflow's parser would guess them).
    """
    payload = body.removeprefix(codecs.BOM_UTF8)
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as error:
        return Refusal(
            400,
            "BAD_REQUEST",
            f"request body is not UTF-8: byte 0x{payload[error.start]:02x} at offset {error.start} "
            f"({error.reason}); send JSON encoded as UTF-8",
        )
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as error:
        return Refusal(400, "BAD_REQUEST", f"request body is not valid JSON: {error}")
    except RecursionError:
        return Refusal(400, "BAD_REQUEST", f"request JSON is nested deeper than {MAX_JSON_DEPTH} levels")
    if json_depth(parsed, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        return Refusal(400, "BAD_REQUEST", f"request JSON is nested deeper than {MAX_JSON_DEPTH} levels")
    problem = extra_values(parsed, fields)
    return None if problem is None else Refusal(400, "INVALID_PARAMETER_VALUE", problem)


def extra_values(request: Any, fields: tuple[str, ...]) -> str | None:
    """Rows that hold more values than the model reads, or None.

    The model's signature is column-based and unnamed, and MLflow keeps the first ``len(fields)`` columns of
    such input and drops the rest before the model sees it: ``{"sentence": ..., "sentence2": ...}`` to a
    single-sentence model, or a third text per pair, would be answered as if the client had not sent it.
    """
    if not isinstance(request, dict):
        return None
    present = [key for key in FORMAT_KEYS if key in request]
    if len(present) != 1:
        return None  # MLflow names the format keys it accepts
    rows = request[present[0]]
    width = len(fields)
    if present[0] == "dataframe_split":
        columns = rows.get("columns") if isinstance(rows, dict) else None
        if isinstance(columns, list) and len(columns) > width:
            return f"dataframe_split names {len(columns)} columns {columns!r:.200}; this model reads {list(fields)}"
        rows = rows.get("data") if isinstance(rows, dict) else None
    if not isinstance(rows, list):
        return None
    for index, row in enumerate(rows):
        if isinstance(row, dict | list) and len(row) > width:
            shown = list(row) if isinstance(row, dict) else f"{len(row)} values"
            return (
                f"row {index} holds {shown!s:.200}; this model reads {width} text{'s' if width > 1 else ''} per row "
                f"({list(fields)}, or a plain list of {'pairs' if width == 2 else 'strings'}); the rest would be "
                "dropped unread"
            )
    return None


def json_depth(value: Any, limit: int) -> int:
    """How many arrays and objects nest in VALUE (a scalar: 0), counted level by level up to ``limit`` + 1."""
    depth, level = 0, [value]
    while depth <= limit:
        containers = [item for item in level if isinstance(item, dict | list)]
        if not containers:
            break
        depth += 1
        level = [child for item in containers for child in (item.values() if isinstance(item, dict) else item)]
    return depth


def readable_error(body: bytes) -> bytes:
    """An error answer's JSON body as a client should see it: no ``stack_trace``, no echo of the request.

    The stack trace goes to the server's log. MLflow puts the parsed request in front of a model's message
    (``Failed to predict data '<the request>'. Error: <message>``), which for 256 long texts is most of a megabyte;
    only the message is kept, and any message is cut to ``MAX_MESSAGE_CHARS`` (its start and its end).
    """
    try:
        answer = json.loads(body)
    except ValueError:
        return body
    if not isinstance(answer, dict):
        return body
    trace = answer.pop("stack_trace", None)
    if trace is not None:
        print(f"distilflow: stack trace kept out of an error answer:\n{trace}", file=sys.stderr, flush=True)
    message = answer.get("message")
    if isinstance(message, str):
        if message.startswith(PREDICT_PREFIX) and PREDICT_SEPARATOR in message:
            # The model's messages hold no raw newline (values are shown by repr), so the last separator is MLflow's.
            message = message.rpartition(PREDICT_SEPARATOR)[2]
        if len(message) > MAX_MESSAGE_CHARS:
            half = MAX_MESSAGE_CHARS // 2
            message = f"{message[:half]} [...] {message[-half:]}"
        answer["message"] = message
    return json.dumps(answer).encode()


class RequestGuard:
    """ASGI middleware in front of MLflow's scoring app.

    Every request body over ``limit`` bytes is answered 413 and never reaches MLflow's parser: a declared
    Content-Length over the limit before a byte of the body is read, a body without one (chunked) once the bytes
    read pass the limit. A POST to /invocations is then checked by :func:`check_invocation`. What passes is
    replayed to the app as is, and the app's error answers lose any ``stack_trace``.
    """

    def __init__(self, app: Any, limit: int, fields: tuple[str, ...]) -> None:
        self.app = app
        self.limit = limit
        self.fields = fields

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send, self._too_large(), close=True)
            return
        body = await self._read_body(receive)
        if body is None:
            await self._refuse(send, self._too_large(), close=True)
            return
        if scope.get("path") == INVOCATIONS_PATH and scope.get("method") == "POST":
            content_type = headers.get(b"content-type")
            declared_type = content_type.decode("latin-1") if content_type is not None else None
            refusal = await _checked(declared_type, body, self.fields)
            if refusal is not None:
                await self._refuse(send, refusal, close=False)
                return
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return dict(await receive())
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, _ScrubbingSend(send))

    async def _read_body(self, receive: Any) -> bytes | None:
        """The whole body, or None as soon as it passes the limit (the rest is never read)."""
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.limit:
                return None
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        return b"".join(chunks)

    def _too_large(self) -> Refusal:
        return Refusal(413, "REQUEST_TOO_LARGE", f"request body over {self.limit} bytes; send less per request")

    @staticmethod
    async def _refuse(send: Any, refusal: Refusal, close: bool) -> None:
        message = json.dumps({"error_code": refusal.error_code, "message": refusal.message}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(message)).encode())]
        if close:  # the unread rest of the body would otherwise be taken for the next request
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
        await send({"type": "http.response.body", "body": message})


async def _checked(content_type: str | None, body: bytes, fields: tuple[str, ...]) -> Refusal | None:
    if len(body) <= INLINE_PARSE_BYTES:
        return check_invocation(content_type, body, fields)
    return await asyncio.to_thread(check_invocation, content_type, body, fields)


class _ScrubbingSend:
    """The app's ``send``: success passes straight through; an error answer is held until complete, then sent as
    :func:`readable_error` makes it (with its Content-Length corrected)."""

    def __init__(self, send: Any) -> None:
        self.send = send
        self.start: dict[str, Any] | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and message.get("status", 200) >= 400:
            self.start = message
            return
        if message["type"] != "http.response.body" or self.start is None:
            await self.send(message)
            return
        self.chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = readable_error(b"".join(self.chunks))
        headers = [(key, value) for key, value in self.start.get("headers", []) if key.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await self.send({**self.start, "headers": headers})
        await self.send({"type": "http.response.body", "body": body})
        self.start, self.chunks = None, []


class _GuardedAppModule(types.ModuleType):
    """Stands in for MLflow's scoring app module, so uvicorn's ``...app:app`` lookup gets the app behind the guard.

    The model loads while that module is still executing (``app = init(load_model(...))``); importlib returns
    whatever ``sys.modules`` holds once the module has run, so uvicorn imports this stand-in and reads its ``app``.
    """

    def __init__(self, original: types.ModuleType, limit: int, fields: tuple[str, ...]) -> None:
        super().__init__(original.__name__)
        self._original = original
        self._limit = limit
        self._fields = fields
        self._wrapped: RequestGuard | None = None

    def __getattr__(self, name: str) -> Any:
        if name == "app":
            if self._wrapped is None:
                self._wrapped = RequestGuard(self._original.app, self._limit, self._fields)
            return self._wrapped
        return getattr(self._original, name)


def guard_requests(limit: int, app_module: str, fields: tuple[str, ...]) -> None:
    """Inside `mlflow models serve`, while its app module loads the model: put that app behind RequestGuard.

    ``fields`` are the model's text columns, so the guard can refuse rows with more values than it reads.
    """
    module = sys.modules.get(app_module)
    if module is not None and not isinstance(module, _GuardedAppModule):
        sys.modules[app_module] = _GuardedAppModule(module, limit, fields)
