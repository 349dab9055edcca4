"""Orders as the scorer reads them: from a quote of a draft, or from a captured order's rows."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from erp_core.db.models import Lane, OrderLine, Product, SalesOrder
from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import NotFound
from erp_core.domain.states import OPEN_LINE_STATES, LineState
from erp_core.services.quotes import OrderQuote, QuotedLine
from erp_core.services.stock import current_promises
from serving.lines import LineView, OrderView

CREDIT_HOLD = str(LineState.CREDIT_HOLD)


def view_of_quote(quote: OrderQuote, entered_at: datetime) -> OrderView:
    return OrderView(
        customer_id=quote.customer_id,
        channel=quote.channel,
        ship_to_region=quote.ship_to_region,
        entered_at=entered_at,
        credit_hold=quote.credit_hold,
        lines=tuple(_quoted(line) for line in quote.lines),
    )


def _quoted(line: QuotedLine) -> LineView:
    return LineView(
        line_no=line.line_no,
        sku=line.sku,
        quantity=line.quantity,
        unit_price=line.unit_price,
        state=line.state,
        location_id=line.location_id,
        lane_id=line.lane_id,
        carrier_id=line.carrier_id,
        promised_ship_date=line.promised_ship_date,
        promised_delivery_date=line.promised_delivery_date,
        expected_ready_on=line.expected_ready_on,
        parent_line_no=line.parent_line_no,
        price_approval_pending=line.price_approval_pending,
        price_overridden=line.price_source == "override" if line.parent_line_no is None else None,
        unit_cost=line.unit_cost,
        tier_price=line.tier_price,
        options=line.options,
    )


def view_of_order(
    uow: UnitOfWork,
    order_id: int,
    *,
    as_of: datetime | None = None,
    quote: OrderQuote | None = None,
    open_only: bool = False,
) -> OrderView:
    """A captured order's lines as they are now, each with its current promise. ``as_of`` is
    the moment scored (the order's entry for its capture score, now for a rescore); ``quote``
    lends the options it found for the same line numbers; ``open_only`` leaves out lines already
    shipped, delivered, cancelled or returned (nothing left to predict). Runs inside the
    caller's open unit of work."""
    session = uow.session
    order = session.get(SalesOrder, order_id)
    if order is None:
        raise NotFound("order", "order_id", order_id)
    lines = list(
        session.scalars(
            select(OrderLine).where(OrderLine.order_id == order_id).order_by(OrderLine.line_no)
        )
    )
    promises = current_promises(uow, [line.id for line in lines])
    carriers = _carriers(session, {line.lane_id for line in lines if line.lane_id is not None})
    costs = _costs(session, {line.sku for line in lines})
    line_nos = {line.id: line.line_no for line in lines}
    quoted = {line.line_no: line for line in quote.lines} if quote else {}
    views = []
    for line in lines:
        if open_only and line.state not in OPEN_LINE_STATES:
            continue
        promise = promises.get(line.id)
        views.append(
            LineView(
                line_no=line.line_no,
                line_id=line.id,
                sku=line.sku,
                quantity=line.quantity,
                unit_price=line.unit_price,
                state=line.state,
                location_id=line.location_id,
                lane_id=line.lane_id,
                carrier_id=carriers.get(line.lane_id),
                promised_ship_date=promise.promised_ship_date if promise else None,
                promised_delivery_date=promise.promised_delivery_date if promise else None,
                expected_ready_on=line.expected_ready_on,
                parent_line_no=line_nos.get(line.parent_line_id),
                price_approval_pending=line.price_approval_pending,
                unit_cost=costs.get(line.sku),
                tier_price=line.tier_price,
                price_overridden=_overridden(quoted.get(line.line_no)),
                options=quoted[line.line_no].options if line.line_no in quoted else None,
            )
        )
    return OrderView(
        customer_id=order.customer_id,
        channel=order.channel,
        ship_to_region=order.ship_to_region,
        entered_at=as_of or order.entered_at,
        credit_hold=any(line.state == CREDIT_HOLD for line in lines),
        lines=tuple(views),
        order_id=order.id,
    )


def _carriers(session: Session, lane_ids: set[int]) -> dict[int | None, str]:
    if not lane_ids:
        return {}
    rows = session.execute(select(Lane.id, Lane.carrier_id).where(Lane.id.in_(lane_ids)))
    return {row.id: row.carrier_id for row in rows}


def _costs(session: Session, skus: set[str]) -> dict[str, Decimal]:
    rows = session.execute(select(Product.sku, Product.unit_cost).where(Product.sku.in_(skus)))
    return {row.sku: row.unit_cost for row in rows}


def _overridden(quoted: QuotedLine | None) -> bool | None:
    if quoted is None or quoted.parent_line_no is not None:
        return None
    return quoted.price_source == "override"
