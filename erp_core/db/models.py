"""The ERP schema as SQLAlchemy 2 typed models.

Money is ``Numeric`` (Decimal), quantities are integers, times are timezone-aware UTC. Anything a
model may later learn from is appended, never overwritten: promise changes, price decisions, line
state changes, shipment milestones and stock movements each get their own row with its timestamp.
"""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Time,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from erp_core.db.types import UtcDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Money = Numeric(14, 4)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {
        datetime: UtcDateTime(),
        Decimal: Money,
        dict[str, Any]: JSON,
        list[str]: JSON,
    }


# --- master data -------------------------------------------------------------------------------


class Supplier(Base):
    __tablename__ = "suppliers"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    nominal_lead_days: Mapped[int] = mapped_column(Integer)


class Location(Base):
    __tablename__ = "locations"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    region: Mapped[str] = mapped_column(String(64))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    pick_capacity_per_day: Mapped[int] = mapped_column(Integer)
    cutoff_time: Mapped[time] = mapped_column(Time, default=time(15, 0))
    __table_args__ = (CheckConstraint("pick_capacity_per_day > 0", name="capacity_positive"),)


class Product(Base):
    __tablename__ = "products"
    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(64), index=True)
    unit_cost: Mapped[Decimal]
    list_price: Mapped[Decimal]
    weight_kg: Mapped[Decimal] = mapped_column(Numeric(12, 3))
    pack_size: Mapped[int] = mapped_column(Integer, default=1)
    uom: Mapped[str] = mapped_column(String(8), default="EA")
    preferred_supplier_id: Mapped[str | None] = mapped_column(ForeignKey("suppliers.id"))
    abc_class: Mapped[str] = mapped_column(String(1), default="C")
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Customer(Base):
    __tablename__ = "customers"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    tier: Mapped[str] = mapped_column(String(32))
    credit_limit: Mapped[Decimal]
    channel: Mapped[str] = mapped_column(String(32))
    region: Mapped[str] = mapped_column(String(64))
    service_level_target: Mapped[Decimal] = mapped_column(Numeric(5, 4), default=Decimal("0.95"))
    home_location_id: Mapped[str | None] = mapped_column(ForeignKey("locations.id"))


class Carrier(Base):
    __tablename__ = "carriers"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))


class Lane(Base):
    """A carrier's service from a location to a customer region."""

    __tablename__ = "lanes"
    id: Mapped[int] = mapped_column(primary_key=True)
    carrier_id: Mapped[str] = mapped_column(ForeignKey("carriers.id"))
    origin_location_id: Mapped[str] = mapped_column(ForeignKey("locations.id"))
    dest_region: Mapped[str] = mapped_column(String(64))
    service_level: Mapped[str] = mapped_column(String(16), default="standard")
    transit_days: Mapped[int] = mapped_column(Integer)
    cost_per_shipment: Mapped[Decimal]
    cost_per_kg: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    __table_args__ = (
        UniqueConstraint("carrier_id", "origin_location_id", "dest_region", "service_level"),
        Index("ix_lanes_origin_region", "origin_location_id", "dest_region"),
    )


class PriceListEntry(Base):
    """Tier price for a SKU from ``min_quantity`` units, valid from a date (newest wins)."""

    __tablename__ = "price_list_entries"
    id: Mapped[int] = mapped_column(primary_key=True)
    tier: Mapped[str] = mapped_column(String(32))
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"))
    min_quantity: Mapped[int] = mapped_column(Integer, default=1)
    unit_price: Mapped[Decimal]
    valid_from: Mapped[date] = mapped_column(Date, default=date(2000, 1, 1))
    __table_args__ = (
        UniqueConstraint("tier", "sku", "min_quantity", "valid_from"),
        CheckConstraint("min_quantity > 0", name="min_quantity_positive"),
    )


# --- inventory ---------------------------------------------------------------------------------


