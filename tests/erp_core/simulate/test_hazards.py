"""The lateness hazards: the probabilities the simulator draws fates from."""

from __future__ import annotations

import numpy as np
import pytest

from erp_core.simulate import hazards
from erp_core.simulate.world import DELAY_SUPPORT

CALM = dict(
    backlog_lines=0,
    capacity=100,
    holiday_ahead=False,
    peak=False,
    order_lines=1,
    split_part=False,
    friday=False,
    location_quality=0.0,
    approval_blocks_today=False,
)


def test_calm_day_handling_risk_is_the_base_rate():
    assert hazards.handling_late_probability(**CALM) == pytest.approx(
        hazards.sigmoid(hazards.HANDLING_BASE_LOGIT)
    )


@pytest.mark.parametrize(
    "change",
    [
        {"backlog_lines": 150},
        {"holiday_ahead": True},
        {"peak": True},
        {"order_lines": 12},
        {"split_part": True},
        {"friday": True},
        {"location_quality": 0.5},
    ],
)
def test_every_risk_factor_raises_the_handling_risk(change):
    assert hazards.handling_late_probability(
        **{**CALM, **change}
    ) > hazards.handling_late_probability(**CALM)


def test_more_backlog_never_lowers_the_risk():
    risks = [
        hazards.handling_late_probability(**{**CALM, "backlog_lines": b}) for b in range(0, 400, 10)
    ]
    assert risks == sorted(risks)


def test_discount_waiting_for_finance_cannot_ship_today():
    assert hazards.handling_late_probability(**{**CALM, "approval_blocks_today": True}) == 1.0


def test_storm_and_peak_raise_transit_risk():
    calm = hazards.transit_late_probability(-3.0, 0.0, 2, 0.0, False)
    assert hazards.transit_late_probability(-3.0, 0.0, 2, 2.0, False) > calm
    assert hazards.transit_late_probability(-3.0, 0.0, 2, 0.0, True) > calm
    assert hazards.transit_late_probability(-3.0, 0.0, 5, 0.0, False) > calm


def test_receipt_risk_is_the_conditional_tail_of_the_delay_distribution():
    pmf = np.zeros(len(DELAY_SUPPORT))
    pmf[DELAY_SUPPORT == -1] = 0.5
    pmf[DELAY_SUPPORT == 0] = 0.2
    pmf[DELAY_SUPPORT == 3] = 0.3
    # Before the expected day: late only with delay > 0.
    assert hazards.receipt_late_probability(pmf, -5) == pytest.approx(0.3)
    # One day after the expected day and still not here: only the 3-day delay is left.
    assert hazards.receipt_late_probability(pmf, 1) == pytest.approx(1.0)
    # On the expected day, not here yet: delays 0 (0.2) or 3 (0.3) remain; 3 is late.
    assert hazards.receipt_late_probability(pmf, -1) == pytest.approx(0.3 / 0.5)


def test_combined_probabilities_follow_the_independent_draws():
    hazard = hazards.LineHazard(p_stock_late=0.2, p_handling_late=0.1, p_transit_late=0.05)
    assert hazard.p_ship_late == pytest.approx(1 - 0.8 * 0.9)
    assert hazard.p_delivery_late == pytest.approx(1 - 0.8 * 0.9 * 0.95)


def test_more_capacity_lowers_the_handling_risk_of_the_same_backlog():
    queued = {**CALM, "backlog_lines": 120}
    assert hazards.handling_late_probability(
        **{**queued, "capacity": 150}
    ) < hazards.handling_late_probability(**{**queued, "capacity": 100})
