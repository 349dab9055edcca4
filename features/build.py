"""``build_feature_set``: the offline build the CLI runs and the tests call, from the request's
checks to the written frame.

Every refusal a user can cause (an unknown set, an empty or reversed window, a database with no
order lines in the window, an unknown engine or an unreachable Dask scheduler, a frame that fails
its checks) is a domain error naming the field and the value, raised before anything is written.

Two engines compute the same frame: ``pandas`` (the default, in this process) and ``dask`` (time
chunks on a Dask cluster, :mod:`features.dask_engine`, imported only when asked for).

The features an imported history cannot compute (:mod:`features.availability`) are null in the
frame, and the manifest and the result name each with its reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from erp_core.db.engine import make_engine
from erp_core.db.models import OrderLine
from erp_core.domain.calendar import BusinessCalendar
from erp_core.domain.errors import InvalidValue
from features.registry import FeatureSet, feature_set

if TYPE_CHECKING:
    import pandas as pd

ENGINES = ("pandas", "dask")

Step = Callable[[str], None]
"""Told the name of each step as it starts (the CLI shows it as progress)."""


@dataclass(frozen=True)
class BuildResult:
    feature_set: str
    rows: int
    features: int
    start: datetime
    end: datetime
    frame_path: Path
    manifest_path: Path
    load_seconds: float
    compute_seconds: float
    write_seconds: float
    engine: str = "pandas"
    unavailable: dict[str, str] = field(default_factory=dict)
    """Features the history could not compute -> why (null in the frame, listed in the
    manifest; :mod:`features.availability`)."""

    @property
    def lines_per_second(self) -> float:
        return self.rows / max(self.compute_seconds, 1e-9)


def as_moment(value: date | datetime, field: str) -> datetime:
    """A date as its midnight UTC; a datetime without a time zone is refused."""
    if not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if value.tzinfo is None:
        raise InvalidValue(field, value.isoformat(), "give a time zone (or a plain date)")
    return value


def shown(moment: datetime) -> str:
    """A midnight-UTC moment as its date (what the user typed), anything else in full."""
    if moment.utcoffset() == UTC.utcoffset(None) and moment.time() == datetime.min.time():
        return moment.date().isoformat()
    return moment.isoformat()


def check_window(start: datetime, end: datetime) -> None:
    if start > end:
        raise InvalidValue("start", shown(start), f"is after end={shown(end)}")
    if start == end:
        raise InvalidValue("end", shown(end), "equals start: the window is empty")


def check_database(url: str) -> None:
    """A SQLite file that does not exist is refused rather than created empty."""
    parsed = make_url(url)
    is_file = parsed.get_backend_name() == "sqlite" and parsed.database not in (
        None,
        "",
        ":memory:",
    )
    if is_file and not Path(str(parsed.database)).is_file():
        raise InvalidValue("database_url", url, "no such database file")


def lines_entered(url: str, start: datetime, end: datetime) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            query = select(func.count(OrderLine.id)).where(
                OrderLine.entered_at >= start, OrderLine.entered_at < end
            )
            return int(connection.execute(query).scalar_one())
    finally:
        engine.dispose()


def check_request(
    name: str, database_url: str, start: date | datetime, end: date | datetime
) -> tuple[FeatureSet, tuple[datetime, datetime]]:
    """The declared set and the window as moments, or the domain error of the first thing wrong
    with the request (cheap: one count query), before any history is read."""
    declared = feature_set(name)
    window = as_moment(start, "start"), as_moment(end, "end")
    check_window(*window)
    check_database(database_url)
    if lines_entered(database_url, *window) == 0:
        raise _nothing_in_window(declared, *window)
    return declared, window


def check_engine(name: str, engine: str, scheduler: str | None) -> None:
    """The engine is one of :data:`ENGINES`, a scheduler comes only with ``dask``, and ``dask``
    only for a set it is proven on."""
    feature_set(name)  # an unknown set is named as such first
    if engine not in ENGINES:
        raise InvalidValue("engine", engine, f"use one of {', '.join(ENGINES)}")
    if scheduler is not None and engine != "dask":
        raise InvalidValue("scheduler", scheduler, "a scheduler is only used with engine dask")
    if engine == "dask":
        from features.dask_engine import check_dask_set

        check_dask_set(name)


def build_feature_set(
    name: str,
    database_url: str,
    start: date | datetime,
    end: date | datetime,
    out_dir: Path,
    calendar: BusinessCalendar,
    step: Step | None = None,
    engine: str = "pandas",
    scheduler: str | None = None,
) -> BuildResult:
    """Build the frame of feature set ``name`` for rows in ``[start, end)`` from the ERP at
    ``database_url``, validate it and write it with its manifest into ``out_dir``.

    ``engine="dask"`` computes it on the Dask scheduler at ``scheduler`` (an address such as
    ``tcp://10.0.0.5:8786``), or without one on a LocalCluster started for the build and closed
    after it; the frame is the same bit for bit."""
    announce = step or (lambda _name: None)
    check_engine(name, engine, scheduler)
    declared, window = check_request(name, database_url, start, end)
    if engine == "dask":
        from features.dask_engine import dask_client

        announce(
            "connecting to the Dask scheduler" if scheduler else "starting a local Dask cluster"
        )
        with dask_client(scheduler) as client:
            computed = _compute(declared, database_url, window, calendar, announce, client)
    else:
        computed = _compute(declared, database_url, window, calendar, announce, None)
    return _write(declared, computed, window, database_url, out_dir, announce, engine)


@dataclass(frozen=True)
class _Computed:
    frame: pd.DataFrame
    unavailable: dict[str, str]
    seconds: tuple[float, float]
    """To load the history and to compute the frame."""


def _compute(
    declared: FeatureSet,
    database_url: str,
    window: tuple[datetime, datetime],
    calendar: BusinessCalendar,
    announce: Step,
    client: Any,
) -> _Computed:
    """The frame (on ``client``'s cluster when given), the features the history could not
    compute (the builder nulled them; the whole history decides, whichever engine), and the
    seconds to load and to compute."""
    from features.availability import unavailable_features
    from features.history import load_history  # pandas loads only when building

    announce("loading history")
    started = time.perf_counter()
    history = load_history(database_url)
    loaded = time.perf_counter()
    if client is None:
        announce("computing features")
        frame = declared.load_builder()(history, window[0], window[1], calendar)
    else:
        from features.dask_engine import dask_frame

        announce("computing features on Dask")
        frame = dask_frame(declared, history, window[0], window[1], calendar, client)
    computed = time.perf_counter()
    if frame.empty:
        raise _nothing_in_window(declared, *window)
    unavailable = unavailable_features(declared.name, history, calendar)
    return _Computed(frame, unavailable, (loaded - started, computed - loaded))


def _write(
    declared: FeatureSet,
    computed: _Computed,
    window: tuple[datetime, datetime],
    database_url: str,
    out_dir: Path,
    announce: Step,
    engine: str,
) -> BuildResult:
    from features.store import write_frame

    announce("validating and writing")
    started = time.perf_counter()
    written = write_frame(
        computed.frame,
        declared,
        out_dir,
        start=window[0],
        end=window[1],
        source_url=database_url,
        engine=engine,
        unavailable=computed.unavailable,
    )
    seconds = computed.seconds
    return BuildResult(
        feature_set=declared.name,
        rows=len(computed.frame),
        features=len(declared.features),
        start=window[0],
        end=window[1],
        frame_path=written.frame_path,
        manifest_path=written.manifest_path,
        load_seconds=seconds[0],
        compute_seconds=seconds[1],
        write_seconds=time.perf_counter() - started,
        engine=engine,
        unavailable={
            name: computed.unavailable[name]
            for name in declared.feature_names
            if name in computed.unavailable
        },
    )


def _nothing_in_window(declared: FeatureSet, start: datetime, end: datetime) -> InvalidValue:
    window = f"{shown(start)}..{shown(end)}"
    return InvalidValue(
        "window", window, f"no {declared.entity.replace('_', ' ')}s entered in it; nothing written"
    )