class InventoryBalance(Base):
    """Derived balances of one SKU at one location, kept in step with the ledger in the same
    transaction; the row locked to serialise reservations."""

    __tablename__ = "inventory_balances"
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"), primary_key=True)
    location_id: Mapped[str] = mapped_column(ForeignKey("locations.id"), primary_key=True)
    on_hand: Mapped[int] = mapped_column(Integer, default=0)
    reserved: Mapped[int] = mapped_column(Integer, default=0)
    on_order: Mapped[int] = mapped_column(Integer, default=0)
    __table_args__ = (
        CheckConstraint("reserved >= 0", name="reserved_nonnegative"),
        CheckConstraint("reserved <= on_hand", name="no_oversell"),
        CheckConstraint("on_order >= 0", name="on_order_nonnegative"),
    )


class InventoryMovement(Base):
    """The append-only ledger: every change of a balance bucket, signed, with its reason."""

    __tablename__ = "inventory_movements"
    id: Mapped[int] = mapped_column(primary_key=True)
    occurred_at: Mapped[datetime]
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"))
    location_id: Mapped[str] = mapped_column(ForeignKey("locations.id"))
    bucket: Mapped[str] = mapped_column(String(16))
    quantity: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    reference_type: Mapped[str | None] = mapped_column(String(32))
    reference_id: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(64))
    __table_args__ = (
        CheckConstraint("bucket IN ('on_hand', 'reserved', 'on_order')", name="bucket_known"),
        Index("ix_movements_sku_location_time", "sku", "location_id", "occurred_at"),
    )


class Reservation(Base):
    __tablename__ = "reservations"
    id: Mapped[int] = mapped_column(primary_key=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("order_lines.id"), index=True)
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"))
    location_id: Mapped[str] = mapped_column(ForeignKey("locations.id"))
    quantity: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]
    released_at: Mapped[datetime | None]
    release_reason: Mapped[str | None] = mapped_column(String(32))
    line: Mapped[OrderLine] = relationship(lazy="raise")
    """Never loaded (``lazy="raise"``): it tells the unit of work to insert a new line before
    the reservation made for it when both go out in one flush."""
    __table_args__ = (CheckConstraint("quantity > 0", name="quantity_positive"),)


class CycleCount(Base):
    __tablename__ = "cycle_counts"
    id: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"))
    location_id: Mapped[str] = mapped_column(ForeignKey("locations.id"))
    counted_at: Mapped[datetime]
    system_quantity: Mapped[int] = mapped_column(Integer)
    counted_quantity: Mapped[int] = mapped_column(Integer)
    counted_by: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(String(200))


# --- orders ------------------------------------------------------------------------------------


class SalesOrder(Base):
    __tablename__ = "sales_orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    channel: Mapped[str] = mapped_column(String(32))
    ship_to_region: Mapped[str] = mapped_column(String(64))
    entered_at: Mapped[datetime] = mapped_column(index=True)
    entered_by: Mapped[str] = mapped_column(String(64))
    requested_date: Mapped[date | None] = mapped_column(Date)
    allow_split: Mapped[bool] = mapped_column(Boolean, default=True)
    external_ref: Mapped[str | None] = mapped_column(String(64))
    lines: Mapped[list[OrderLine]] = relationship(
        back_populates="order", order_by="OrderLine.id", lazy="selectin"
    )


