"""Master data: suppliers, locations, products, customers, carriers, lanes and tier price lists.

Creation and update are governed acts (``manage_master_data``) with an audit entry each; the
simulator and importers load their worlds through these functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select

from erp_core.db.models import (
    Base,
    Carrier,
    Customer,
    Lane,
    Location,
    PriceListEntry,
    Product,
    Supplier,
)
from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import InvalidValue
from erp_core.domain.pricing import parse_money
from erp_core.policy import Actor
from erp_core.services.common import audit, get_kept_or_raise, require_aware
from erp_core.services.stock import lock_balances


@dataclass(frozen=True)
class SupplierSpec:
    id: str
    name: str
    nominal_lead_days: int


@dataclass(frozen=True)
class LocationSpec:
    id: str
    name: str
    region: str
    pick_capacity_per_day: int
    cutoff_time: time = time(15, 0)
    timezone: str = "UTC"


@dataclass(frozen=True)
class ProductSpec:
    sku: str
    name: str
    category: str
    unit_cost: Decimal
    list_price: Decimal
    weight_kg: Decimal = Decimal("1")
    pack_size: int = 1
    preferred_supplier_id: str | None = None
    abc_class: str = "C"
    uom: str = "EA"


@dataclass(frozen=True)
class CustomerSpec:
    id: str
    name: str
    tier: str
    credit_limit: Decimal
    channel: str
    region: str
    service_level_target: Decimal = Decimal("0.95")
    home_location_id: str | None = None


@dataclass(frozen=True)
class CarrierSpec:
    id: str
    name: str


@dataclass(frozen=True)
class LaneSpec:
    carrier_id: str
    origin_location_id: str
    dest_region: str
    transit_days: int
    cost_per_shipment: Decimal
    service_level: str = "standard"
    cost_per_kg: Decimal = Decimal(0)


@dataclass(frozen=True)
class PriceSpec:
    tier: str
    sku: str
    unit_price: Decimal
    min_quantity: int = 1
    valid_from: date = date(2000, 1, 1)


@dataclass
class MasterData:
    """Everything a world needs before its first order, loaded in one transaction."""

    suppliers: Sequence[SupplierSpec] = field(default_factory=list)
    locations: Sequence[LocationSpec] = field(default_factory=list)
    products: Sequence[ProductSpec] = field(default_factory=list)
    customers: Sequence[CustomerSpec] = field(default_factory=list)
    carriers: Sequence[CarrierSpec] = field(default_factory=list)
    lanes: Sequence[LaneSpec] = field(default_factory=list)
    prices: Sequence[PriceSpec] = field(default_factory=list)


def load_master_data(
    uow: UnitOfWork, actor: Actor, data: MasterData, now: datetime
) -> dict[str, int]:
    """Create or update every record of ``data``; returns counts per entity."""
    require_aware("now", now)
    with uow:
        uow.policy.require(actor, "manage_master_data")
        _validate(data, uow.policy.customer_tiers)
        counts: dict[str, int] = {}
        for name, model, specs in (
            ("suppliers", Supplier, data.suppliers),
            ("locations", Location, data.locations),
            ("products", Product, data.products),
            ("customers", Customer, data.customers),
            ("carriers", Carrier, data.carriers),
        ):
            key_name = "sku" if model is Product else "id"
            uow.preload(model, [getattr(spec, key_name) for spec in specs])
            for spec in specs:
                _upsert(uow, actor, now, model, key_name, asdict(spec))
            counts[name] = len(specs)
        uow.session.flush()
        _upsert_lanes(uow, actor, now, data.lanes)
        counts["lanes"] = len(data.lanes)
        _upsert_prices(uow, actor, now, data.prices)
        counts["prices"] = len(data.prices)
        uow.session.flush()
        # Every product has a balance row at every location, so ATP sees every place.
        skus = list(uow.session.execute(select(Product.sku)).scalars())
        locations = list(uow.session.execute(select(Location.id)).scalars())
        lock_balances(uow, [(s, loc) for s in skus for loc in locations])
        uow.commit()
        return counts


def _validate(data: MasterData, tiers: Sequence[str]) -> None:
    for location in data.locations:
        if location.pick_capacity_per_day <= 0:
            raise InvalidValue(
                "pick_capacity_per_day",
                location.pick_capacity_per_day,
                f"location {location.id} must pick at least one line a day",
            )
        try:
            ZoneInfo(location.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidValue("timezone", location.timezone, "unknown time zone") from exc
    for product in data.products:
        for name in ("unit_cost", "list_price", "weight_kg"):
            value = parse_money(name, getattr(product, name))
            if value < 0:
                raise InvalidValue(name, value, f"product {product.sku} must not be negative")
    for customer in data.customers:
        if customer.tier not in tiers:
            raise InvalidValue("tier", customer.tier, f"not one of {', '.join(tiers)}")
    for price in data.prices:
        if price.tier not in tiers:
            raise InvalidValue("tier", price.tier, f"not one of {', '.join(tiers)}")
        if price.min_quantity <= 0:
            raise InvalidValue("min_quantity", price.min_quantity, "must be > 0")
    for lane in data.lanes:
        if lane.transit_days < 0:
            raise InvalidValue("transit_days", lane.transit_days, "must be >= 0")


def _upsert(
    uow: UnitOfWork,
    actor: Actor,
    now: datetime,
    model: type[Base],
    key_name: str,
    values: dict[str, Any],
) -> None:
    row = uow.get(model, values[key_name])
    action = "update" if row is not None else "create"
    if row is None:
        row = model(**values)
        uow.session.add(row)
    else:
        for name, value in values.items():
            setattr(row, name, value)
    audit(uow, actor, now, f"{action}_{model.__tablename__}", model.__tablename__, values[key_name])


LaneKey = tuple[str, str, str, str]
PriceKey = tuple[str, str, int, date]


def _upsert_lanes(uow: UnitOfWork, actor: Actor, now: datetime, specs: Sequence[LaneSpec]) -> None:
    """Create or update lanes (one query for the existing ones, one flush for the new ones),
    then audit each in the order given."""
    existing: dict[LaneKey, Lane] = {
        (lane.carrier_id, lane.origin_location_id, lane.dest_region, lane.service_level): lane
        for lane in uow.session.execute(select(Lane)).scalars()
    }
    upserted = []
    for spec in specs:
        get_kept_or_raise(uow, Carrier, spec.carrier_id, entity="carrier", field="carrier_id")
        get_kept_or_raise(
            uow, Location, spec.origin_location_id, entity="location", field="origin_location_id"
        )
        key = (spec.carrier_id, spec.origin_location_id, spec.dest_region, spec.service_level)
        lane = existing.get(key)
        if lane is None:
            lane = existing[key] = Lane(**asdict(spec))
            uow.session.add(lane)
        else:
            for name, value in asdict(spec).items():
                setattr(lane, name, value)
        upserted.append(lane)
    uow.session.flush()
    for lane in upserted:
        audit(uow, actor, now, "upsert_lane", "lanes", lane.id)


def _upsert_prices(
    uow: UnitOfWork, actor: Actor, now: datetime, specs: Sequence[PriceSpec]
) -> None:
    """Create or update price list entries (one query for the existing entries of the SKUs, one
    flush for the new ones), then audit each in the order given."""
    skus = sorted({spec.sku for spec in specs})
    uow.preload(Product, skus)
    existing: dict[PriceKey, PriceListEntry] = {
        (entry.tier, entry.sku, entry.min_quantity, entry.valid_from): entry
        for entry in uow.session.execute(
            select(PriceListEntry).where(PriceListEntry.sku.in_(skus))
        ).scalars()
    }
    upserted = []
    for spec in specs:
        get_kept_or_raise(uow, Product, spec.sku, entity="product", field="sku")
        key = (spec.tier, spec.sku, spec.min_quantity, spec.valid_from)
        entry = existing.get(key)
        if entry is None:
            entry = existing[key] = PriceListEntry(**asdict(spec))
            uow.session.add(entry)
        else:
            entry.unit_price = spec.unit_price
        upserted.append(entry)
    uow.session.flush()
    for entry in upserted:
        audit(uow, actor, now, "upsert_price", "price_list_entries", entry.id)
