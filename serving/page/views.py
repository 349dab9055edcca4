"""The control tower's view model: what each part of the page shows, assembled from the same
functions the API answers with, as plain values the templates only lay out.

* The KPI tiles are ``erp_core.kpis.compute_kpis`` over the chosen period, the very call behind
  ``GET /v1/kpis?from=..&to=..``; each sparkline is the same KPI over each week of the period.
* The exception queue is ``GET /v1/exceptions``'s own function (same filter, same priority).
* Predictions beside outcomes come from ``serving.page.outlook`` (recorded scores only).
* The replenishment view is the report of ``GET /v1/replenishment/recommendations`` (its cache).
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time
from typing import Any

from erp_core.domain.errors import DomainError
from erp_core.kpis import DEFINITIONS, Kpi, KpiReport, compute_kpis
from erp_core.policy import Actor
from serving.page import outlook, svg
from serving.routes.exceptions import list_exceptions
from serving.runtime import Runtime
from serving.schemas import ExceptionOut, Resolution
from serving.security import admitted_roles

PERIOD_WEEKS = (4, 13, 26)
DEFAULT_WEEKS = 4
OUTLOOK_WEEKS = 4
QUEUE_LIMIT = 50
REPLENISHMENT_ITEMS_PER_LOCATION = 6
RESOLUTIONS: tuple[str, ...] = typing.get_args(Resolution)

TILES: tuple[tuple[str, str], ...] = (
    ("line_fill_rate", "Fill rate"),
    ("otif", "OTIF"),
    ("on_time_shipment", "On-time shipment"),
    ("order_cycle_time", "Order cycle time"),
    ("backorder_aging", "Backorder aging"),
    ("freight_variance", "Freight variance"),
    ("inventory_turns", "Inventory turns"),
    ("exception_resolution_time", "Exception resolution"),
)
"""The KPIs on the tiles, in reading order, by their ``erp_core.kpis`` names."""

HIGHER_IS_BETTER = {"line_fill_rate", "otif", "on_time_shipment", "inventory_turns"}

PLAYBOOK: dict[str, str] = {
    "shortage": "Expedite the covering receipt or transfer stock from another location",
    "late_risk": "Ship from another location or by express, or give the customer an honest date",
    "margin_anomaly": "Check the price against the price list and correct it before invoicing",
    "credit_hold": "Review the customer's exposure: release the hold or ask for prepayment",
    "delivery_slip": "Tell the customer the carrier's new ETA and offer a remedy",
    "discount_approval": "Approve or refuse the discount beyond the policy threshold",
    "expedite_approval": "Approve or refuse the express freight",
}
"""What the owner of each kind of case is expected to do first; the case's own facts (an ETA,
the date stock is expected) are added where the case carries them."""

BAND_COLOURS = ("#dc2626", "#f59e0b", "#10b981", "#cbd5e1")


# --- period and tiles ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """``weeks`` whole weeks ending at the UTC midnight after the API's "today"."""

    weeks: int
    start: datetime
    end: datetime

    @classmethod
    def ending(cls, now: datetime, weeks: int) -> Period:
        end = datetime.combine(now.astimezone(UTC).date() + timedelta(days=1), day_time(0), UTC)
        return cls(weeks, end - timedelta(weeks=weeks), end)

    def week_bounds(self) -> list[tuple[datetime, datetime]]:
        return [
            (self.start + timedelta(weeks=i), self.start + timedelta(weeks=i + 1))
            for i in range(self.weeks)
        ]

    @property
    def api_query(self) -> str:
        """The same period as ``/v1/kpis`` parameters (plain dates mean UTC midnight)."""
        return f"from={self.start.date().isoformat()}&to={self.end.date().isoformat()}"


@dataclass(frozen=True)
class Tile:
    name: str
    label: str
    value: float | None
    shown: str
    basis: str
    definition: str
    sparkline: str
    trend: str
    """``better``, ``worse`` or ``flat``: the last week against the first week with a value."""


def show(kpi: Kpi) -> str:
    """A KPI's value as the page prints it (None: a dash, the KPI had no events)."""
    value = kpi.value
    if value is None:
        return "—"
    if kpi.unit == "share":
        sign = "+" if kpi.name == "freight_variance" and value > 0 else ""
        return f"{sign}{value * 100:.1f}%"
    if kpi.unit == "days":
        return f"{value:.1f} d"
    if kpi.unit == "hours":
        return f"{value:.1f} h"
    return f"{value:.2f}"


def _basis(kpi: Kpi) -> str:
    """What the value was computed over, in words."""
    if kpi.denominator is None:
        return ""
    n = kpi.denominator
    if kpi.name == "inventory_turns":
        return f"stock value {n:,.0f}"
    if kpi.name == "freight_variance":
        return f"{kpi.details.get('shipments', 0):,} shipments"
    if kpi.unit == "share":
        return f"{kpi.numerator:,} of {n:,}"
    p90 = next((v for k, v in kpi.details.items() if k.startswith("p90") and v is not None), None)
    spread = f", p90 {p90:.1f}" if p90 is not None else ""
    return f"median of {n:,}{spread}"


