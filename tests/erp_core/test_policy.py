"""Governance policy: the default file, the permission matrix, routing and malformed files."""

from __future__ import annotations

import copy
import tomllib
from datetime import date
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from erp_core.domain.errors import PermissionDenied, PolicyError
from erp_core.policy import (
    PERMISSIONS,
    Actor,
    Policy,
    Route,
    RoutingRule,
    load_policy,
    parse_policy,
)

DEFAULT_TEXT = resources.files("erp_core").joinpath("policy_default.toml").read_text("utf-8")
DEFAULT_RAW: dict[str, Any] = tomllib.loads(DEFAULT_TEXT)
ROLES = ("sales_rep", "customer_service", "planner", "logistics", "finance", "admin")
ADMIN_ONLY = {"manage_master_data"}

# The default matrix, written out by hand: the test fails when the shipped file changes.
EXPECTED_MATRIX = {
    "capture_order": {"sales_rep", "customer_service", "admin"},
    "cancel_order": {"sales_rep", "customer_service", "admin"},
    "override_allocation": {"planner", "admin"},
    "change_delivery_commitment": {"customer_service", "logistics", "admin"},
    "approve_expedited_freight": {"logistics", "admin"},
    "release_backorder": {"planner", "admin"},
    "approve_discount": {"finance", "admin"},
    "release_credit_hold": {"finance", "admin"},
    "place_purchase_order": {"planner", "admin"},
    "receive_goods": {"logistics", "admin"},
    "record_shipment_event": {"logistics", "admin"},
    "transfer_stock": {"planner", "logistics", "admin"},
    "authorise_return": {"customer_service", "admin"},
    "receive_return": {"logistics", "admin"},
    "adjust_inventory": {"logistics", "admin"},
    "work_exceptions": {"customer_service", "planner", "logistics", "finance", "admin"},
    "manage_master_data": {"admin"},
}


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy()


def raw_default() -> dict[str, Any]:
    return copy.deepcopy(DEFAULT_RAW)


# --- the default file ---------------------------------------------------------------------------


def test_default_policy_loads(policy: Policy) -> None:
    assert policy.roles == ROLES
    assert policy.customer_tiers == ("platinum", "gold", "silver", "bronze")
    assert policy.discount_approval_pct == Decimal("10.0")
    assert policy.late_risk_probability == pytest.approx(0.35)
    assert policy.margin_anomaly_score == pytest.approx(0.8)
    assert len(policy.routing) == 11
    assert policy.routing[-1].type is None


def test_default_holidays_reach_the_calendar(policy: Policy) -> None:
    assert policy.calendar.holidays == {
        date(year, month, day)
        for year in (2025, 2026, 2027, 2028)
        for month, day in ((1, 1), (7, 4), (12, 25), (12, 26))
    }
    assert not policy.calendar.is_business_day(date(2026, 12, 25))  # a Friday
    assert policy.calendar.add_business_days(date(2026, 12, 24), 1) == date(2026, 12, 28)


def test_load_policy_from_a_path_equals_the_default(tmp_path: Path, policy: Policy) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(DEFAULT_TEXT, "utf-8")
    assert load_policy(path) == policy


def test_parse_policy_of_the_default_text_equals_load_policy(policy: Policy) -> None:
    assert parse_policy(raw_default()) == policy


def test_default_matrix_is_exactly_as_written(policy: Policy) -> None:
    assert set(PERMISSIONS) == set(EXPECTED_MATRIX)
    assert {name: set(roles) for name, roles in policy.permissions.items()} == EXPECTED_MATRIX


@pytest.mark.parametrize("permission", PERMISSIONS)
def test_every_permission_goes_to_admin_and_another_role(policy: Policy, permission: str) -> None:
    granted = policy.permissions[permission]
    assert "admin" in granted
    if permission in ADMIN_ONLY:
        assert granted == {"admin"}
    else:
        assert granted - {"admin"}, f"{permission} is admin-only"


@pytest.mark.parametrize("permission", PERMISSIONS)
@pytest.mark.parametrize("role", ROLES)
def test_require_allows_or_refuses_every_cell(policy: Policy, role: str, permission: str) -> None:
    actor = Actor(f"{role}-1", role)
    if role in EXPECTED_MATRIX[permission]:
        assert policy.allows(role, permission)
        policy.require(actor, permission)  # no error
    else:
        assert not policy.allows(role, permission)
        with pytest.raises(PermissionDenied) as info:
            policy.require(actor, permission)
        assert info.value.role == role
        assert info.value.permission == permission
        assert info.value.field == "role"
        assert info.value.value == role


