"""Which features a history can compute, and why not when it cannot.

History imported from another system (``erpx import erp-export``, ``erpx import scms``) may lack
what a feature is computed from. Computed anyway, such a feature is a number that looks like
evidence and a model learns from it: a stock cover from the import's made-up opening stock, a
transfer flag true on every line because no customer has a home location, a transit spread of 0
because the source records no ship date, no line ever waiting for a price approval because the
format does not carry approvals. Here each such feature is declared **unavailable** with the
reason: its column is null (never zero or false), the frame's manifest lists it with the reason,
and training leaves it out.

Two steps, so the decision is the same wherever a frame is computed from the history:

* :func:`read_sources`, once when the history is read from the database, finds the **gaps** of
  the whole history (facts such as "no purchase order lines") and keeps them on
  ``History.sources``. A part of the history (the prefix a Dask chunk reads, a tail) carries the
  same sources, so every part of one frame makes the same decision.
* :func:`late_shipment_unavailable` maps the gaps to the features they make unavailable.

The rules apply to imported history only: the database holds the source keys of imported order
lines (idempotency scope ``import:order_lines``, written by ``erp_core.importers.erp_export``).
In erpx's own database an empty table is a fact (no purchase order covers the backorder, no
approval was asked for), not a gap. A history built without its sources (``sources`` None: a
tail, a hand-made history) has every feature available. The rules judge the database as a whole:
a database that imported history and then ran erpx for a while is judged on everything it holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import select
from sqlalchemy.engine import Connection

from erp_core.db.models import IdempotencyRecord, InventoryMovement
from erp_core.domain.calendar import BusinessCalendar
from erp_core.domain.errors import InvalidValue
from erp_core.domain.states import LineState
from erp_core.importers.erp_export import SCOPE_PREFIX
from erp_core.importers.erp_export_schema import ENTITIES

if TYPE_CHECKING:
    from features.history import History

MICROS_PER_DAY = 86_400_000_000

# --- the gaps: facts about a whole imported history ---------------------------------------------

DERIVED_OPENING_STOCK = "derived_opening_stock"
NO_PURCHASE_ORDERS = "no_purchase_orders"
NO_RECEIPTS = "no_receipts"
NO_SHIPMENTS = "no_shipments"
NO_TRANSIT = "no_transit"
NO_LINE_LANES = "no_line_lanes"
NO_LANE_TRANSIT_DAYS = "no_lane_transit_days"
NO_HOME_LOCATIONS = "no_home_locations"
NO_ENTRY_STATES = "no_entry_states"
NO_PRICE_APPROVALS = "no_price_approvals"
NO_SERVICE_ALERTS = "no_service_alerts"


@dataclass(frozen=True)
class Sources:
    """Where the history came from and what it lacks, read once with the whole history."""

    imported: frozenset[str] = frozenset()
    """Entities an import loaded rows of (their idempotency scopes ``import:<entity>``); empty
    for erpx's own history."""
    gaps: frozenset[str] = frozenset()
    """What the imported history lacks (the names above); always empty for erpx's own history,
    complete by construction."""
    entry_years: frozenset[int] = frozenset()
    """The UTC years order lines of the imported history were entered in (for the calendar)."""

    @property
    def is_imported(self) -> bool:
        return "order_lines" in self.imported


def read_sources(connection: Connection, history: History) -> Sources:
    """The sources of ``history``, the whole history just read through ``connection``: one
    indexed lookup per importable entity; for an imported history, one more query and a few
    passes over the frames already in memory."""
    imported = frozenset(
        entity.name
        for entity in ENTITIES
        if connection.execute(
            select(IdempotencyRecord.key)
            .where(IdempotencyRecord.scope == f"{SCOPE_PREFIX}{entity.name}")
            .limit(1)
        ).first()
        is not None
    )
    if "order_lines" not in imported:
        return Sources(imported)
    entered = history.lines["entered_at"].to_numpy(dtype=np.int64)
    years = np.unique(entered.astype("datetime64[us]").astype("datetime64[Y]").astype(np.int64))
    return Sources(
        imported, _gaps(connection, imported, history), frozenset(int(y) + 1970 for y in years)
    )


