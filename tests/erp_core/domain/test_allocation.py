"""Backorder release priority: tier, then promise date, then entry time; whole lines only."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from erp_core.domain.allocation import BackorderClaim, lines_to_release, release_priority

TIERS = ("platinum", "gold", "silver", "bronze")


def claim(
    line_id: int,
    quantity: int,
    tier: str,
    promised: int = 10,
    entered_hour: int = 9,
) -> BackorderClaim:
    """A claim promised on ``promised`` March 2026, entered 1 March at ``entered_hour`` UTC."""
    return BackorderClaim(
        line_id=line_id,
        quantity=quantity,
        customer_tier=tier,
        promised_ship_date=date(2026, 3, promised),
        entered_at=datetime(2026, 3, 1, entered_hour, tzinfo=UTC),
    )


def ids(claims: list[BackorderClaim]) -> list[int]:
    return [c.line_id for c in claims]


def test_release_priority_key() -> None:
    key = release_priority(claim(7, 3, "silver", promised=12, entered_hour=8), TIERS)
    assert key == (2, date(2026, 3, 12), datetime(2026, 3, 1, 8, tzinfo=UTC), 7)


def test_unknown_tier_ranks_after_every_known_tier() -> None:
    assert release_priority(claim(1, 1, "wood"), TIERS)[0] == len(TIERS)


def test_tier_before_promise_date() -> None:
    early_bronze = claim(1, 1, "bronze", promised=5)
    late_gold = claim(2, 1, "gold", promised=25)
    assert ids(lines_to_release([early_bronze, late_gold], 10, TIERS)) == [2, 1]


def test_promise_date_before_entry_time() -> None:
    late_promise_early_entry = claim(1, 1, "gold", promised=20, entered_hour=6)
    early_promise_late_entry = claim(2, 1, "gold", promised=11, entered_hour=18)
    released = lines_to_release([late_promise_early_entry, early_promise_late_entry], 10, TIERS)
    assert ids(released) == [2, 1]


def test_entry_time_then_line_id_break_ties() -> None:
    claims = [
        claim(30, 1, "silver", entered_hour=12),
        claim(20, 1, "silver", entered_hour=9),
        claim(10, 1, "silver", entered_hour=12),
    ]
    assert ids(lines_to_release(claims, 10, TIERS)) == [20, 10, 30]


def test_full_ordering_across_tiers() -> None:
    claims = [
        claim(1, 1, "bronze", promised=3),
        claim(2, 1, "wood", promised=2),  # unknown tier: last
        claim(3, 1, "silver", promised=9),
        claim(4, 1, "platinum", promised=30),
        claim(5, 1, "gold", promised=4),
        claim(6, 1, "gold", promised=3),
    ]
    assert ids(lines_to_release(claims, 100, TIERS)) == [4, 6, 5, 3, 1, 2]


def test_claim_too_big_is_skipped_and_smaller_claims_behind_it_are_served() -> None:
    claims = [
        claim(1, 8, "gold"),  # first in priority, fits: 10 -> 2 left
        claim(2, 5, "silver"),  # too big for the 2 left: skipped, not half-filled
        claim(3, 2, "bronze"),  # fits exactly: 0 left
        claim(4, 1, "bronze", promised=20),  # nothing left
    ]
    assert ids(lines_to_release(claims, 10, TIERS)) == [1, 3]


def test_a_big_top_priority_claim_does_not_block_the_queue() -> None:
    claims = [claim(1, 20, "platinum"), claim(2, 4, "gold"), claim(3, 6, "gold", promised=11)]
    assert ids(lines_to_release(claims, 10, TIERS)) == [2, 3]


def test_exact_fit_releases_the_line() -> None:
    assert ids(lines_to_release([claim(1, 10, "gold")], 10, TIERS)) == [1]
    assert lines_to_release([claim(1, 11, "gold")], 10, TIERS) == []


@pytest.mark.parametrize("free", [0, -3])
def test_nothing_free_releases_nothing(free: int) -> None:
    assert lines_to_release([claim(1, 1, "platinum")], free, TIERS) == []


def test_no_claims_releases_nothing() -> None:
    assert lines_to_release([], 50, TIERS) == []


def test_released_claims_never_exceed_free_quantity() -> None:
    claims = [claim(i, q, t) for i, (q, t) in enumerate([(4, "gold"), (3, "silver"), (5, "gold")])]
    released = lines_to_release(claims, 9, TIERS)
    assert ids(released) == [0, 2]  # gold 4 + gold 5 = 9; silver 3 skipped
    assert sum(c.quantity for c in released) <= 9
