"""Loading master data creates or updates each record, audits each, and writes nothing when a
record refers to something unknown."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from sqlalchemy import select

from erp_core.db.models import AuditEntry, InventoryBalance, Lane, PriceListEntry
from erp_core.domain.errors import NotFound
from erp_core.services.master_data import LaneSpec, PriceSpec, load_master_data
from tests.conftest import ADMIN, T0, small_world
from tests.erp_core.support import count


def test_loading_again_updates_instead_of_adding(uow):
    world = small_world()
    load_master_data(uow, ADMIN, world, T0)
    cheaper = [replace(p, unit_price=p.unit_price - 1) for p in world.prices]
    slower = [replace(lane, transit_days=lane.transit_days + 1) for lane in world.lanes]
    counts = load_master_data(uow, ADMIN, replace(world, prices=cheaper, lanes=slower), T0)
    assert counts["prices"] == len(world.prices) and counts["lanes"] == len(world.lanes)
    assert count(uow, PriceListEntry) == len(world.prices)
    assert count(uow, Lane) == len(world.lanes)
    with uow:
        prices = uow.session.execute(
            select(PriceListEntry.unit_price).order_by(PriceListEntry.id)
        ).scalars()
        transits = uow.session.execute(select(Lane.transit_days).order_by(Lane.id)).scalars()
        actions = uow.session.execute(
            select(AuditEntry.action).where(AuditEntry.entity_type == "products")
        ).scalars()
        assert list(prices) == [p.unit_price for p in cheaper]
        assert list(transits) == [lane.transit_days for lane in slower]
        assert sorted(actions) == ["create_products"] * 2 + ["update_products"] * 2
    assert count(uow, InventoryBalance) == 4  # two products at two locations


def test_the_same_price_twice_in_one_load_is_one_entry_at_the_last_price(uow):
    world = small_world()
    twice = [
        PriceSpec("gold", "GADGET", Decimal("30.00")),
        PriceSpec("gold", "GADGET", Decimal("29.00")),
    ]
    load_master_data(uow, ADMIN, replace(world, prices=[*world.prices, *twice]), T0)
    with uow:
        gadget = uow.session.execute(
            select(PriceListEntry).where(PriceListEntry.sku == "GADGET")
        ).scalar_one()
        audits = uow.session.execute(
            select(AuditEntry.entity_id).where(AuditEntry.action == "upsert_price")
        ).scalars()
        assert gadget.unit_price == Decimal("29.00")
        assert list(audits).count(str(gadget.id)) == 2


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"prices": [PriceSpec("gold", "NOPE", Decimal("1"))]}, "sku"),
        ({"lanes": [LaneSpec("TRUCK", "NOWHERE", "west", 1, Decimal("1"))]}, "origin_location_id"),
        ({"lanes": [LaneSpec("SHIP", "WEST", "west", 1, Decimal("1"))]}, "carrier_id"),
    ],
)
def test_a_reference_to_something_unknown_writes_nothing(uow, change, field):
    with pytest.raises(NotFound) as refused:
        load_master_data(uow, ADMIN, replace(small_world(), **change), T0)
    assert refused.value.field == field
    assert count(uow, PriceListEntry) == 0
    assert count(uow, AuditEntry) == 0
