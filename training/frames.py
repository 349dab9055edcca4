"""Training frames and their split by time.

A model is trained on older history, stopped early on the next weeks, calibrated on the weeks
after, and tested on the most recent ones: never a random split across time, since a line and
its neighbours on the same day share a backlog, a lane's weather and a supplier's slip, and a
random split would let the model read tomorrow's conditions off today's training rows.

Labels need time to happen: a line entered yesterday has not been delivered yet, and the lines
that stay undelivered longest are the late ones. A window therefore ends ``label_horizon_days``
before the last order entered in the database, and lines still without an outcome (never
delivered, cancelled) are dropped and counted.

A frame built from imported history may hold features the history could not compute (null on
every row, named in the manifest with why): the training frame carries them as ``unavailable``
for the job to leave out.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pandas as pd
from sqlalchemy import func, select

from erp_core.db.engine import make_engine
from erp_core.db.models import OrderLine
from erp_core.domain.calendar import BusinessCalendar
from erp_core.domain.errors import InvalidValue
from features.build import build_feature_set


@dataclass(frozen=True)
class SplitPlan:
    """Days in each slice, newest last: train | validation | calibration | test."""

    validation_days: int = 28
    calibration_days: int = 21
    test_days: int = 28
    min_train_days: int = 28
    label_horizon_days: int = 21
    """Days an order line is given to reach its outcome before it may be learned from."""

    @property
    def held_out_days(self) -> int:
        return self.validation_days + self.calibration_days + self.test_days

    @property
    def min_window_days(self) -> int:
        return self.held_out_days + self.min_train_days

    def check(self) -> None:
        for name in ("validation_days", "calibration_days", "test_days", "min_train_days"):
            if getattr(self, name) < 1:
                raise InvalidValue(name, str(getattr(self, name)), "must be at least 1 day")
        if self.label_horizon_days < 0:
            raise InvalidValue("label_horizon_days", str(self.label_horizon_days), "is negative")


@dataclass(frozen=True)
class TimeWindow:
    start: datetime
    end: datetime

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    def describe(self) -> str:
        return f"{self.start.date()}..{self.end.date()}"


@dataclass(frozen=True)
class Slices:
    """The four time slices of one window, as [start, end) moments."""

    train: TimeWindow
    validation: TimeWindow
    calibration: TimeWindow
    test: TimeWindow

    def as_dict(self) -> dict[str, str]:
        return {name: getattr(self, name).describe() for name in self.__dataclass_fields__}


@dataclass(frozen=True)
class TrainingFrame:
    """The labelled rows of a window with their slices, and what was dropped on the way."""

    frame: pd.DataFrame
    slices: Slices
    manifest_path: Path | None
    unlabelled_rows: int
    unavailable: dict[str, str] = field(default_factory=dict)
    """Features the history could not compute -> why (null in ``frame``; the build's list)."""

    def part(self, name: str) -> pd.DataFrame:
        window: TimeWindow = getattr(self.slices, name)
        entered = self.frame["entered_at"]
        return self.frame.loc[(entered >= window.start) & (entered < window.end)]


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def entry_span(database_url: str) -> tuple[datetime, datetime] | None:
    """First and last moment an order line was entered, or None for an empty database."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            first, last = connection.execute(
                select(func.min(OrderLine.entered_at), func.max(OrderLine.entered_at))
            ).one()
    finally:
        engine.dispose()
    if first is None or last is None:
        return None
    return _aware(first), _aware(last)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def choose_window(
    database_url: str,
    plan: SplitPlan,
    start: date | None = None,
    end: date | None = None,
) -> TimeWindow:
    """The window to learn from: by default from the first entered line to ``label_horizon_days``
    before the last, so every row kept has had time to reach its outcome."""
    plan.check()
    span = entry_span(database_url)
    if span is None:
        raise InvalidValue("database_url", database_url, "holds no order lines to learn from")
    first, last = span
    latest_end = midnight(last.date()) - timedelta(days=plan.label_horizon_days - 1)
    window = TimeWindow(
        midnight(start) if start else midnight(first.date()),
        midnight(end) if end else latest_end,
    )
    if window.end > latest_end:
        raise InvalidValue(
            "end",
            str(window.end.date()),
            f"is later than {latest_end.date()}: lines entered after it have not had "
            f"{plan.label_horizon_days} days to reach their outcome",
        )
    if window.days < plan.min_window_days:
        raise InvalidValue(
            "window",
            window.describe(),
            f"spans {window.days} days; the split needs at least {plan.min_window_days} "
            f"({plan.min_train_days} train + {plan.validation_days} validation + "
            f"{plan.calibration_days} calibration + {plan.test_days} test)",
        )
    return window


def split_window(window: TimeWindow, plan: SplitPlan) -> Slices:
    test_start = window.end - timedelta(days=plan.test_days)
    calibration_start = test_start - timedelta(days=plan.calibration_days)
    validation_start = calibration_start - timedelta(days=plan.validation_days)
    return Slices(
        train=TimeWindow(window.start, validation_start),
        validation=TimeWindow(validation_start, calibration_start),
        calibration=TimeWindow(calibration_start, test_start),
        test=TimeWindow(test_start, window.end),
    )


def load_training_frame(
    feature_set: str,
    label: str,
    database_url: str,
    window: TimeWindow,
    plan: SplitPlan,
    calendar: BusinessCalendar,
    frames_dir: Path | None = None,
    engine: str = "pandas",
    scheduler: str | None = None,
) -> TrainingFrame:
    """Build the feature set's frame for the window (validated, written with its manifest) and
    keep the rows whose label is known."""
    folder = frames_dir or Path(tempfile.mkdtemp(prefix="erpx-frame-"))
    built = build_feature_set(
        feature_set,
        database_url,
        window.start,
        window.end,
        folder,
        calendar,
        engine=engine,
        scheduler=scheduler,
    )
    frame = pd.read_parquet(built.frame_path)
    known = frame[label].notna()
    slices = split_window(window, plan)
    labelled = frame.loc[known].sort_values(["entered_at", "line_id"], kind="mergesort")
    result = TrainingFrame(
        frame=labelled.reset_index(drop=True),
        slices=slices,
        manifest_path=built.manifest_path,
        unlabelled_rows=int((~known).sum()),
        unavailable=dict(built.unavailable),
    )
    for name in ("train", "validation", "calibration", "test"):
        part = result.part(name)
        if part.empty or part[label].nunique() < 2:
            raise InvalidValue(
                "window",
                window.describe(),
                f"its {name} slice {getattr(slices, name).describe()} holds "
                f"{len(part)} labelled lines, {int(part[label].sum()) if len(part) else 0} of "
                "them late: both outcomes are needed; widen the window",
            )
    return result
