"""The late-shipment frame computed on a Dask cluster, equal bit for bit to the pandas build.

Imported only when a build asks for ``engine="dask"``: ``import dask`` stays off the default path.

**Partitioning: by time.** The window's rows are cut into time chunks ``[lo, hi)`` of about equal
row counts, at entry moments of the window's lines (so a moment is never split: lines entered in
the same instant, an order's lines included, land in the same chunk). Each chunk is one partition
of a ``dask.dataframe`` built with ``from_delayed``; one task computes it with the very pandas
function the default engine runs (:func:`features.late_shipment.late_shipment_frame`) over
``[lo, hi)``.

Why time and not entity: a row asks five keys (SKU x location, location, lane, supplier, and
every key at once for the global priors), so rows grouped by any one entity would still need the
others' whole history; cut by time, what a partition needs is a prefix of the history.

**What each partition needs: the history before its end.** Every value in a row at ``t`` is
computed from events strictly before ``t`` (as-of searches per key), from the row's own line
(its state, units, lane and labels) and from the other rows of its order (entered at ``t`` too).
A chunk ending at ``hi`` therefore needs only the lines entered before ``hi`` with everything
recorded about them (state changes, promises, prices, milestones, splits, expedites: labels are
after ``t`` by nature), the stock moves and receipts before ``hi``, and the master data
(:func:`history_before`). Events at or after ``hi`` are never counted by a row before it, so
leaving them out changes no total, and trailing windows that reach back across a chunk's start
see exactly the events the whole-window build sees. Rates are computed from int64 totals with the
same element-wise float arithmetic, so each row's values have the same bits whichever chunk it is
in.

**What is scattered: the loaded history, once.** The client loads the history as the pandas build
does and scatters it to every worker (``broadcast=True``); each task trims its own prefix on the
worker, so nothing but chunk bounds travels per task. The rows come back to the client, which
puts them in the pandas build's order (the ERP lines table's) and gives each categorical column
the sorted categories of the values present, as :func:`features.schema.typed_frame` does for the
whole frame; the frame is then validated and written exactly as the pandas one.

What this does not do (yet): the history is still loaded on one machine and held whole by each
worker, so Dask here spreads the computation over cores and machines, not the history's memory.
And each chunk derives and sorts the event streams of its whole prefix: the last chunk alone costs
what the streams of the whole build cost (about half of the pandas build at 500k lines), so the
speed-up is bounded near 2x however many workers run, and on two cores this engine is slower than
pandas (bench/results/features-dask.json). Building the sorted streams once (one task per stream)
and scattering them, leaving chunks only their rows' as-of searches, is the next step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from erp_core.domain.calendar import BusinessCalendar
from erp_core.domain.errors import InvalidValue
from features.history import History
from features.late_shipment import late_shipment_frame, to_micros
from features.registry import FeatureSet

if TYPE_CHECKING:
    from distributed import Client

DASK_READY: dict[str, Callable[..., pd.DataFrame]] = {"late_shipment": late_shipment_frame}
"""Feature sets whose frame is proven (by test) to partition by entry time, and their builders."""
CONNECT_TIMEOUT = "5s"
LOCAL_WORKERS = 2
CHUNKS_PER_WORKER = 2
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
UNTRIMMED = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
"""A nanny starts its worker with ``MALLOC_TRIM_THRESHOLD_=65536``, which also turns off glibc's
adaptive mmap threshold: every large array is then mapped and unmapped afresh, and the pipeline's
tasks ran about twice as slowly (measured: 100k lines, 2 workers). The local cluster's workers
start without it; for ``dask worker`` see the README."""

Chunk = tuple[int, int]
"""Entry moments ``[lo, hi)`` in int64 microseconds."""


def check_dask_set(name: str) -> None:
    if name not in DASK_READY:
        ready = ", ".join(sorted(DASK_READY))
        raise InvalidValue("engine", "dask", f"not available for set {name!r} yet (only {ready})")


# --- the cluster ---------------------------------------------------------------------------------


@contextmanager
def dask_client(scheduler: str | None, *, processes: bool = True) -> Iterator[Client]:
    """A client of the scheduler at ``scheduler``; without one, of a LocalCluster of
    :data:`LOCAL_WORKERS` single-threaded workers started for the block and closed after it. An
    address where no scheduler answers within :data:`CONNECT_TIMEOUT` is refused."""
    import dask
    from distributed import Client, LocalCluster

    if scheduler is None:
        with (
            dask.config.set(UNTRIMMED),
            LocalCluster(
                n_workers=LOCAL_WORKERS,
                threads_per_worker=1,
                processes=processes,
                dashboard_address=":0",
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
        return
    reachable(scheduler)
    try:
        client = Client(scheduler, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as error:  # something answers, but not a Dask scheduler
        raise InvalidValue("scheduler", scheduler, f"no Dask scheduler there ({error})") from None
    with client:
        yield client


def reachable(scheduler: str) -> None:
    """Refuse an address that does not parse or where nothing answers within
    :data:`CONNECT_TIMEOUT`, before a client exists (a client that failed to start complains
    again when it is collected)."""
    import asyncio

    from distributed.comm import connect

    async def probe() -> None:
        comm = await connect(scheduler, timeout=CONNECT_TIMEOUT)
        await comm.close()

    try:
        asyncio.run(probe())
    except (OSError, TimeoutError, ValueError, TypeError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InvalidValue(
            "scheduler", scheduler, f"cannot reach a Dask scheduler ({reason})"
        ) from None


# --- the frame -----------------------------------------------------------------------------------


def dask_frame(
    declared: FeatureSet,
    history: History,
    start: date | datetime,
    end: date | datetime,
    calendar: BusinessCalendar,
    client: Client,
    chunks: int | None = None,
) -> pd.DataFrame:
    """The frame of ``declared`` for rows entered in ``[start, end)``, computed in time chunks on
    ``client``'s workers (``chunks``: how many; default two per worker)."""
    import dask
    import dask.dataframe as dd
    from dask import delayed

    check_dask_set(declared.name)
    builder = DASK_READY[declared.name]
    workers = max(len(client.scheduler_info().get("workers", {})), 1)
    bounds = time_chunks(
        history.lines["entered_at"].to_numpy(),
        to_micros(start),
        to_micros(end),
        chunks or CHUNKS_PER_WORKER * workers,
    )
    shared = client.scatter(history, broadcast=True, hash=False)  # hashing it would read it all
    parts = [
        delayed(chunk_frame, pure=True)(builder, shared, lo, hi, calendar) for lo, hi in bounds
    ]
    with dask.config.set({"dataframe.convert-string": False}):
        frame = dd.from_delayed(parts, meta=empty_frame(declared), verify_meta=False)
        # Each partition comes straight back to the client: no worker gathers them all first.
        done = client.gather(client.compute(frame.to_delayed()))
    return in_pandas_order(pd.concat(done, ignore_index=True), history, declared)


