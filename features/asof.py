"""Point-in-time arithmetic on event arrays: what had happened to a key strictly before a moment.

Every windowed feature is the same computation. Sort the events by (key, time) once, keep running
totals of their values, and answer each query row ``(key, t)`` with two binary searches: the
number of the key's events before ``t`` and before ``t - W``. The difference of the running totals
at those two positions is the sum over ``[t - W, t)``; ``side='left'`` makes "before" strict, so
an event at exactly ``t`` (the row's own capture, another order entered in the same instant) is
never counted. The cost is one sort of the events and ``O(log n)`` per query and window, with no
Python loop over rows.

Values are summed as int64 (counts, units, days), so a total over a window is exact whatever else
the arrays hold: appending history after ``t`` cannot change a single bit of it.

Times are int64 microseconds since the epoch (UTC); keys are int64 codes from :func:`key_codes`
(``-1`` for a row without a key).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

MICROS_PER_DAY = 86_400_000_000
_COMPOSITE_LIMIT = 2**62


@dataclass(frozen=True)
class WindowTotals:
    """Per query row: how many of its key's events fell in the window, and their value sums."""

    count: np.ndarray
    sums: Mapping[str, np.ndarray]
    has_key: np.ndarray
    """False for query rows without a key: their count and sums are 0 and mean nothing."""