def _trend(name: str, values: Sequence[float | None]) -> str:
    known = [v for v in values if v is not None]
    if len(known) < 2 or abs(known[-1] - known[0]) < 1e-9:
        return "flat"
    rising = known[-1] > known[0]
    better = rising if name in HIGHER_IS_BETTER else not rising
    return "better" if better else "worse"


def tiles(report: KpiReport, weekly: Sequence[KpiReport]) -> list[Tile]:
    out = []
    for name, label in TILES:
        kpi = report.kpi(name)
        series = [week.kpi(name).value for week in weekly]
        out.append(
            Tile(
                name,
                label,
                kpi.value,
                show(kpi),
                _basis(kpi),
                DEFINITIONS[name],
                svg.sparkline(series, title=f"{label} per week"),
                _trend(name, series),
            )
        )
    return out


def kpi_reports(runtime: Runtime, period: Period) -> tuple[KpiReport, list[KpiReport]]:
    """The period's report and one per week, each read in its own read-only unit of work."""
    whole = compute_kpis(runtime.reader(), period.start, period.end)
    weekly = [compute_kpis(runtime.reader(), a, b) for a, b in period.week_bounds()]
    return whole, weekly


# --- exception queue -----------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueItem:
    case: ExceptionOut
    action: str
    workable: bool


@dataclass(frozen=True)
class Queue:
    scope: str
    may_work: bool
    open: list[QueueItem]
    in_hand: list[QueueItem]
    count: int


def may_work_exceptions(runtime: Runtime, actor: Actor) -> bool:
    return actor.role in admitted_roles(runtime, "work_exceptions")


def recommended_action(case: ExceptionOut) -> str:
    action = PLAYBOOK.get(case.type, "Review the case")
    details = case.details
    if case.type == "shortage" and details.get("expected_ready_on"):
        action += f" (stock expected {details['expected_ready_on']})"
    elif case.type == "delivery_slip" and details.get("eta"):
        action += f" (ETA {details['eta']}, promised {details.get('promised_delivery_date')})"
    elif case.type == "discount_approval" and details.get("discount_pct"):
        action += f" ({details['discount_pct']}% off)"
    return action


def queue(runtime: Runtime, actor: Actor) -> Queue:
    """The viewer's queue by priority: the cases its role owns (every case for an admin, and
    for a role that may not work cases, the whole queue to read)."""
    may_work = may_work_exceptions(runtime, actor)
    owner = actor.role if may_work and actor.role != "admin" else None
    found = list_exceptions(
        runtime,
        actor,
        owner_role=owner,
        type=None,
        status="unresolved",
        min_age_hours=None,
        max_age_hours=None,
        limit=QUEUE_LIMIT,
    )
    items = [
        QueueItem(
            case,
            recommended_action(case),
            may_work and actor.role in (case.owner_role, "admin"),
        )
        for case in found.data
    ]
    scope = f"owned by {owner}" if owner else "every role's"
    return Queue(
        scope,
        may_work,
        [item for item in items if item.case.status == "open"],
        [item for item in items if item.case.status == "acknowledged"],
        found.count,
    )


# --- predictions beside outcomes -----------------------------------------------------------------


@dataclass(frozen=True)
class OutlookView:
    past: list[tuple[date, float | None]]
    coming: list[outlook.WeekOutlook]
    overdue: int
    chart: str
    backorders: list[outlook.Backorder]
    backorders_uncovered: int
    bands_by_location: str
    bands_by_carrier: str
    band_rows: list[tuple[str, str, dict[str, int]]]
    open_lines: int
    scored_lines: int
    calibration: list[outlook.CalibrationGroup]
    calibration_chart: str
    threshold: float


def outlook_view(runtime: Runtime, period: Period, weekly: Sequence[KpiReport]) -> OutlookView:
    today = runtime.now().astimezone(UTC).date()
    threshold = runtime.policy.late_risk_probability
    with runtime.reader() as uow:
        lines = outlook.open_lines(uow.session)
        coming, overdue = outlook.predicted_otif_by_week(lines, today, OUTLOOK_WEEKS)
        backorders = outlook.backorders(uow.session, runtime.policy.customer_tiers, runtime.now())
        judged = outlook.judged_predictions(uow.session, today)
    past = [
        (a.date(), week.kpi("otif").value)
        for (a, _), week in zip(period.week_bounds(), weekly, strict=True)
    ]
    by_location = outlook.lines_by_band(lines, threshold, "location")
    by_carrier = outlook.lines_by_band(lines, threshold, "carrier")
    groups = outlook.calibration(judged)
    return OutlookView(
        past=past,
        coming=coming,
        overdue=overdue,
        chart=_otif_chart(past, coming),
        backorders=backorders[:40],
        backorders_uncovered=sum(1 for b in backorders if b.predicted_fill is None),
        bands_by_location=_band_bars(by_location, "Open lines by risk band per location"),
        bands_by_carrier=_band_bars(by_carrier, "Open lines by risk band per carrier"),
        band_rows=[("location", k, v) for k, v in by_location]
        + [("carrier", k, v) for k, v in by_carrier],
        open_lines=len(lines),
        scored_lines=sum(1 for line in lines if line.probability is not None),
        calibration=groups,
        calibration_chart=_calibration_chart(groups),
        threshold=threshold,
    )


