"""World sizes: ``small`` for tests, ``medium`` for the demo, ``large`` for benchmarks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from erp_core.domain.errors import InvalidValue


@dataclass(frozen=True)
class Profile:
    name: str
    days: int
    skus: int
    locations: int
    customers: int
    suppliers: int
    carriers: int
    lines_per_day: float
    """Target mean order lines per business day across the whole world."""
    start: date = date(2025, 1, 6)  # a Monday


PROFILES: dict[str, Profile] = {
    "small": Profile(
        "small",
        days=60,
        skus=30,
        locations=2,
        customers=40,
        suppliers=4,
        carriers=2,
        lines_per_day=45,
    ),
    "medium": Profile(
        "medium",
        days=365,
        skus=300,
        locations=4,
        customers=400,
        suppliers=12,
        carriers=3,
        lines_per_day=780,
    ),
    "large": Profile(
        "large",
        days=730,
        skus=3000,
        locations=6,
        customers=3000,
        suppliers=40,
        carriers=4,
        lines_per_day=2000,
    ),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise InvalidValue("profile", name, f"not one of {', '.join(PROFILES)}") from None