class OrderLine(Base):
    __tablename__ = "order_lines"
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("sales_orders.id"), index=True)
    line_no: Mapped[int] = mapped_column(Integer)
    parent_line_id: Mapped[int | None] = mapped_column(ForeignKey("order_lines.id"))
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"), index=True)
    quantity: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), index=True)
    location_id: Mapped[str | None] = mapped_column(ForeignKey("locations.id"))
    lane_id: Mapped[int | None] = mapped_column(ForeignKey("lanes.id"))
    requested_date: Mapped[date | None] = mapped_column(Date)
    entered_at: Mapped[datetime]
    expected_ready_on: Mapped[date | None] = mapped_column(Date)
    list_price: Mapped[Decimal]
    tier_price: Mapped[Decimal]
    unit_price: Mapped[Decimal]
    discount_pct: Mapped[Decimal] = mapped_column(Numeric(7, 2))
    price_approval_pending: Mapped[bool] = mapped_column(Boolean, default=False)
    order: Mapped[SalesOrder] = relationship(back_populates="lines")
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        UniqueConstraint("order_id", "line_no"),
        Index("ix_order_lines_location_state", "location_id", "state"),
    )


class LineStateChange(Base):
    """Every transition of a line with its moment: the history the features are computed from."""

    __tablename__ = "line_state_changes"
    id: Mapped[int] = mapped_column(primary_key=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("order_lines.id"), index=True)
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str] = mapped_column(String(16))
    occurred_at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(64))


class LinePromise(Base):
    """Promise history: a change of commitment is a new row; KPIs judge the first one."""

    __tablename__ = "line_promises"
    id: Mapped[int] = mapped_column(primary_key=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("order_lines.id"), index=True)
    promised_ship_date: Mapped[date] = mapped_column(Date)
    promised_delivery_date: Mapped[date] = mapped_column(Date)
    reason: Mapped[str] = mapped_column(String(32))
    decided_at: Mapped[datetime]
    decided_by: Mapped[str] = mapped_column(String(64))


class PriceDecision(Base):
    """Each price a line carried, who decided it and when (list price, override, approval)."""

    __tablename__ = "price_decisions"
    id: Mapped[int] = mapped_column(primary_key=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("order_lines.id"), index=True)
    list_price: Mapped[Decimal]
    tier_price: Mapped[Decimal]
    unit_price: Mapped[Decimal]
    discount_pct: Mapped[Decimal] = mapped_column(Numeric(7, 2))
    source: Mapped[str] = mapped_column(String(16))
    decided_at: Mapped[datetime]
    decided_by: Mapped[str] = mapped_column(String(64))
    approval_id: Mapped[int | None] = mapped_column(ForeignKey("approval_requests.id"))


# --- fulfilment --------------------------------------------------------------------------------


class Shipment(Base):
    __tablename__ = "shipments"
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("sales_orders.id"), index=True)
    location_id: Mapped[str] = mapped_column(ForeignKey("locations.id"))
    lane_id: Mapped[int | None] = mapped_column(ForeignKey("lanes.id"))
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    planned_freight_cost: Mapped[Decimal]
    actual_freight_cost: Mapped[Decimal | None]
    expedited: Mapped[bool] = mapped_column(Boolean, default=False)
    lines: Mapped[list[ShipmentLine]] = relationship(lazy="selectin", order_by="ShipmentLine.id")


class ShipmentLine(Base):
    __tablename__ = "shipment_lines"
    id: Mapped[int] = mapped_column(primary_key=True)
    shipment_id: Mapped[int] = mapped_column(ForeignKey("shipments.id"), index=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("order_lines.id"), index=True)
    quantity: Mapped[int] = mapped_column(Integer)


class ShipmentEvent(Base):
    """A milestone (picked, packed, shipped, delivered, eta_updated) as it happened."""

    __tablename__ = "shipment_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    shipment_id: Mapped[int] = mapped_column(ForeignKey("shipments.id"), index=True)
    event_type: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime]
    recorded_at: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


# --- procure to stock --------------------------------------------------------------------------


class PurchaseOrder(Base):
    __tablename__ = "purchase_orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    supplier_id: Mapped[str] = mapped_column(ForeignKey("suppliers.id"))
    location_id: Mapped[str] = mapped_column(ForeignKey("locations.id"))
    status: Mapped[str] = mapped_column(String(24))
    placed_at: Mapped[datetime]
    placed_by: Mapped[str] = mapped_column(String(64))
    lines: Mapped[list[PurchaseOrderLine]] = relationship(
        lazy="selectin", order_by="PurchaseOrderLine.id"
    )


