import numpy as np

from features.registry import LATE_SHIPMENT
from training.reasons import PHRASES, phrase, top_reasons

NAMES = ["pick_backlog_ratio", "lane_ontime_delivery_rate_28d", "customer_tier", "mystery"]


def test_reasons_are_the_features_that_raised_the_risk_most_in_words():
    contributions = np.array([0.8, 0.3, -0.5, 0.1, -2.0])  # last column is the bias
    reasons = top_reasons(contributions, [2.34, 0.71, "gold", 5], NAMES, limit=2)
    assert [r.feature for r in reasons] == ["pick_backlog_ratio", "lane_ontime_delivery_rate_28d"]
    assert reasons[0].text == "pick backlog at the location is 2.3x its daily pick capacity"
    assert reasons[1].text == "the carrier lane delivered 71% on time in 28 days"


def test_features_that_lowered_the_risk_are_never_reasons():
    contributions = np.array([-0.8, -0.3, -0.5, 0.1, 3.0])
    reasons = top_reasons(contributions, [2.0, 0.9, "gold", 5], NAMES, limit=3)
    assert [r.feature for r in reasons] == ["mystery"]


def test_a_carrier_alert_reads_as_the_announced_disruption():
    assert phrase("region_alert_severity", 2) == (
        "carriers announced a severity-2 disruption in the ship region"
    )


def test_a_feature_without_a_phrase_or_value_is_named_as_it_is():
    assert phrase("mystery", 5) == "mystery = 5"
    assert phrase("pick_backlog_ratio", float("nan")) == "pick_backlog_ratio = nan"


def test_reasons_name_the_location_and_carrier_when_the_caller_knows_them():
    context = {"location": "DAL", "carrier": "Swift"}
    assert phrase("pick_backlog_ratio", 2.34, context) == (
        "pick backlog at DAL is 2.3x its daily pick capacity"
    )
    assert phrase("lane_ontime_delivery_rate_28d", 0.71, context) == (
        "Swift on-time 71% on this lane in 28 days"
    )
    assert phrase("pick_backlog_ratio", 2.34, {"carrier": "Swift"}) == (
        "pick backlog at the location is 2.3x its daily pick capacity"
    )


def test_every_late_shipment_feature_has_a_sentence_a_person_can_read():
    missing = [spec.name for spec in LATE_SHIPMENT.features if spec.name not in PHRASES]
    assert missing == []
    assert phrase("backorder_slack_bdays", 1.0) == (
        "1 business days of slack from the expected receipt to the promised ship date"
    )
