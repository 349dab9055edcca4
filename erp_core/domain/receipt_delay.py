"""Receipt delay quantiles from a supplier's own history: how many days after its expected date a
purchase-order line is received, at the 50th, 80th and 90th percentiles.

Why empirical quantiles and not a mean plus a spread: receipt delays are skewed (most lines come
a day or two either side of the date, a few weeks late when a supplier is disrupted), and a
promise needs "late by at most d days in 4 cases out of 5", which is a quantile.

Why shrunk: a supplier x location with five past receipts says little. Its distribution is mixed
with the next broader one, weighted by evidence: with ``n`` receipts of its own and a prior
strength ``m``, the level counts ``n / (n + m)`` and its parent (the supplier over every location,
then all suppliers) the rest. A key without history of its own is its parent's distribution; with
much history it is its own.

Why conditioned: a line still open at ``t`` cannot arrive before ``t``'s day, so only delays of at
least ``day(t) - expected`` remain possible. The distribution is cut there and renormalised; an
overdue line's quantiles move later each day it stays open. When nothing in the history was ever
that late, the earliest possible day is the answer for every quantile (the line is due now).

Delays are whole calendar days (receipt day - expected day, as ``Receipt.days_late`` counts them),
and a quantile is the smallest delay whose cumulative share reaches the level. Pure arithmetic
on plain counts: the ERP's promise path and the training job's baseline call this same function.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from erp_core.domain.errors import InvalidValue

LEVELS = (0.5, 0.8, 0.9)
PRIOR_STRENGTH = 10.0
"""Receipts of its own at which a key's history weighs as much as its parent's."""
LOOKBACK_DAYS = 182
"""Receipts known in the last half year make the history (older ones describe another supplier)."""

_TOLERANCE = 1e-12


@dataclass(frozen=True)
class DelayQuantiles:
    """Days after the expected date by which the line is received with 50/80/90% probability."""

    p50: int
    p80: int
    p90: int

    def as_tuple(self) -> tuple[int, int, int]:
        return (self.p50, self.p80, self.p90)


def delay_quantiles(
    levels: Sequence[Mapping[int, int]],
    *,
    at_least: int | None = None,
    prior_strength: float = PRIOR_STRENGTH,
) -> DelayQuantiles | None:
    """Quantiles of the shrunk mixture of ``levels`` (delay -> receipts, most specific first, the
    broadest last), cut at ``at_least`` days when given. None when no level holds a receipt: the
    history says nothing, and the caller keeps the nominal date."""
    if prior_strength <= 0:
        raise InvalidValue("prior_strength", prior_strength, "must be > 0")
    weights = _mixture(levels, prior_strength)
    if not weights:
        return None
    if at_least is not None:
        weights = {delay: w for delay, w in weights.items() if delay >= at_least}
        if not weights:
            return DelayQuantiles(at_least, at_least, at_least)
    p50, p80, p90 = _quantiles(weights, LEVELS)
    return DelayQuantiles(p50, p80, p90)


def _mixture(levels: Sequence[Mapping[int, int]], prior_strength: float) -> dict[int, float]:
    """Shares of each delay: the broadest level with receipts as it is, each narrower one mixed
    into it by its evidence ``n / (n + m)``."""
    mixed: dict[int, float] = {}
    for level in reversed(levels):
        n = sum(level.values())
        if n == 0:
            continue
        own = n / (n + prior_strength) if mixed else 1.0
        mixed = {delay: share * (1 - own) for delay, share in mixed.items()}
        for delay, count in level.items():
            if count < 0:
                raise InvalidValue("receipts", count, f"delay {delay}: a count must be >= 0")
            mixed[delay] = mixed.get(delay, 0.0) + own * count / n
    return mixed


def _quantiles(weights: Mapping[int, float], levels: Sequence[float]) -> list[int]:
    total = sum(weights.values())
    found: list[int] = []
    ordered = sorted(weights.items())
    for level in levels:
        cumulative = 0.0
        chosen = ordered[-1][0]
        for delay, weight in ordered:
            cumulative += weight / total
            if cumulative >= level - _TOLERANCE:
                chosen = delay
                break
        found.append(chosen)
    return found


def delay_counts(delays: Sequence[int]) -> Counter[int]:
    """Receipts per delay, the form :func:`delay_quantiles` reads."""
    return Counter(int(delay) for delay in delays)
