"""A request-body size limit for `mlflow models serve`, whose scoring server has none of its own.

MLflow parses the whole body (JSON, then a DataFrame) before the model can check anything, so a 30 MB sentence
costs memory and CPU and is then truncated anyway. :class:`BodyLimit` answers 413 first.
"""

from __future__ import annotations

import json
import sys
import types
from typing import Any


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is answered 413 and never reaches MLflow's parser.

    A declared Content-Length over the limit is refused before a byte of the body is read; a body without one
    (chunked) is read up to the limit only, then refused. Anything under the limit is replayed to the app as is.
    """

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.limit:
                await self._refuse(send)
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return dict(await receive())
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, send: Any) -> None:
        message = json.dumps(
            {
                "error_code": "REQUEST_TOO_LARGE",
                "message": f"request body over {self.limit} bytes; send less per request",
            }
        ).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(message)).encode())]
        headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": message})


class _LimitedAppModule(types.ModuleType):
    """Stands in for MLflow's scoring app module, so uvicorn's ``...app:app`` lookup gets the app behind BodyLimit.

    The model loads while that module is still executing (``app = init(load_model(...))``); importlib returns
    whatever ``sys.modules`` holds once the module has run, so uvicorn imports this stand-in and reads its ``app``.
    """

    def __init__(self, original: types.ModuleType, limit: int) -> None:
        super().__init__(original.__name__)
        self._original = original
        self._limit = limit
        self._wrapped: BodyLimit | None = None

    def __getattr__(self, name: str) -> Any:
        if name == "app":
            if self._wrapped is None:
                self._wrapped = BodyLimit(self._original.app, self._limit)
            return self._wrapped
        return getattr(self._original, name)


def limit_request_bodies(limit: int, app_module: str) -> None:
    """Inside `mlflow models serve`, while its app module loads the model: put that app behind BodyLimit."""
    module = sys.modules.get(app_module)
    if module is not None and not isinstance(module, _LimitedAppModule):
        sys.modules[app_module] = _LimitedAppModule(module, limit)
