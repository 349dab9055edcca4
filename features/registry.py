"""Every feature declared once, as data: its name, entity, dtype, one-line description (which says
how it is computed as of a moment ``t``), group, and the checks a frame must pass before it is
written.

The declarations are plain dataclasses, so listing the catalogue (``erpx features list``) imports
neither pandas nor the database; the pipelines that compute a set are named by a dotted path and
imported only when a frame is built. A label is declared apart from the features (``LabelSpec``)
so no training job can take an outcome for an input by accident.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from erp_core.domain.errors import InvalidValue

Entity = Literal["order_line", "sku_location_day", "priced_line", "po_line"]
Dtype = Literal["float64", "int64", "bool", "category", "datetime64[us, UTC]"]
ENTITIES: tuple[Entity, ...] = ("order_line", "sku_location_day", "priced_line", "po_line")
"""``po_line``: an open purchase-order line as of a moment (``features.inbound``, which builds its
frame from purchase-order history rather than the order-line history of ``features build``)."""


@dataclass(frozen=True)
class Check:
    """What a valid column looks like: bounds on its values and the share of nulls it may hold.

    A null share above ``max_null_share`` usually means a join lost its keys; the bounds catch
    sign errors and unit slips (a rate above 1, a negative backlog).
    """

    minimum: float | None = None
    maximum: float | None = None
    max_null_share: float = 0.0


@dataclass(frozen=True)
class FeatureSpec:
    """One model input, as known at the row's moment ``t``."""

    name: str
    entity: Entity
    dtype: Dtype
    description: str
    group: str
    check: Check = field(default_factory=Check)


@dataclass(frozen=True)
class LabelSpec:
    """An outcome to learn, known only after ``t``: a frame carries it beside the features, never
    among them."""

    name: str
    dtype: Dtype
    description: str
    check: Check = field(default_factory=lambda: Check(0.0, 1.0, max_null_share=1.0))


@dataclass(frozen=True)
class KeySpec:
    """A column that identifies the row (entity id, moment); neither input nor outcome."""

    name: str
    dtype: Dtype
    description: str
    check: Check = field(default_factory=Check)


ColumnSpec = FeatureSpec | LabelSpec | KeySpec


@dataclass(frozen=True)
class FeatureSet:
    """The features one model family is trained on, the labels it learns, and the pipeline that
    builds its offline frame from loaded history (``module:function``, imported on use)."""

    name: str
    entity: Entity
    description: str
    keys: tuple[KeySpec, ...]
    features: tuple[FeatureSpec, ...]
    labels: tuple[LabelSpec, ...]
    builder: str

    @property
    def columns(self) -> tuple[ColumnSpec, ...]:
        """Every column of a frame of this set, in the order it is written."""
        return (*self.keys, *self.features, *self.labels)

    @property
    def feature_names(self) -> list[str]:
        return [spec.name for spec in self.features]

    @property
    def label_names(self) -> list[str]:
        return [spec.name for spec in self.labels]

    def load_builder(self) -> Callable[..., Any]:
        module, _, function = self.builder.partition(":")
        builder: Callable[..., Any] = getattr(importlib.import_module(module), function)
        return builder


# --- late shipment: an order line at its entry ---------------------------------------------------

RATE = Check(0.0, 1.0, max_null_share=1.0)
"""A shrunk rate: null while no event of its kind exists anywhere before ``t``, which is every
row of a frame over the first days of a history; so any null share is valid (the data tests hold
the shares on a simulated world to what its history explains)."""
SPREAD = Check(0, 60, max_null_share=1.0)
"""A shrunk transit-time spread: null like a rate."""
AT_LOCATION = Check(0.0, None, max_null_share=0.5)
"""A value at the fulfilling location: null for a line held for credit (no location yet)."""


def _declarer(entity: Entity) -> Callable[..., FeatureSpec]:
    """``declare(name, dtype, group, description, check=Check())`` for features of ``entity``."""

    def declare(
        name: str, dtype: Dtype, group: str, description: str, check: Check = Check()
    ) -> FeatureSpec:
        return FeatureSpec(name, entity, dtype, description, group, check)

    return declare


_line = _declarer("order_line")


