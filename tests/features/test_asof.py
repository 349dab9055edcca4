"""The as-of window arithmetic against the obvious (slow) definition, on random events, and its
edge cases: an event at exactly t is not counted, keys without events, rows without keys."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import asof
from features.asof import key_codes, level_before, shrunk_rate, trailing_totals


def brute_force(keys, times, values, query_keys, query_times, window):
    counts, sums = [], []
    for key, t in zip(query_keys, query_times, strict=True):
        low = -np.inf if window is None else t - window
        inside = (keys == key) & (times >= low) & (times < t)
        counts.append(int(inside.sum()))
        sums.append(int(values[inside].sum()))
    return np.array(counts), np.array(sums)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_window_totals_equal_the_definition_on_random_events(seed: int) -> None:
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, 5, 400)
    times = rng.integers(0, 1_000, 400)  # many ties, on purpose
    values = rng.integers(-3, 10, 400)
    query_keys = rng.integers(0, 7, 300)  # keys 5 and 6 have no events
    query_times = rng.integers(-50, 1_100, 300)
    windows = [None, 1, 50, 400]
    found = trailing_totals(keys, times, {"v": values}, query_keys, query_times, windows)
    for window in windows:
        count, total = brute_force(keys, times, values, query_keys, query_times, window)
        assert (found[window].count == count).all(), window
        assert (found[window].sums["v"] == total).all(), window


def test_an_event_at_exactly_t_is_not_yet_known() -> None:
    found = trailing_totals(
        np.array([0, 0]),
        np.array([10, 20]),
        {"v": np.array([1, 1])},
        np.array([0, 0, 0]),
        np.array([10, 11, 20]),
        [None],
    )[None]
    assert found.count.tolist() == [0, 1, 1]


def test_rows_without_a_key_get_no_totals_and_say_so() -> None:
    found = trailing_totals(
        np.array([0]),
        np.array([1]),
        {"v": np.array([5])},
        np.array([-1, 0]),
        np.array([9, 9]),
        [None],
    )[None]
    assert found.has_key.tolist() == [False, True]
    assert found.sums["v"].tolist() == [0, 5]
    level = level_before(
        np.array([0]), np.array([1]), np.array([5]), np.array([-1, 0]), np.array([9, 9])
    )
    assert np.isnan(level[0]) and level[1] == 5


def test_no_events_at_all_gives_zero_counts() -> None:
    empty = np.zeros(0, dtype=np.int64)
    found = trailing_totals(empty, empty, {"v": empty}, np.array([0, 1]), np.array([5, 6]), [10])[
        10
    ]
    assert found.count.tolist() == [0, 0]


def test_the_rank_encoding_gives_the_same_totals_when_keys_times_span_overflow(monkeypatch) -> None:
    rng = np.random.default_rng(4)
    keys, times = rng.integers(0, 4, 200), rng.integers(0, 10**12, 200)
    values = rng.integers(0, 5, 200)
    queries, query_times = rng.integers(0, 4, 100), rng.integers(0, 10**12, 100)
    direct = trailing_totals(keys, times, {"v": values}, queries, query_times, [10**11])
    monkeypatch.setattr(asof, "_COMPOSITE_LIMIT", 1)  # force the dense-rank path
    ranked = trailing_totals(keys, times, {"v": values}, queries, query_times, [10**11])
    assert (direct[10**11].sums["v"] == ranked[10**11].sums["v"]).all()
    assert (direct[10**11].count == ranked[10**11].count).all()


def test_key_codes_match_tuples_across_text_categories_and_nulls() -> None:
    event_sku = pd.Series(["A", "B", "A"], dtype="category")
    event_loc = pd.Series(["W", "W", "E"])
    query_sku = pd.Series(["A", "A", "C", None])
    query_loc = pd.Series(["E", "W", "W", "W"], dtype="category")
    events, queries = key_codes([event_sku, event_loc], [query_sku, query_loc])
    assert queries[0] == events[2]  # (A, E)
    assert queries[1] == events[0]  # (A, W)
    assert queries[2] not in set(events)  # (C, W): a key of its own, without events
    assert queries[3] == -1  # a null part


def test_a_shrunk_rate_moves_from_the_prior_to_the_evidence_as_events_accumulate() -> None:
    prior = np.array([0.9, 0.9, 0.9])
    rates = shrunk_rate(np.array([0, 5, 500]), np.array([0, 10, 1000]), prior, 20)
    assert rates[0] == pytest.approx(0.9)
    assert rates[1] == pytest.approx((5 + 18) / 30)
    assert abs(rates[2] - 0.5) < 0.02


@pytest.mark.parametrize("seed", [1, 2])
def test_events_before_are_the_keys_last_events_strictly_before_t_newest_first(seed: int) -> None:
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, 4, 300)
    times = rng.integers(0, 500, 300)  # ties, on purpose: the later position counts as newer
    query_keys = np.append(rng.integers(0, 6, 200), -1)  # 4, 5: no events; -1: no key
    query_times = np.append(rng.integers(-10, 520, 200), 100)
    found = asof.events_before(keys, times, query_keys, query_times, 3)
    for row, (key, t) in enumerate(zip(query_keys, query_times, strict=True)):
        before = [i for i in range(len(keys)) if keys[i] == key and times[i] < t and key >= 0]
        newest = sorted(before, key=lambda i: (times[i], i), reverse=True)[:3]
        assert found[row].tolist() == newest + [-1] * (3 - len(newest))