def time_chunks(entered: np.ndarray, start: int, end: int, chunks: int) -> list[Chunk]:
    """``[start, end)`` cut at entry moments into at most ``chunks`` ranges of about equal line
    counts; a moment is never split (every line entered at ``m`` is in the range holding ``m``)."""
    moments = np.sort(entered[(entered >= start) & (entered < end)])
    if len(moments) == 0:
        return [(start, end)]
    picks = moments[(np.arange(1, max(chunks, 1)) * len(moments)) // max(chunks, 1)]
    cuts = np.unique(picks[picks > start]).tolist()
    edges = [start, *cuts, end]
    return [(int(lo), int(hi)) for lo, hi in pairwise(edges)]


def chunk_frame(
    builder: Callable[..., pd.DataFrame],
    history: History,
    lo: int,
    hi: int,
    calendar: BusinessCalendar,
) -> pd.DataFrame:
    """One partition: the rows entered in ``[lo, hi)`` from the history before ``hi`` (on a
    worker)."""
    return builder(history_before(history, hi), as_datetime(lo), as_datetime(hi), calendar)


def history_before(history: History, end: int) -> History:
    """What rows entered before ``end`` can depend on: the lines entered before it with all that
    was recorded about them, stock moves and receipts before it, and the master data."""
    lines = history.lines.loc[history.lines["entered_at"] < end]
    ids = lines["line_id"]

    def of_lines(table: pd.DataFrame) -> pd.DataFrame:
        return table.loc[table["line_id"].isin(ids)]

    return history.with_tables(
        lines=lines,
        orders=history.orders.loc[history.orders["order_id"].isin(lines["order_id"])],
        state_changes=of_lines(history.state_changes),
        first_promises=of_lines(history.first_promises),
        first_prices=of_lines(history.first_prices),
        milestones=of_lines(history.milestones),
        splits=of_lines(history.splits),
        expedites=of_lines(history.expedites),
        stock_moves=history.stock_moves.loc[history.stock_moves["occurred_at"] < end],
        receipts=history.receipts.loc[history.receipts["received_at"] < end],
    )


def as_datetime(micros: int) -> datetime:
    """int64 microseconds as an exact UTC datetime (no float on the way)."""
    return EPOCH + timedelta(microseconds=int(micros))


def empty_frame(declared: FeatureSet) -> pd.DataFrame:
    """The frame's columns and dtypes with no rows (the Dask collection's ``meta``)."""
    return pd.DataFrame({spec.name: pd.Series(dtype=spec.dtype) for spec in declared.columns})


def in_pandas_order(frame: pd.DataFrame, history: History, declared: FeatureSet) -> pd.DataFrame:
    """The chunks' rows as the pandas build gives them: in the order of the ERP's lines table, and
    each categorical with the sorted categories of the values present."""
    position = pd.Index(history.lines["line_id"]).get_indexer(frame["line_id"])
    ordered = frame.take(np.argsort(position, kind="stable")).reset_index(drop=True)
    for spec in declared.columns:
        if spec.dtype == "category":
            ordered[spec.name] = sorted_categories(ordered[spec.name])
    return ordered


def sorted_categories(values: Any) -> pd.Categorical:
    """The rule of :func:`features.schema.typed_frame`: categories from the values present,
    sorted."""
    found = pd.Categorical(values).remove_unused_categories()
    return found.reorder_categories(sorted(found.categories))
