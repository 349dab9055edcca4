"""Errors to HTTP, in one table.

Every error a caller can cause leaves as a 4xx with one JSON shape, ``{"error": {"code",
"message", "field", "value"}}`` (a list of them under ``errors`` for request validation), so an
order-entry system can show the clerk which field to fix. An unreachable or locked database is a
503 with ``Retry-After``; anything else is a 500 that says only that it happened (the traceback
goes to the log, never to the caller).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from erp_core.domain.errors import (
    Conflict,
    DomainError,
    IllegalTransition,
    InvalidValue,
    NotFound,
    PermissionDenied,
    PolicyError,
)

log = logging.getLogger("erpx.serving")

STATUS_OF: dict[type[DomainError], int] = {
    NotFound: 404,
    InvalidValue: 422,
    IllegalTransition: 409,
    Conflict: 409,
    PermissionDenied: 403,
    PolicyError: 500,
}
"""The most specific class wins; a DomainError not listed is a 400."""

RETRY_AFTER_SECONDS = 2
MAX_ECHO = 200
"""At most this many characters of a caller's value are echoed back in an error."""


class Unauthenticated(DomainError):
    """No API key, or one that is unknown or revoked."""

    code = "unauthenticated"


class Forbidden(DomainError):
    """The key's role may not call this endpoint."""

    code = "forbidden"


STATUS_OF.update({Unauthenticated: 401, Forbidden: 403})


def register(error_class: type[DomainError], status: int) -> None:
    """An error class a route module defines, with its status (kept in this one table)."""
    STATUS_OF[error_class] = status


def status_of(error: DomainError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return 400


def inert(text: Any, limit: int | None = None) -> str:
    """``text`` as a string that is safe to put in a JSON answer: cut to ``limit`` characters,
    and a lone surrogate (valid in a JSON escape, not in UTF-8) written as its escape."""
    text = str(text)[:limit]
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _echo(value: Any) -> str | None:
    return None if value is None else inert(value, MAX_ECHO)


def error_body(code: str, message: str, field: str | None = None, value: Any = None) -> dict:
    return {
        "error": {
            "code": code,
            "message": inert(message),
            "field": None if field is None else inert(field),
            "value": _echo(value),
        }
    }


def _domain_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, DomainError)
    status = status_of(error)
    headers = {"WWW-Authenticate": "ApiKey"} if status == 401 else None
    body = error_body(error.code, error.message, error.field, error.value)
    return JSONResponse(body, status_code=status, headers=headers)


def _field_of(problem: Any) -> str:
    if problem.get("type") == "json_invalid":
        return "body"  # its location is the body and the offset of the fault, not a field
    field = ""
    for part in problem.get("loc", ()):
        if part == "body":
            continue
        # lines[0].sku, as the domain errors name a line's field
        field += f"[{part}]" if isinstance(part, int) else f".{part}" if field else str(part)
    return field or "body"


def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = []
    for problem in error.errors():
        if problem.get("loc") == ("body",) and isinstance(problem.get("input"), bytes):
            return _unsupported_media_type(request)
        field = _field_of(problem)
        value = problem.get("input")
        message = f"invalid {field}: {problem.get('msg', 'invalid')}"
        if problem.get("type") == "json_invalid":
            position = (problem.get("loc") or ("body", "?"))[-1]
            message = f"the body is not valid JSON (at character {position})"
            value = None
        problems.append(
            error_body("invalid_value", message, field, None if isinstance(value, dict) else value)[
                "error"
            ]
        )
    first = problems[0] if problems else {"code": "invalid_value", "message": "invalid request"}
    return JSONResponse({"error": first, "errors": problems}, status_code=422)


def _unsupported_media_type(request: Request) -> JSONResponse:
    """A body FastAPI left unparsed: it came with another content type than JSON."""
    content_type = request.headers.get("content-type")
    return JSONResponse(
        error_body(
            "unsupported_media_type",
            "the body must be JSON (Content-Type: application/json)",
            "Content-Type",
            content_type,
        ),
        status_code=415,
    )


BODY_NOT_PARSED = "There was an error parsing the body"
"""FastAPI's detail for a body its JSON parser raised on (other than a JSONDecodeError)."""


def _http_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
        error.status_code, "http_error"
    )
    if error.status_code == 400 and error.detail == BODY_NOT_PARSED:
        # json.loads gave up: nested too deeply, not UTF-8, or an integer of thousands of digits
        return JSONResponse(
            error_body(
                "invalid_json",
                "the body is not JSON that can be read (not UTF-8, nested too deeply, "
                "or a number too long)",
                "body",
            ),
            status_code=400,
        )
    return JSONResponse(
        error_body(code, str(error.detail)),
        status_code=error.status_code,
        headers=getattr(error, "headers", None),
    )


def _database_unavailable(_request: Request, error: Exception) -> JSONResponse:
    reason = str(getattr(error, "orig", error)).strip().splitlines()[0][:200]
    log.warning("database unavailable: %s", reason)
    return JSONResponse(
        error_body("database_unavailable", "the database is unavailable; retry shortly"),
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _unexpected(_request: Request, error: Exception) -> JSONResponse:
    log.exception("unexpected error", exc_info=error)
    return JSONResponse(
        error_body("internal_error", "the request failed on the server; it has been logged"),
        status_code=500,
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(InterfaceError, _database_unavailable)
    app.add_exception_handler(Exception, _unexpected)
