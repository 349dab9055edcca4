"""Receipt-delay features: for a purchase-order line as of a moment ``t`` (its placement, or any
later moment while it is still open), what was known then about when it will be received.

The label is ``receipt day - expected day`` in whole calendar days (the day of the receipt that
completed the line, in UTC, as ``Receipt.days_late`` counts it); the features are the line's own
terms (lead time promised, quantity, the expected date's weekday: goods arrive on business days),
how long it has been open and how far past its date it is, and its supplier's history **known
before t**: lines the supplier completed before ``t`` (their delays, over the last 56 and 182
days, shrunk toward everyone's) and the supplier's lines still open at ``t`` (how many are
already overdue: a disruption shows there weeks before its late receipts arrive). The empirical
quantiles the ERP itself would promise by (``erp_core.domain.receipt_delay``) are features too.

Why a module apart from ``features.history``: the order-line history (``features build``) holds
neither a purchase-order line's supplier nor its receipts. :func:`load_inbound_history` reads the
purchase-order tables alone, in three queries; the frame is computed from it in memory.

Rows of a frame (:func:`receipt_delay_frame`): each line at its placement and at every UTC
midnight while it is open, so the model learns the distribution of a line at every age a promise
may read it at. :func:`open_line_rows` computes the same row for the lines open at one moment
(what a forecast refresh scores); a test holds the two equal. Every history value of a row is
computed from events strictly before its ``t``: a receipt at ``t`` itself is not yet known.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, select

from erp_core.db.engine import make_engine
from erp_core.db.models import AuditEntry, PurchaseOrder, PurchaseOrderLine, Receipt
from erp_core.domain.receipt_delay import LOOKBACK_DAYS, delay_quantiles
from features.registry import Check, FeatureSet, FeatureSpec, KeySpec, LabelSpec
from features.schema import typed_frame

DAY_US = 86_400_000_000
OPEN = -1
"""``closed_at`` / ``cancelled_at`` of a line never received in full / never cancelled."""
SHORT_WINDOW_DAYS = 56
MEAN_PRIOR = 5.0
"""Receipts at which a supplier's own mean (or late share) weighs as much as the global one."""
_EPOCH = date(1970, 1, 1)
_NEVER = np.iinfo(np.int64).max


# --- declarations --------------------------------------------------------------------------------


def _po(name: str, dtype: Any, group: str, description: str, check: Check = Check()) -> FeatureSpec:
    return FeatureSpec(name, "po_line", dtype, description, group, check)


DELAY = Check(-400, 400, max_null_share=1.0)
"""Days after the expected date: null while no line was ever received before ``t``."""
SHARE_OR_NULL = Check(0.0, 1.0, max_null_share=1.0)

