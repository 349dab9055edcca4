"""erp_core.services.alerts: a carrier service alert is recorded with its announcement moment and
one audit row, by a role allowed to record shipment events; bad values are refused naming the
field and write nothing."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from erp_core.db.models import AuditEntry, Carrier, ServiceAlert
from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import InvalidValue, NotFound, PermissionDenied
from erp_core.services.alerts import announce_service_alert
from tests.conftest import LOGISTICS, SALES, T0

DAY = timedelta(days=1)


def _announce(uow: UnitOfWork, **changes: Any) -> int:
    values: dict[str, Any] = {
        "region": "east",
        "severity": 2,
        "starts_at": T0,
        "ends_at": T0 + 3 * DAY,
        "now": T0,
    }
    values.update(changes)
    actor = values.pop("actor", LOGISTICS)
    return announce_service_alert(uow, actor, **values)


def _count(uow: UnitOfWork, model: type[Any]) -> int:
    with uow:
        return int(uow.session.scalar(select(func.count()).select_from(model)) or 0)


def test_an_alert_is_stored_with_its_announcement_and_audited_once(world: UnitOfWork) -> None:
    alert_id = _announce(
        world, carrier_id="TRUCK", description="  snow on the east lanes  ", severity=3
    )
    with world:
        alert = world.session.get(ServiceAlert, alert_id)
        assert alert is not None
        stored = (
            alert.region,
            alert.carrier_id,
            alert.severity,
            alert.starts_at,
            alert.ends_at,
            alert.announced_at,
            alert.announced_by,
            alert.description,
        )
        entries = world.session.scalars(select(AuditEntry)).all()
    assert stored == ("east", "TRUCK", 3, T0, T0 + 3 * DAY, T0, "log-1", "snow on the east lanes")
    (entry,) = [e for e in entries if e.entity_type == "service_alert"]
    assert (entry.action, entry.entity_id, entry.actor) == (
        "announce_service_alert",
        str(alert_id),
        "log-1",
    )
    assert entry.details["severity"] == 3 and entry.details["region"] == "east"


def test_an_alert_for_every_carrier_has_no_carrier(world: UnitOfWork) -> None:
    alert_id = _announce(world)
    with world:
        alert = world.session.get(ServiceAlert, alert_id)
        assert alert is not None and alert.carrier_id is None


def test_an_announcement_keyed_in_later_keeps_when_it_was_published(world: UnitOfWork) -> None:
    alert_id = _announce(world, now=T0 + timedelta(hours=3), announced_at=T0)
    with world:
        alert = world.session.get(ServiceAlert, alert_id)
        assert alert is not None and alert.announced_at == T0


def test_a_role_without_the_permission_is_refused(world: UnitOfWork) -> None:
    with pytest.raises(PermissionDenied):
        _announce(world, actor=SALES)
    assert _count(world, ServiceAlert) == 0


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"region": "islands"}, "region"),
        ({"region": ""}, "region"),
        ({"region": "x" * 65}, "region"),
        ({"severity": 0}, "severity"),
        ({"severity": 4}, "severity"),
        ({"severity": True}, "severity"),
        ({"severity": 2.0}, "severity"),
        ({"ends_at": T0}, "ends_at"),
        ({"ends_at": T0 - DAY}, "ends_at"),
        ({"starts_at": T0.replace(tzinfo=None)}, "starts_at"),
        ({"ends_at": (T0 + DAY).replace(tzinfo=None)}, "ends_at"),
        ({"now": T0.replace(tzinfo=None)}, "now"),
        ({"announced_at": T0 + timedelta(minutes=1)}, "announced_at"),
        ({"announced_at": datetime(2026, 3, 3, 9, 0)}, "announced_at"),
        ({"starts_at": T0 - 5 * DAY, "ends_at": T0 - DAY}, "ends_at"),
        ({"carrier_id": "AIR", "region": "nowhere"}, "region"),
        ({"description": "x" * 501}, "description"),
        ({"description": "bad\x00byte"}, "description"),
    ],
)
def test_bad_values_are_refused_naming_the_field_and_write_nothing(
    world: UnitOfWork, changes: dict[str, Any], field: str
) -> None:
    audited = _count(world, AuditEntry)
    with pytest.raises(InvalidValue) as refused:
        _announce(world, **changes)
    assert refused.value.field == field
    assert _count(world, ServiceAlert) == 0
    assert _count(world, AuditEntry) == audited


def test_an_unknown_carrier_is_not_found_and_one_serving_no_lane_there_refused(
    world: UnitOfWork,
) -> None:
    with pytest.raises(NotFound) as unknown:
        _announce(world, carrier_id="SHIP")
    assert unknown.value.field == "carrier_id"
    with world:
        world.session.add(Carrier(id="SHIP", name="Ship Co"))
        world.commit()
    with pytest.raises(InvalidValue) as refused:
        _announce(world, carrier_id="SHIP")
    assert refused.value.field == "carrier_id"
    assert _count(world, ServiceAlert) == 0
    assert _announce(world, carrier_id="AIR") > 0