class PurchaseOrderLine(Base):
    __tablename__ = "purchase_order_lines"
    id: Mapped[int] = mapped_column(primary_key=True)
    purchase_order_id: Mapped[int] = mapped_column(ForeignKey("purchase_orders.id"), index=True)
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"), index=True)
    quantity: Mapped[int] = mapped_column(Integer)
    received_quantity: Mapped[int] = mapped_column(Integer, default=0)
    unit_cost: Mapped[Decimal]
    expected_date: Mapped[date] = mapped_column(Date)
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("received_quantity >= 0", name="received_nonnegative"),
    )


class Receipt(Base):
    __tablename__ = "receipts"
    id: Mapped[int] = mapped_column(primary_key=True)
    purchase_order_line_id: Mapped[int] = mapped_column(
        ForeignKey("purchase_order_lines.id"), index=True
    )
    quantity: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[datetime]
    received_by: Mapped[str] = mapped_column(String(64))
    lead_time_days: Mapped[int] = mapped_column(Integer)
    days_late: Mapped[int] = mapped_column(Integer)


class Transfer(Base):
    __tablename__ = "transfers"
    id: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"))
    from_location_id: Mapped[str] = mapped_column(ForeignKey("locations.id"))
    to_location_id: Mapped[str] = mapped_column(ForeignKey("locations.id"))
    quantity: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    sent_at: Mapped[datetime]
    expected_date: Mapped[date] = mapped_column(Date)
    received_at: Mapped[datetime | None]
    requested_by: Mapped[str] = mapped_column(String(64))
    __table_args__ = (CheckConstraint("quantity > 0", name="quantity_positive"),)


class ReturnOrder(Base):
    """An RMA: authorised, received, then restocked or scrapped."""

    __tablename__ = "return_orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("order_lines.id"), index=True)
    location_id: Mapped[str] = mapped_column(ForeignKey("locations.id"))
    quantity: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    authorised_at: Mapped[datetime]
    authorised_by: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime | None]
    disposed_at: Mapped[datetime | None]
    __table_args__ = (CheckConstraint("quantity > 0", name="quantity_positive"),)


# --- exceptions, approvals, audit --------------------------------------------------------------


class ExceptionCase(Base):
    __tablename__ = "exception_cases"
    id: Mapped[int] = mapped_column(primary_key=True)
    type: Mapped[str] = mapped_column(String(32), index=True)
    severity: Mapped[str] = mapped_column(String(16))
    owner_role: Mapped[str] = mapped_column(String(32), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    opened_at: Mapped[datetime]
    sla_due_at: Mapped[datetime]
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    resolved_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(64))
    resolution: Mapped[str | None] = mapped_column(String(500))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("sales_orders.id"), index=True)
    line_id: Mapped[int | None] = mapped_column(ForeignKey("order_lines.id"))
    customer_id: Mapped[str | None] = mapped_column(ForeignKey("customers.id"))
    sku: Mapped[str | None] = mapped_column(ForeignKey("products.sku"))
    location_id: Mapped[str | None] = mapped_column(ForeignKey("locations.id"))
    margin_at_risk: Mapped[Decimal | None]
    score: Mapped[float | None]
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ApprovalRequest(Base):
    """A governed act waiting for someone allowed to approve it (discount, expedited freight)."""

    __tablename__ = "approval_requests"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), index=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("sales_orders.id"))
    line_id: Mapped[int | None] = mapped_column(ForeignKey("order_lines.id"))
    requested_at: Mapped[datetime]
    requested_by: Mapped[str] = mapped_column(String(64))
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(64))
    exception_id: Mapped[int | None] = mapped_column(ForeignKey("exception_cases.id"))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class AuditEntry(Base):
    __tablename__ = "audit_entries"
    id: Mapped[int] = mapped_column(primary_key=True)
    occurred_at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(48))
    entity_type: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String(64))
    from_state: Mapped[str | None] = mapped_column(String(24))
    to_state: Mapped[str | None] = mapped_column(String(24))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    __table_args__ = (Index("ix_audit_entity", "entity_type", "entity_id"),)