LATE_SHIPMENT_FEATURES: tuple[FeatureSpec, ...] = (
    # promise
    _line(
        "promised_ship_lead_bdays",
        "float64",
        "promise",
        "Business days from the entry date to the first promised ship date (null: no promise at "
        "entry, held for credit).",
        Check(0, 500, max_null_share=0.5),
    ),
    _line(
        "promised_delivery_lead_bdays",
        "float64",
        "promise",
        "Business days from the entry date to the first promised delivery date (null: no promise "
        "at entry).",
        Check(0, 500, max_null_share=0.5),
    ),
    _line(
        "promised_ship_weekday",
        "float64",
        "promise",
        "Day of week of the first promised ship date, 0 = Monday (null: no promise at entry).",
        Check(0, 6, max_null_share=0.5),
    ),
    _line(
        "holiday_near_promised_ship",
        "bool",
        "promise",
        "A policy holiday falls on the first promised ship date or the two calendar days after "
        "it (false without a promise at entry).",
    ),
    _line(
        "price_approval_pending",
        "bool",
        "promise",
        "A discount approval for the line's price (or its parent's) was requested by t and not "
        "decided by t: the line cannot be picked before finance decides.",
    ),
    _line(
        "approval_blocks_promise",
        "bool",
        "promise",
        "price_approval_pending and the first promised ship date is on or before the entry date "
        "(local): the promise cannot be met.",
    ),
    # fulfilment decision at capture
    _line(
        "needs_backorder",
        "bool",
        "fulfilment",
        "The line was backordered at capture (its state right after entry).",
    ),
    _line(
        "credit_hold",
        "bool",
        "fulfilment",
        "The order was held for credit at capture: no location, lane or promise yet.",
    ),
    _line(
        "transfer",
        "bool",
        "fulfilment",
        "The fulfilling location is not the customer's home location (false when none chosen).",
    ),
    _line(
        "split",
        "bool",
        "fulfilment",
        "The requested line was split at capture (this line has a parent, or children created "
        "with it).",
    ),
    _line(
        "stock_cover",
        "float64",
        "fulfilment",
        "(on hand - reserved) of the SKU at the fulfilling location just before t, from the "
        "ledger, / ordered quantity.",
        AT_LOCATION,
    ),
    _line(
        "backorder_slack_bdays",
        "float64",
        "fulfilment",
        "Backordered lines only (null otherwise): business days from the expected ready date "
        "capture gave the backorder to its first promised ship date.",
        Check(-500, 500, max_null_share=1.0),
    ),
    _line(
        "backorder_receipt_covered",
        "bool",
        "fulfilment",
        "Backordered at capture and an open purchase-order line (same SKU and location, "
        "expected on the ready date, placed before t, not fully received before t) covers it.",
    ),
    _line(
        "covering_receipt_overdue_bdays",
        "float64",
        "fulfilment",
        "When a purchase-order line covers the backorder (null otherwise): business days from "
        "its expected date to the entry date (positive: overdue, negative: not yet due).",
        Check(-500, 500, max_null_share=1.0),
    ),
    # location workload and service
    _line(
        "pick_backlog_lines",
        "float64",
        "location",
        "Lines allocated at the fulfilling location and not yet picked, just before t.",
        AT_LOCATION,
    ),
    _line(
        "pick_backlog_ratio",
        "float64",
        "location",
        "pick_backlog_lines / the location's pick capacity per day (days of picking queued).",
        AT_LOCATION,
    ),
    _line(
        "location_ontime_ship_rate_7d",
        "float64",
        "location",
        "Share of lines shipped from the location in [t-7d, t) that left on or before their "
        "first promised ship date, shrunk to the global rate (m=20).",
        RATE,
    ),
    _line(
        "location_ontime_ship_rate_14d",
        "float64",
        "location",
        "Share of lines shipped from the location in [t-14d, t) that left on or before their "
        "first promised ship date, shrunk to the global rate (m=20).",
        RATE,
    ),
    _line(
        "location_ontime_ship_rate_56d",
        "float64",
        "location",
        "As location_ontime_ship_rate_14d over [t-56d, t).",
        RATE,
    ),
    _line(
        "location_shipped_lines_56d",
        "float64",
        "location",
        "Lines shipped from the location in [t-56d, t): the evidence behind its rates.",
        AT_LOCATION,
    ),
    # carrier lane
    _line(
        "lane_transit_days",
        "float64",
        "lane",
        "Nominal transit business days of the lane chosen at capture (null: no lane yet).",
        Check(0, 60, max_null_share=0.5),
    ),
    _line(
        "lane_ontime_delivery_rate_28d",
        "float64",
        "lane",
        "Share of lines delivered over the lane in [t-28d, t) on or before their first promised "
        "delivery date, shrunk to the global rate (m=20).",
        RATE,
    ),
    _line(
        "lane_ontime_delivery_rate_90d",
        "float64",
        "lane",
        "As lane_ontime_delivery_rate_28d over [t-90d, t).",
        RATE,
    ),
    _line(
        "lane_transit_spread_28d",
        "float64",
        "lane",
        "Std of business days ship -> delivery of the lane's lines delivered in [t-28d, t), "
        "variance shrunk to the global variance (m=10).",
        SPREAD,
    ),
    _line(
        "lane_transit_spread_90d",
        "float64",
        "lane",
        "As lane_transit_spread_28d over [t-90d, t).",
        SPREAD,
    ),
    _line(
        "region_ontime_due_rate_7d",
        "float64",
        "lane",
        "Share of lines to the ship region whose first promised delivery day ended in [t-7d, t) "
        "that the ERP knew delivered by then (cancelled before: not counted; still travelling: "
        "late), shrunk to the share over all lines due before t (m=20).",
        RATE,
    ),
    _line(
        "carrier_ontime_due_rate_14d",
        "float64",
        "lane",
        "As region_ontime_due_rate_7d over [t-14d, t) for the lines on the lanes of the carrier "
        "of the line's lane (null: no lane yet).",
        RATE,
    ),
    _line(
        "region_alert_severity",
        "int64",
        "lane",
        "The highest severity (1-3) of the carriers' service alerts for the ship region (for "
        "every carrier or the line's) in force at t and announced before t (0: none).",
        Check(0, 3),
    ),
    _line(
        "expedite",
        "bool",
        "lane",
        "The line travels on a non-standard (express) lane at entry, or an expedite was asked "
        "for by its entry moment.",
    ),
    # supplier
    _line(
        "supplier_days_late_56d",
        "float64",
        "supplier",
        "Backordered lines only (null otherwise): mean days_late of the preferred supplier's "
        "receipts in [t-56d, t), shrunk to the global mean (m=5).",
        Check(-365, 365, max_null_share=1.0),
    ),
    _line(
        "supplier_late_share_56d",
        "float64",
        "supplier",
        "Backordered lines only (null otherwise): share of the preferred supplier's receipts in "
        "[t-56d, t) that came after their expected day, shrunk to the global share (m=5).",
        Check(0, 1, max_null_share=1.0),
    ),
    # customer and order
    _line("customer_tier", "category", "customer", "The customer's tier (master data)."),
    _line("channel", "category", "customer", "The order's sales channel."),
    _line("ship_region", "category", "customer", "The region the order ships to."),
    _line(
        "order_lines",
        "int64",
        "order",
        "Lines the customer asked for in the order (before any split).",
        Check(1, None),
    ),
    _line("order_units", "int64", "order", "Units ordered over the whole order.", Check(1, None)),
    _line(
        "order_weight_kg",
        "float64",
        "order",
        "Weight of the whole order in kg (units x product weight).",
        Check(0, None),
    ),
    _line(
        "order_value",
        "float64",
        "order",
        "Value of the whole order at the prices decided at entry.",
        Check(0, None),
    ),
    _line(
        "line_units",
        "int64",
        "order",
        "Units on this line at entry (later splits added back).",
        Check(1, None),
    ),
    # calendar
    _line(
        "entry_weekday",
        "int64",
        "calendar",
        "Day of week of the entry date, 0 = Monday (the fulfilling location's local date).",
        Check(0, 6),
    ),
    _line(
        "days_to_month_end",
        "int64",
        "calendar",
        "Calendar days from the entry date to the last day of its month.",
        Check(0, 30),
    ),
    _line(
        "days_to_quarter_end",
        "int64",
        "calendar",
        "Calendar days from the entry date to the last day of its quarter.",
        Check(0, 91),
    ),
    _line(
        "holiday_within_2bd",
        "bool",
        "calendar",
        "A policy holiday falls between the entry date and two business days after it.",
    ),
    _line(
        "peak_season",
        "bool",
        "calendar",
        "The entry date is in the peak weeks (15 November to 24 December).",
    ),
    # product
    _line("product_category", "category", "product", "The product's category."),
    _line("abc_class", "category", "product", "The product's ABC class."),
    _line(
        "fulfilling_location",
        "category",
        "fulfilment",
        "The location capture chose to fulfil the line from (null: held for credit).",
        Check(max_null_share=0.5),
    ),
    _line(
        "carrier",
        "category",
        "lane",
        "The carrier of the lane chosen at capture (null: no lane yet).",
        Check(max_null_share=0.5),
    ),
)