def _gaps(connection: Connection, imported: frozenset[str], history: History) -> frozenset[str]:
    found = {
        NO_PURCHASE_ORDERS: history.po_lines.empty,
        NO_RECEIPTS: history.receipts.empty,
        NO_SHIPMENTS: history.milestones.empty,
        NO_TRANSIT: _no_transit_recorded(history),
        NO_LINE_LANES: bool(history.lines["lane_id"].isna().all()),
        NO_LANE_TRANSIT_DAYS: bool(
            len(history.lanes) and (history.lanes["transit_days"].to_numpy() == 0).all()
        ),
        NO_HOME_LOCATIONS: bool(history.customers["home_location_id"].isna().all()),
        NO_ENTRY_STATES: not _entered_waiting(history),
        NO_PRICE_APPROVALS: history.price_approvals.empty,
        NO_SERVICE_ALERTS: history.alerts.empty,
        DERIVED_OPENING_STOCK: "inventory_snapshots" not in imported
        and _opening_stock_derived(connection),
    }
    return frozenset(name for name, gap in found.items() if gap)


def _opening_stock_derived(connection: Connection) -> bool:
    """The import derived an opening stock somewhere (``import_opening`` movements): the least
    on hand that keeps the imported events from taking stock below zero."""
    query = select(InventoryMovement.id).where(InventoryMovement.kind == "import_opening")
    return connection.execute(query.limit(1)).first() is not None


def _no_transit_recorded(history: History) -> bool:
    """Every delivered line was delivered on the (UTC) day it shipped: the source has no ship
    date (SCMS: the handoff is taken as the delivery). False without deliveries (another gap)."""
    events = history.milestones
    shipped = events.loc[events["event_type"] == "shipped"].drop_duplicates("line_id")
    delivered = events.loc[events["event_type"] == "delivered"].drop_duplicates("line_id")
    both = delivered[["line_id", "occurred_at"]].merge(
        shipped[["line_id", "occurred_at"]], on="line_id", suffixes=("_delivered", "_shipped")
    )
    if both.empty:
        return False
    delivered_day = both["occurred_at_delivered"].to_numpy(dtype=np.int64) // MICROS_PER_DAY
    shipped_day = both["occurred_at_shipped"].to_numpy(dtype=np.int64) // MICROS_PER_DAY
    return bool((delivered_day == shipped_day).all())


def _entered_waiting(history: History) -> bool:
    """Some line was backordered or held for credit by its capture (a state change at or before
    its entry moment). The import's ``state_at_entry`` defaults to ``allocated``: a history
    where no line ever entered otherwise did not record the state."""
    changes = history.state_changes
    waiting = changes.loc[
        changes["to_state"].isin((LineState.BACKORDERED.value, LineState.CREDIT_HOLD.value))
    ]
    if waiting.empty:
        return False
    entered = waiting["line_id"].map(history.lines.set_index("line_id")["entered_at"])
    return bool((waiting["occurred_at"].to_numpy() <= entered.to_numpy(dtype=np.float64)).any())


# --- late shipment: the features each gap makes unavailable -------------------------------------

LANE_HISTORY = (
    "lane_ontime_delivery_rate_28d",
    "lane_ontime_delivery_rate_90d",
    "lane_transit_spread_28d",
    "lane_transit_spread_90d",
)
BACKORDER_FEATURES = (
    "needs_backorder",
    "credit_hold",
    "backorder_slack_bdays",
    "backorder_receipt_covered",
    "covering_receipt_overdue_bdays",
    "supplier_days_late_56d",
    "supplier_late_share_56d",
)
HOLIDAY_FEATURES = ("holiday_near_promised_ship", "holiday_within_2bd")


@dataclass(frozen=True)
class Gap:
    """What a gap makes unavailable, and the reason the manifest and the training run give."""

    features: tuple[str, ...]
    reason: str


