"""Point-in-time price and freight comparisons of SCMS delivery lines, for issue 7's anomaly report
(:mod:`training.scms_anomaly` turns them into scores and sentences).

Four values of each line are compared with earlier lines:

* its **pack price** with the same product's earlier lines (``Item Description``, which names the
  pack size), and with the same product bought from the same vendor (vendors sell one product
  at different prices: the RDC's price carries its storage and handling);
* its **unit price** (pack price / units per pack, unrounded: the file's own unit price is
  rounded to the cent and reads 0.00 on 103 lines) with the same **formulation** from the same
  vendor across pack sizes, shrunk toward the formulation's: the item description with its
  pack-size part removed (``Ritonavir 100mg [Norvir], capsules, cool`` for the 84, 2 x 84 and
  4 x 84 capsule packs). Not the molecule alone (the draft's key): it mixes strengths
  (Efavirenz 50 mg to 600 mg), forms (a ml of oral solution against a tablet) and brands
  (Viramune 200 mg tablets at a median 0.32 a tablet, the generic at 0.043, 7x), so a
  molecule's median would call every branded or strong line an anomaly. Per vendor because
  vendors' price levels (a South African wholesaler's Efavirenz at 4.4x the market) are the
  pack price's per-vendor concern, and across vendors they made the unit price's |z| so
  heavy-tailed that a unit price ten times too low ranked only 196th-291st (see
  :mod:`training.scms_anomaly`). A product's units per pack never change in this file, so for
  most lines the formulation holds one pack size and the unit price repeats the pack price's
  comparison; it adds evidence where pack sizes differ (Norvir 2 x 84 capsules at 7.5x the
  unit price of the 84 and 4 x 84 packs), and catches a units-per-pack error that leaves the
  pack price unchanged;
* its **freight cost per kg**, where the line carries its own numeric freight and weight (lines
  whose freight is ``See ASN``, included in the commodity cost or invoiced separately carry
  none), with the earlier lines of the same shipment mode, destination country and **weight
  band** (under 100 kg, 100 kg-1 t, 1-10 t, over 10 t), shrunk toward the mode x band's. Freight
  per kg falls steeply with weight (on Air lines, log freight per kg against log10 weight has a
  slope of -1.06, correlation -0.77 over all modes): a 5 kg parcel costs far more per kg than a
  5 t consignment, so without the band every small shipment looks overpriced. Measured on the
  file's 6,174 own-freight lines, the robust spread (1.4826 x MAD) of log freight per kg around
  its key's median is 0.95 by mode, 0.78 by mode x country and 0.59 by mode x country x band;
* its **weight per pack**, where the weight is the line's alone (no other line's freight and
  weight are booked on it), with the same product's earlier lines. Not asked for by the issue,
  added because freight per kg is only as right as the weight under it, and the file's weights
  are often wrong by hundreds of times: single packs of test kits "weighing" 800 to 1,476 kg,
  850 packs weighing 291 tonnes. Around its product's median, log weight per pack has a
  robust spread of only 0.087, so such a weight stands out at once, and says WHY a freight
  per kg is off (the weight band of a wrong weight is wrong too). A product with few earlier
  weights is shrunk toward the packs of the same sub-classification and units per pack
  ("Adult" packs of 60 units; spread 0.23), so a rare product's 106 kg pack of 30 tablets is
  still compared.

**What is known when.** A line's price is fixed when it is ordered, its freight when it ships.
The moment of comparison is the late-delivery protocol's (:func:`features.scms.moments`: 30 days
before the scheduled delivery date), and what a line is compared with are the lines DELIVERED
strictly before that moment, never the line itself. Ordered-but-undelivered lines are left out
on purpose, though their prices existed: 56% of lines (every RDC line) have no captured order
date, so "ordered before the moment" cannot be decided for them; their quantities, values,
weights and freight are final only on delivery (freight is booked when the goods ship, after
the moment for most lines); and a delivery date is the one date every line has at which all of
its values are surely known. The price of this choice is staleness: the baseline lags by the
lines still in transit (a PO goes out a median 92 days before its scheduled date). The line's
OWN values are what is judged, so they may become known after the moment (its freight does);
the comparison it is judged against is fixed at the moment, so rewriting or adding a line
delivered at or after a line's moment cannot change a single number of that line's
comparisons.

**The statistics.** Each comparison takes the newest ``WINDOW`` earlier values of its key
(prices drift: ARV prices fell over the decade), their median and robust spread (1.4826 x the
median absolute deviation of the logs), and counts all earlier values. A key with few earlier
values is shrunk: the expected log value of a product x vendor moves toward the product's as
``n / (n + PRIOR_WEIGHT)`` (a lane x band toward its mode x band), and every spread toward
``PRIOR_LOG_SCALE`` the same way, never below ``SCALE_FLOOR`` (most products sell at one price
for months, so the raw spread is often 0). ``*_z`` is the signed log deviation from the
expected value over that spread, widened by ``sqrt(1 + 1/n)`` for the uncertainty of a median
of ``n`` values; NaN where the key had no earlier value or the line has no positive value to
compare (a zero price is left to the rules of :mod:`training.scms_anomaly`).

No anomaly is labelled in SCMS: these are facts for an unsupervised score, not a target.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from erp_core.domain.errors import InvalidValue
from features.asof import events_before, key_codes, trailing_totals
from features.pricing import row_median
from features.scms import moments

WINDOW = 50
"""The newest earlier values of a key that its median and spread are taken over."""
PRIOR_WEIGHT = 5.0
"""Pseudo-values of the parent key (and of the prior spread) added to each key's history."""
PRIOR_LOG_SCALE = 0.25
"""The spread (in log units, about +-28%) assumed for a key that has no history of its own."""
SCALE_FLOOR = 0.05
"""The narrowest spread a comparison is given (5%): a price unchanged for months has a MAD of 0,
and a z over 0 would make a cent's change infinite."""
MAD_TO_SIGMA = 1.4826
WEIGHT_BANDS_KG = (100.0, 1_000.0, 10_000.0)
"""Upper edges of the weight bands but the last: under 100 kg, 100 kg-1 t, 1-10 t, over 10 t."""
BAND_NAMES = ("under 100 kg", "100 kg to 1 t", "1 to 10 t", "over 10 t")

