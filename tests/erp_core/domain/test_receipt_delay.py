"""Receipt delay quantiles: the empirical quantile, its shrinkage toward broader history by
evidence, and the cut at the earliest delay still possible for a line that is still open."""

from __future__ import annotations

import pytest

from erp_core.domain.errors import InvalidValue
from erp_core.domain.receipt_delay import DelayQuantiles, delay_counts, delay_quantiles


def test_the_quantile_is_the_smallest_delay_whose_share_reaches_the_level() -> None:
    history = delay_counts([0] * 5 + [1] * 3 + [5] * 2)  # cumulative 0.5, 0.8, 1.0
    assert delay_quantiles([history]) == DelayQuantiles(p50=0, p80=1, p90=5)


def test_a_key_with_little_history_leans_on_its_parent_and_a_well_known_one_on_itself() -> None:
    parent = delay_counts([0] * 100)
    late_once = delay_counts([9])
    # 1 receipt against a prior of 10: the key weighs 1/11, so 9 days is beyond the P90.
    assert delay_quantiles([late_once, parent], prior_strength=10) == DelayQuantiles(0, 0, 0)
    always_late = delay_counts([9] * 1000)
    assert delay_quantiles([always_late, parent], prior_strength=10) == DelayQuantiles(9, 9, 9)


def test_the_weights_follow_n_over_n_plus_m() -> None:
    own = delay_counts([4] * 10)
    parent = delay_counts([0] * 50)
    # 10 own receipts, m = 10: half the mass at 4 days, half at 0.
    assert delay_quantiles([own, parent], prior_strength=10).as_tuple() == (0, 4, 4)
    # m = 40: 10 / 50 of the mass at 4 days, 0.8 at 0, which reaches the 80th percentile.
    assert delay_quantiles([own, parent], prior_strength=40).as_tuple() == (0, 0, 4)


def test_an_empty_level_passes_its_weight_to_the_next() -> None:
    parent = delay_counts([2, 2, 3, 8])
    assert delay_quantiles([{}, parent]) == delay_quantiles([parent])


def test_an_open_line_cannot_arrive_before_today() -> None:
    history = delay_counts([-1, 0, 0, 1, 2, 3, 10])
    uncut = delay_quantiles([history])
    overdue = delay_quantiles([history], at_least=2)
    assert overdue is not None and uncut is not None
    assert overdue.as_tuple() == (3, 10, 10)
    pairs = zip(overdue.as_tuple(), uncut.as_tuple(), strict=True)
    assert all(late >= early for late, early in pairs)


def test_a_line_later_than_anything_known_is_due_on_its_earliest_day() -> None:
    assert delay_quantiles([delay_counts([0, 1, 2])], at_least=6) == DelayQuantiles(6, 6, 6)


def test_no_history_at_all_says_nothing() -> None:
    assert delay_quantiles([{}, {}]) is None
    assert delay_quantiles([]) is None


@pytest.mark.parametrize(
    ("levels", "strength", "field"),
    [([{0: 1}], 0, "prior_strength"), ([{0: -1}], 10, "receipts")],
)
def test_bad_input_is_refused_naming_the_field(levels, strength, field) -> None:
    with pytest.raises(InvalidValue) as refused:
        delay_quantiles(levels, prior_strength=strength)
    assert refused.value.field == field
