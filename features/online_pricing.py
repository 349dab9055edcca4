"""Pricing features of a draft order's lines at its entry moment: the online twin of
:mod:`features.pricing`, for the margin-anomaly score while the customer waits.

Offline and online share the definitions and differ only in how "the lines before ``t``" are
found, as :mod:`features.online` does for the late-shipment set:

* **The same rows.** The priced lines others paid are :func:`features.pricing.priced_lines` of the
  ERP's lines (first price decision, captured at entry, later splits not counted again), read in
  id ranges: the first build reads ``(0, last id]``, each :meth:`OnlinePricing.refresh` the ids
  written since. Every value comes from :func:`features.pricing.priced_at_entry`,
  :func:`~features.pricing.customer_history_values` and
  :func:`~features.pricing.tier_history_values`, the functions the offline frame calls.
* **The same lookups, by key.** Offline finds each row's last lines of a (customer, SKU) or
  (tier, SKU) by as-of searches over the whole frame; online keeps those lines sorted by key,
  entry moment and line id (the offline tie order) and takes a slice with two binary searches.
  "Before" is strict in both: a line never sees its own order's lines, nor any entered later.
* **The line as priced.** A draft carries its unit price; what the ERP would have recorded with
  it is derived as capture does on the entry date (UTC): the product's list price, and the tier
  price for the quantity from the price-list entries valid that day (the newest per quantity
  break, then :func:`erp_core.domain.pricing.tier_unit_price`). Whether the price was typed is the
  one fact a :class:`~features.online.DraftLine` lacks: :class:`PricedDraftLine` carries it.

Master data (tier, cost, category, list price) is as it is now, as offline. Between refreshes the
lines captured since are not counted. Ids grow in commit order on SQLite; on PostgreSQL a
transaction can commit a lower id after a higher one was read, which a tail by id would miss.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, Float, Integer, String, cast, func, select
from sqlalchemy.orm import Session

from erp_core.db.models import AuditEntry, OrderLine, PriceDecision, SalesOrder
from erp_core.domain.calendar import BusinessCalendar
from erp_core.domain.errors import InvalidValue, NotFound
from erp_core.domain.pricing import PriceBreak, tier_unit_price
from erp_core.policy import load_policy
from features.asof import MICROS_PER_DAY
from features.history import History, IdRange, _Reader
from features.late_shipment import to_micros
from features.online import DraftLine, DraftOrder, _engine, _records
from features.pricing import (
    CUSTOMER_DEPTH,
    EVERY_MOMENT,
    TIER_DEPTH,
    TIER_WINDOW_DAYS,
    customer_history_values,
    priced_at_entry,
    priced_lines,
    tier_history_values,
)
from features.registry import PRICING

Key = tuple[Hashable, ...]
PAID_COLUMNS = {
    "line_id": np.int64,
    "customer_id": object,
    "sku": object,
    "entered_at": np.int64,
    "unit_price": np.float64,
    "line_units": np.int64,
}
"""What the index keeps of each priced line: enough to rebuild its keys when a tier changes."""


@dataclass(frozen=True)
class PricedDraftLine(DraftLine):
    """A draft line that also says whether its price was typed: ``price_overridden`` is capture's
    ``override`` source (the request carried a unit price), which the price alone cannot tell when
    someone types the list's own price. A plain :class:`DraftLine` is read as typed exactly when
    its price differs from the price list's for its quantity."""

    price_overridden: bool | None = None


# --- the price list as capture reads it -----------------------------------------------------


@dataclass(frozen=True)
class _Entries:
    """One (tier, SKU)'s price-list entries by ``valid_from`` (ties: the later entry newer, as
    offline's as-of search orders them)."""

    valid_from: np.ndarray
    min_quantity: np.ndarray
    unit_price: np.ndarray

    def valid_on(self, day: int) -> slice:
        return slice(0, int(np.searchsorted(self.valid_from, day, side="right")))

    def one_unit_in_force(self, day: int) -> float:
        """The newest one-unit price valid on the day (NaN: none), as
        :func:`features.pricing.price_in_force` finds it."""
        valid = self.valid_on(day)
        prices = self.unit_price[valid][self.min_quantity[valid] == 1]
        return float(prices[-1]) if len(prices) else np.nan

    def break_price(self, list_price: float, quantity: int, day: int) -> float:
        """The price capture would have set for the quantity: the newest entry per break valid
        on the day, the best break the quantity reaches (else the list price)."""
        valid = self.valid_on(day)
        quantities, prices = self.min_quantity[valid].tolist(), self.unit_price[valid].tolist()
        newest = dict(zip(quantities, prices, strict=True))  # a later entry replaces a break
        breaks = [PriceBreak(q, Decimal(repr(price))) for q, price in sorted(newest.items())]
        return float(tier_unit_price(Decimal(repr(list_price)), breaks, quantity))