REQUIRED = (
    "line_id",
    "item_description",
    "sub_classification",
    "vendor",
    "country",
    "shipment_mode",
    "units_per_pack",
    "quantity_packs",
    "line_value_usd",
    "pack_price_usd",
    "weight_kg",
    "freight_usd",
    "freight_booked_on_id",
    "scheduled_delivery_date",
    "delivered_date",
)
"""The columns of :func:`erp_core.importers.scms.read_scms` these comparisons read."""

DONATION_MARK = "[DON]"
"""How the file marks a donated product in its item description (8 lines, 5 of them at 0.00)."""
_PACK_PART = re.compile(
    r"^(?:(?:bottle|blister|vial|co-blister)\s*)?"
    r"(?:[\d.]+\s*(?:[x+]\s*[\d.]+\s*)*(?:tabs|caps|ml|tests?|pcs|g|ampules|cards|vials?)?"
    r"|bottle|blister)$",
    re.IGNORECASE,
)
"""A trailing part of an item description that only says how much is in the pack."""


FRAGILE_MIN_N = 5
"""Freight per kg and weight per pack are compared only with at least this many earlier values:
the file holds weights typed hundreds of times too high or low (1 pack of test kits "weighing"
1,476 kg), and a median of 3 earlier values can be two such weights (one line's freight per kg
read 223x "the median of 3 earlier Air shipments over 10 t", two of which weighed 291 and 857
tonnes). Prices keep a median of 1 or more: of the 616 lines whose product had 1 to 4 earlier
deliveries, none had a pack-price |z| beyond the alert quantile."""


@dataclass(frozen=True)
class Comparison:
    """One value of a line compared with the earlier values of one key (and a parent key)."""

    value: str
    key: tuple[str, ...]
    parent: str | None
    """The comparison (by name) this one is shrunk toward, with a coarser key."""
    what: str
    """What the earlier lines are, in a reader's words."""
    min_n: int = 1
    """Fewer earlier values than this (after the parent's are counted) and the value is not
    compared: its z is NaN."""