def _otif_chart(past: Sequence[tuple[date, float | None]], coming: Sequence[Any]) -> str:
    realised = [v for _, v in past] + [None] * len(coming)
    predicted: list[float | None] = [None] * len(past) + [w.predicted_otif for w in coming]
    if past and past[-1][1] is not None and coming:
        predicted[len(past) - 1] = past[-1][1]  # the dashed line starts where the solid ends
    labels = [
        past[0][0].isoformat() if past else "",
        (coming[-1].week_start.isoformat() if coming else ""),
    ]
    return svg.line_chart(
        [
            svg.Series("realised OTIF", realised, "#2563eb"),
            svg.Series("predicted OTIF", predicted, "#7c3aed", dashed=True),
        ],
        x_labels=labels,
        y_min=0.0,
        y_max=1.0,
        width=560,
        height=150,
        title="Realised OTIF per past week and predicted OTIF of the coming weeks",
    )


def _band_bars(rows: Sequence[tuple[str, dict[str, int]]], title: str) -> str:
    return svg.bars(
        [(key, [float(counts[b]) for b in outlook.BANDS]) for key, counts in rows],
        BAND_COLOURS,
        title=title,
    )


def _calibration_chart(groups: Sequence[outlook.CalibrationGroup]) -> str:
    top = max([0.05, *(g.predicted for g in groups), *(g.realised for g in groups)])
    top = min(1.0, round(top + 0.05, 1))
    return svg.line_chart(
        [
            svg.Series("realised late rate", [g.realised for g in groups], "#dc2626"),
            svg.Series("predicted", [g.predicted for g in groups], "#2563eb", dashed=True),
        ],
        x_labels=["lowest scores", "highest scores"] if groups else [],
        y_min=0.0,
        y_max=top,
        width=420,
        height=150,
        title="Predicted against realised late rate by score decile",
    )


# --- replenishment -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplenishmentItem:
    sku: str
    order_qty: int
    position: float
    reorder_point: float
    order_up_to: float
    days_of_cover: float | None
    stockout_date: str
    value: float
    chart: str
    levels: str


@dataclass(frozen=True)
class ReplenishmentView:
    available: bool
    message: str = ""
    as_of: str = ""
    model_version: str = ""
    by_location: dict[str, list[ReplenishmentItem]] = field(default_factory=dict)
    to_order: int = 0
    pairs: int = 0


def replenishment_view(runtime: Runtime) -> ReplenishmentView:
    """What to order now per location, or why the page cannot say (no demand champion yet)."""
    from serving.routes.reports import cached_report

    try:
        report = cached_report(runtime, None)
    except DomainError as error:
        return ReplenishmentView(False, error.message)
    recs = report.recommendations
    ordering = recs.loc[recs["order_qty"] > 0]
    by_location: dict[str, list[ReplenishmentItem]] = {}
    for location, rows in ordering.groupby("location_id", sort=True):
        by_location[str(location)] = [
            _item(report, row)
            for row in rows.head(REPLENISHMENT_ITEMS_PER_LOCATION).to_dict("records")
        ]
    return ReplenishmentView(
        True,
        "",
        f"{report.as_of:%Y-%m-%d}",
        str(report.model_version),
        by_location,
        len(ordering),
        len(recs),
    )


def _item(report: Any, row: dict[str, Any]) -> ReplenishmentItem:
    sku, location = str(row["sku"]), str(row["location_id"])
    history = report.history
    past = history.loc[(history["sku"] == sku) & (history["location_id"] == location)].sort_values(
        "day"
    )
    actual = past["actual"].fillna(0.0).tolist()
    fitted = past["forecast"].tolist()
    ahead = 14
    chart = svg.line_chart(
        [
            svg.Series("units ordered per day", actual + [None] * ahead, "#94a3b8"),
            svg.Series("forecast", fitted + [float(row["rate"])] * ahead, "#2563eb"),
        ],
        x_labels=["-56 d", "+14 d"],
        y_min=0.0,
        width=260,
        height=90,
        title=f"{sku} at {location}: daily demand and forecast",
    )
    position, rop, out = (float(row[k]) for k in ("position", "reorder_point", "order_up_to"))
    cover = row.get("days_of_cover")
    return ReplenishmentItem(
        sku,
        int(row["order_qty"]),
        position,
        rop,
        out,
        None if cover is None or cover != cover else float(cover),
        str(row.get("stockout_date") or ""),
        float(row["value"]),
        chart,
        svg.gauge(position, rop, out, title=f"{sku} at {location}: position against levels"),
    )
