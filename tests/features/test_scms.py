"""The SCMS point-in-time features never see an outcome after the line's moment of prediction:
a brute-force recomputation per line equals the vectorised one (whole history and each window,
rates, days late and counts), and rewriting the outcomes or delivery dates of lines delivered
after a line's moment leaves every feature of that line unchanged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.scms import (
    GLOBAL_PRIOR_DAYS,
    GLOBAL_PRIOR_RATE,
    GLOBAL_PRIOR_WEIGHT,
    LEAD_DAYS,
    PRIOR_WEIGHT,
    RATE_KEYS,
    build_scms_features,
)

WINDOWS = (30, 90)


def _lines(
    count: int = 400, seed: int = 3, days: int = 900, start: str = "2010-01-01"
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    scheduled = pd.Timestamp(start) + pd.to_timedelta(rng.integers(0, days, count), "D")
    delivered = scheduled + pd.to_timedelta(rng.integers(-60, 40, count), "D")
    po = scheduled - pd.to_timedelta(rng.integers(10, 120, count), "D")
    return pd.DataFrame(
        {
            "vendor": rng.choice(["V1", "V2", "V3", "SCMS from RDC"], count),
            "country": rng.choice(["Nigeria", "Uganda", "Haiti"], count),
            "shipment_mode": rng.choice(["Air", "Truck", "Ocean"], count),
            "fulfill_via": rng.choice(["From RDC", "Direct Drop"], count),
            "manufacturing_site": rng.choice(["S1", "S2"], count),
            "product_group": rng.choice(["ARV", "HRDT"], count),
            "sub_classification": rng.choice(["Adult", "Pediatric"], count),
            "inco_term": rng.choice(["EXW", "DDP"], count),
            "quantity_packs": rng.integers(1, 1000, count),
            "line_value_usd": rng.uniform(10, 1e5, count),
            "pack_price_usd": rng.uniform(1, 100, count),
            "units_per_pack": rng.integers(1, 240, count),
            "scheduled_delivery_date": scheduled,
            "delivered_date": delivered,
            "po_sent_date": po.where(rng.random(count) < 0.5),
            "late": delivered > scheduled,
        }
    )


def _expected(history: pd.DataFrame, prior_rate: float, prior_days: float, weight: float):  # type: ignore[no-untyped-def]
    days_late = (history["delivered_date"] - history["scheduled_delivery_date"]).dt.days.clip(
        lower=0
    )
    n = len(history)
    rate = (history["late"].sum() + weight * prior_rate) / (n + weight)
    days = (days_late.sum() + weight * prior_days) / (n + weight)
    return n, rate, days


def test_each_feature_counts_only_lines_delivered_strictly_before_the_moment() -> None:
    lines = _lines()
    frame = build_scms_features(lines, windows=WINDOWS)
    for index in lines.sample(40, random_state=1).index:
        moment = lines.at[index, "scheduled_delivery_date"] - pd.Timedelta(days=LEAD_DAYS)
        for days in (None, *WINDOWS):
            since = pd.Timestamp.min if days is None else moment - pd.Timedelta(days=days)
            history = lines[(lines["delivered_date"] < moment) & (lines["delivered_date"] >= since)]
            suffix = "" if days is None else f"_{days}d"
            count = "history_lines" if days is None else f"lines{suffix}"
            n, global_rate, global_days = _expected(
                history, GLOBAL_PRIOR_RATE, GLOBAL_PRIOR_DAYS, GLOBAL_PRIOR_WEIGHT
            )
            assert frame.at[index, f"global_late_rate{suffix}"] == pytest.approx(global_rate)
            assert frame.at[index, f"global_days_late{suffix}"] == pytest.approx(global_days)
            assert frame.at[index, f"global_{count}"] == n
            for name, keys in RATE_KEYS.items():
                same = history
                for key in keys:
                    same = same[same[key] == lines.at[index, key]]
                n, rate, days_late = _expected(same, global_rate, global_days, PRIOR_WEIGHT)
                assert frame.at[index, f"{name}_late_rate{suffix}"] == pytest.approx(rate), name
                assert frame.at[index, f"{name}_days_late{suffix}"] == pytest.approx(days_late)
                assert frame.at[index, f"{name}_{count}"] == n, (name, days)


def test_a_delivery_on_the_moment_is_not_history_and_the_window_starts_on_its_first_day() -> None:
    lines = _lines(4)
    lines["vendor"] = "V1"
    lines["scheduled_delivery_date"] = pd.to_datetime(
        ["2011-01-01", "2011-01-01", "2011-02-01", "2011-05-31"]
    )
    moment = pd.Timestamp("2011-05-31") - pd.Timedelta(days=LEAD_DAYS)
    lines["delivered_date"] = [
        moment - pd.Timedelta(days=91),  # before the 90-day window: history only
        moment - pd.Timedelta(days=90),  # the window's first day: in both
        moment,  # on the moment: not yet history
        pd.Timestamp("2011-06-01"),
    ]
    lines["late"] = True
    frame = build_scms_features(lines, windows=(90,))
    assert frame.loc[3, "vendor_history_lines"] == 2
    assert frame.loc[3, "vendor_lines_90d"] == 1


def test_outcomes_after_a_line_s_moment_do_not_change_its_features() -> None:
    lines = _lines()
    before = build_scms_features(lines, windows=WINDOWS)
    cut = pd.Timestamp("2011-01-01")
    changed = lines.copy()
    after_cut = changed["delivered_date"] >= cut
    changed.loc[after_cut, "late"] = ~changed.loc[after_cut, "late"]
    changed.loc[after_cut, "delivered_date"] += pd.Timedelta(days=5)
    after = build_scms_features(changed, windows=WINDOWS)
    known_before_cut = lines["scheduled_delivery_date"] - pd.Timedelta(days=LEAD_DAYS) <= cut
    assert known_before_cut.sum() > 50
    pd.testing.assert_frame_equal(before[known_before_cut], after[known_before_cut])
    assert not before[~known_before_cut].equals(after[~known_before_cut])


def test_a_line_delivered_after_every_moment_changes_no_other_line_s_features() -> None:
    lines = _lines()
    before = build_scms_features(lines, windows=WINDOWS)
    last = lines["delivered_date"].idxmax()
    latest_moment = (lines["scheduled_delivery_date"] - pd.Timedelta(days=LEAD_DAYS)).max()
    assert lines.at[last, "delivered_date"] >= latest_moment
    changed = lines.copy()
    changed.at[last, "late"] = not changed.at[last, "late"]
    changed.at[last, "delivered_date"] += pd.Timedelta(days=400)
    after = build_scms_features(changed, windows=WINDOWS)
    pd.testing.assert_frame_equal(before, after)


def test_a_purchase_order_sent_after_the_moment_is_not_known() -> None:
    lines = _lines(50)
    moment = lines["scheduled_delivery_date"] - pd.Timedelta(days=LEAD_DAYS)
    lines["po_sent_date"] = moment + pd.Timedelta(days=1)
    assert build_scms_features(lines)["po_to_schedule_days"].isna().all()


@pytest.mark.parametrize("window", [0, -30, 1.5])
def test_a_window_that_is_not_a_positive_number_of_days_is_refused(window: object) -> None:
    with pytest.raises(ValueError, match="windows"):
        build_scms_features(_lines(20), windows=(window,))  # type: ignore[arg-type]
