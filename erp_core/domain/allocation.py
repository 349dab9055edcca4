"""Who gets scarce stock first when a receipt releases backorders."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime


@dataclass(frozen=True)
class BackorderClaim:
    line_id: int
    quantity: int
    customer_tier: str
    promised_ship_date: date
    entered_at: datetime


def release_priority(
    claim: BackorderClaim, tier_order: Sequence[str]
) -> tuple[int, date, datetime, int]:
    """Higher tiers first, then the earliest promise, then first come; unknown tiers last."""
    rank = (
        tier_order.index(claim.customer_tier)
        if claim.customer_tier in tier_order
        else len(tier_order)
    )
    return (rank, claim.promised_ship_date, claim.entered_at, claim.line_id)


def lines_to_release(
    claims: Sequence[BackorderClaim], free_quantity: int, tier_order: Sequence[str]
) -> list[BackorderClaim]:
    """The backorders that ``free_quantity`` fills completely, in priority order.

    A claim too big for what is left is skipped rather than blocking smaller claims behind it;
    lines are released whole (a backorder is never half-reserved).
    """
    released: list[BackorderClaim] = []
    remaining = free_quantity
    for claim in sorted(claims, key=lambda c: release_priority(c, tier_order)):
        if claim.quantity <= remaining:
            released.append(claim)
            remaining -= claim.quantity
    return released