LATE_SHIPMENT_LABELS: tuple[LabelSpec, ...] = (
    LabelSpec(
        "label_late_delivery",
        "float64",
        "1 when the line was delivered after its first promised delivery date, 0 on or before; "
        "null while not delivered (or never promised).",
    ),
    LabelSpec(
        "label_late_ship",
        "float64",
        "1 when the line shipped after its first promised ship date, 0 on or before; null while "
        "not shipped (or never promised).",
    ),
    LabelSpec(
        "label_late_transit",
        "float64",
        "1 when the line took more business days from shipped to delivered than its lane's "
        "nominal transit, 0 otherwise; null while not delivered (or never promised).",
    ),
)

LINE_KEYS: tuple[KeySpec, ...] = (
    KeySpec("line_id", "int64", "The order line."),
    KeySpec("order_id", "int64", "Its sales order."),
    KeySpec("entered_at", "datetime64[us, UTC]", "The moment t the row is computed as of."),
)

LATE_SHIPMENT = FeatureSet(
    name="late_shipment",
    entity="order_line",
    description="One row per order line created at order capture, as known at its entry.",
    keys=LINE_KEYS,
    features=LATE_SHIPMENT_FEATURES,
    labels=LATE_SHIPMENT_LABELS,
    builder="features.late_shipment:late_shipment_frame",
)

