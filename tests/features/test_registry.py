"""The catalogue: every feature declared once, with a description, in a known entity, and the
labels kept apart from the features."""

from __future__ import annotations

import pytest

from erp_core.domain.errors import InvalidValue
from features.registry import ENTITIES, FEATURE_SETS, LATE_SHIPMENT, all_features, feature_set


def test_every_feature_has_an_entity_a_dtype_a_group_and_a_sentence() -> None:
    for declared, spec in all_features():
        assert spec.entity in ENTITIES
        assert spec.entity == declared.entity
        assert spec.group
        assert len(spec.description) > 20, spec.name
        assert spec.dtype in ("float64", "int64", "bool", "category")


def test_names_are_unique_and_labels_are_not_features() -> None:
    for declared in FEATURE_SETS.values():
        names = [column.name for column in declared.columns]
        assert len(names) == len(set(names))
        assert all(label.startswith("label_") for label in declared.label_names)
        assert not any(name.startswith("label_") for name in declared.feature_names)


def test_the_late_shipment_set_has_the_features_the_issue_asks_for() -> None:
    names = set(LATE_SHIPMENT.feature_names)
    for required in (
        "promised_ship_lead_bdays",
        "stock_cover",
        "needs_backorder",
        "transfer",
        "split",
        "pick_backlog_ratio",
        "location_ontime_ship_rate_14d",
        "location_ontime_ship_rate_56d",
        "lane_ontime_delivery_rate_28d",
        "lane_transit_spread_90d",
        "supplier_days_late_56d",
        "customer_tier",
        "order_weight_kg",
        "expedite",
        "days_to_quarter_end",
        "holiday_within_2bd",
        "peak_season",
        "abc_class",
    ):
        assert required in names


def test_the_builder_is_named_not_imported_until_used() -> None:
    builder = LATE_SHIPMENT.load_builder()
    assert builder.__name__ == "late_shipment_frame"


def test_an_unknown_set_is_refused_naming_it_and_the_sets_there_are() -> None:
    with pytest.raises(InvalidValue) as refused:
        feature_set("late_shipments")
    assert refused.value.field == "set"
    assert "late_shipments" in refused.value.message
    assert "late_shipment" in refused.value.message.split("known:")[1]


def test_the_demand_and_pricing_sets_have_the_features_the_issue_asks_for() -> None:
    demand = set(feature_set("demand").feature_names)
    for required in (
        "demand_lag_1d",
        "demand_lag_28d",
        "demand_mean_91d",
        "demand_zero_share_7d",
        "demand_std_28d",
        "weekday",
        "holiday",
        "peak_season",
        "promo_discount",
        "price_level_91d",
        "item_age_days",
        "intermittency_class",
        "abc_class",
        "product_category",
    ):
        assert required in demand
    pricing = set(feature_set("pricing").feature_names)
    for required in (
        "list_price",
        "tier_price",
        "quantity_break_price",
        "unit_price",
        "discount_vs_tier",
        "unit_cost",
        "price_cost_ratio",
        "customer_last_price",
        "customer_median_price_5",
        "tier_median_price_90d",
        "units_to_customer_usual",
        "channel",
        "discount_beyond_threshold",
    ):
        assert required in pricing
    assert feature_set("demand").label_names == ["label_demand_units"]
    assert feature_set("pricing").label_names == []  # the truth is joined by line_id, apart
