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


def error_body(code: str, message: str, field: str | None = None, value: Any = None) -> dict:
    return {
        "error": {
            "code": code,
            "message": message,
            "field": field,
            "value": None if value is None else str(value)[:200],
        }
    }


def _domain_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, DomainError)
    status = status_of(error)
    headers = {"WWW-Authenticate": "ApiKey"} if status == 401 else None
    return JSONResponse({"error": error.as_dict()}, status_code=status, headers=headers)


def _validation_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = []
    for problem in error.errors():
        location = [str(part) for part in problem.get("loc", ()) if part != "body"]
        field = ".".join(location) or "body"
        value = problem.get("input")
        problems.append(
            {
                "code": "invalid_value",
                "message": f"invalid {field}: {problem.get('msg', 'invalid')}",
                "field": field,
                "value": None if value is None or isinstance(value, dict) else str(value)[:200],
            }
        )
    first = problems[0] if problems else {"code": "invalid_value", "message": "invalid request"}
    return JSONResponse({"error": first, "errors": problems}, status_code=422)


def _http_error(_request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
        error.status_code, "http_error"
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