# --- demand: a SKU at a location on a day --------------------------------------------------------

SHARE = Check(0.0, 1.0)
PRICE = Check(0.0, None)
UNITS = Check(0.0, None)
MAYBE_UNKNOWN = Check(0.0, None, max_null_share=1.0)
"""A value null until its first event (an SKU's first order, a first price paid)."""


_day = _declarer("sku_location_day")


DEMAND_LAGS_DAYS = (1, 7, 14, 28)
DEMAND_WINDOWS_DAYS = (7, 28, 91)

DEMAND_FEATURES: tuple[FeatureSpec, ...] = (
    *(
        _day(
            f"demand_lag_{days}d",
            "int64",
            "history",
            f"Units ordered for the SKU at the location on the day {days} day(s) before (0 when "
            "none, also before the pair was first seen).",
            UNITS,
        )
        for days in DEMAND_LAGS_DAYS
    ),
    *(
        feature
        for days in DEMAND_WINDOWS_DAYS
        for feature in (
            _day(
                f"demand_mean_{days}d",
                "float64",
                "history",
                f"Mean units per day over [t-{days}d, t), counting only days since the pair was "
                "first seen (a younger pair averages over fewer days).",
                UNITS,
            ),
            _day(
                f"demand_zero_share_{days}d",
                "float64",
                "history",
                f"Share of the days in [t-{days}d, t) since the pair was first seen with no "
                "units ordered.",
                SHARE,
            ),
        )
    ),
    _day(
        "demand_std_28d",
        "float64",
        "history",
        "Population standard deviation of units per day over [t-28d, t) (days since first seen).",
        UNITS,
    ),
    _day(
        "days_seen_91d",
        "int64",
        "history",
        "Days of history behind the windows: min(91, days since the pair was first seen).",
        Check(1, 91),
    ),
    _day(
        "adi_91d",
        "float64",
        "intermittency",
        "Average demand interval over [t-91d, t): days seen / days with demand (null: none).",
        Check(1.0, 91.0, max_null_share=1.0),
    ),
    _day(
        "cv2_91d",
        "float64",
        "intermittency",
        "Squared coefficient of variation of the non-zero daily units over [t-91d, t) "
        "(population variance / mean^2; null: no demand).",
        MAYBE_UNKNOWN,
    ),
    _day(
        "intermittency_class",
        "category",
        "intermittency",
        "Syntetos-Boylan class over [t-91d, t): smooth (ADI < 1.32, CV2 < 0.49), erratic "
        "(ADI < 1.32), intermittent (CV2 < 0.49), lumpy; none without demand.",
    ),
    _day(
        "item_age_days",
        "float64",
        "product",
        "Days from the day of the SKU's first order line at any location to the day (null: no "
        "order before t).",
        Check(1.0, None, max_null_share=1.0),
    ),
    _day("weekday", "int64", "calendar", "Day of week of the day, 0 = Monday.", Check(0, 6)),
    _day("month", "int64", "calendar", "Month of the day, 1-12.", Check(1, 12)),
    _day(
        "days_to_month_end",
        "int64",
        "calendar",
        "Calendar days from the day to the last day of its month.",
        Check(0, 30),
    ),
    _day("holiday", "bool", "calendar", "The day is a policy holiday."),
    _day(
        "peak_season",
        "bool",
        "calendar",
        "The day is in the peak weeks (15 November to 24 December).",
    ),
    _day(
        "promo_discount",
        "float64",
        "promotion",
        "Mean over tiers of the price-list promotion in force on the day: 1 - price / the "
        "price before it, for a one-unit price that cuts the previous one and is raised again by "
        "a later entry (a temporary cut known in advance); 0 without one.",
        Check(0.0, 1.0),
    ),
    _day(
        "promo_discount_in_7d",
        "float64",
        "promotion",
        "promo_discount as scheduled in the price list for the day 7 days later.",
        Check(0.0, 1.0),
    ),
    _day(
        "list_price",
        "float64",
        "price",
        "Mean over the tiers of the one-unit price in force on the day (the product's list "
        "price for a tier without a price-list entry, as the ERP prices).",
        PRICE,
    ),
    _day(
        "price_level_91d",
        "float64",
        "price",
        "list_price / the units-weighted mean unit price paid for the SKU (any location) on lines "
        "entered in [t-91d, t) (null: none paid).",
        MAYBE_UNKNOWN,
    ),
    _day("location", "category", "location", "The location (the customers' home location)."),
    _day("product_category", "category", "product", "The product's category."),
    _day("abc_class", "category", "product", "The product's ABC class."),
)

