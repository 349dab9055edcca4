"""The SCMS price and freight comparisons are point-in-time: a brute-force recomputation per line
(other lines of the key delivered strictly before the line's moment, newest ``WINDOW``) equals
the vectorised one; rewriting or adding lines delivered at or after a line's moment changes
nothing of that line's comparisons, on a synthetic history and on the real file; a line is
never compared with itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from erp_core.domain.errors import InvalidValue
from erp_core.importers.scms import read_scms
from features.scms import LEAD_DAYS
from features.scms_pricing import (
    COMPARISONS,
    FRAGILE_MIN_N,
    SIGNALS,
    WINDOW,
    build_scms_pricing_features,
    formulation,
    line_values,
    shipment_totals,
    weight_band,
)

PRODUCTS = (
    # item description, sub-classification, units per pack, pack price, kg per pack
    ("Efavirenz 600mg, tablets, 30 Tabs", "Adult", 30, 4.60, 0.08),
    ("Efavirenz 600mg, tablets, 90 Tabs", "Adult", 90, 12.90, 0.21),
    ("Nevirapine 10mg/ml, oral suspension, Bottle, 240 ml", "Pediatric", 240, 1.95, 0.37),
    ("HIV 1/2, Determine Complete HIV Kit, 100 Tests", "HIV test", 100, 80.00, 0.45),
)
FREIGHT_RATE = {"Air": 9.0, "Truck": 2.5}


def priced_lines(count: int = 500, seed: int = 5) -> pd.DataFrame:
    """A small SCMS-like history with the columns read_scms gives: stable prices (3% noise),
    weights in proportion to packs, freight per kg falling with weight. Delivery days are unique
    (so "the newest WINDOW" has one answer); a line's scheduled date is 20 days before to 60
    after its delivery, so some lines are delivered before their own moment."""
    rng = np.random.default_rng(seed)
    product = rng.integers(0, len(PRODUCTS), count)
    delivered = pd.Timestamp("2008-01-01") + pd.to_timedelta(
        rng.choice(3000, count, replace=False), "D"
    )
    scheduled = delivered + pd.to_timedelta(rng.integers(-20, 60, count), "D")
    quantity = rng.integers(10, 5000, count)
    base = np.array([PRODUCTS[p][3] for p in product])
    vendor = rng.choice(["V1", "V2"], count)
    pack = np.round(base * np.exp(rng.normal(0, 0.03, count)) * np.where(vendor == "V2", 1.2, 1), 2)
    units = np.array([PRODUCTS[p][2] for p in product])
    kg_per_pack = np.array([PRODUCTS[p][4] for p in product])
    weight = np.round(quantity * kg_per_pack * np.exp(rng.normal(0, 0.05, count)), 0) + 1
    mode = rng.choice(["Air", "Truck"], count)
    rate = np.array([FREIGHT_RATE[m] for m in mode]) * (weight / 100) ** -0.4
    freight = np.round(weight * rate * np.exp(rng.normal(0, 0.3, count)), 2)
    freight = np.where(rng.random(count) < 0.2, np.nan, freight)  # "included in commodity cost"
    return pd.DataFrame(
        {
            "line_id": np.arange(1, count + 1) * 3,
            "project_code": rng.choice(["102-NG-T01", "116-ZA-T30"], count),
            "item_description": [PRODUCTS[p][0] for p in product],
            "sub_classification": [PRODUCTS[p][1] for p in product],
            "molecule": [PRODUCTS[p][0].split(" ")[0] for p in product],
            "vendor": vendor,
            "country": rng.choice(["Nigeria", "South Africa"], count),
            "shipment_mode": mode,
            "units_per_pack": units,
            "quantity_packs": quantity,
            "line_value_usd": np.round(pack * quantity, 2),
            "pack_price_usd": pack,
            "unit_price_usd": np.round(pack / units, 2),
            "weight_kg": weight,
            "freight_usd": freight,
            "freight_booked_on_id": pd.array([pd.NA] * count, dtype="Int64"),
            "scheduled_delivery_date": scheduled,
            "delivered_date": delivered,
        }
    )


def _brute_force(lines: pd.DataFrame, name: str, i: int) -> tuple[int, float]:
    """The count and median of a comparison for line ``i``, straight from the definition."""
    comparison = COMPARISONS[name]
    keyed = lines.assign(
        formulation=lines["item_description"].map(formulation),
        weight_band=weight_band(lines["weight_kg"]),
    )
    values = line_values(keyed, shipment_totals(lines)["shipment_lines"])[comparison.value]
    moment = lines.at[i, "scheduled_delivery_date"] - pd.Timedelta(days=LEAD_DAYS)
    same = pd.Series(True, index=lines.index)
    for column in comparison.key:
        if pd.isna(keyed.at[i, column]):
            return 0, float("nan")
        same &= keyed[column] == keyed.at[i, column]
    earlier = same & (lines["delivered_date"] < moment) & (values > 0) & (lines.index != i)
    history = values[earlier.fillna(False)]
    order = lines.loc[history.index, "delivered_date"].sort_values(ascending=False).index
    newest = history.loc[order[:WINDOW]]
    median = float(np.exp(np.median(np.log(newest)))) if len(newest) else float("nan")
    return len(history), median


def test_every_comparison_counts_other_lines_delivered_strictly_before_the_moment() -> None:
    lines = priced_lines()
    frame = build_scms_pricing_features(lines)
    for i in lines.sample(60, random_state=2).index:
        for name in COMPARISONS:
            n, median = _brute_force(lines, name, i)
            assert frame.at[i, f"{name}_n"] == n, (name, i)
            if n:
                assert frame.at[i, f"{name}_median"] == pytest.approx(median, rel=1e-12)
            else:
                assert np.isnan(frame.at[i, f"{name}_median"]), (name, i)


def test_the_median_is_over_the_newest_window_only() -> None:
    lines = priced_lines(count=400)
    product = PRODUCTS[0][0]
    of_product = lines["item_description"] == product
    # the product's first deliveries at ten times the price: once WINDOW newer ones exist,
    # they no longer move the median
    first = lines[of_product].sort_values("delivered_date").index[:20]
    lines.loc[first, "pack_price_usd"] *= 10
    frame = build_scms_pricing_features(lines)
    late = of_product & (frame["product_n"] >= WINDOW + 20)
    assert late.any()
    assert (frame.loc[late, "product_median"] < 6).all()
    early = of_product & frame["product_n"].between(1, 20)
    assert (frame.loc[early, "product_median"] > 40).all()


def test_lines_delivered_at_or_after_a_line_s_moment_change_nothing_of_it() -> None:
    lines = priced_lines()
    before = build_scms_pricing_features(lines)
    cut = pd.Timestamp("2011-06-01")
    changed = lines.copy()
    later = changed["delivered_date"] >= cut
    for column in ("pack_price_usd", "line_value_usd", "freight_usd"):
        changed.loc[later, column] *= 7
    changed.loc[later, "weight_kg"] *= 3
    changed.loc[later, "units_per_pack"] *= 2
    extra = priced_lines(count=200, seed=11)
    extra["line_id"] += 100_000
    extra["delivered_date"] = cut + pd.to_timedelta(np.arange(len(extra)), "D")
    extra["scheduled_delivery_date"] = extra["delivered_date"]
    after = build_scms_pricing_features(pd.concat([changed, extra], ignore_index=True))
    after = after.iloc[: len(lines)]
    moment = lines["scheduled_delivery_date"] - pd.Timedelta(days=LEAD_DAYS)
    known = (moment <= cut) & ~later
    assert known.sum() > 150
    pd.testing.assert_frame_equal(before[known], after[known])
    # a rewritten line whose moment is before the cut keeps its comparisons (its own values
    # changed, so its z may move), but for those keyed by what was rewritten (its units per pack)
    rewritten = (moment <= cut) & later
    assert rewritten.sum() >= 3
    statistics = [
        c
        for c in before.columns
        if c.endswith(("_n", "_median", "_expected", "_spread"))
        and not c.startswith(("pack_size_weight", "product_weight", "weight_per_pack"))
    ]
    pd.testing.assert_frame_equal(
        before.loc[rewritten, statistics], after.loc[rewritten, statistics]
    )
    assert not before[~known].equals(after[~known])


def test_a_line_is_never_compared_with_itself() -> None:
    lines = priced_lines()
    frame = build_scms_pricing_features(lines)
    moment = lines["scheduled_delivery_date"] - pd.Timedelta(days=LEAD_DAYS)
    # lines delivered before their own moment would fall in their own history
    early = lines.index[lines["delivered_date"] < moment]
    assert len(early) > 20
    statistics = [c for c in frame.columns if c.endswith(("_n", "_median", "_expected", "_spread"))]
    weighed = [c for c in statistics if c.startswith(("product_weight", "pack_size", "weight_"))]
    for i in early[:10]:
        own = lines.copy()
        own.loc[i, ["pack_price_usd", "line_value_usd", "freight_usd"]] *= 1000
        again = build_scms_pricing_features(own)
        pd.testing.assert_series_equal(frame.loc[i, statistics], again.loc[i, statistics])
        assert abs(again.at[i, "pack_price_z"]) > 20  # and it is far from what it is compared with
        # the weight decides the line's freight band, so only the weight comparisons stay put
        own.loc[i, "weight_kg"] *= 1000
        again = build_scms_pricing_features(own)
        pd.testing.assert_series_equal(frame.loc[i, weighed], again.loc[i, weighed])
        assert again.at[i, "weight_per_pack_z"] > 20
    alone = priced_lines(count=3)
    alone["item_description"] = [
        "A, tablets, 30 Tabs",
        "B, tablets, 30 Tabs",
        "C, tablets, 30 Tabs",
    ]
    alone["scheduled_delivery_date"] = alone["delivered_date"] + pd.Timedelta(days=90)
    lonely = build_scms_pricing_features(alone)
    assert (lonely["product_n"] == 0).all()
    assert lonely["pack_price_z"].isna().all()


def test_a_product_vendor_without_history_is_compared_with_the_product() -> None:
    lines = priced_lines()
    late = lines["delivered_date"].idxmax()
    lines.loc[late, "vendor"] = "A new vendor"
    lines.loc[late, "scheduled_delivery_date"] = lines.loc[late, "delivered_date"]
    frame = build_scms_pricing_features(lines)
    assert frame.at[late, "product_vendor_n"] == 0
    assert frame.at[late, "pack_price_expected"] == pytest.approx(frame.at[late, "product_median"])
    seasoned = frame["product_vendor_n"] >= 100
    ratio = (
        frame.loc[seasoned, "pack_price_expected"] / frame.loc[seasoned, "product_vendor_median"]
    )
    assert ratio.between(0.97, 1.03).all()  # 100 own values outweigh the product's 5 pseudo-values


def test_freight_and_weight_need_five_earlier_values_to_be_compared() -> None:
    lines = priced_lines(count=12)
    lines["shipment_mode"] = "Air"
    lines["country"] = "Nigeria"
    lines["item_description"] = PRODUCTS[0][0]
    lines["weight_kg"] = lines["quantity_packs"] * 0.08 + 150  # one weight band
    lines["weight_kg"] = lines["weight_kg"].clip(upper=999)
    lines["freight_usd"] = lines["weight_kg"] * 4.0
    lines["scheduled_delivery_date"] = lines["delivered_date"] + pd.Timedelta(days=LEAD_DAYS + 1)
    frame = build_scms_pricing_features(lines).loc[lines.sort_values("delivered_date").index]
    assert FRAGILE_MIN_N == 5
    n = frame["lane_band_n"].to_numpy()
    assert list(n) == list(range(12))
    assert frame["freight_per_kg_z"].isna().to_numpy().tolist() == [k < 5 for k in range(12)]
    assert frame["weight_per_pack_z"].isna().to_numpy().tolist() == [k < 5 for k in range(12)]
    assert frame["pack_price_z"].isna().to_numpy().tolist() == [k < 1 for k in range(12)]


def test_shipment_totals_add_the_lines_whose_freight_is_booked_on_a_line() -> None:
    lines = priced_lines(count=4)
    lines["line_value_usd"] = [100.0, 250.0, 40.0, 10.0]
    lines["quantity_packs"] = [1, 2, 3, 4]
    lines["freight_booked_on_id"] = pd.array([pd.NA, lines.at[0, "line_id"], pd.NA, pd.NA], "Int64")
    totals = shipment_totals(lines)
    assert totals["shipment_value_usd"].tolist()[0] == 350.0
    assert totals["shipment_packs"].tolist()[0] == 3
    assert totals["shipment_lines"].tolist()[0] == 2
    assert np.isnan(totals["shipment_value_usd"].iat[1])  # its freight is on line 0
    assert totals["shipment_value_usd"].tolist()[2:] == [40.0, 10.0]
    weights = line_values(lines, totals["shipment_lines"])["weight_per_pack"]
    assert np.isnan(weights.iat[0])  # the weight of two lines is nobody's weight per pack
    assert weights.iat[2] == pytest.approx(lines.at[2, "weight_kg"] / 3)


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("Efavirenz 600mg, tablets, 30 Tabs", "Efavirenz 600mg, tablets"),
        ("Abacavir 20mg/ml, oral solution, Bottle, 240 ml", "Abacavir 20mg/ml, oral solution"),
        (
            "Ritonavir 100mg [Norvir], capsules, cool, 4 x 84 Caps",
            "Ritonavir 100mg [Norvir], capsules, cool",
        ),
        (
            "Abacavir 300mg [Ziagen], tablets, Blister 6 x 10 Tabs",
            "Abacavir 300mg [Ziagen], tablets",
        ),
        (
            "Artesunate+Amodiaquine 50+153mg, tablets, co-blister 6+6 Tabs",
            "Artesunate+Amodiaquine 50+153mg, tablets",
        ),
        ("HIV 1/2, Determine Complete HIV Kit, 100 Tests", "HIV 1/2, Determine Complete HIV Kit"),
        ("Chase Buffer", "Chase Buffer"),
    ],
)
def test_a_formulation_is_the_item_without_its_pack_size(item: str, expected: str) -> None:
    assert formulation(item) == expected


def test_weight_bands_split_at_100_kg_1_t_and_10_t() -> None:
    bands = weight_band(pd.Series([0.0, 5.0, 99.9, 100.0, 999.0, 1000.0, 10_000.0, np.nan]))
    assert bands.tolist()[1:7] == [
        "under 100 kg",
        "under 100 kg",
        "100 kg to 1 t",
        "100 kg to 1 t",
        "1 to 10 t",
        "over 10 t",
    ]
    assert pd.isna(bands.iat[0]) and pd.isna(bands.iat[7])


def test_a_frame_without_a_needed_column_is_refused_by_name() -> None:
    with pytest.raises(InvalidValue) as error:
        build_scms_pricing_features(priced_lines(count=5).drop(columns=["weight_kg"]))
    assert error.value.value == "weight_kg"


def test_on_the_real_file_later_deliveries_change_nothing_before_the_cut(
    scms_path: Path,
) -> None:
    lines = read_scms(scms_path).lines
    before = build_scms_pricing_features(lines)
    cut = pd.Timestamp("2012-01-01")
    changed = lines.copy()
    later = changed["delivered_date"] >= cut
    for column in ("pack_price_usd", "line_value_usd", "freight_usd", "weight_kg"):
        changed.loc[later, column] *= 10
    after = build_scms_pricing_features(changed)
    moment = lines["scheduled_delivery_date"] - pd.Timedelta(days=LEAD_DAYS)
    known = (moment <= cut) & ~later
    # freight booked on an earlier line by a rewritten later one changes that shipment's value
    own_shipment = [c for c in before.columns if c.startswith("shipment_")]
    assert known.sum() > 4000
    pd.testing.assert_frame_equal(
        before.loc[known].drop(columns=own_shipment), after.loc[known].drop(columns=own_shipment)
    )
    assert set(SIGNALS) == {"pack_price", "unit_price", "freight_per_kg", "weight_per_pack"}
    for value in SIGNALS:  # and every kind is compared on thousands of real lines
        assert before[f"{value}_z"].notna().sum() > 4000, value