def test_permission_denied_message_names_role_and_act(policy: Policy) -> None:
    with pytest.raises(PermissionDenied) as info:
        policy.require(Actor("rep-1", "sales_rep"), "approve_discount")
    assert str(info.value) == "role 'sales_rep' may not approve discount"
    assert info.value.as_dict() == {
        "code": "permission_denied",
        "message": "role 'sales_rep' may not approve discount",
        "field": "role",
        "value": "sales_rep",
    }


def test_unknown_role_is_refused(policy: Policy) -> None:
    with pytest.raises(PermissionDenied) as info:
        policy.require(Actor("x", "intern"), "capture_order")
    assert info.value.role == "intern"


def test_unknown_permission_is_a_policy_error(policy: Policy) -> None:
    with pytest.raises(PolicyError) as info:
        policy.require(Actor("admin-1", "admin"), "launch_rockets")
    assert info.value.field == "permission"
    assert info.value.value == "launch_rockets"
    assert not policy.allows("admin", "launch_rockets")


# --- routing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exception_type", "kwargs", "expected"),
    [
        ("credit_hold", {}, Route("finance", "high", 8.0)),
        ("margin_anomaly", {"margin_at_risk": Decimal("1000")}, Route("finance", "high", 8.0)),
        ("margin_anomaly", {"margin_at_risk": Decimal("5000")}, Route("finance", "high", 8.0)),
        (
            "margin_anomaly",
            {"margin_at_risk": Decimal("999.99")},
            Route("finance", "medium", 24.0),
        ),
        ("margin_anomaly", {}, Route("finance", "medium", 24.0)),  # unknown margin
        ("discount_approval", {}, Route("finance", "medium", 8.0)),
        ("shortage", {"customer_tier": "platinum"}, Route("planner", "high", 8.0)),
        ("shortage", {"customer_tier": "gold"}, Route("planner", "high", 8.0)),
        ("shortage", {"customer_tier": "silver"}, Route("planner", "medium", 24.0)),
        ("shortage", {}, Route("planner", "medium", 24.0)),
        ("late_risk", {"service_level": 0.97}, Route("logistics", "high", 4.0)),
        ("late_risk", {"service_level": 0.99}, Route("logistics", "high", 4.0)),
        ("late_risk", {"service_level": 0.96}, Route("customer_service", "medium", 24.0)),
        ("late_risk", {}, Route("customer_service", "medium", 24.0)),
        ("delivery_slip", {}, Route("customer_service", "high", 8.0)),
        ("expedite_approval", {}, Route("logistics", "medium", 4.0)),
        # Anything else falls through to the catch-all.
        ("mystery", {}, Route("customer_service", "low", 48.0)),
        (
            "mystery",
            {"customer_tier": "platinum", "margin_at_risk": Decimal("1e6")},
            Route("customer_service", "low", 48.0),
        ),
    ],
)
def test_route_picks_the_first_matching_rule(
    policy: Policy, exception_type: str, kwargs: dict[str, Any], expected: Route
) -> None:
    assert policy.route(exception_type, **kwargs) == expected


def test_rule_order_decides_when_several_match() -> None:
    raw = raw_default()
    # Put the generic shortage rule first: it now shadows the platinum/gold one.
    generic = next(
        r for r in raw["routing"] if r.get("type") == "shortage" and "customer_tiers" not in r
    )
    raw["routing"].remove(generic)
    raw["routing"].insert(0, generic)
    reordered = parse_policy(raw)
    assert reordered.route("shortage", customer_tier="gold") == Route("planner", "medium", 24.0)


def test_rule_defaults_for_severity_and_sla() -> None:
    raw = raw_default()
    raw["routing"][-1] = {"owner_role": "admin"}
    assert parse_policy(raw).route("mystery") == Route("admin", "medium", 24.0)


def test_routing_rule_matches_every_condition() -> None:
    rule = RoutingRule(
        Route("planner", "high", 4.0),
        type="shortage",
        min_margin_at_risk=Decimal("100"),
        customer_tiers=frozenset({"gold"}),
        min_service_level=0.95,
    )
    assert rule.matches("shortage", Decimal("100"), "gold", 0.95)
    assert not rule.matches("late_risk", Decimal("100"), "gold", 0.95)
    assert not rule.matches("shortage", Decimal("99.99"), "gold", 0.95)
    assert not rule.matches("shortage", None, "gold", 0.95)
    assert not rule.matches("shortage", Decimal("100"), "silver", 0.95)
    assert not rule.matches("shortage", Decimal("100"), None, 0.95)
    assert not rule.matches("shortage", Decimal("100"), "gold", 0.949)
    assert not rule.matches("shortage", Decimal("100"), "gold", None)


