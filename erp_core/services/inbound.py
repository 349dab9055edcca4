"""Inbound receipt dates for promises: which date a backorder's promise counts a purchase-order
line as received by, and the forecasts that date comes from.

A backorder is promised from the receipt that will cover it. Promising by the line's nominal
expected date promises what the supplier said, and suppliers are late: on the small simulated
world most backorder promises made that way are missed. With the policy's
``promise.inbound_quantile = "p80"``, capture, quotes and a short pick's new promise count each
open purchase-order line by its forecast 80th-percentile receipt date instead (the date it is
received by in 4 cases out of 5), where a forecast exists; the nominal date otherwise. Transfers
between locations keep their expected date (the ERP's own trucks).

Forecasts live in ``po_line_receipt_forecasts``, one current row per line, written by
:func:`record_receipt_forecasts`: by :func:`refresh_receipt_forecasts` from the suppliers' own
receipt history (``erp_core.domain.receipt_delay``: shrunk empirical quantiles, no model needed),
or by a trained model's job that passes its own dates. Refresh daily: an overdue line's P80 moves
later each day it stays open.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Date, cast, delete, func, insert, null, select
from sqlalchemy.orm import Session

from erp_core.db.models import (
    AuditEntry,
    LinePromise,
    LineStateChange,
    Location,
    OrderLine,
    PoLineReceiptForecast,
    PurchaseOrder,
    PurchaseOrderLine,
    Receipt,
    ShipmentEvent,
    ShipmentLine,
)
from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import InvalidValue
from erp_core.domain.receipt_delay import LOOKBACK_DAYS, PRIOR_STRENGTH, delay_quantiles
from erp_core.domain.states import LineState, PurchaseOrderStatus
from erp_core.policy import Actor, Policy
from erp_core.services.common import audit, require_aware

SUPPLIER_HISTORY = "supplier_history"
"""``method`` of the forecasts :func:`refresh_receipt_forecasts` writes."""
PERMISSION = "place_purchase_order"
"""Forecasting receipts is the buyer's (planner's) work, as placing the orders is."""
NO_FORECAST = cast(null(), Date).label("p80_date")
"""The forecast column of a scheduled receipt that has none (a transfer), in the ATP queries."""
_ROWS_PER_STATEMENT = 1000


@dataclass(frozen=True)
class ReceiptForecast:
    po_line_id: int
    p50_date: date
    p80_date: date
    p90_date: date


def promise_receipt_date(policy: Policy, expected: date, p80: date | None) -> date:
    """The date a promise counts a scheduled receipt by: its P80 forecast under the ``p80``
    policy when it has one, else its expected date."""
    if policy.inbound_quantile == "p80" and p80 is not None:
        return p80
    return expected


def record_receipt_forecasts(
    uow: UnitOfWork,
    actor: Actor,
    *,
    forecasts: Sequence[ReceiptForecast],
    now: datetime,
    method: str,
) -> int:
    """Replace the forecasts of these purchase-order lines (all or nothing); returns how many."""
    require_aware("now", now)
    with uow:
        uow.policy.require(actor, PERMISSION)
        _write(uow, actor, forecasts, now, method)
        uow.commit()
    return len(forecasts)


def refresh_receipt_forecasts(
    uow: UnitOfWork,
    actor: Actor,
    *,
    now: datetime,
    prior_strength: float = PRIOR_STRENGTH,
    lookback_days: int = LOOKBACK_DAYS,
) -> int:
    """Forecast every purchase-order line open at ``now`` from the lines completed in the
    ``lookback_days`` before it (supplier x location, shrunk toward the supplier, then everyone)
    and record them; a line is skipped while no line was ever completed in the window (its
    promise keeps the nominal date). Returns the forecasts written."""
    require_aware("now", now)
    with uow:
        uow.policy.require(actor, PERMISSION)
        history = _completed_delays(uow, now, lookback_days)
        today = now.astimezone(UTC).date()
        forecasts = []
        for po_line_id, expected, supplier, location in _open_lines(uow, now):
            quantiles = delay_quantiles(
                [
                    history.get((supplier, location), Counter()),
                    history.get((supplier, None), Counter()),
                    history.get((None, None), Counter()),
                ],
                at_least=(today - expected).days,
                prior_strength=prior_strength,
            )
            if quantiles is not None:
                p50, p80, p90 = (expected + timedelta(days=d) for d in quantiles.as_tuple())
                forecasts.append(ReceiptForecast(po_line_id, p50, p80, p90))
        _write(uow, actor, forecasts, now, SUPPLIER_HISTORY)
        uow.commit()
    return len(forecasts)


def _open_lines(uow: UnitOfWork, now: datetime) -> list[tuple[int, date, str, str]]:
    """Lines placed by ``now`` that are neither completed nor on a closed or cancelled order."""
    rows = uow.session.execute(
        select(
            PurchaseOrderLine.id,
            PurchaseOrderLine.expected_date,
            PurchaseOrder.supplier_id,
            PurchaseOrder.location_id,
        )
        .join(PurchaseOrder, PurchaseOrder.id == PurchaseOrderLine.purchase_order_id)
        .where(
            PurchaseOrder.status.in_(
                [PurchaseOrderStatus.OPEN, PurchaseOrderStatus.PARTIALLY_RECEIVED]
            ),
            PurchaseOrder.placed_at <= now,
            PurchaseOrderLine.received_quantity < PurchaseOrderLine.quantity,
        )
        .order_by(PurchaseOrderLine.id)
    ).all()
    return [(int(i), expected, str(s), str(loc)) for i, expected, s, loc in rows]


HistoryKey = tuple[str | None, str | None]
"""(supplier, location), (supplier, None) or (None, None): a level of the shrunk history."""


def _completed_delays(
    uow: UnitOfWork, now: datetime, lookback_days: int
) -> dict[HistoryKey, Counter[int]]:
    """Delays (completion day - expected day) of the lines whose last receipt came in
    ``[now - lookback_days, now)``, counted per supplier x location, supplier and in all."""
    if lookback_days < 1:
        raise InvalidValue("lookback_days", lookback_days, "must be at least 1 day")
    completed = func.max(Receipt.received_at)
    rows = uow.session.execute(
        select(
            PurchaseOrder.supplier_id,
            PurchaseOrder.location_id,
            PurchaseOrderLine.expected_date,
            completed,
        )
        .join(PurchaseOrderLine, PurchaseOrderLine.id == Receipt.purchase_order_line_id)
        .join(PurchaseOrder, PurchaseOrder.id == PurchaseOrderLine.purchase_order_id)
        .where(Receipt.received_at < now)
        .group_by(
            PurchaseOrderLine.id,
            PurchaseOrder.supplier_id,
            PurchaseOrder.location_id,
            PurchaseOrderLine.expected_date,
            PurchaseOrderLine.quantity,
        )
        .having(
            func.sum(Receipt.quantity) >= PurchaseOrderLine.quantity,
            completed >= now - timedelta(days=lookback_days),
        )
    ).all()
    counts: dict[HistoryKey, Counter[int]] = {}
    for supplier, location, expected, received_at in rows:
        delay = (received_at.astimezone(UTC).date() - expected).days
        for key in ((supplier, location), (supplier, None), (None, None)):
            counts.setdefault(key, Counter())[delay] += 1
    return counts


def _write(
    uow: UnitOfWork,
    actor: Actor,
    forecasts: Sequence[ReceiptForecast],
    now: datetime,
    method: str,
) -> None:
    if not method or len(method) > 64:
        raise InvalidValue("method", method, "must be 1 to 64 characters")
    ids = [forecast.po_line_id for forecast in forecasts]
    if len(set(ids)) != len(ids):
        repeated = next(i for i in ids if ids.count(i) > 1)
        raise InvalidValue("forecasts.po_line_id", repeated, "forecast twice")
    for index, forecast in enumerate(forecasts):
        if not forecast.p50_date <= forecast.p80_date <= forecast.p90_date:
            raise InvalidValue(
                f"forecasts[{index}].p80_date",
                forecast.p80_date,
                f"must lie between p50_date {forecast.p50_date} and p90_date {forecast.p90_date}",
            )
    known = set()
    for start in range(0, len(ids), _ROWS_PER_STATEMENT):
        batch = ids[start : start + _ROWS_PER_STATEMENT]
        known |= set(
            uow.session.execute(
                select(PurchaseOrderLine.id).where(PurchaseOrderLine.id.in_(batch))
            ).scalars()
        )
        uow.session.execute(
            delete(PoLineReceiptForecast).where(PoLineReceiptForecast.po_line_id.in_(batch))
        )
    missing = [i for i in ids if i not in known]
    if missing:
        raise InvalidValue("forecasts.po_line_id", missing[0], "no such purchase-order line")
    rows = [
        {
            "po_line_id": f.po_line_id,
            "as_of": now,
            "p50_date": f.p50_date,
            "p80_date": f.p80_date,
            "p90_date": f.p90_date,
            "method": method,
        }
        for f in forecasts
    ]
    for start in range(0, len(rows), _ROWS_PER_STATEMENT):
        batch_rows = rows[start : start + _ROWS_PER_STATEMENT]
        uow.session.execute(insert(PoLineReceiptForecast), batch_rows)
    audit(
        uow,
        actor,
        now,
        "record_receipt_forecasts",
        "po_line_receipt_forecasts",
        method,
        lines=len(rows),
    )


# --- how the backorder promises fared ----------------------------------------------------------


@dataclass(frozen=True)
class BackorderPromises:
    """The first promises made to backordered lines, judged against the lines' first shipment
    and first delivery (the KPIs' conventions: the first promise, dates at the fulfilling
    location, events known before ``as_of``)."""

    lines: int
    """Lines whose first promise (capture, or credit release) was made for a backorder, that
    promise decided in ``[start, end)``, and that were not cancelled before ``as_of``."""
    shipped_by_promise: int
    """... whose first shipment left on or before the promised ship date."""
    delivered_by_promise: int
    """... whose first delivery arrived on or before the promised delivery date."""
    not_shipped: int
    """... not shipped by ``as_of`` (counted as not kept)."""
    mean_ready_days: float | None
    """Mean days from the entry day to the day the backorder was expected ready (the receipt
    date the promise counted on)."""
    mean_promised_ship_days: float | None
    """Mean days from the entry day to the promised ship date."""

    @property
    def ship_kept_share(self) -> float | None:
        return self.shipped_by_promise / self.lines if self.lines else None

    @property
    def delivery_kept_share(self) -> float | None:
        return self.delivered_by_promise / self.lines if self.lines else None

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "ship_kept_share": self.ship_kept_share,
            "delivery_kept_share": self.delivery_kept_share,
        }


def backorder_promises(
    session: Session, start: datetime, end: datetime, as_of: datetime
) -> BackorderPromises:
    """How many of the backorder promises made in ``[start, end)`` were kept, as known at
    ``as_of`` (leave the promises time to come due: ``end`` well before ``as_of``)."""
    for name, moment in (("start", start), ("end", end), ("as_of", as_of)):
        require_aware(name, moment)
    if not start < end <= as_of:
        raise InvalidValue("end", end.isoformat(), "must lie after start and not after as_of")
    first: dict[int, Any] = {}
    for promise in session.execute(
        select(LinePromise).where(LinePromise.decided_at < end).order_by(LinePromise.id)
    ).scalars():
        first.setdefault(promise.line_id, promise)
    first = {i: p for i, p in first.items() if p.decided_at >= start}
    backordered_at = _state_moments(session, list(first), LineState.BACKORDERED, as_of)
    cancelled = _state_moments(session, list(first), LineState.CANCELLED, as_of)
    judged = {
        line_id: promise
        for line_id, promise in first.items()
        if promise.decided_at in backordered_at.get(line_id, ()) and line_id not in cancelled
    }
    lines = _lines(session, list(judged))
    ready = _ready_on(session, judged)
    shipped = _first_milestones(session, list(judged), "shipped", as_of)
    delivered = _first_milestones(session, list(judged), "delivered", as_of)
    zones = dict(session.execute(select(Location.id, Location.timezone)).all())
    kept_ship = kept_delivery = not_shipped = 0
    ready_days: list[int] = []
    ship_days: list[int] = []
    for line_id, promise in judged.items():
        line = lines[line_id]
        zone = ZoneInfo(zones.get(line.location_id or "") or "UTC")
        entry_day = line.entered_at.astimezone(zone).date()
        ship_days.append((promise.promised_ship_date - entry_day).days)
        if line_id in ready:
            ready_days.append((ready[line_id] - entry_day).days)
        if line_id not in shipped:
            not_shipped += 1
            continue
        kept_ship += shipped[line_id].astimezone(zone).date() <= promise.promised_ship_date
        if line_id in delivered:
            on_day = delivered[line_id].astimezone(zone).date()
            kept_delivery += on_day <= promise.promised_delivery_date
    return BackorderPromises(
        lines=len(judged),
        shipped_by_promise=int(kept_ship),
        delivered_by_promise=int(kept_delivery),
        not_shipped=not_shipped,
        mean_ready_days=sum(ready_days) / len(ready_days) if ready_days else None,
        mean_promised_ship_days=sum(ship_days) / len(ship_days) if ship_days else None,
    )


_IDS_PER_STATEMENT = 5000


def _chunks(ids: Sequence[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), _IDS_PER_STATEMENT):
        yield list(ids[start : start + _IDS_PER_STATEMENT])


def _state_moments(
    session: Session, ids: Sequence[int], state: LineState, before: datetime
) -> dict[int, set[datetime]]:
    found: dict[int, set[datetime]] = {}
    for chunk in _chunks(ids):
        for line_id, moment in session.execute(
            select(LineStateChange.line_id, LineStateChange.occurred_at).where(
                LineStateChange.line_id.in_(chunk),
                LineStateChange.to_state == state,
                LineStateChange.occurred_at < before,
            )
        ):
            found.setdefault(line_id, set()).add(moment)
    return found


def _lines(session: Session, ids: Sequence[int]) -> dict[int, OrderLine]:
    found: dict[int, OrderLine] = {}
    for chunk in _chunks(ids):
        for line in session.execute(select(OrderLine).where(OrderLine.id.in_(chunk))).scalars():
            found[line.id] = line
    return found


def _ready_on(session: Session, promises: Mapping[int, Any]) -> dict[int, date]:
    """The ready date each line's backorder act recorded when its first promise was made."""
    found: dict[int, date] = {}
    for chunk in _chunks(list(promises)):
        for entity_id, moment, details in session.execute(
            select(AuditEntry.entity_id, AuditEntry.occurred_at, AuditEntry.details).where(
                AuditEntry.action == "backorder",
                AuditEntry.entity_type == "order_line",
                AuditEntry.entity_id.in_([str(i) for i in chunk]),
            )
        ):
            line_id = int(entity_id)
            if moment == promises[line_id].decided_at and details.get("ready_on"):
                found[line_id] = date.fromisoformat(str(details["ready_on"]))
    return found


def _first_milestones(
    session: Session, ids: Sequence[int], event_type: str, before: datetime
) -> dict[int, datetime]:
    found: dict[int, datetime] = {}
    for chunk in _chunks(ids):
        for line_id, moment in session.execute(
            select(ShipmentLine.line_id, func.min(ShipmentEvent.occurred_at))
            .join(ShipmentEvent, ShipmentEvent.shipment_id == ShipmentLine.shipment_id)
            .where(
                ShipmentLine.line_id.in_(chunk),
                ShipmentEvent.event_type == event_type,
                ShipmentEvent.occurred_at < before,
            )
            .group_by(ShipmentLine.line_id)
        ):
            found[line_id] = moment
    return found