LATE_SHIPMENT_GAPS: dict[str, Gap] = {
    DERIVED_OPENING_STOCK: Gap(
        ("stock_cover",),
        "no inventory snapshots were imported (inventory_snapshots): on hand before t is the "
        "import's derived opening stock (import_opening movements, the least that keeps stock "
        "from going negative), not a count",
    ),
    NO_PURCHASE_ORDERS: Gap(
        ("backorder_receipt_covered", "covering_receipt_overdue_bdays"),
        "no purchase orders were imported (purchase_orders, purchase_order_lines): no "
        "scheduled receipt can be seen covering a backorder",
    ),
    NO_RECEIPTS: Gap(
        ("supplier_days_late_56d", "supplier_late_share_56d"),
        "no goods receipts were imported (receipts): no supplier lateness is known",
    ),
    NO_SHIPMENTS: Gap(
        (
            "location_ontime_ship_rate_7d",
            "location_ontime_ship_rate_14d",
            "location_ontime_ship_rate_56d",
            "location_shipped_lines_56d",
            *LANE_HISTORY,
            "region_ontime_due_rate_7d",
            "carrier_ontime_due_rate_14d",
        ),
        "no shipments were imported (shipments): no line is known shipped or delivered, so "
        "every count would read 0 and every line due would read late",
    ),
    NO_TRANSIT: Gap(
        ("lane_transit_spread_28d", "lane_transit_spread_90d"),
        "no shipment records a transit: every delivered line was delivered on the day it "
        "shipped (the source has no ship date)",
    ),
    NO_LINE_LANES: Gap(
        (
            "lane_transit_days",
            *LANE_HISTORY,
            "carrier_ontime_due_rate_14d",
            "carrier",
            "expedite",
        ),
        "no imported order line has a lane (order_lines.lane_id, lanes): no carrier, transit "
        "or service level is known",
    ),
    NO_LANE_TRANSIT_DAYS: Gap(
        ("lane_transit_days",),
        "every lane's transit_days is 0 (lanes.transit_days not recorded)",
    ),
    NO_HOME_LOCATIONS: Gap(
        ("transfer",),
        "no customer has a home location (customers.home_location_id), so every line with a "
        "location would read a transfer",
    ),
    NO_ENTRY_STATES: Gap(
        BACKORDER_FEATURES,
        "no imported line entered backordered or on credit hold (order_lines.state_at_entry "
        "absent or always allocated): the state at capture is not known",
    ),
    NO_PRICE_APPROVALS: Gap(
        ("price_approval_pending", "approval_blocks_promise"),
        "price approvals are not carried by the export format (version 1): no line can be seen "
        "waiting for one",
    ),
    NO_SERVICE_ALERTS: Gap(
        ("region_alert_severity",),
        "carrier service alerts are not carried by the export format (version 1): every line "
        "would read 0 (no alert)",
    ),
}


def late_shipment_unavailable(
    history: History, calendar: BusinessCalendar | None = None
) -> dict[str, str]:
    """Late-shipment features the history cannot compute -> why (several reasons joined by
    "; "), in no particular order; empty for erpx's own history. With ``calendar``, the holiday
    features are unavailable when it lists no holiday in some year the imported lines were
    entered in (the source's holidays are not imported; the policy's are used)."""
    sources = history.sources
    if sources is None or not sources.is_imported:
        return {}
    found: dict[str, list[str]] = {}
    for name in sorted(sources.gaps & LATE_SHIPMENT_GAPS.keys()):
        gap = LATE_SHIPMENT_GAPS[name]
        for feature in gap.features:
            found.setdefault(feature, []).append(gap.reason)
    uncovered = _years_without_holidays(sources.entry_years, calendar)
    if uncovered:
        reason = (
            f"the policy calendar (calendar.holidays) lists no holiday in {_years(uncovered)}, "
            "when imported lines were entered: every line would read no holiday near"
        )
        for feature in HOLIDAY_FEATURES:
            found.setdefault(feature, []).append(reason)
    return {feature: "; ".join(reasons) for feature, reasons in found.items()}


def _years_without_holidays(years: frozenset[int], calendar: BusinessCalendar | None) -> list[int]:
    if calendar is None:
        return []
    listed = {day.year for day in calendar.holidays}
    return sorted(year for year in years if year not in listed)


def _years(years: list[int]) -> str:
    """2006, 2007, 2009 as "2006-2007, 2009"."""
    runs: list[list[int]] = []
    for year in years:
        if runs and year == runs[-1][-1] + 1:
            runs[-1].append(year)
        else:
            runs.append([year])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


UNAVAILABLE_RULES = {"late_shipment": late_shipment_unavailable}
"""The feature sets whose availability is checked (the others compute every feature)."""


def unavailable_features(
    feature_set: str, history: History, calendar: BusinessCalendar | None = None
) -> dict[str, str]:
    """The set's features ``history`` cannot compute -> why (empty for a set without rules)."""
    rule = UNAVAILABLE_RULES.get(feature_set)
    return {} if rule is None else rule(history, calendar)


def check_unavailable(unavailable: Mapping[str, str], feature_names: list[str]) -> None:
    """Only features can be unavailable (never a key or a label), each with a reason."""
    for name, reason in unavailable.items():
        if name not in feature_names:
            raise InvalidValue("unavailable", name, "is not a feature of the set")
        if not reason:
            raise InvalidValue("unavailable", name, "has no reason")
