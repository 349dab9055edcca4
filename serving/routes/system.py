"""Liveness, readiness, the models in service and the access table."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy import text

from erp_core.policy import Actor
from serving.models import SERVED, load_models
from serving.security import ANY_ROLE, RuntimeDep, admits, admitted_roles

router = APIRouter(tags=["system"])


@router.get("/healthz", summary="The process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Database reachable, champions loaded")
def readyz(runtime: RuntimeDep) -> JSONResponse:
    """``ready`` when the database answers and every scoring model has its champion loaded;
    ``degraded`` (still 200: scoring answers from the fallback) when a champion or the feature
    index is missing; 503 when the database does not answer."""
    checks: dict[str, Any] = {}
    try:
        with runtime.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as error:
        checks["database"] = f"unavailable: {str(error).strip().splitlines()[0][:160]}"
        return JSONResponse({"status": "unavailable", "checks": checks}, status_code=503)
    for name in SERVED:
        champion = runtime.models.champion(name)
        checks[name] = (
            f"champion v{champion.version}"
            if champion is not None
            else f"fallback ({runtime.models.problems.get(name, 'not loaded')})"
        )
    checks["feature_index"] = (
        "ok" if runtime.online is not None else f"missing ({runtime.online_problem})"
    )
    degraded = runtime.models.degraded or runtime.online is None
    return JSONResponse({"status": "degraded" if degraded else "ready", "checks": checks})


@router.get("/v1/models", summary="The champion (and challenger) of each served model")
def models(
    runtime: RuntimeDep, _actor: Annotated[Actor, Depends(admits(ANY_ROLE))]
) -> dict[str, Any]:
    served = runtime.models
    return {
        name: {
            "champion": served.champions[name].describe() if name in served.champions else None,
            "challenger": (
                served.challengers[name].describe() if name in served.challengers else None
            ),
            "serving": served.champions[name].version if name in served.champions else "fallback",
            "problem": served.problems.get(name),
        }
        for name in SERVED
    }


@router.post("/v1/models/reload", summary="Load the registry's current champions (admin)")
async def reload_models(
    runtime: RuntimeDep, _actor: Annotated[Actor, Depends(admits("manage_master_data"))]
) -> dict[str, Any]:
    """A champion that fails to load is refused and the version serving now keeps serving."""
    before = {name: m.version for name, m in runtime.models.champions.items()}
    loaded = await asyncio.to_thread(load_models, runtime.settings, runtime.models)
    runtime.models = loaded
    after = {name: m.version for name, m in runtime.models.champions.items()}
    return {"before": before, "after": after, "problems": runtime.models.problems}


@router.get("/v1/access", summary="Which roles each endpoint admits")
def access(
    request: Request, runtime: RuntimeDep, _actor: Annotated[Actor, Depends(admits(ANY_ROLE))]
) -> dict[str, list[str]]:
    return endpoint_roles(request.app.routes, runtime)


def endpoint_roles(routes: list[Any], runtime: Any) -> dict[str, list[str]]:
    """``"METHOD /path"`` -> the roles admitted, for every route guarded by :func:`admits`."""
    table: dict[str, list[str]] = {}
    for route in api_routes(routes):
        for dependency in route.dependant.dependencies:
            permission = getattr(dependency.call, "permission", None)
            if permission is None:
                continue
            for method in sorted(route.methods):
                table[f"{method} {route.path}"] = sorted(admitted_roles(runtime, permission))
    return table


def api_routes(routes: list[Any]) -> list[APIRoute]:
    """Every API route, also inside included routers (FastAPI 0.16x lists an included router
    as one entry holding its ``original_router``; our routers carry their full prefix)."""
    found: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        inner = getattr(route, "original_router", None)
        if inner is not None:
            found.extend(api_routes(list(inner.routes)))
    return found