RECEIPT_DELAY_FEATURES: tuple[FeatureSpec, ...] = (
    _po(
        "lead_days_promised",
        "int64",
        "line",
        "Calendar days from the day the purchase order was placed (UTC) to the line's expected "
        "date: the lead time the supplier promised.",
        Check(0, 730),
    ),
    _po(
        "days_open",
        "float64",
        "line",
        "Days from the placement moment to t (0 at placement).",
        Check(0, 730),
    ),
    _po(
        "days_to_expected",
        "int64",
        "line",
        "Expected date minus t's UTC day (negative: the line is that many days overdue).",
        Check(-730, 730),
    ),
    _po(
        "expected_weekday",
        "int64",
        "line",
        "Day of week of the expected date, 0 = Monday (goods come on business days: a line due on "
        "a Friday that slips a day comes on Monday).",
        Check(0, 6),
    ),
    _po("quantity", "float64", "line", "Units ordered on the line.", Check(1, None)),
    _po(
        "lines_on_order",
        "int64",
        "line",
        "Lines on the line's purchase order (one truck or one container).",
        Check(1, None),
    ),
    _po("supplier", "category", "line", "The purchase order's supplier."),
    _po("location", "category", "line", "The receiving location."),
    _po(
        "supplier_receipts_182d",
        "int64",
        "supplier",
        "Lines of the supplier completed in [t-182d, t): the evidence behind its figures.",
        Check(0, None),
    ),
    _po(
        "supplier_delay_mean_56d",
        "float64",
        "supplier",
        "Mean delay (receipt day - expected day) of the supplier's lines completed in [t-56d, t), "
        "shrunk toward every supplier's mean over the same days (m=5).",
        DELAY,
    ),
    _po(
        "supplier_delay_mean_182d",
        "float64",
        "supplier",
        "As supplier_delay_mean_56d over [t-182d, t).",
        DELAY,
    ),
    _po(
        "supplier_late_share_56d",
        "float64",
        "supplier",
        "Share of the supplier's lines completed in [t-56d, t) after their expected day, shrunk "
        "toward every supplier's share (m=5).",
        SHARE_OR_NULL,
    ),
    _po(
        "supplier_delay_std_182d",
        "float64",
        "supplier",
        "Standard deviation of the delays of the supplier's lines completed in [t-182d, t), its "
        "variance shrunk toward every supplier's (m=5).",
        Check(0, 400, max_null_share=1.0),
    ),
    _po(
        "supplier_location_delay_mean_182d",
        "float64",
        "supplier",
        "Mean delay of the supplier's lines into this location completed in [t-182d, t), shrunk "
        "toward supplier_delay_mean_182d (m=5).",
        DELAY,
    ),
    _po(
        "supplier_open_lines",
        "int64",
        "open_book",
        "Other lines of the supplier placed by t and neither completed nor cancelled before t.",
        Check(0, None),
    ),
    _po(
        "supplier_open_overdue_share",
        "float64",
        "open_book",
        "Share of those open lines whose expected date is before t's day (null: none open).",
        SHARE_OR_NULL,
    ),
    _po(
        "supplier_open_overdue_max_days",
        "int64",
        "open_book",
        "Days the most overdue of those open lines is past its expected date (0: none overdue).",
        Check(0, 730),
    ),
    *(
        _po(
            f"empirical_p{level}",
            "float64",
            "empirical",
            f"The {level}th percentile of the delay from the shrunk supplier x location -> "
            f"supplier -> global history of lines completed in [t-{LOOKBACK_DAYS}d, t), cut at "
            "the earliest delay still possible at t (erp_core.domain.receipt_delay; null "
            "without any history).",
            DELAY,
        )
        for level in (50, 80, 90)
    ),
)

LABEL = "label_delay_days"

RECEIPT_DELAY = FeatureSet(
    name="receipt_delay",
    entity="po_line",
    description="One row per purchase-order line at its placement and at every UTC midnight "
    "while it is open, as known at that moment.",
    keys=(
        KeySpec("po_line_id", "int64", "The purchase-order line."),
        KeySpec("as_of", "datetime64[us, UTC]", "The moment t the row is computed as of."),
        KeySpec("placed_at", "datetime64[us, UTC]", "When its purchase order was placed."),
    ),
    features=RECEIPT_DELAY_FEATURES,
    labels=(
        LabelSpec(
            LABEL,
            "float64",
            "Receipt day (UTC) of the receipt that completed the line minus its expected date, in "
            "days; null while not received in full (or cancelled).",
            Check(-730, 730, max_null_share=1.0),
        ),
    ),
    builder="features.inbound:receipt_delay_frame",
)


# --- history ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class InboundHistory:
    """Purchase-order lines as a frame; moments are int64 microseconds (UTC), days int64 days
    since 1970-01-01."""

    po_lines: pd.DataFrame
    """po_line_id, purchase_order_id, supplier_id, location_id, sku, quantity, expected_day,
    placed_at, cancelled_at (-1: never), closed_at (the receipt that completed it; -1: open),
    lines_on_order; sorted by po_line_id"""

    @property
    def last_moment(self) -> int:
        """The latest event the history holds (a placement, a completion, a cancellation)."""
        frame = self.po_lines
        if frame.empty:
            return 0
        return int(frame[["placed_at", "closed_at", "cancelled_at"]].to_numpy().max())

    def with_lines(self, po_lines: pd.DataFrame) -> InboundHistory:
        return replace(self, po_lines=po_lines)