DEMAND_LABELS: tuple[LabelSpec, ...] = (
    LabelSpec(
        "label_demand_units",
        "float64",
        "Units ordered for the SKU with the location as the customer's home location on lines "
        "entered that day (UTC), cancelled ones included; null for a day not over by the "
        "history's last event.",
        Check(0.0, None, max_null_share=1.0),
    ),
)

DEMAND = FeatureSet(
    name="demand",
    entity="sku_location_day",
    description="One row per SKU x location x day (zero days included) from the day after the "
    "pair was first seen (a stock movement or an order) while it had one in the last 91 days, as "
    "known at the day's UTC midnight.",
    keys=(
        KeySpec("sku", "category", "The SKU."),
        KeySpec("location_id", "category", "The location."),
        KeySpec("day", "datetime64[us, UTC]", "The moment t: midnight UTC starting the day."),
    ),
    features=DEMAND_FEATURES,
    labels=DEMAND_LABELS,
    builder="features.demand:demand_frame",
)


# --- pricing: a priced order line at its entry ----------------------------------------------------

RECENT = Check(0.0, None, max_null_share=1.0)
"""A value from earlier lines of the same customer or tier: null before the first."""


_priced = _declarer("priced_line")


PRICING_FEATURES: tuple[FeatureSpec, ...] = (
    _priced("list_price", "float64", "price", "The product's list price at entry.", PRICE),
    _priced(
        "tier_price",
        "float64",
        "price",
        "The customer's tier price for one unit in force on the entry date (UTC), else the list "
        "price (as the ERP prices).",
        PRICE,
    ),
    _priced(
        "quantity_break_price",
        "float64",
        "price",
        "The tier price for the line's quantity (best quantity break reached) at entry.",
        PRICE,
    ),
    _priced(
        "quantity_break_discount",
        "float64",
        "price",
        "1 - quantity_break_price / tier_price.",
        Check(None, 1.0),
    ),
    _priced("unit_price", "float64", "price", "The unit price charged at entry.", PRICE),
    _priced(
        "discount_vs_tier",
        "float64",
        "price",
        "1 - unit_price / quantity_break_price (negative: charged above the price list).",
        Check(None, 1.0),
    ),
    _priced(
        "price_to_list",
        "float64",
        "price",
        "unit_price / list_price.",
        PRICE,
    ),
    _priced(
        "discount_beyond_threshold",
        "bool",
        "price",
        "The discount vs the quantity-break price exceeds the policy's approval threshold (it "
        "needed approval, whoever entered it).",
    ),
    _priced(
        "price_overridden",
        "bool",
        "price",
        "The price was typed (override), not taken from the price list.",
    ),
    _priced("unit_cost", "float64", "cost", "The product's unit cost (master data).", PRICE),
    _priced("price_cost_ratio", "float64", "cost", "unit_price / unit_cost.", PRICE),
    _priced(
        "customer_last_price",
        "float64",
        "customer_history",
        "Unit price of the customer's last line of the SKU entered before t (null: none).",
        RECENT,
    ),
    _priced(
        "customer_median_price_5",
        "float64",
        "customer_history",
        "Median unit price of the customer's last 5 lines of the SKU entered before t.",
        RECENT,
    ),
    _priced(
        "customer_price_count",
        "int64",
        "customer_history",
        "Lines of the SKU the customer entered before t (all history).",
        Check(0, None),
    ),
    _priced(
        "price_to_customer_median",
        "float64",
        "customer_history",
        "unit_price / customer_median_price_5.",
        RECENT,
    ),
    _priced(
        "tier_median_price_90d",
        "float64",
        "tier_history",
        "Median unit price of the last 11 lines of the SKU by customers of the same tier entered "
        "in [t-90d, t).",
        RECENT,
    ),
    _priced(
        "tier_price_count_90d",
        "int64",
        "tier_history",
        "Lines of the SKU by customers of the same tier entered in [t-90d, t).",
        Check(0, None),
    ),
    _priced(
        "price_to_tier_median",
        "float64",
        "tier_history",
        "unit_price / tier_median_price_90d.",
        RECENT,
    ),
    _priced("line_units", "int64", "quantity", "Units on the line at entry.", Check(1, None)),
    _priced(
        "customer_usual_units",
        "float64",
        "quantity",
        "Median units of the customer's last 5 lines of the SKU entered before t.",
        RECENT,
    ),
    _priced(
        "units_to_customer_usual",
        "float64",
        "quantity",
        "line_units / customer_usual_units.",
        RECENT,
    ),
    _priced("channel", "category", "customer", "The order's sales channel."),
    _priced("customer_tier", "category", "customer", "The customer's tier (master data)."),
    _priced("product_category", "category", "product", "The product's category."),
)

