"""API keys: each bound to one role of the governance policy, stored only as a hash.

A key is 32 random bytes (URL-safe text with an ``erpx_`` prefix), so a plain SHA-256 is enough
to store it: there is no low-entropy secret to slow down a guess of, and a fast hash lets the
API look a key up by its hash on every request. The key itself is shown once, when created.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from erp_core.db.models import ApiKey
from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import Conflict, InvalidValue, NotFound
from erp_core.policy import Actor
from erp_core.services.common import audit, require_aware

KEY_PREFIX = "erpx_"
MAX_NAME_LENGTH = 64


@dataclass(frozen=True)
class IssuedKey:
    """A key just created: ``secret`` is the only copy of the key there will ever be."""

    name: str
    role: str
    secret: str


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_api_key(
    uow: UnitOfWork, actor: Actor, *, name: str, role: str, now: datetime
) -> IssuedKey:
    """A new key for ``role``, named so it can be found and revoked later."""
    require_aware("now", now)
    name = (name or "").strip()
    if not name or len(name) > MAX_NAME_LENGTH:
        raise InvalidValue("name", name, f"must be 1-{MAX_NAME_LENGTH} characters")
    if role not in uow.policy.roles:
        raise InvalidValue(
            "role", role, f"not a role of the policy ({', '.join(uow.policy.roles)})"
        )
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    with uow:
        uow.policy.require(actor, "manage_master_data")
        if uow.session.scalar(select(ApiKey.id).where(ApiKey.name == name)) is not None:
            raise Conflict(f"an API key named {name!r} exists already", field="name", value=name)
        key = ApiKey(name=name, role=role, key_hash=hash_key(secret), created_at=now, active=True)
        uow.session.add(key)
        uow.session.flush()
        audit(uow, actor, now, "create_api_key", "api_key", key.id, name=name, key_role=role)
        uow.commit()
    return IssuedKey(name=name, role=role, secret=secret)


def revoke_api_key(uow: UnitOfWork, actor: Actor, *, name: str, now: datetime) -> None:
    require_aware("now", now)
    with uow:
        uow.policy.require(actor, "manage_master_data")
        key = uow.session.scalar(select(ApiKey).where(ApiKey.name == name).with_for_update())
        if key is None:
            raise NotFound("api key", "name", name)
        if key.active:
            key.active = False
            audit(uow, actor, now, "revoke_api_key", "api_key", key.id, name=name)
        uow.commit()


def authenticate(uow: UnitOfWork, secret: str | None) -> Actor | None:
    """The actor a presented key stands for, or None for a missing, unknown or revoked key.

    The row is found by the hash's index; the hashes are then compared in constant time, so a
    timing difference can tell nothing about how much of a guessed key was right.
    """
    if not secret or not secret.startswith(KEY_PREFIX) or len(secret) > 128:
        return None
    digest = hash_key(secret)
    with uow:
        row = uow.session.execute(
            select(ApiKey.name, ApiKey.role, ApiKey.key_hash, ApiKey.active).where(
                ApiKey.key_hash == digest
            )
        ).first()
    if row is None or not row.active or not hmac.compare_digest(row.key_hash, digest):
        return None
    return Actor(name=f"key:{row.name}", role=row.role)


def list_api_keys(uow: UnitOfWork) -> list[tuple[str, str, datetime, bool]]:
    """Name, role, creation time and whether active, for every key (never the hash)."""
    with uow:
        rows = uow.session.execute(
            select(ApiKey.name, ApiKey.role, ApiKey.created_at, ApiKey.active).order_by(ApiKey.id)
        ).all()
    return [(r.name, r.role, r.created_at, r.active) for r in rows]