def load_inbound_history(source: str | Engine | Connection) -> InboundHistory:
    """Purchase-order lines with their completing receipt and cancellation, from the ERP at
    ``source`` (a URL, an engine, or an open connection: a caller inside a transaction reads what
    it has written)."""
    if isinstance(source, Connection):
        return _read(source)
    engine = make_engine(source) if isinstance(source, str) else source
    try:
        with engine.connect() as connection:
            return _read(connection)
    finally:
        if isinstance(source, str):
            engine.dispose()


def _read(connection: Connection) -> InboundHistory:
    lines = connection.execute(
        select(
            PurchaseOrderLine.id,
            PurchaseOrderLine.purchase_order_id,
            PurchaseOrder.supplier_id,
            PurchaseOrder.location_id,
            PurchaseOrderLine.sku,
            PurchaseOrderLine.quantity,
            PurchaseOrderLine.expected_date,
            PurchaseOrder.placed_at,
        )
        .join(PurchaseOrder, PurchaseOrder.id == PurchaseOrderLine.purchase_order_id)
        .order_by(PurchaseOrderLine.id)
    ).all()
    receipts = connection.execute(
        select(Receipt.purchase_order_line_id, Receipt.quantity, Receipt.received_at).order_by(
            Receipt.received_at, Receipt.id
        )
    ).all()
    cancels = connection.execute(
        select(AuditEntry.entity_id, AuditEntry.occurred_at).where(
            AuditEntry.action == "cancel_purchase_order",
            AuditEntry.entity_type == "purchase_order",
        )
    ).all()
    return InboundHistory(_po_frame(lines, receipts, cancels))


def _po_frame(
    lines: Sequence[Any], receipts: Sequence[Any], cancels: Sequence[Any]
) -> pd.DataFrame:
    ordered = {line.id: line.quantity for line in lines}
    received: Counter[int] = Counter()
    closed: dict[int, int] = {}
    for line_id, quantity, received_at in receipts:
        received[line_id] += quantity
        if line_id not in closed and received[line_id] >= ordered.get(line_id, 0):
            closed[line_id] = micros(received_at)
    cancelled = {int(order_id): micros(at) for order_id, at in cancels}
    order_ids = [line.purchase_order_id for line in lines]
    per_order = Counter(order_ids)
    return pd.DataFrame(
        {
            "po_line_id": np.array([line.id for line in lines], dtype=np.int64),
            "purchase_order_id": np.array(order_ids, dtype=np.int64),
            "supplier_id": pd.Series([line.supplier_id for line in lines], dtype=object),
            "location_id": pd.Series([line.location_id for line in lines], dtype=object),
            "sku": pd.Series([line.sku for line in lines], dtype=object),
            "quantity": np.array([line.quantity for line in lines], dtype=np.int64),
            "expected_day": np.array(
                [(line.expected_date - _EPOCH).days for line in lines], dtype=np.int64
            ),
            "placed_at": np.array([micros(line.placed_at) for line in lines], dtype=np.int64),
            "cancelled_at": np.array([cancelled.get(i, OPEN) for i in order_ids], dtype=np.int64),
            "closed_at": np.array([closed.get(line.id, OPEN) for line in lines], dtype=np.int64),
            "lines_on_order": np.array([per_order[i] for i in order_ids], dtype=np.int64),
        }
    )


