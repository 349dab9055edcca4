"""Idempotency keys: a retried request returns the first result and writes nothing new.

The record is written in the same transaction as the act it remembers, so a crash before commit
leaves neither; two concurrent first attempts race on the primary key and the loser returns the
winner's result.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError

from erp_core.db.models import IdempotencyRecord
from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import Conflict, InvalidValue

T = TypeVar("T")
MAX_KEY_LENGTH = 128


def stored_response(result: Any) -> dict[str, Any]:
    """A result dataclass as remembered for replays: every field but its ``replayed`` flag."""
    data = asdict(result)
    data.pop("replayed", None)
    return data


def request_fingerprint(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def replay(uow: UnitOfWork, scope: str, key: str, fingerprint: str) -> dict[str, Any] | None:
    """The stored response of an earlier request with this key, or None if there was none."""
    record = uow.session.get(IdempotencyRecord, (scope, key))
    if record is None:
        return None
    if record.request_hash != fingerprint:
        raise Conflict(
            f"idempotency key {key!r} was already used for a different {scope} request",
            field="idempotency_key",
            value=key,
        )
    return dict(record.response)


def remember(
    uow: UnitOfWork,
    scope: str,
    key: str,
    fingerprint: str,
    response: dict[str, Any],
    now: datetime,
) -> None:
    uow.session.add(
        IdempotencyRecord(
            scope=scope, key=key, request_hash=fingerprint, response=response, created_at=now
        )
    )
    uow.session.flush()


def validate_key(key: str | None) -> str | None:
    if key is None:
        return None
    if not key.strip() or len(key) > MAX_KEY_LENGTH:
        raise InvalidValue("idempotency_key", key, f"must be 1-{MAX_KEY_LENGTH} characters")
    return key


def run_idempotent(
    uow: UnitOfWork,
    scope: str,
    key: str | None,
    payload: Any,
    act: Callable[[], dict[str, Any]],
    now: datetime,
) -> tuple[dict[str, Any], bool]:
    """Run ``act`` (which must not commit) once per key; returns its response dict and whether it
    is a replay of an earlier request.

    ``act`` runs inside the caller's open unit of work; this function commits.
    """
    if key is None:
        response = act()
        uow.commit()
        return response, False
    fingerprint = request_fingerprint(payload)
    earlier = replay(uow, scope, key, fingerprint)
    if earlier is not None:
        return earlier, True
    response = act()
    try:
        remember(uow, scope, key, fingerprint, response, now)
        uow.commit()
    except IntegrityError:
        # A concurrent first attempt with the same key committed first: return its result.
        uow.rollback()
        earlier = replay(uow, scope, key, fingerprint)
        if earlier is None:
            raise
        return earlier, True
    return response, False