def _entries_by_key(price_list: pd.DataFrame) -> dict[Key, _Entries]:
    ordered = price_list.sort_values("valid_from", kind="stable")
    groups = ordered.groupby(["tier", "sku"], sort=False, observed=True).indices
    columns = {name: ordered[name].to_numpy() for name in ("valid_from", "min_quantity")}
    prices = ordered["unit_price"].to_numpy(dtype=np.float64)
    return {
        (str(tier), str(sku)): _Entries(
            columns["valid_from"][rows].astype(np.int64),
            columns["min_quantity"][rows].astype(np.int64),
            prices[rows],
        )
        for (tier, sku), rows in groups.items()
    }


# --- priced lines by key ---------------------------------------------------------------------


@dataclass(frozen=True)
class _ByKey:
    """Priced lines grouped by a key, each group in (entered_at, line_id) order: the order in
    which offline's as-of search counts a later line of the same instant as newer."""

    slices: dict[Key, tuple[int, int]]
    times: np.ndarray
    prices: np.ndarray
    units: np.ndarray

    @classmethod
    def of(cls, parts: list[np.ndarray], paid: pd.DataFrame) -> _ByKey:
        codes, keys = pd.MultiIndex.from_arrays(parts).factorize()
        times = paid["entered_at"].to_numpy(dtype=np.int64)
        order = np.lexsort((paid["line_id"].to_numpy(), times, codes))
        order = order[codes[order] >= 0]  # a line without a full key belongs to none
        sorted_codes = codes[order]
        starts = np.flatnonzero(np.diff(sorted_codes, prepend=-1))
        ends = np.append(starts[1:], len(order))[: len(starts)]  # none when nothing was paid
        slices = {
            tuple(keys[code]): (int(start), int(end))
            for code, start, end in zip(sorted_codes[starts], starts, ends, strict=True)
        }
        return cls(
            slices,
            times[order],
            paid["unit_price"].to_numpy(dtype=np.float64)[order],
            paid["line_units"].to_numpy(dtype=np.float64)[order],
        )

    def recent(
        self, key: Key, t: int, depth: int, window: int | None
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """The prices and units of the key's last ``depth`` lines entered in ``[t - window, t)``
        (newest first, NaN past the oldest; no window: all before ``t``), and how many lines the
        key has there."""
        start, end = self.slices.get(key, (0, 0))
        times = self.times[start:end]
        upper = start + int(np.searchsorted(times, t, side="left"))
        lower = start if window is None else start + int(np.searchsorted(times, t - window))
        taken = np.arange(upper - 1, max(upper - depth, lower) - 1, -1)
        prices, units = np.full(depth, np.nan), np.full(depth, np.nan)
        prices[: len(taken)], units[: len(taken)] = self.prices[taken], self.units[taken]
        return prices, units, upper - lower


# --- the index ------------------------------------------------------------------------------


class OnlinePricing:
    """The pricing features of draft orders, from an index of the ERP's priced lines.

    Build it once per process with :meth:`from_database`, :meth:`refresh` to take in the lines
    captured since (read by id, not reloaded), and call :meth:`features` per order.
    """

    def __init__(
        self,
        history: History,
        calendar: BusinessCalendar,
        approval_threshold_pct: float | None = None,
    ) -> None:
        """Index ``history`` already loaded (a test's, a benchmark's): it cannot refresh. The
        threshold defaults to the shipped policy's, as :func:`features.pricing.pricing_frame`."""
        self.calendar = calendar  # prices know no business days; kept for a uniform signature
        self.threshold_pct = (
            float(load_policy().discount_approval_pct)
            if approval_threshold_pct is None
            else approval_threshold_pct
        )
        self.engine: Engine | None = None
        self.last_line_id = 0
        self._take(_indexed(_paid_table(history), history, 0, 0))

    @classmethod
    def from_database(
        cls,
        source: Engine | Session | str,
        calendar: BusinessCalendar,
        approval_threshold_pct: float | None = None,
    ) -> OnlinePricing:
        """Index the priced lines of the ERP database behind ``source`` (an engine, a session or
        a URL) up to its current last line id, which the next :meth:`refresh` starts after."""
        engine = _engine(source)
        mark = last_line_id(engine)
        online = cls(load_priced_history(engine, (0, mark)), calendar, approval_threshold_pct)
        online.engine, online.last_line_id = engine, mark
        return online

    def refresh(self) -> None:
        """Take in the lines written since the last read (ids above the last one, up to the
        current last) and master data as it is now: afterwards the index equals one built from
        scratch (a changed tier moves its customer's lines to the new tier's key)."""
        self.apply(self.read_update())

    def read_update(self) -> PricingUpdate:
        """What :meth:`refresh` reads and builds, without changing the index (the whole cost of
        a refresh: the keys of every priced line are sorted again), so a server can build it on
        another thread and :meth:`apply` it between two requests."""
        if self.engine is None:
            raise ValueError("this index was built from loaded history: no database to refresh")
        since = self.last_line_id
        mark = last_line_id(self.engine)
        new = load_priced_history(self.engine, (since, mark))
        added = _paid_table(new)
        paid = pd.concat([self.paid, added], ignore_index=True) if len(added) else self.paid
        return _indexed(paid, new, since, mark)

    def apply(self, update: PricingUpdate) -> bool:
        """Take an update read since this index's last line; one read from another line (the
        index was refreshed meanwhile) is refused (False), never counted twice."""
        if update.since != self.last_line_id:
            return False
        self._take(update)
        return True

    def _take(self, update: PricingUpdate) -> None:
        self.paid = update.paid
        self.customers = update.customers
        self.products = update.products
        self.price_list = update.price_list
        self.by_customer = update.by_customer
        self.by_tier = update.by_tier
        self.last_line_id = update.last_line_id

    # -- one order ---------------------------------------------------------------------------

    def features(self, order: DraftOrder) -> pd.DataFrame:
        """One row per line of the order (indexed by line number), the registry's pricing
        feature columns in declared order."""
        index = pd.Index([line.line_no for line in order.lines], name="line_no")
        return pd.DataFrame(self.feature_values(order), index=index)

    def feature_values(self, order: DraftOrder) -> dict[str, np.ndarray]:
        """The order's pricing features as one array per feature (what a model's preprocessing
        takes without a DataFrame in between)."""
        rows = self.draft_rows(order)
        t = int(rows["entered_at"][0])
        columns = {
            **priced_at_entry(rows, rows["in_force"], self.threshold_pct),
            **self._customer_history(rows, t),
            **self._tier_history(rows, t),
            "channel": rows["channel"],
            "customer_tier": rows["tier"],
            "product_category": rows["category"],
        }
        return {name: np.asarray(columns[name]) for name in PRICING.feature_names}

    def _customer_history(self, rows: Mapping[str, np.ndarray], t: int) -> dict[str, Any]:
        found = [
            self.by_customer.recent((customer, sku), t, CUSTOMER_DEPTH, None)
            for customer, sku in zip(rows["customer_id"], rows["sku"], strict=True)
        ]
        prices, units, counts = zip(*found, strict=True)
        return customer_history_values(
            rows, np.vstack(prices), np.vstack(units), np.array(counts, dtype=np.int64)
        )

    def _tier_history(self, rows: Mapping[str, np.ndarray], t: int) -> dict[str, Any]:
        window = TIER_WINDOW_DAYS * MICROS_PER_DAY
        found = [
            self.by_tier.recent((tier, sku), t, TIER_DEPTH, window)
            for tier, sku in zip(rows["tier"], rows["sku"], strict=True)
        ]
        prices, _, counts = zip(*found, strict=True)
        return tier_history_values(rows, np.vstack(prices), np.array(counts, dtype=np.int64))

    def draft_rows(self, order: DraftOrder) -> dict[str, np.ndarray]:
        """The order's lines as the columns the offline pricing rows carry (what capture would
        have recorded with each price), plus ``in_force``: the one-unit tier price valid on the
        entry date (NaN: no entry)."""
        entered = _entry_micros(order.entered_at)
        self._check(order)
        tier = str(self.customers[order.customer_id]["tier"])
        day = entered // MICROS_PER_DAY
        products = [self.products[line.sku] for line in order.lines]
        list_prices = [float(product["product_list_price"]) for product in products]
        entries = [self.price_list.get((tier, line.sku)) for line in order.lines]
        breaks = [
            found.break_price(price, line.quantity, day) if found else price
            for line, price, found in zip(order.lines, list_prices, entries, strict=True)
        ]
        n = len(order.lines)

        def text(values: list[Any]) -> np.ndarray:
            return np.array(values, dtype=object)

        return {
            "entered_at": np.full(n, entered, dtype=np.int64),
            "customer_id": text([order.customer_id] * n),
            "tier": text([tier] * n),
            "channel": text([order.channel] * n),
            "sku": text([line.sku for line in order.lines]),
            "line_units": np.array([line.quantity for line in order.lines], dtype=np.int64),
            "unit_price": np.array([line.unit_price for line in order.lines], dtype=np.float64),
            "list_price": np.array(list_prices, dtype=np.float64),
            "tier_price": np.array(breaks, dtype=np.float64),
            "price_source": text(
                [
                    _price_source(line, price)
                    for line, price in zip(order.lines, breaks, strict=True)
                ]
            ),
            "in_force": np.array(
                [found.one_unit_in_force(day) if found else np.nan for found in entries]
            ),
            "unit_cost": np.array([product["unit_cost"] for product in products], dtype=float),
            "category": text([product["category"] for product in products]),
        }

    def _check(self, order: DraftOrder) -> None:
        """A draft serving was handed wrongly fails here with the field and the value, before any
        number is computed from it."""
        if not order.lines:
            raise InvalidValue("lines", [], "a draft order needs at least one line")
        if order.customer_id not in self.customers:
            raise NotFound("customer", "customer_id", order.customer_id)
        numbers = [line.line_no for line in order.lines]
        if len(set(numbers)) < len(numbers):
            raise InvalidValue("line_no", numbers, "each line of a draft needs its own number")
        for line in order.lines:
            if line.sku not in self.products:
                raise NotFound("product", "sku", line.sku)
            if line.quantity <= 0:
                raise InvalidValue("quantity", line.quantity, f"line {line.line_no}: must be > 0")
            if not np.isfinite(line.unit_price) or line.unit_price <= 0:
                raise InvalidValue(
                    "unit_price", line.unit_price, f"line {line.line_no}: must be > 0"
                )


@dataclass(frozen=True)
class PricingUpdate:
    """The priced lines up to ``last_line_id`` with master data as read then, keyed: what
    :meth:`OnlinePricing.refresh` takes in (read after line ``since``)."""

    since: int
    last_line_id: int
    paid: pd.DataFrame
    customers: dict[Hashable, dict[str, Any]]
    products: dict[Hashable, dict[str, Any]]
    price_list: dict[Key, _Entries]
    by_customer: _ByKey
    by_tier: _ByKey


def _indexed(paid: pd.DataFrame, history: History, since: int, mark: int) -> PricingUpdate:
    """Master data as ``history`` read it, and the keys of every priced line under it."""
    customers = _records(history.customers, "customer_id")
    customer = [str(c) for c in paid["customer_id"]]
    tiers = [customers.get(c, {}).get("tier") for c in customer]
    skus = paid["sku"].to_numpy(dtype=object)
    return PricingUpdate(
        since=since,
        last_line_id=mark,
        paid=paid,
        customers=customers,
        products=_records(history.products, "sku"),
        price_list=_entries_by_key(history.price_list),
        by_customer=_ByKey.of([np.array(customer, dtype=object), skus], paid),
        by_tier=_ByKey.of([np.array(tiers, dtype=object), skus], paid),
    )


def _price_source(line: DraftLine, break_price: float) -> str:
    """Capture's source of the price: as the line says, else typed when it is not the list's."""
    overridden = getattr(line, "price_overridden", None)
    if overridden is None:
        overridden = line.unit_price != break_price
    return "override" if overridden else "price_list"


def _entry_micros(entered_at: datetime | int) -> int:
    if isinstance(entered_at, int):
        return entered_at
    if entered_at.tzinfo is None:
        raise InvalidValue("entered_at", entered_at, "a naive datetime; give the time zone")
    return to_micros(entered_at)


def _paid_table(history: History) -> pd.DataFrame:
    """The priced lines of ``history`` as offline counts them, reduced to what the index keeps."""
    paid = priced_lines(history, *EVERY_MOMENT)
    return pd.DataFrame(
        {name: paid[name].to_numpy(dtype=dtype) for name, dtype in PAID_COLUMNS.items()}
    )


# --- reading the priced lines by id ---------------------------------------------------------


def last_line_id(source: Engine) -> int:
    """The last order-line id (0 when none): where the next read of priced lines starts."""
    with source.connect() as connection:
        return int(
            connection.execute(select(func.coalesce(func.max(OrderLine.id), 0))).scalar_one()
        )


def load_priced_history(source: Engine, ids: IdRange) -> History:
    """The order lines with ids in ``ids`` and what :func:`features.pricing.priced_lines` needs
    of them (their orders, first price decisions and splits), with master data whole; the
    tables pricing does not read come back empty.

    A split is read when its new line or the line it was split from is in ``ids``: the first
    tells a line split off after capture (not counted), the second gives a line's units at entry
    whatever was split off it before the read (lines are read first, then their splits)."""
    with source.connect() as connection:
        reader = _Reader(connection, source.dialect.name)
        lines = _lines(reader, ids)
        empty = pd.DataFrame()
        return History(
            lines=lines,
            orders=reader.frame(_orders_query(ids)),
            customers=reader.customers(),
            products=reader.products(),
            locations=empty,
            lanes=empty,
            state_changes=empty,
            first_promises=empty,
            first_prices=reader.frame(_first_prices_query(ids)),
            stock_moves=empty,
            milestones=empty,
            receipts=empty,
            splits=_splits(reader, ids),
            expedites=empty,
            price_list=reader.price_list(),
            price_approvals=empty,
            backorders=empty,
            po_lines=empty,
        )


def _line_in(ids: IdRange) -> Any:
    after, until = ids
    return (OrderLine.id > after) & (OrderLine.id <= until)


def _lines(reader: _Reader, ids: IdRange) -> pd.DataFrame:
    query = (
        select(
            OrderLine.id.label("line_id"),
            OrderLine.order_id,
            OrderLine.parent_line_id,
            OrderLine.sku,
            OrderLine.quantity,
            reader.raw(OrderLine.entered_at).label("entered_at"),
        )
        .where(_line_in(ids))
        .order_by(OrderLine.id)
    )
    frame = reader.frame(query, micros=("entered_at",))
    if frame.empty:  # an empty read carries no dtypes; the lookups need integer ids
        frame = frame.astype({"line_id": np.int64, "order_id": np.int64, "entered_at": np.int64})
    frame["parent_line_id"] = frame["parent_line_id"].astype("Int64")
    return frame


def _orders_query(ids: IdRange) -> Any:
    return select(
        SalesOrder.id.label("order_id"), SalesOrder.customer_id, SalesOrder.channel
    ).where(SalesOrder.id.in_(select(OrderLine.order_id).where(_line_in(ids))))


def _first_prices_query(ids: IdRange) -> Any:
    after, until = ids
    first = (
        select(func.min(PriceDecision.id))
        .where(PriceDecision.line_id > after, PriceDecision.line_id <= until)
        .group_by(PriceDecision.line_id)
    )
    return select(
        PriceDecision.line_id,
        cast(PriceDecision.unit_price, Float).label("unit_price"),
        cast(PriceDecision.list_price, Float).label("list_price"),
        cast(PriceDecision.tier_price, Float).label("tier_price"),
        PriceDecision.source.label("price_source"),
    ).where(PriceDecision.id.in_(first))


def _splits(reader: _Reader, ids: IdRange) -> pd.DataFrame:
    """The ``split_line`` audit rows of new lines that are in ``ids`` or split off one that is."""
    after, until = ids
    new_lines = select(cast(OrderLine.id, String)).where(
        _line_in(ids) | ((OrderLine.parent_line_id > after) & (OrderLine.parent_line_id <= until))
    )
    details = AuditEntry.details
    query = (
        select(
            cast(AuditEntry.entity_id, Integer).label("line_id"),
            details["parent_line_id"].as_integer().label("parent_line_id"),
            reader.raw(AuditEntry.occurred_at).label("occurred_at"),
            details["quantity"].as_integer().label("quantity"),
            details["kept_quantity"].as_integer().label("kept_quantity"),
        )
        .where(
            AuditEntry.action == "split_line",
            AuditEntry.entity_type == "order_line",
            AuditEntry.entity_id.in_(new_lines),
        )
        .order_by(AuditEntry.id)
    )
    frame = reader.frame(query, micros=("occurred_at",))
    columns = ("line_id", "parent_line_id", "occurred_at", "quantity", "kept_quantity")
    return frame.astype(dict.fromkeys(columns, "int64"))