def micros(moment: datetime) -> int:
    """A moment as int64 microseconds since the epoch (a naive one is taken as UTC, as SQLite
    hands back what was stored in UTC)."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    delta = aware - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def as_moment(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, tz=UTC)


# --- rows ------------------------------------------------------------------------------------


def receipt_delay_frame(history: InboundHistory, start: datetime, end: datetime) -> pd.DataFrame:
    """Rows for every line at its placement and each UTC midnight while open, for moments ``t``
    in ``[start, end)``; the declared columns in declared order, validated dtypes."""
    start_us, end_us = micros(start), micros(end)
    index, moments = _snapshots(history.po_lines, start_us, end_us)
    return _rows(history, index, moments)


def open_line_rows(history: InboundHistory, at: datetime) -> pd.DataFrame:
    """One row per line open at ``at`` (placed by then, neither completed nor cancelled before
    it), computed as of ``at``: the rows a forecast refresh scores."""
    lines = history.po_lines
    at_us = micros(at)
    open_now = (lines["placed_at"].to_numpy() <= at_us) & _still_open(lines, at_us)
    index = np.flatnonzero(open_now)
    return _rows(history, index, np.full(len(index), at_us, dtype=np.int64))


def _still_open(lines: pd.DataFrame, at_us: int | np.ndarray) -> np.ndarray:
    """Not known to be completed or cancelled before ``at`` (an event at ``at`` is not known)."""
    closed = lines["closed_at"].to_numpy()
    cancelled = lines["cancelled_at"].to_numpy()
    return ((closed == OPEN) | (closed >= at_us)) & ((cancelled == OPEN) | (cancelled >= at_us))


def _snapshots(lines: pd.DataFrame, start_us: int, end_us: int) -> tuple[np.ndarray, np.ndarray]:
    """(row of ``lines``, moment) pairs: the placement, then every midnight while open."""
    placed = lines["placed_at"].to_numpy()
    closed = lines["closed_at"].to_numpy()
    cancelled = lines["cancelled_at"].to_numpy()
    stop = np.minimum(
        np.where(closed == OPEN, _NEVER, closed), np.where(cancelled == OPEN, _NEVER, cancelled)
    )
    index: list[np.ndarray] = []
    moments: list[np.ndarray] = []
    for i in range(len(lines)):
        first_midnight = (placed[i] // DAY_US + 1) * DAY_US
        last = min(int(stop[i]), end_us - 1)  # open at m while its end is at or after m
        midnights = np.arange(first_midnight, last + 1, DAY_US, dtype=np.int64)
        at = np.concatenate([[placed[i]], midnights])
        at = at[(at >= start_us) & (at < end_us)]
        index.append(np.full(len(at), i, dtype=np.int64))
        moments.append(at)
    if not index:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(index), np.concatenate(moments)


def _rows(history: InboundHistory, index: np.ndarray, moments: np.ndarray) -> pd.DataFrame:
    lines = history.po_lines
    take = lines.iloc[index]
    expected = take["expected_day"].to_numpy()
    placed = take["placed_at"].to_numpy()
    day_t = moments // DAY_US
    closed = take["closed_at"].to_numpy()
    columns: dict[str, Any] = {
        "po_line_id": take["po_line_id"].to_numpy(),
        "as_of": moments,
        "placed_at": placed,
        "lead_days_promised": expected - placed // DAY_US,
        "days_open": (moments - placed) / DAY_US,
        "days_to_expected": expected - day_t,
        "expected_weekday": (expected + 3) % 7,  # 1970-01-01 was a Thursday
        "quantity": take["quantity"].to_numpy(dtype=np.float64),
        "lines_on_order": take["lines_on_order"].to_numpy(),
        "supplier": take["supplier_id"].to_numpy(dtype=object),
        "location": take["location_id"].to_numpy(dtype=object),
        LABEL: np.where(closed == OPEN, np.nan, (closed // DAY_US - expected).astype(np.float64)),
    }
    columns |= _supplier_history(lines, take, moments)
    columns |= _open_book(lines, take, moments)
    frame = typed_frame(columns, RECEIPT_DELAY)
    return frame.sort_values(["as_of", "po_line_id"], kind="mergesort").reset_index(drop=True)


# --- supplier history --------------------------------------------------------------------------


class _Stream:
    """Delays of completed lines of one key, by completion moment, with running sums so any
    window ``[lo, hi)`` of moments reads in two binary searches."""

    def __init__(self, moments: np.ndarray, delays: np.ndarray, bins: np.ndarray) -> None:
        order = np.argsort(moments, kind="mergesort")
        self.moments = moments[order]
        ordered = delays[order].astype(np.float64)
        self.sum = np.concatenate([[0.0], np.cumsum(ordered)])
        self.squares = np.concatenate([[0.0], np.cumsum(ordered**2)])
        self.late = np.concatenate([[0], np.cumsum(ordered > 0)])
        self.bins = bins
        one_hot = (delays[order][:, None] == bins[None, :]).astype(np.int64)
        self.histogram = np.vstack([np.zeros((1, len(bins)), np.int64), np.cumsum(one_hot, 0)])

    def span(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Index range of events with ``lo <= moment < hi`` (known strictly before ``hi``)."""
        return (
            np.searchsorted(self.moments, lo, side="left"),
            np.searchsorted(self.moments, hi, side="left"),
        )

    def counts(self, first: int, last: int) -> dict[int, int]:
        found = self.histogram[last] - self.histogram[first]
        return {int(self.bins[b]): int(found[b]) for b in np.flatnonzero(found)}


