"""The control tower's HTTP side: the login form, the page, and the two acts on a case.

Each route maps a request to the functions the API itself uses and renders a template; the acts
on a case (acknowledge, resolve) call ``erp_core.services.exceptions`` with the viewer's actor,
after the same permission check as ``POST /v1/exceptions/{id}/...`` (``work_exceptions``), so
a role the API refuses is refused here too (403), and the service checks ownership again.

The page is a plain ``def`` route: its KPI reads take a while on a long history and run in the
thread pool, never on the event loop where orders are scored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from erp_core.domain.errors import DomainError, InvalidValue
from erp_core.policy import Actor
from erp_core.services.exceptions import acknowledge_exception, resolve_exception
from serving.errors import status_of
from serving.page import session, views
from serving.routes import EntityId
from serving.runtime import Runtime
from serving.schemas import Note
from serving.security import RuntimeDep

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False)


def _weeks(weeks: int) -> int:
    if weeks not in views.PERIOD_WEEKS:
        choices = ", ".join(str(w) for w in views.PERIOD_WEEKS)
        raise InvalidValue("weeks", weeks, f"use one of {choices}")
    return weeks


def install(app: FastAPI) -> None:
    """The page's routes and its stylesheet (served from the package: no CDN, works offline)."""
    app.include_router(router)
    app.mount("/static/page", StaticFiles(directory=HERE / "static"), name="page-static")


def _login(request: Request, message: str = "", status: int = 200) -> HTMLResponse:
    return templates.TemplateResponse(
        request, "login.html", {"message": message}, status_code=status
    )


def _notice(request: Request, message: str, status: int) -> HTMLResponse:
    return templates.TemplateResponse(
        request, "notice.html", {"message": message, "status": status}, status_code=status
    )


@router.get("/", response_class=HTMLResponse)
def tower(
    request: Request,
    runtime: RuntimeDep,
    weeks: Annotated[int, Query(description="The period: the last 4, 13 or 26 weeks.")] = 4,
    notice: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    actor = session.actor_of(request, runtime)
    if actor is None:
        return _login(request)
    period = views.Period.ending(runtime.now(), _weeks(weeks))
    report, weekly = views.kpi_reports(runtime, period)
    context = {
        "actor": actor,
        "token": session.form_token(session.key_of(request) or ""),
        "period": period,
        "periods": views.PERIOD_WEEKS,
        "now": runtime.now(),
        "tiles": views.tiles(report, weekly),
        "queue": views.queue(runtime, actor),
        "resolutions": views.RESOLUTIONS,
        "outlook": views.outlook_view(runtime, period, weekly),
        "replenishment": views.replenishment_view(runtime),
        "notice": notice,
    }
    return templates.TemplateResponse(request, "tower.html", context)


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    runtime: RuntimeDep,
    api_key: Annotated[str, Form(max_length=256)] = "",
) -> Response:
    key = api_key.strip()
    if session.key_of(request) and not key:
        return RedirectResponse("/", status_code=303)
    if runtime.keys.actor(runtime, key) is None:
        return _login(request, "That API key is not valid (unknown, revoked or mistyped).", 401)
    response = RedirectResponse("/", status_code=303)
    session.remember(response, request, key)
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    response = RedirectResponse("/", status_code=303)
    session.forget(response, request)
    return response


def _worker(request: Request, runtime: Runtime, token: str) -> Actor | Response:
    """The viewer's actor when it may work cases, or the answer that says why not."""
    actor = session.actor_of(request, runtime)
    if actor is None:
        return _login(request, "Log in to work exceptions.", 401)
    if not session.token_matches(request, token):
        return _notice(request, "The form has expired: reload the page and try again.", 403)
    if not views.may_work_exceptions(runtime, actor):
        return _notice(request, f"Role {actor.role!r} may not work exceptions.", 403)
    return actor


def _back(weeks: int, message: str) -> RedirectResponse:
    query = urlencode({"weeks": _weeks(weeks), "notice": message})
    return RedirectResponse(f"/?{query}#queue", status_code=303)


@router.post("/page/exceptions/{exception_id}/acknowledge")
def acknowledge(
    exception_id: EntityId,
    request: Request,
    runtime: RuntimeDep,
    token: Annotated[str, Form(max_length=64)] = "",
    weeks: Annotated[int, Form()] = 4,
) -> Response:
    actor = _worker(request, runtime, token)
    if isinstance(actor, Response):
        return actor
    try:
        acknowledge_exception(runtime.uow(), actor, exception_id, runtime.now())
    except DomainError as error:
        return _notice(request, error.message, status_of(error))
    return _back(weeks, f"Case {exception_id} acknowledged: it is in hand.")


@router.post("/page/exceptions/{exception_id}/resolve")
def resolve(
    exception_id: EntityId,
    request: Request,
    runtime: RuntimeDep,
    resolution: Annotated[str, Form(max_length=64)] = "",
    note: Annotated[Note, Form()] = "",
    token: Annotated[str, Form(max_length=64)] = "",
    weeks: Annotated[int, Form()] = 4,
) -> Response:
    actor = _worker(request, runtime, token)
    if isinstance(actor, Response):
        return actor
    if resolution not in views.RESOLUTIONS:
        known = ", ".join(views.RESOLUTIONS)
        return _notice(request, f"resolution {resolution!r} is not one of {known}", 422)
    text = resolution if not note.strip() else f"{resolution}: {note.strip()}"
    try:
        resolve_exception(runtime.uow(), actor, exception_id, text, runtime.now())
    except DomainError as error:
        return _notice(request, error.message, status_of(error))
    return _back(weeks, f"Case {exception_id} resolved ({resolution}).")
