"""The governance policy: roles, the permission matrix, thresholds and exception routing.

Loaded from TOML (a default ships in the package); pure values, no database, so every service and
the API check the same rules.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

from erp_core.domain.calendar import BusinessCalendar
from erp_core.domain.errors import PermissionDenied, PolicyError

PERMISSIONS = (
    "capture_order",
    "cancel_order",
    "override_allocation",
    "change_delivery_commitment",
    "approve_expedited_freight",
    "release_backorder",
    "approve_discount",
    "release_credit_hold",
    "place_purchase_order",
    "receive_goods",
    "record_shipment_event",
    "transfer_stock",
    "authorise_return",
    "receive_return",
    "adjust_inventory",
    "work_exceptions",
    "manage_master_data",
)
"""Every act the services check; the policy file must grant each to at least one role."""

INBOUND_QUANTILES = ("nominal", "p80")
"""How a promise dates the receipt a backorder waits for: the purchase-order line's expected date
(``nominal``), or its forecast 80th-percentile receipt date (``p80``; the nominal date where the
line has no forecast). See ``erp_core.services.inbound``."""


@dataclass(frozen=True)
class Actor:
    """Who acts: a person or system name and the role it acts in."""

    name: str
    role: str


@dataclass(frozen=True)
class Route:
    owner_role: str
    severity: str
    sla_hours: float


@dataclass(frozen=True)
class RoutingRule:
    route: Route
    type: str | None = None
    min_margin_at_risk: Decimal | None = None
    customer_tiers: frozenset[str] | None = None
    min_service_level: float | None = None

    @property
    def is_catch_all(self) -> bool:
        return (
            self.type,
            self.min_margin_at_risk,
            self.customer_tiers,
            self.min_service_level,
        ) == (None, None, None, None)

    def matches(
        self,
        exception_type: str,
        margin_at_risk: Decimal | None,
        customer_tier: str | None,
        service_level: float | None,
    ) -> bool:
        if self.type is not None and self.type != exception_type:
            return False
        if self.min_margin_at_risk is not None and (
            margin_at_risk is None or margin_at_risk < self.min_margin_at_risk
        ):
            return False
        if self.customer_tiers is not None and customer_tier not in self.customer_tiers:
            return False
        return not (
            self.min_service_level is not None
            and (service_level is None or service_level < self.min_service_level)
        )


@dataclass(frozen=True)
class Policy:
    roles: tuple[str, ...]
    customer_tiers: tuple[str, ...]
    permissions: Mapping[str, frozenset[str]]
    routing: tuple[RoutingRule, ...]
    discount_approval_pct: Decimal
    late_risk_probability: float
    margin_anomaly_score: float
    calendar: BusinessCalendar
    inbound_quantile: str = "nominal"
    """``promise.inbound_quantile``: one of :data:`INBOUND_QUANTILES`."""

    def allows(self, role: str, permission: str) -> bool:
        return role in self.permissions.get(permission, frozenset())

    def require(self, actor: Actor, permission: str) -> None:
        """Raise PermissionDenied unless the actor's role holds the permission."""
        if permission not in self.permissions:
            raise PolicyError(
                f"unknown permission {permission!r}", field="permission", value=permission
            )
        if not self.allows(actor.role, permission):
            raise PermissionDenied(actor.role, permission)

    def route(
        self,
        exception_type: str,
        *,
        margin_at_risk: Decimal | None = None,
        customer_tier: str | None = None,
        service_level: float | None = None,
    ) -> Route:
        for rule in self.routing:
            if rule.matches(exception_type, margin_at_risk, customer_tier, service_level):
                return rule.route
        raise PolicyError(
            f"no routing rule matches exception type {exception_type!r}",
            field="type",
            value=exception_type,
        )


