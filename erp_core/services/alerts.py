"""Carrier service alerts: a carrier's published warning that deliveries into a region will run
late over a stretch of time ("delays expected in region X until date Y").

Distributors receive these from their carriers (weather, network disruptions) before the late
deliveries they announce are judged, so recording them, with the moment each was announced, is
what lets a late-risk model know at order entry of a storm under way. The logistics desk records
them (the ``record_shipment_event`` permission); one announcement is one act and one audit row.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from erp_core.db.models import Carrier, Lane, ServiceAlert
from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import InvalidValue, NotFound
from erp_core.policy import Actor
from erp_core.services.common import audit, require_aware

SEVERITIES = (1, 2, 3)
"""1: minor delays expected, 2: significant delays, 3: severe disruption."""
MAX_DESCRIPTION = 500
MAX_REGION = 64


def announce_service_alert(
    uow: UnitOfWork,
    actor: Actor,
    *,
    region: str,
    severity: int,
    starts_at: datetime,
    ends_at: datetime,
    now: datetime,
    carrier_id: str | None = None,
    description: str = "",
    announced_at: datetime | None = None,
) -> int:
    """Record an alert in force over ``[starts_at, ends_at)`` for ``region`` (one carrier, or
    every carrier when ``carrier_id`` is None) and return its id.

    ``announced_at`` is when the carrier published it (``now``, the moment it is recorded, unless
    keyed in later); it may not lie after ``now``: a feature trusts it as the moment the alert
    became known, so an announcement dated in the future would leak. An alert already over when
    announced warns nobody and is refused too.
    """
    require_aware("now", now)
    require_aware("starts_at", starts_at)
    require_aware("ends_at", ends_at)
    announced = now if announced_at is None else require_aware("announced_at", announced_at)
    if announced > now:
        raise InvalidValue(
            "announced_at", announced, f"in the future of the moment recorded ({now.isoformat()})"
        )
    if ends_at <= starts_at:
        raise InvalidValue("ends_at", ends_at, f"not after starts_at ({starts_at.isoformat()})")
    if ends_at <= announced:
        raise InvalidValue(
            "ends_at", ends_at, f"over before the alert was announced ({announced.isoformat()})"
        )
    _check_severity(severity)
    text = _check_description(description)
    if not isinstance(region, str) or not region or len(region) > MAX_REGION:
        raise InvalidValue("region", region, f"must be 1-{MAX_REGION} characters")
    with uow:
        uow.policy.require(actor, "record_shipment_event")
        _check_served(uow, region, carrier_id)
        alert = ServiceAlert(
            region=region,
            carrier_id=carrier_id,
            severity=severity,
            starts_at=starts_at,
            ends_at=ends_at,
            announced_at=announced,
            announced_by=actor.name,
            description=text,
        )
        uow.session.add(alert)
        uow.session.flush()
        audit(
            uow,
            actor,
            now,
            "announce_service_alert",
            "service_alert",
            alert.id,
            region=region,
            carrier_id=carrier_id,
            severity=severity,
            starts_at=starts_at,
            ends_at=ends_at,
            announced_at=announced,
        )
        uow.commit()
        return alert.id


def _check_severity(severity: object) -> None:
    if isinstance(severity, bool) or not isinstance(severity, int) or severity not in SEVERITIES:
        raise InvalidValue("severity", severity, "must be 1, 2 or 3")


def _check_description(description: object) -> str:
    if not isinstance(description, str):
        raise InvalidValue("description", description, "must be text")
    text = description.strip()
    if len(text) > MAX_DESCRIPTION:
        raise InvalidValue("description", text[:40] + "...", f"over {MAX_DESCRIPTION} characters")
    if "\x00" in text:
        raise InvalidValue("description", text, "contains a NUL character")
    return text


def _check_served(uow: UnitOfWork, region: str, carrier_id: str | None) -> None:
    """The region must be one a lane delivers to (an alert for a region nobody ships to is a
    typo), and a named carrier must exist and serve it."""
    query = select(Lane.id).where(Lane.dest_region == region)
    if uow.session.scalar(query.limit(1)) is None:
        raise InvalidValue("region", region, "no lane serves this region")
    if carrier_id is None:
        return
    if uow.session.get(Carrier, carrier_id) is None:
        raise NotFound("carrier", "carrier_id", carrier_id)
    if uow.session.scalar(query.where(Lane.carrier_id == carrier_id).limit(1)) is None:
        raise InvalidValue("carrier_id", carrier_id, f"serves no lane into region {region!r}")