VALUES = ("pack_price", "unit_price", "freight_per_kg", "weight_per_pack")
COMPARISONS: dict[str, Comparison] = {
    "product": Comparison(
        "pack_price", ("item_description",), None, "earlier deliveries of this product"
    ),
    "product_vendor": Comparison(
        "pack_price",
        ("item_description", "vendor"),
        "product",
        "earlier deliveries of this product from this vendor",
    ),
    "formulation": Comparison(
        "unit_price", ("formulation",), None, "earlier deliveries of {formulation}, any pack size"
    ),
    "formulation_vendor": Comparison(
        "unit_price",
        ("formulation", "vendor"),
        "formulation",
        "earlier deliveries of {formulation} from this vendor, any pack size",
    ),
    "mode_band": Comparison(
        "freight_per_kg",
        ("shipment_mode", "weight_band"),
        None,
        "earlier {shipment_mode} shipments weighing {weight_band}",
    ),
    "lane_band": Comparison(
        "freight_per_kg",
        ("shipment_mode", "country", "weight_band"),
        "mode_band",
        "earlier {shipment_mode} shipments to {country} weighing {weight_band}",
        min_n=FRAGILE_MIN_N,
    ),
    "pack_size_weight": Comparison(
        "weight_per_pack",
        ("sub_classification", "units_per_pack"),
        None,
        "earlier single-line shipments of {sub_classification} packs of {units_per_pack} units",
    ),
    "product_weight": Comparison(
        "weight_per_pack",
        ("item_description",),
        "pack_size_weight",
        "earlier single-line shipments of this product",
        min_n=FRAGILE_MIN_N,
    ),
}
SIGNALS = {
    "pack_price": "product_vendor",
    "unit_price": "formulation_vendor",
    "freight_per_kg": "lane_band",
    "weight_per_pack": "product_weight",
}
"""The comparison each value's z is taken against (after shrinkage toward its parent)."""


def formulation(item_description: str) -> str:
    """The item description without its pack-size part: ``Efavirenz 600mg, tablets, 30 Tabs``
    -> ``Efavirenz 600mg, tablets``; ``..., oral solution, Bottle, 240 ml`` -> ``..., oral
    solution``. A description that is nothing but a pack size is kept whole."""
    parts = [part.strip() for part in str(item_description).split(",")]
    while len(parts) > 1 and _PACK_PART.match(parts[-1]):
        parts.pop()
    return ", ".join(parts)


def weight_band(weight_kg: pd.Series) -> pd.Series:
    """The band name of each positive weight (missing where the line has no weight)."""
    weight = weight_kg.astype(float)
    codes = np.searchsorted(np.asarray(WEIGHT_BANDS_KG), weight.to_numpy(), side="right")
    named = pd.Series(
        np.asarray(BAND_NAMES, dtype=object)[np.minimum(codes, 3)], index=weight.index
    )
    return named.where(weight.gt(0)).astype("string")


def check_lines(lines: pd.DataFrame) -> None:
    """A frame missing a column the comparisons read is refused by name."""
    missing = [column for column in REQUIRED if column not in lines.columns]
    if missing:
        raise InvalidValue(
            "lines", ", ".join(missing), "SCMS lines (read_scms) need these columns; missing"
        )


def line_values(lines: pd.DataFrame, shipment_lines: pd.Series) -> pd.DataFrame:
    """Pack price, unrounded unit price, freight per kg and weight per pack of each line (NaN
    where absent). The weight per pack only where the weight is the line's alone (no other line
    books its weight and freight on it)."""
    pack = lines["pack_price_usd"].astype(float)
    units = lines["units_per_pack"].astype(float)
    weight = lines["weight_kg"].astype(float)
    freight = lines["freight_usd"].astype(float)
    quantity = lines["quantity_packs"].astype(float)
    own_freight = weight.gt(0) & freight.gt(0)
    alone = weight.gt(0) & quantity.gt(0) & shipment_lines.eq(1)
    return pd.DataFrame(
        {
            "pack_price": pack,
            "unit_price": (pack / units).where(units > 0),
            "freight_per_kg": (freight / weight).where(own_freight),
            "weight_per_pack": (weight / quantity).where(alone),
        },
        index=lines.index,
    )


def shipment_totals(lines: pd.DataFrame) -> pd.DataFrame:
    """The value and packs of the goods each line's freight pays for: the line itself plus every
    line whose freight is booked on it (``See ASN-... (ID#:<this line>)``). The line's own value
    alone would make a consolidated shipment's freight look larger than its goods (689 own-
    freight lines have freight above their own value, 437 above their shipment's)."""
    carrier = lines["freight_booked_on_id"].astype("Int64").fillna(lines["line_id"]).astype("int64")
    totals = (
        pd.DataFrame(
            {
                "carrier": carrier.to_numpy(),
                "value": lines["line_value_usd"].to_numpy(float),
                "packs": lines["quantity_packs"].to_numpy(float),
                "lines": 1,
            }
        )
        .groupby("carrier")
        .sum()
    )
    own = totals.reindex(lines["line_id"].to_numpy())
    return pd.DataFrame(
        {
            "shipment_value_usd": own["value"].to_numpy(),
            "shipment_packs": own["packs"].to_numpy(),
            "shipment_lines": own["lines"].to_numpy(),
        },
        index=lines.index,
    )