PRICING = FeatureSet(
    name="pricing",
    entity="priced_line",
    description="One row per order line priced at capture, as known at its entry; labels are the "
    "simulator's truth, joined by line_id (features.truth_labels.load_pricing_truth).",
    keys=LINE_KEYS,
    features=PRICING_FEATURES,
    labels=(),
    builder="features.pricing:pricing_frame",
)

FEATURE_SETS: dict[str, FeatureSet] = {
    declared.name: declared for declared in (LATE_SHIPMENT, DEMAND, PRICING)
}


def feature_set(name: str) -> FeatureSet:
    """The declared set called ``name``, or an error naming it and the sets there are."""
    try:
        return FEATURE_SETS[name]
    except KeyError:
        known = ", ".join(sorted(FEATURE_SETS))
        raise InvalidValue("set", name, f"no such feature set (known: {known})") from None


def all_features() -> Iterator[tuple[FeatureSet, FeatureSpec]]:
    """Every declared feature with the set it belongs to, in declaration order."""
    for declared in FEATURE_SETS.values():
        for spec in declared.features:
            yield declared, spec


def _check_unique_names() -> None:
    for declared in FEATURE_SETS.values():
        names = [column.name for column in declared.columns]
        duplicated = {name for name in names if names.count(name) > 1}
        if duplicated:
            raise RuntimeError(f"feature set {declared.name}: columns declared twice: {duplicated}")


_check_unique_names()