def test_route_without_any_match_is_a_policy_error(policy: Policy) -> None:
    bare = Policy(
        roles=policy.roles,
        customer_tiers=policy.customer_tiers,
        permissions=policy.permissions,
        routing=(RoutingRule(Route("finance", "high", 8.0), type="credit_hold"),),
        discount_approval_pct=policy.discount_approval_pct,
        late_risk_probability=policy.late_risk_probability,
        margin_anomaly_score=policy.margin_anomaly_score,
        calendar=policy.calendar,
    )
    with pytest.raises(PolicyError) as info:
        bare.route("shortage")
    assert info.value.field == "type"
    assert info.value.value == "shortage"


# --- malformed policies -------------------------------------------------------------------------


def parse_error(raw: dict[str, Any]) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        parse_policy(raw, "bad.toml")
    assert str(info.value).startswith("bad.toml: ")
    return info.value


def test_unknown_role_in_a_permission() -> None:
    raw = raw_default()
    raw["permissions"]["approve_discount"].append("intern")
    error = parse_error(raw)
    assert error.field == "permissions.approve_discount"
    assert error.value == "intern"
    assert "'intern'" in str(error)


def test_missing_permission() -> None:
    raw = raw_default()
    del raw["permissions"]["release_backorder"]
    error = parse_error(raw)
    assert error.field == "permissions"
    assert error.value == "release_backorder"
    assert "release_backorder" in str(error)


def test_missing_permissions_table() -> None:
    raw = raw_default()
    del raw["permissions"]
    error = parse_error(raw)
    assert error.field == "permissions"
    assert error.value == PERMISSIONS[0]


@pytest.mark.parametrize("bad", ["2026-02-30", "not-a-date", "2026/12/25"])
def test_bad_holiday_date(bad: str) -> None:
    raw = raw_default()
    raw["calendar"]["holidays"] = ["2026-12-25", bad]
    error = parse_error(raw)
    assert error.field == "calendar.holidays"
    assert error.value == ["2026-12-25", bad]


def test_toml_dates_are_accepted_as_holidays() -> None:
    raw = tomllib.loads(DEFAULT_TEXT.replace('"2025-01-01"', "2025-01-01"))
    assert isinstance(raw["calendar"]["holidays"][0], date)
    assert date(2025, 1, 1) in parse_policy(raw).calendar.holidays


def test_missing_catch_all_rule() -> None:
    raw = raw_default()
    raw["routing"].pop()
    error = parse_error(raw)
    assert error.field == "routing"
    assert error.value == 10
    assert "catch-all" in str(error)


def test_no_routing_rules_at_all() -> None:
    raw = raw_default()
    del raw["routing"]
    error = parse_error(raw)
    assert error.field == "routing"
    assert error.value == 0


def test_routing_owner_must_be_a_role() -> None:
    raw = raw_default()
    raw["routing"][0]["owner_role"] = "ceo"
    error = parse_error(raw)
    assert error.field == "routing.owner_role"
    assert error.value == "ceo"


def test_routing_rule_without_owner() -> None:
    raw = raw_default()
    del raw["routing"][-1]["owner_role"]
    error = parse_error(raw)
    assert error.field == "routing.owner_role"
    assert error.value is None


@pytest.mark.parametrize("key", ["roles", "customer_tiers"])
@pytest.mark.parametrize("value", [None, [], "admin", ["admin", 3]])
def test_roles_and_tiers_must_be_non_empty_lists_of_names(key: str, value: Any) -> None:
    raw = raw_default()
    if value is None:
        del raw[key]
    else:
        raw[key] = value
    error = parse_error(raw)
    assert error.field == key
    assert error.value == value


def test_invalid_toml_is_a_policy_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('roles = ["admin"\n', "utf-8")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert info.value.field == "policy"
    assert info.value.value == str(path)


def test_thresholds_default_when_absent() -> None:
    raw = raw_default()
    del raw["thresholds"]
    del raw["calendar"]
    parsed = parse_policy(raw)
    assert parsed.discount_approval_pct == Decimal(10)
    assert parsed.late_risk_probability == pytest.approx(0.35)
    assert parsed.margin_anomaly_score == pytest.approx(0.8)
    assert parsed.calendar.holidays == frozenset()


def test_permission_granted_to_nobody_is_refused() -> None:
    raw = raw_default()
    raw["permissions"]["approve_discount"] = []
    error = parse_error(raw)
    assert error.field == "permissions.approve_discount"


@pytest.mark.parametrize(
    "key", ["discount_approval_pct", "late_risk_probability", "margin_anomaly_score"]
)
def test_bad_threshold_is_a_policy_error(key: str) -> None:
    raw = raw_default()
    raw["thresholds"][key] = "ten"
    error = parse_error(raw)
    assert error.field == f"thresholds.{key}"


def test_conditional_last_rule_is_not_a_catch_all() -> None:
    raw = raw_default()
    raw["routing"][-1]["customer_tiers"] = ["platinum"]
    error = parse_error(raw)
    assert error.field == "routing"