def build_scms_pricing_features(lines: pd.DataFrame) -> pd.DataFrame:
    """One row per line (same index): its values and facts, each comparison's earlier count and
    median, and the shrunk expected value, spread and z of each value; every statistic from
    lines delivered strictly before the line's moment."""
    check_lines(lines)
    keyed = lines.assign(
        formulation=lines["item_description"].map(formulation).astype("string"),
        weight_band=weight_band(lines["weight_kg"]),
    )
    shipments = shipment_totals(lines)
    values = line_values(keyed, shipments["shipment_lines"])
    frame = values.copy()
    frame["formulation"] = keyed["formulation"]
    frame["weight_band"] = keyed["weight_band"]
    frame["donation"] = (
        lines["item_description"].astype(str).str.contains(DONATION_MARK, regex=False)
    )
    frame = frame.join(shipments)
    moment = _micros(moments(lines))
    delivered = _micros(lines["delivered_date"])
    stats: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for name, comparison in COMPARISONS.items():
        n, median_log, scale = _earlier(
            keyed, values[comparison.value], comparison.key, moment, delivered
        )
        stats[name] = (n, median_log, scale)
        frame[f"{name}_n"] = n
        frame[f"{name}_median"] = np.exp(median_log)
    for value, name in SIGNALS.items():
        comparison = COMPARISONS[name]
        n, median_log, scale = stats[name]
        if comparison.parent is not None:
            p_n, p_median, p_scale = stats[comparison.parent]
            median_log = np.where(p_n > 0, _shrunk(median_log, n, p_median), median_log)
            scale = np.sqrt(np.where(p_n > 0, _shrunk(scale**2, n, p_scale**2), scale**2))
            n = np.maximum(n, p_n)
        prior = np.full(len(n), PRIOR_LOG_SCALE**2)
        spread = np.maximum(np.sqrt(_shrunk(scale**2, n, prior)), SCALE_FLOOR)
        with np.errstate(divide="ignore", invalid="ignore"):
            logged = np.log(values[value].where(values[value] > 0).to_numpy(float))
            z = (logged - median_log) / (spread * np.sqrt(1 + 1 / n))
        enough = n >= max(comparison.min_n, 1)
        frame[f"{value}_expected"] = np.exp(median_log)
        frame[f"{value}_spread"] = np.where(n > 0, spread, np.nan)
        frame[f"{value}_z"] = np.where(np.isfinite(z) & enough, z, np.nan)
    return frame


def _micros(dates: pd.Series) -> np.ndarray:
    return dates.to_numpy("datetime64[us]").astype(np.int64)


def _shrunk(own: np.ndarray, n: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """``(n * own + m * prior) / (n + m)``; the prior alone where the key has no history."""
    own = np.where(n > 0, own, 0.0)
    return (n * own + PRIOR_WEIGHT * prior) / (n + PRIOR_WEIGHT)


def _earlier(
    lines: pd.DataFrame,
    value: pd.Series,
    key: tuple[str, ...],
    moment: np.ndarray,
    delivered: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per line: how many other lines of its key with a positive value were delivered strictly
    before its moment, the median of the logs of the newest ``WINDOW`` of them, and their robust
    spread (NaN median and spread where there are none)."""
    numbers = value.to_numpy(float)
    present = np.isfinite(numbers) & (numbers > 0)
    events = np.flatnonzero(present)
    event_keys, query_keys = key_codes(
        [lines[column].to_numpy()[events] for column in key], [lines[column] for column in key]
    )
    # one more than the window, so the line itself can be dropped when delivered before its moment
    found = events_before(event_keys, delivered[events], query_keys, moment, WINDOW + 1)
    own = np.full(len(lines), -1, dtype=np.int64)
    own[events] = np.arange(len(events))
    found = np.where((found == own[:, None]) & (own[:, None] >= 0), -1, found)
    # close the hole the line itself left, keeping the newest WINDOW in order
    compact = np.argsort(found < 0, axis=1, kind="stable")
    found = np.take_along_axis(found, compact, axis=1)[:, :WINDOW]
    logs = np.log(numbers[events])
    window = np.where(found >= 0, logs[np.maximum(found, 0)], np.nan)
    median = row_median(window)
    mad = row_median(np.abs(window - median[:, None])) * MAD_TO_SIGMA
    count = trailing_totals(event_keys, delivered[events], {}, query_keys, moment, [None])[None]
    counted_itself = present & (delivered < moment) & (query_keys >= 0)
    n = count.count - counted_itself
    return n.astype(float), median, mad
