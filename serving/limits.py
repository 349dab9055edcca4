"""Limits on what a request may carry, enforced before the app reads it.

A body over ``MAX_BODY_BYTES`` is refused with a 413 in the API's error shape: at once when its
``Content-Length`` says so, or as soon as that many bytes have arrived when it is sent in chunks
without one. A 1 MB body is twenty times the largest order the API accepts (``ERPX_MAX_ORDER_LINES``
lines of a few dozen bytes each), so nothing an order-entry system sends comes near it. How deep a
body may nest needs no limit here: the JSON parser refuses one nested past a few hundred levels,
and :mod:`serving.errors` answers that with a 400 naming the body.
"""

from __future__ import annotations

import json

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.errors import error_body

MAX_BODY_BYTES = 1_048_576
"""The most bytes a request body may have (1 MiB)."""


def _too_large_response(length: int | str) -> tuple[Message, Message]:
    body = json.dumps(
        error_body(
            "too_large",
            f"the body may carry at most {MAX_BODY_BYTES} bytes",
            "body",
            length,
        )
    ).encode()
    start: Message = {
        "type": "http.response.start",
        "status": 413,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ],
    }
    return start, {"type": "http.response.body", "body": body}


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodyLimit:
    """ASGI middleware: refuse a request body over ``limit`` bytes with a 413."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.limit:
            for message in _too_large_response(declared):
                await send(message)
            return
        received = 0
        refused = False

        async def counted_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    refused = True
                    for answer in _too_large_response(f"more than {self.limit}"):
                        await send(answer)
                    # The app sees the client go away and stops reading; its answer is dropped.
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:
                await send(message)

        await self.app(scope, counted_receive, guarded_send)


def install(app: FastAPI) -> None:
    app.add_middleware(BodyLimit)
