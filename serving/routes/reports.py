"""What planners and managers read: the KPIs of a period and the replenishment report.

Both are reads that can take seconds on a year of history, so they are plain ``def`` routes
(run in the thread pool), never on the event loop where orders are scored.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime
from datetime import time as day_time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response

from erp_core.domain.errors import DomainError, InvalidValue
from erp_core.kpis import DEFINITIONS, GROUPINGS, compute_kpis
from erp_core.policy import Actor
from serving.errors import register
from serving.security import ANY_ROLE, RuntimeDep, admits

router = APIRouter(tags=["reports"])

REPORT_CACHE_SECONDS = 600.0
"""The replenishment report is rebuilt at most this often per location (a planner's morning
read; the forecast behind it moves with whole days of history)."""


class ModelUnavailable(DomainError):
    """A report needs a model that has no champion yet."""

    code = "model_unavailable"


def _moment(field: str, value: date | datetime) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidValue(field, value.isoformat(), "give a time zone, or a plain date")
        return value
    return datetime.combine(value, day_time(0), tzinfo=UTC)


@router.get("/v1/kpis", summary="Every KPI of a period, in total or by a dimension")
def kpis(
    runtime: RuntimeDep,
    _actor: Annotated[Actor, Depends(admits(ANY_ROLE))],
    from_: Annotated[date | datetime, Query(alias="from", description="Start (inclusive).")],
    to: Annotated[date | datetime, Query(description="End (exclusive).")],
    by: Annotated[str | None, Query(description=f"One of {', '.join(GROUPINGS)}.")] = None,
) -> dict[str, Any]:
    """Each KPI with its value, unit, numerator and denominator (a KPI over zero events is
    null), defined once in ``erp_core.kpis``; a plain date means its UTC midnight."""
    report = compute_kpis(runtime.reader(), _moment("from", from_), _moment("to", to), group_by=by)
    return report.as_dict() | {"definitions": dict(DEFINITIONS)}


class _ReportCache:
    """Built reports by the world they were built from (database and registry) and location.

    Keyed by the world, not by the location alone: one process can hold several apps (tests, an
    embedded server beside the demo), and a report of one world must never answer for another.
    A newly promoted demand champion shows once its world's entry is older than
    REPORT_CACHE_SECONDS."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reports: dict[tuple[str, str, str | None], tuple[float, Any]] = {}

    def get(self, runtime: Any, location: str | None) -> Any:
        settings = runtime.settings
        key = (settings.database_url, settings.mlflow_tracking_uri, location)
        with self.lock:
            found = self.reports.get(key)
            if found is not None and time.monotonic() - found[0] < REPORT_CACHE_SECONDS:
                return found[1]
            report = _build(runtime, location)
            self.reports[key] = (time.monotonic(), report)
            return report


_CACHE = _ReportCache()
register(ModelUnavailable, 503)


def cached_report(runtime: Any, location: str | None) -> Any:
    """The report this endpoint serves (built at most every REPORT_CACHE_SECONDS), for the
    control tower page to show the same recommendations without building them twice."""
    return _CACHE.get(runtime, location)


def _build(runtime: Any, location: str | None) -> Any:
    from training import tracking
    from training.demand_forecast import REGISTERED_NAME
    from training.report import build_report

    tracking.configure(runtime.settings)
    if tracking.version_by_alias(REGISTERED_NAME, tracking.CHAMPION) is None:
        raise ModelUnavailable(
            f"no champion {REGISTERED_NAME} yet: run `erpx train demand-forecast --promote`",
            field="model",
            value=REGISTERED_NAME,
        )
    return build_report(runtime.settings, runtime.policy.calendar, location=location)


@router.get(
    "/v1/replenishment/recommendations",
    summary="What to order now per SKU x location (JSON, CSV or HTML)",
    response_model=None,
)
def replenishment(
    runtime: RuntimeDep,
    _actor: Annotated[Actor, Depends(admits(ANY_ROLE))],
    location: str | None = None,
    format: Literal["json", "csv", "html"] = "json",
) -> Response:
    """The report of ``erpx report replenishment``: recommended quantity, days of cover,
    expected stock-out date, value and reason per pair, from the champion demand forecast."""
    from training.report import to_csv, to_html

    report = _CACHE.get(runtime, location)
    if format == "csv":
        return Response(to_csv(report), media_type="text/csv")
    if format == "html":
        return HTMLResponse(to_html(report))
    recommendations = report.recommendations
    rows = recommendations.astype(object).where(recommendations.notna(), None).to_dict("records")
    return JSONResponse(
        {
            "as_of": report.as_of.isoformat(),
            "model_version": report.model_version,
            "count": len(rows),
            "data": rows,
            "transfers": report.transfers.astype(object)
            .where(report.transfers.notna(), None)
            .to_dict("records"),
        }
    )
