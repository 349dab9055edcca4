"""erp_core.services.api_keys: a key bound to a policy role, stored only as its hash, found by
its hash and compared in constant time; revoked keys refused; every act needs the permission."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import func, select

from erp_core.db.models import ApiKey, AuditEntry
from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import Conflict, InvalidValue, NotFound, PermissionDenied
from erp_core.policy import Actor
from erp_core.services import api_keys
from erp_core.services.api_keys import (
    KEY_PREFIX,
    authenticate,
    create_api_key,
    hash_key,
    list_api_keys,
    revoke_api_key,
)
from tests.conftest import ADMIN, SALES, T0


def _keys(uow: UnitOfWork) -> int:
    with uow:
        return int(uow.session.scalar(select(func.count()).select_from(ApiKey)) or 0)


def test_a_key_is_stored_only_as_its_sha256_hash(uow: UnitOfWork) -> None:
    issued = create_api_key(uow, ADMIN, name="desk-1", role="sales_rep", now=T0)
    assert issued.secret.startswith(KEY_PREFIX) and len(issued.secret) > 40
    with uow:
        row = uow.session.scalars(select(ApiKey)).one()
        stored = [str(getattr(row, column.key)) for column in ApiKey.__table__.columns]
        audit = [str(e.details) for e in uow.session.scalars(select(AuditEntry))]
    assert (
        row.key_hash
        == hashlib.sha256(issued.secret.encode()).hexdigest()
        == hash_key(issued.secret)
    )
    assert not any(issued.secret in value for value in stored + audit)


def test_two_keys_for_one_role_differ(uow: UnitOfWork) -> None:
    first = create_api_key(uow, ADMIN, name="a", role="planner", now=T0)
    second = create_api_key(uow, ADMIN, name="b", role="planner", now=T0)
    assert first.secret != second.secret


def test_a_key_authenticates_as_its_named_actor_and_role(uow: UnitOfWork) -> None:
    issued = create_api_key(uow, ADMIN, name="carrier-x", role="logistics", now=T0)
    assert authenticate(uow, issued.secret) == Actor("key:carrier-x", "logistics")


def test_the_hash_is_compared_in_constant_time(
    uow: UnitOfWork, monkeypatch: pytest.MonkeyPatch
) -> None:
    issued = create_api_key(uow, ADMIN, name="desk", role="sales_rep", now=T0)
    compared: list[tuple[str, str]] = []
    real = api_keys.hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(api_keys.hmac, "compare_digest", spy)
    assert authenticate(uow, issued.secret) is not None
    assert compared == [(hash_key(issued.secret), hash_key(issued.secret))]


@pytest.mark.parametrize(
    "presented",
    [None, "", "erpx_", "erpx_unknown", "nope_" + "A" * 43, "erpx_" + "A" * 200],
)
def test_a_missing_unknown_or_malformed_key_is_refused(
    uow: UnitOfWork, presented: str | None
) -> None:
    create_api_key(uow, ADMIN, name="desk", role="sales_rep", now=T0)
    assert authenticate(uow, presented) is None


def test_a_key_with_one_character_changed_is_refused(uow: UnitOfWork) -> None:
    secret = create_api_key(uow, ADMIN, name="desk", role="sales_rep", now=T0).secret
    changed = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert authenticate(uow, changed) is None


def test_a_revoked_key_is_refused_and_revoking_again_changes_nothing(uow: UnitOfWork) -> None:
    secret = create_api_key(uow, ADMIN, name="desk", role="sales_rep", now=T0).secret
    revoke_api_key(uow, ADMIN, name="desk", now=T0)
    assert authenticate(uow, secret) is None
    revoke_api_key(uow, ADMIN, name="desk", now=T0)
    with uow:
        revocations = uow.session.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.action == "revoke_api_key")
        )
    assert revocations == 1
    assert list_api_keys(uow)[0][3] is False


def test_revoking_an_unknown_name_is_not_found_naming_it(uow: UnitOfWork) -> None:
    with pytest.raises(NotFound) as raised:
        revoke_api_key(uow, ADMIN, name="ghost", now=T0)
    assert raised.value.field == "name" and raised.value.value == "ghost"


def test_a_duplicate_name_is_a_conflict_and_writes_nothing(uow: UnitOfWork) -> None:
    create_api_key(uow, ADMIN, name="desk", role="sales_rep", now=T0)
    with pytest.raises(Conflict) as raised:
        create_api_key(uow, ADMIN, name="desk", role="planner", now=T0)
    assert raised.value.field == "name" and raised.value.value == "desk"
    assert _keys(uow) == 1


def test_an_unknown_role_is_refused_naming_the_field_and_the_roles(uow: UnitOfWork) -> None:
    with pytest.raises(InvalidValue) as raised:
        create_api_key(uow, ADMIN, name="desk", role="wizard", now=T0)
    assert raised.value.field == "role" and raised.value.value == "wizard"
    assert "sales_rep" in raised.value.message
    assert _keys(uow) == 0


@pytest.mark.parametrize("name", ["", "   ", "x" * 65])
def test_an_empty_or_overlong_name_is_refused_naming_it(uow: UnitOfWork, name: str) -> None:
    with pytest.raises(InvalidValue) as raised:
        create_api_key(uow, ADMIN, name=name, role="planner", now=T0)
    assert raised.value.field == "name"


def test_creating_and_revoking_need_the_master_data_permission(uow: UnitOfWork) -> None:
    with pytest.raises(PermissionDenied):
        create_api_key(uow, SALES, name="mine", role="admin", now=T0)
    assert _keys(uow) == 0
    create_api_key(uow, ADMIN, name="desk", role="sales_rep", now=T0)
    with pytest.raises(PermissionDenied):
        revoke_api_key(uow, SALES, name="desk", now=T0)
    assert list_api_keys(uow)[0][3] is True


def test_creating_a_key_is_audited_without_the_key(uow: UnitOfWork) -> None:
    issued = create_api_key(uow, ADMIN, name="desk", role="finance", now=T0)
    with uow:
        entry = uow.session.scalars(
            select(AuditEntry).where(AuditEntry.action == "create_api_key")
        ).one()
    assert (entry.actor, entry.role) == (ADMIN.name, ADMIN.role)
    assert entry.details["key_role"] == "finance"
    assert issued.secret not in str(entry.details)


def test_listing_shows_name_role_time_and_state_never_the_hash(uow: UnitOfWork) -> None:
    issued = create_api_key(uow, ADMIN, name="desk", role="finance", now=T0)
    ((name, role, created, active),) = list_api_keys(uow)
    assert (name, role, active) == ("desk", "finance", True)
    assert created.replace(tzinfo=None) == T0.replace(tzinfo=None)
    assert hash_key(issued.secret) not in str(list_api_keys(uow))
