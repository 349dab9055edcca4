"""The SCMS point-in-time features never see an outcome after the line's moment of prediction:
a brute-force recomputation per line equals the vectorised one, and rewriting the outcomes of
lines delivered after a line's moment leaves its features unchanged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.scms import LEAD_DAYS, PRIOR_WEIGHT, RATE_KEYS, build_scms_features


def _lines(count: int = 400, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    scheduled = pd.Timestamp("2010-01-01") + pd.to_timedelta(rng.integers(0, 900, count), "D")
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


def test_each_rate_counts_only_lines_delivered_strictly_before_the_moment() -> None:
    lines = _lines()
    frame = build_scms_features(lines)
    for index in lines.sample(40, random_state=1).index:
        moment = lines.at[index, "scheduled_delivery_date"] - pd.Timedelta(days=LEAD_DAYS)
        history = lines[lines["delivered_date"] < moment]
        n = len(history)
        global_rate = (history["late"].sum() + 10.0 * 0.1) / (n + 10.0)
        assert frame.at[index, "global_late_rate"] == pytest.approx(global_rate)
        for name, keys in RATE_KEYS.items():
            same = history
            for key in keys:
                same = same[same[key] == lines.at[index, key]]
            expected = (same["late"].sum() + PRIOR_WEIGHT * global_rate) / (
                len(same) + PRIOR_WEIGHT
            )
            assert frame.at[index, f"{name}_late_rate"] == pytest.approx(expected), name
            assert frame.at[index, f"{name}_history_lines"] == len(same), name


def test_outcomes_after_a_line_s_moment_do_not_change_its_features() -> None:
    lines = _lines()
    before = build_scms_features(lines)
    cut = pd.Timestamp("2011-01-01")
    changed = lines.copy()
    after_cut = changed["delivered_date"] >= cut
    changed.loc[after_cut, "late"] = ~changed.loc[after_cut, "late"]
    changed.loc[after_cut, "delivered_date"] += pd.Timedelta(days=5)
    after = build_scms_features(changed)
    known_before_cut = lines["scheduled_delivery_date"] - pd.Timedelta(days=LEAD_DAYS) <= cut
    assert known_before_cut.sum() > 50
    pd.testing.assert_frame_equal(before[known_before_cut], after[known_before_cut])
    assert not before[~known_before_cut].equals(after[~known_before_cut])


def test_a_purchase_order_sent_after_the_moment_is_not_known() -> None:
    lines = _lines(50)
    moment = lines["scheduled_delivery_date"] - pd.Timedelta(days=LEAD_DAYS)
    lines["po_sent_date"] = moment + pd.Timedelta(days=1)
    assert build_scms_features(lines)["po_to_schedule_days"].isna().all()
