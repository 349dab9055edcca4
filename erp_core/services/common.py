"""Small pieces every service uses: lookups that fail with a named field, the audit trail,
state transitions, and parsing of user values."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from sqlalchemy.orm import Session
from sqlalchemy.orm.interfaces import ORMOption

from erp_core.db.models import AuditEntry, Base, LineStateChange, OrderLine
from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import InvalidValue, NotFound
from erp_core.domain.states import check_transition
from erp_core.policy import Actor

ModelT = TypeVar("ModelT", bound=Base)


def get_or_raise(
    session: Session,
    model: type[ModelT],
    key: Any,
    *,
    entity: str,
    field: str,
    for_update: bool = False,
    options: Sequence[ORMOption] = (),
) -> ModelT:
    """The row with primary key ``key``, or NotFound naming the field the caller gave.

    ``for_update`` locks it ``FOR NO KEY UPDATE`` on PostgreSQL (what an UPDATE of its other
    columns takes): writers of the row still queue, but a row inserted meanwhile that refers to
    it (an exception case naming a locked customer) does not wait for the lock. With ``FOR
    UPDATE`` a capture holding its customer and waiting for a balance deadlocked with a cancel
    holding that balance and opening a case for the same customer."""
    lock = {"key_share": True} if for_update else None
    row = session.get(model, key, with_for_update=lock, options=options)
    if row is None:
        raise NotFound(entity, field, key)
    return row


def lock_row(
    uow: UnitOfWork,
    model: type[ModelT],
    key: Any,
    *,
    entity: str,
    field: str,
    options: Sequence[ORMOption] = (),
) -> ModelT:
    """``get_or_raise(..., for_update=True)`` once per transaction: a row the transaction has
    locked already is returned as loaded then (see ``UnitOfWork.held``), without a query."""
    lock_key = (model.__name__, key)
    held = uow.held(lock_key)
    if held is not None:
        assert isinstance(held, model)
        return held
    row = get_or_raise(
        uow.session, model, key, entity=entity, field=field, for_update=True, options=options
    )
    uow.hold(lock_key, row)
    return row


def get_kept_or_raise(
    uow: UnitOfWork, model: type[ModelT], key: Any, *, entity: str, field: str
) -> ModelT:
    """Like ``get_or_raise`` for master data read over and over in one transaction (see
    ``UnitOfWork.get``)."""
    row = uow.get(model, key)
    if row is None:
        raise NotFound(entity, field, key)
    return row


def require_aware(field: str, moment: datetime) -> datetime:
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise InvalidValue(field, moment, "must be a timezone-aware datetime")
    try:
        moment.astimezone(UTC)  # 0001-01-01T00:00+01:00 is in year 0 in UTC: no datetime
    except OverflowError as error:
        raise InvalidValue(field, moment, "is out of range in UTC") from error
    return moment


def not_before(field: str, moment: datetime, earlier: datetime | None, what: str) -> None:
    """Refuse a moment before an earlier one it depends on (a receipt before its order was placed,
    a return received before it was authorised); no earlier moment, nothing to check."""
    if earlier is not None and moment < earlier:
        raise InvalidValue(field, moment, f"before {what} ({earlier.isoformat()})")


def parse_date(field: str, raw: date | str | None) -> date | None:
    if raw is None or (isinstance(raw, date) and not isinstance(raw, datetime)):
        return raw
    if isinstance(raw, datetime):
        return raw.date()
    try:
        return date.fromisoformat(str(raw))
    except ValueError as exc:
        raise InvalidValue(field, raw, "not an ISO date (YYYY-MM-DD)") from exc


def parse_quantity(field: str, raw: Any) -> int:
    if isinstance(raw, bool):
        raise InvalidValue(field, raw, "not a whole number")
    try:
        value = int(raw)
    except (TypeError, ValueError) as exc:
        raise InvalidValue(field, raw, "not a whole number") from exc
    if value != raw and str(value) != str(raw).strip():
        raise InvalidValue(field, raw, "not a whole number")
    if value <= 0:
        raise InvalidValue(field, raw, "must be > 0")
    return value


def audit(
    uow: UnitOfWork,
    actor: Actor,
    now: datetime,
    action: str,
    entity_type: str,
    entity_id: Any,
    *,
    from_state: str | None = None,
    to_state: str | None = None,
    **details: Any,
) -> None:
    uow.append(
        AuditEntry,
        occurred_at=now,
        actor=actor.name,
        role=actor.role,
        action=action,
        entity_type=entity_type,
        entity_id=str(entity_id),
        from_state=from_state,
        to_state=to_state,
        details={k: _jsonable(v) for k, v in details.items()},
    )


def transition(
    uow: UnitOfWork,
    actor: Actor,
    now: datetime,
    entity_type: str,
    row: Any,
    target: str,
    action: str,
    **details: Any,
) -> None:
    """Move ``row.status`` (or ``row.state`` for order lines) to ``target`` through the one
    transition table, recording the audit entry (and the line history for order lines)."""
    attribute = "state" if isinstance(row, OrderLine) else "status"
    current = getattr(row, attribute)
    check_transition(entity_type, current, target)
    setattr(row, attribute, target)
    if row.id is None:
        uow.session.flush()
    if isinstance(row, OrderLine):
        uow.append(
            LineStateChange,
            line_id=row.id,
            from_state=current,
            to_state=target,
            occurred_at=now,
            actor=actor.name,
        )
    audit(
        uow, actor, now, action, entity_type, row.id, from_state=current, to_state=target, **details
    )


_PLAIN = frozenset({str, int, float, bool, type(None)})
"""Types a JSON column takes as they are (exactly these: a ``StrEnum`` goes the long way)."""


def _jsonable(value: Any) -> Any:
    if type(value) in _PLAIN:
        return value
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