class IdempotencyRecord(Base):
    """The first result of a request made with an idempotency key, returned to every retry."""

    __tablename__ = "idempotency_records"
    scope: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(32))
    key_hash: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime]
    active: Mapped[bool] = mapped_column(Boolean, default=True)


# --- the decision trail --------------------------------------------------------------------------


class RiskScore(Base):
    """A score the API gave a line: which model and version (or the fallback), its reasons and
    the feature values it used, and the exception it opened. The realised outcome joins later
    through the line (its first promise, its shipment events)."""

    __tablename__ = "risk_scores"
    id: Mapped[int] = mapped_column(primary_key=True)
    scored_at: Mapped[datetime]
    order_id: Mapped[int] = mapped_column(ForeignKey("sales_orders.id"), index=True)
    line_id: Mapped[int] = mapped_column(ForeignKey("order_lines.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(16))
    """``capture`` (scored as the order was taken), ``rescore``, or ``shadow`` (a challenger)."""
    kind: Mapped[str] = mapped_column(String(32))
    """``late_shipment`` or ``margin_anomaly``."""
    model_name: Mapped[str] = mapped_column(String(64))
    model_version: Mapped[str] = mapped_column(String(32))
    """The registry version, or ``fallback`` / ``rules`` when no model scored."""
    score: Mapped[float]
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    features: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    exception_id: Mapped[int | None] = mapped_column(ForeignKey("exception_cases.id"))


# --- carrier service alerts ----------------------------------------------------------------------


class ServiceAlert(Base):
    """A carrier's published service alert ("delays expected in region X until date Y").

    Carriers announce weather and network disruptions before the late deliveries they cause are
    judged; recording the announcement (with when it was made) lets a late-risk feature know of a
    storm under way at order entry. ``carrier_id`` None means every carrier serving the region.
    """

    __tablename__ = "service_alerts"
    id: Mapped[int] = mapped_column(primary_key=True)
    region: Mapped[str] = mapped_column(String(64), index=True)
    carrier_id: Mapped[str | None] = mapped_column(ForeignKey("carriers.id"))
    severity: Mapped[int] = mapped_column(Integer)
    """1 (minor delays) .. 3 (severe disruption)."""
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    """The alert is in force over [starts_at, ends_at)."""
    announced_at: Mapped[datetime]
    announced_by: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(String(500), default="")
    __table_args__ = (
        CheckConstraint("severity >= 1 AND severity <= 3", name="severity_range"),
        CheckConstraint("ends_at > starts_at", name="ends_after_start"),
    )


class PoLineReceiptForecast(Base):
    """When an open purchase-order line is expected to be received, as forecast at ``as_of``:
    the 50th, 80th and 90th percentile receipt dates (``method`` says who forecast them: the
    supplier history in erp_core, or a model version).

    One current row per line, replaced by each refresh; the promise reads the P80 date when the
    policy's ``promise.inbound_quantile`` is ``p80`` (``erp_core.services.inbound``).
    """

    __tablename__ = "po_line_receipt_forecasts"
    po_line_id: Mapped[int] = mapped_column(ForeignKey("purchase_order_lines.id"), primary_key=True)
    as_of: Mapped[datetime]
    p50_date: Mapped[date] = mapped_column(Date)
    p80_date: Mapped[date] = mapped_column(Date)
    p90_date: Mapped[date] = mapped_column(Date)
    method: Mapped[str] = mapped_column(String(64))
    __table_args__ = (
        CheckConstraint("p50_date <= p80_date AND p80_date <= p90_date", name="ordered"),
    )