def load_policy(path: Path | None = None) -> Policy:
    """Read and validate a policy file; ``None`` loads the default shipped with erp_core."""
    if path is None:
        text = resources.files("erp_core").joinpath("policy_default.toml").read_text("utf-8")
        source = "policy_default.toml"
    else:
        text = Path(path).read_text("utf-8")
        source = str(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{source}: {exc}", field="policy", value=source) from exc
    return parse_policy(raw, source)


def parse_policy(raw: Mapping[str, Any], source: str = "policy") -> Policy:
    roles = tuple(_list_of_str(raw, "roles", source))
    tiers = tuple(_list_of_str(raw, "customer_tiers", source))
    permissions = _parse_permissions(raw.get("permissions", {}), set(roles), source)
    routing = tuple(_parse_rule(r, set(roles), source) for r in raw.get("routing", []))
    if not routing or not routing[-1].is_catch_all:
        raise PolicyError(
            f"{source}: the last routing rule must be the catch-all (no type, no conditions)",
            field="routing",
            value=len(routing),
        )
    thresholds = raw.get("thresholds", {})
    holidays = raw.get("calendar", {}).get("holidays", [])
    try:
        calendar = BusinessCalendar.with_holidays(date.fromisoformat(str(d)) for d in holidays)
    except ValueError as exc:
        raise PolicyError(
            f"{source}: calendar.holidays: {exc}", field="calendar.holidays", value=holidays
        ) from exc
    return Policy(
        roles=roles,
        customer_tiers=tiers,
        permissions=permissions,
        routing=routing,
        discount_approval_pct=Decimal(_threshold(thresholds, "discount_approval_pct", 10, source)),
        late_risk_probability=_threshold(thresholds, "late_risk_probability", 0.35, source),
        margin_anomaly_score=_threshold(thresholds, "margin_anomaly_score", 0.8, source),
        calendar=calendar,
        inbound_quantile=_inbound_quantile(raw.get("promise", {}), source),
    )


def _inbound_quantile(raw: Any, source: str) -> str:
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{source}: promise must be a table", field="promise", value=raw)
    value = raw.get("inbound_quantile", "nominal")
    if value not in INBOUND_QUANTILES:
        raise PolicyError(
            f"{source}: promise.inbound_quantile must be one of {', '.join(INBOUND_QUANTILES)}",
            field="promise.inbound_quantile",
            value=value,
        )
    return str(value)


def _threshold(raw: Mapping[str, Any], key: str, default: float, source: str) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise PolicyError(
            f"{source}: thresholds.{key} must be a number >= 0",
            field=f"thresholds.{key}",
            value=value,
        )
    return float(value)


def _list_of_str(raw: Mapping[str, Any], key: str, source: str) -> Sequence[str]:
    value = raw.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise PolicyError(
            f"{source}: {key} must be a non-empty list of names", field=key, value=value
        )
    return value


def _parse_permissions(
    raw: Mapping[str, Any], roles: set[str], source: str
) -> dict[str, frozenset[str]]:
    missing = [p for p in PERMISSIONS if p not in raw]
    if missing:
        raise PolicyError(
            f"{source}: permissions missing: {', '.join(missing)}",
            field="permissions",
            value=missing[0],
        )
    permissions: dict[str, frozenset[str]] = {}
    for name, granted in raw.items():
        if not isinstance(granted, list) or not granted:
            raise PolicyError(
                f"{source}: permissions.{name} must grant at least one role",
                field=f"permissions.{name}",
                value=granted,
            )
        unknown = [r for r in granted if r not in roles]
        if unknown:
            raise PolicyError(
                f"{source}: permissions.{name} names unknown role {unknown[0]!r}",
                field=f"permissions.{name}",
                value=unknown[0],
            )
        permissions[name] = frozenset(granted)
    return permissions


def _parse_rule(raw: Mapping[str, Any], roles: set[str], source: str) -> RoutingRule:
    owner = raw.get("owner_role")
    if owner not in roles:
        raise PolicyError(
            f"{source}: routing owner_role {owner!r} is not a role",
            field="routing.owner_role",
            value=owner,
        )
    tiers = raw.get("customer_tiers")
    margin = raw.get("min_margin_at_risk")
    level = raw.get("min_service_level")
    return RoutingRule(
        route=Route(owner, str(raw.get("severity", "medium")), float(raw.get("sla_hours", 24))),
        type=raw.get("type"),
        min_margin_at_risk=None if margin is None else Decimal(str(margin)),
        customer_tiers=None if tiers is None else frozenset(tiers),
        min_service_level=None if level is None else float(level),
    )