def key_codes(
    events: Sequence[pd.Series | np.ndarray], queries: Sequence[pd.Series | np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """One int64 code per distinct key (a tuple of columns), shared by events and queries.

    A query whose key has a null part gets ``-1``; a key that only queries have gets a code of
    its own (it simply has no events). Columns may be categorical, text or integers: each side is
    factorised on its own and only the (few) distinct values are matched, so no large column is
    converted.
    """
    if len(events) != len(queries) or not events:
        raise ValueError("events and queries need the same key columns, at least one")
    event_code = np.zeros(len(events[0]), dtype=np.int64)
    query_code = np.zeros(len(queries[0]), dtype=np.int64)
    missing = np.zeros(len(query_code), dtype=bool)
    for event_part, query_part in zip(events, queries, strict=True):
        event_part_code, query_part_code, distinct = _shared_codes(event_part, query_part)
        missing |= query_part_code < 0
        event_code = event_code * distinct + np.maximum(event_part_code, 0)
        query_code = query_code * distinct + np.maximum(query_part_code, 0)
    _, dense = np.unique(np.concatenate([event_code, query_code]), return_inverse=True)
    dense = dense.astype(np.int64)
    event_dense, query_dense = dense[: len(event_code)], dense[len(event_code) :]
    query_dense[missing] = -1
    return event_dense, query_dense


def _shared_codes(
    events: pd.Series | np.ndarray, queries: pd.Series | np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    event_codes, event_values = pd.factorize(events, use_na_sentinel=True)
    query_codes, query_values = pd.factorize(queries, use_na_sentinel=True)
    known = pd.Index(np.asarray(event_values, dtype=object))
    position = known.get_indexer(np.asarray(query_values, dtype=object))
    unseen = position < 0
    position[unseen] = len(known) + np.arange(int(unseen.sum()))
    lookup = np.append(position, -1)  # the code -1 (a null query key) indexes this last -1
    mapped = lookup[np.where(query_codes >= 0, query_codes, len(position))]
    return event_codes.astype(np.int64), mapped.astype(np.int64), len(known) + int(unseen.sum())


class _Encoder:
    """Maps (key, time) to one int64 that sorts like the pair, so a single ``searchsorted`` on
    sorted events finds a position inside the right key's block.

    ``key * span + (time - t_min)`` when that fits in 62 bits (the usual case: microseconds over
    a few years, thousands of keys); otherwise times are replaced by their dense rank among all
    the times involved, which always fits.
    """

    def __init__(self, n_keys: int, times: Sequence[np.ndarray]) -> None:
        t_min = min(int(t.min()) for t in times if len(t))
        t_max = max(int(t.max()) for t in times if len(t))
        self.t_min = t_min
        self.span = t_max - t_min + 1
        self.ranks: np.ndarray | None = None
        if n_keys * self.span >= _COMPOSITE_LIMIT:
            self.ranks = np.unique(np.concatenate([t for t in times if len(t)]))
            self.span = len(self.ranks) + 1

    def __call__(self, keys: np.ndarray, times: np.ndarray) -> np.ndarray:
        if self.ranks is None:
            offsets = times.astype(np.int64) - self.t_min
        else:
            offsets = np.searchsorted(self.ranks, times, side="left").astype(np.int64)
        return keys.astype(np.int64) * self.span + offsets

    def block_start(self, keys: np.ndarray) -> np.ndarray:
        """The code of the key's earliest possible event: the left edge of its block."""
        return keys.astype(np.int64) * self.span


def trailing_totals(
    event_keys: np.ndarray,
    event_times: np.ndarray,
    event_values: Mapping[str, np.ndarray],
    query_keys: np.ndarray,
    query_times: np.ndarray,
    windows: Sequence[int | None],
) -> dict[int | None, WindowTotals]:
    """For each window ``W`` (microseconds; ``None`` = all history), per query row: the count and
    value sums of its key's events with time in ``[t - W, t)``.

    Event values must be integers (they are summed exactly as int64).
    """
    query_keys = np.asarray(query_keys, dtype=np.int64)
    query_times = np.asarray(query_times, dtype=np.int64)
    has_key = query_keys >= 0
    if len(event_keys) == 0 or len(query_keys) == 0:
        zeros = np.zeros(len(query_keys), dtype=np.int64)
        return {
            window: WindowTotals(zeros, {name: zeros for name in event_values}, has_key)
            for window in windows
        }
    lows = [query_times - window for window in windows if window is not None]
    n_keys = int(max(event_keys.max(), query_keys.max())) + 1
    encode = _Encoder(n_keys, [np.asarray(event_times, dtype=np.int64), query_times, *lows])

    codes = encode(event_keys, event_times)
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    running = {
        name: np.concatenate(([0], np.cumsum(np.asarray(values, dtype=np.int64)[order])))
        for name, values in event_values.items()
    }
    # Searching in key-then-time order walks the sorted events once instead of jumping about.
    safe_keys = np.where(has_key, query_keys, 0)
    upper_codes = encode(safe_keys, query_times)
    walk = np.argsort(upper_codes, kind="stable")
    upper = np.empty(len(walk), dtype=np.int64)
    upper[walk] = np.searchsorted(sorted_codes, upper_codes[walk], side="left")
    results: dict[int | None, WindowTotals] = {}
    for window in windows:
        if window is None:
            lower_codes = encode.block_start(safe_keys)
        else:
            lower_codes = encode(safe_keys, query_times - window)
        lower = np.empty(len(walk), dtype=np.int64)
        lower[walk] = np.searchsorted(sorted_codes, lower_codes[walk], side="left")
        count = np.where(has_key, upper - lower, 0)
        sums = {
            name: np.where(has_key, totals[upper] - totals[lower], 0)
            for name, totals in running.items()
        }
        results[window] = WindowTotals(count, sums, has_key)
    return results


def events_before(
    event_keys: np.ndarray,
    event_times: np.ndarray,
    query_keys: np.ndarray,
    query_times: np.ndarray,
    depth: int,
) -> np.ndarray:
    """Per query row, the positions (in the event arrays) of its key's last ``depth`` events
    strictly before ``t``, newest first: an ``(n, depth)`` int64 array, -1 where the key had
    fewer (or the row has no key). Events at the same moment keep their given order, the later
    one counting as newer.

    What :func:`trailing_totals` is to sums, this is to values that do not add up (the last
    price paid, a median of the last few): the same sort and one binary search per row.
    """
    query_keys = np.asarray(query_keys, dtype=np.int64)
    query_times = np.asarray(query_times, dtype=np.int64)
    found = np.full((len(query_keys), depth), -1, dtype=np.int64)
    if len(event_keys) == 0 or len(query_keys) == 0:
        return found
    has_key = query_keys >= 0
    safe_keys = np.where(has_key, query_keys, 0)
    n_keys = int(max(np.max(event_keys), query_keys.max())) + 1
    encode = _Encoder(n_keys, [np.asarray(event_times, dtype=np.int64), query_times])
    codes = encode(np.asarray(event_keys, dtype=np.int64), np.asarray(event_times))
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    query_codes = encode(safe_keys, query_times)
    walk = np.argsort(query_codes, kind="stable")  # key-then-time order: one pass over events
    upper = np.empty(len(walk), dtype=np.int64)
    upper[walk] = np.searchsorted(sorted_codes, query_codes[walk], side="left")
    lower = np.empty(len(walk), dtype=np.int64)
    lower[walk] = np.searchsorted(sorted_codes, encode.block_start(safe_keys[walk]), side="left")
    positions = upper[:, None] - np.arange(1, depth + 1)[None, :]
    valid = (positions >= lower[:, None]) & has_key[:, None]
    return np.where(valid, order[np.maximum(positions, 0)], found)


def level_before(
    event_keys: np.ndarray,
    event_times: np.ndarray,
    deltas: np.ndarray,
    query_keys: np.ndarray,
    query_times: np.ndarray,
) -> np.ndarray:
    """The running sum of a key's signed deltas (a stock level, a queue length) just before each
    query's moment, as float64 with NaN for a query without a key."""
    totals = trailing_totals(
        event_keys, event_times, {"level": deltas}, query_keys, query_times, [None]
    )[None]
    return np.where(totals.has_key, totals.sums["level"], np.nan).astype(np.float64)


def shrunk_rate(
    successes: np.ndarray, trials: np.ndarray, prior: np.ndarray, strength: float
) -> np.ndarray:
    """``(k + m * g) / (n + m)``: a rate over few events pulled toward the prior ``g`` as if ``m``
    more events had happened at the prior's rate (NaN where the prior is unknown)."""
    return (successes + strength * prior) / (trials + strength)


def rate_before(successes: np.ndarray, trials: np.ndarray) -> np.ndarray:
    """``k / n``, NaN where nothing has happened yet."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(trials > 0, successes / np.maximum(trials, 1), np.nan)