def _completed(lines: pd.DataFrame) -> pd.DataFrame:
    done = lines.loc[lines["closed_at"].to_numpy() != OPEN]
    return done.assign(delay=done["closed_at"].to_numpy() // DAY_US - done["expected_day"])


def _supplier_history(
    lines: pd.DataFrame, take: pd.DataFrame, moments: np.ndarray
) -> dict[str, np.ndarray]:
    done = _completed(lines)
    bins = np.unique(done["delay"].to_numpy()) if len(done) else np.zeros(0, dtype=np.int64)

    def stream(frame: pd.DataFrame) -> _Stream:
        return _Stream(frame["closed_at"].to_numpy(), frame["delay"].to_numpy(), bins)

    everyone = stream(done)
    by_supplier = {key: stream(group) for key, group in done.groupby("supplier_id")}
    by_pair = {key: stream(group) for key, group in done.groupby(["supplier_id", "location_id"])}
    empty = stream(done.iloc[:0])
    n = len(take)
    out = {name: np.full(n, np.nan) for name in _HISTORY_COLUMNS}
    out["supplier_receipts_182d"] = np.zeros(n, dtype=np.int64)
    suppliers = take["supplier_id"].to_numpy(dtype=object)
    locations = take["location_id"].to_numpy(dtype=object)
    at_least = moments // DAY_US - take["expected_day"].to_numpy()
    long_lo = moments - LOOKBACK_DAYS * DAY_US
    short_lo = moments - SHORT_WINDOW_DAYS * DAY_US
    g_long = everyone.span(long_lo, moments)
    g_short = everyone.span(short_lo, moments)
    for supplier in pd.unique(suppliers):
        rows = np.flatnonzero(suppliers == supplier)
        own = by_supplier.get(supplier, empty)
        s_long = own.span(long_lo[rows], moments[rows])
        s_short = own.span(short_lo[rows], moments[rows])
        g_l = (g_long[0][rows], g_long[1][rows])
        g_s = (g_short[0][rows], g_short[1][rows])
        out["supplier_receipts_182d"][rows] = s_long[1] - s_long[0]
        supplier_mean = _shrunk(own.sum, s_long, everyone.sum, g_l)
        out["supplier_delay_mean_182d"][rows] = supplier_mean
        out["supplier_delay_mean_56d"][rows] = _shrunk(own.sum, s_short, everyone.sum, g_s)
        out["supplier_late_share_56d"][rows] = _shrunk(own.late, s_short, everyone.late, g_s)
        out["supplier_delay_std_182d"][rows] = _shrunk_std(own, s_long, everyone, g_l)
        pair_spans = (np.zeros(len(rows), np.int64), np.zeros(len(rows), np.int64))
        pair_of = np.empty(len(rows), dtype=object)
        for location in pd.unique(locations[rows]):
            here = np.flatnonzero(locations[rows] == location)
            pair = by_pair.get((supplier, location), empty)
            first, last = pair.span(long_lo[rows[here]], moments[rows[here]])
            pair_spans[0][here], pair_spans[1][here] = first, last
            pair_of[here] = pair
            count = last - first
            total = pair.sum[last] - pair.sum[first]
            prior = supplier_mean[here]
            out["supplier_location_delay_mean_182d"][rows[here]] = (total + MEAN_PRIOR * prior) / (
                count + MEAN_PRIOR
            )
        for k, row in enumerate(rows):
            quantiles = delay_quantiles(
                [
                    pair_of[k].counts(pair_spans[0][k], pair_spans[1][k]),
                    own.counts(s_long[0][k], s_long[1][k]),
                    everyone.counts(g_long[0][row], g_long[1][row]),
                ],
                at_least=int(at_least[row]),
            )
            if quantiles is not None:
                for level, value in zip((50, 80, 90), quantiles.as_tuple(), strict=True):
                    out[f"empirical_p{level}"][row] = value
    return out


_HISTORY_COLUMNS = (
    "supplier_delay_mean_56d",
    "supplier_delay_mean_182d",
    "supplier_late_share_56d",
    "supplier_delay_std_182d",
    "supplier_location_delay_mean_182d",
    "empirical_p50",
    "empirical_p80",
    "empirical_p90",
)


def _shrunk(
    own: np.ndarray,
    own_span: tuple[np.ndarray, np.ndarray],
    parent: np.ndarray,
    parent_span: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """(own sum + m x parent mean) / (own count + m); null while the parent has no event."""
    n = own_span[1] - own_span[0]
    total = own[own_span[1]] - own[own_span[0]]
    parent_n = parent_span[1] - parent_span[0]
    parent_total = parent[parent_span[1]] - parent[parent_span[0]]
    with np.errstate(invalid="ignore", divide="ignore"):
        parent_mean = np.where(parent_n > 0, parent_total / np.maximum(parent_n, 1), np.nan)
        return (total + MEAN_PRIOR * parent_mean) / (n + MEAN_PRIOR)


def _shrunk_std(
    own: _Stream,
    own_span: tuple[np.ndarray, np.ndarray],
    parent: _Stream,
    parent_span: tuple[np.ndarray, np.ndarray],
) -> np.ndarray:
    """Square root of the own population variance shrunk toward the parent's (m=5)."""

    def variance(stream: _Stream, span: tuple[np.ndarray, np.ndarray]) -> tuple[Any, Any]:
        n = span[1] - span[0]
        total = stream.sum[span[1]] - stream.sum[span[0]]
        squares = stream.squares[span[1]] - stream.squares[span[0]]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = total / np.maximum(n, 1)
            return n, np.where(n > 0, np.maximum(squares / np.maximum(n, 1) - mean**2, 0.0), np.nan)

    n, own_var = variance(own, own_span)
    _, parent_var = variance(parent, parent_span)
    with np.errstate(invalid="ignore"):
        mixed = (n * np.nan_to_num(own_var) + MEAN_PRIOR * parent_var) / (n + MEAN_PRIOR)
    return np.sqrt(mixed)


# --- the supplier's open book ------------------------------------------------------------------

_CHUNK = 4096


def _open_book(lines: pd.DataFrame, take: pd.DataFrame, moments: np.ndarray) -> dict[str, Any]:
    n = len(take)
    open_lines = np.zeros(n, dtype=np.int64)
    overdue = np.zeros(n, dtype=np.int64)
    worst = np.zeros(n, dtype=np.int64)
    suppliers = take["supplier_id"].to_numpy(dtype=object)
    ids = take["po_line_id"].to_numpy()
    for supplier, book in lines.groupby("supplier_id"):
        rows_all = np.flatnonzero(suppliers == supplier)
        placed = book["placed_at"].to_numpy()
        expected = book["expected_day"].to_numpy()
        book_ids = book["po_line_id"].to_numpy()
        for start in range(0, len(rows_all), _CHUNK):
            rows = rows_all[start : start + _CHUNK]
            at = moments[rows][:, None]
            known = (placed[None, :] <= at) & (book_ids[None, :] != ids[rows][:, None])
            still = _still_open(book, at)
            is_open = known & still
            late_by = (at // DAY_US) - expected[None, :]
            is_overdue = is_open & (late_by > 0)
            open_lines[rows] = is_open.sum(axis=1)
            overdue[rows] = is_overdue.sum(axis=1)
            worst[rows] = np.where(is_overdue, late_by, 0).max(axis=1, initial=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(open_lines > 0, overdue / np.maximum(open_lines, 1), np.nan)
    return {
        "supplier_open_lines": open_lines,
        "supplier_open_overdue_share": share,
        "supplier_open_overdue_max_days": worst,
    }
