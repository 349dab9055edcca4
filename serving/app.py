"""The FastAPI application: erpx's predictions in the order workflow.

``create_app(settings)`` builds the app; the runtime (database, feature index, models) is built
at start-up by the lifespan, or handed in ready-made by a test. A uvicorn worker process loads
it with ``uvicorn --factory serving.app:create_app`` and reads the settings from ``ERPX_*``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from erp_core.settings import Settings, get_settings
from serving import errors, limits, metrics
from serving.page import routes as page
from serving.routes import exceptions, orders, reports, shipments, system
from serving.runtime import Runtime, build_runtime

log = logging.getLogger("erpx.serving")

DESCRIPTION = """\
Risk scoring at order entry, order capture with exception routing, the exception queue,
shipment milestones, KPIs and the models in service.

Every endpoint but `/healthz` and `/readyz` needs an API key (`X-API-Key` header), bound to one
role of the governance policy: `erpx apikey create --name NAME --role ROLE` prints one.
Errors are JSON `{"error": {"code", "message", "field", "value"}}`.
"""


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if runtime is None:
            app.state.runtime = build_runtime(settings or get_settings())
        else:
            app.state.runtime = runtime
        yield
        app.state.runtime.close()
        app.state.runtime.engine.dispose()

    app = FastAPI(
        title="erpx",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    if runtime is not None:
        app.state.runtime = runtime
    errors.install(app)
    limits.install(app)
    metrics.install(app)
    for module in (system, orders, exceptions, shipments, reports):
        app.include_router(module.router)
    page.install(app)  # the control tower at /, logged in with an API key
    return app
