"""``erpx retrain``: the scheduled job. For each model in service (or every model with
``--all``): build fresh frames, measure drift against the champion, train a challenger, apply the
gate, and say what changed, what was promoted and why. Nothing promoted is a normal outcome.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from erp_core.domain.calendar import BusinessCalendar
from erp_core.domain.errors import InvalidValue
from erp_core.settings import Settings
from training import late_shipment as ls
from training import tracking
from training.demand_forecast import REGISTERED_NAME as DEMAND_FORECAST
from training.demand_forecast import DemandTrainResult, train_demand_forecast
from training.frames import SplitPlan, choose_window, split_window
from training.jobs import TrainResult, train_late_shipment
from training.margin_anomaly import REGISTERED_NAME as MARGIN_ANOMALY
from training.margin_job import MarginTrainResult, train_margin_anomaly

Trainer = Callable[..., TrainResult | MarginTrainResult | DemandTrainResult]
TRAINERS: dict[str, Trainer] = {
    ls.REGISTERED_NAME: train_late_shipment,
    ls.SHIP.registered_name: functools.partial(train_late_shipment, target=ls.SHIP.name),
    MARGIN_ANOMALY: train_margin_anomaly,
    DEMAND_FORECAST: train_demand_forecast,
}
"""Every model the retraining job knows, by registered name."""


@dataclass(frozen=True)
class PlannedRun:
    model: str
    champion_version: str | None
    window: str
    slices: dict[str, str]

    def describe(self) -> str:
        serving = f"champion v{self.champion_version}" if self.champion_version else "no champion"
        return (
            f"{self.model}: {serving}; train a challenger on {self.window} "
            f"(test {self.slices['test']}) and apply the gate"
        )


def plan_retraining(
    settings: Settings, models: list[str] | None, include_unserved: bool, plan: SplitPlan
) -> list[PlannedRun]:
    """The runs the job would make: the named models, else those with a champion (every known
    model with ``include_unserved``)."""
    tracking.configure(settings)
    for name in models or []:
        if name not in TRAINERS:
            raise InvalidValue("model", name, f"unknown model (known: {', '.join(TRAINERS)})")
    window = choose_window(settings.database_url, plan)
    slices = split_window(window, plan).as_dict()
    planned = []
    for name in models or list(TRAINERS):
        champion = tracking.version_by_alias(name, tracking.CHAMPION)
        if champion is None and not (include_unserved or models):
            continue
        version = champion.version if champion else None
        planned.append(PlannedRun(name, version, window.describe(), slices))
    return planned


def retrain(
    settings: Settings,
    calendar: BusinessCalendar,
    planned: list[PlannedRun],
    plan: SplitPlan,
    step: Callable[[str], None] | None = None,
) -> list[TrainResult | MarginTrainResult]:
    return [
        TRAINERS[run.model](settings, calendar, plan=plan, promote=True, step=step)
        for run in planned
    ]


FEEDBACK_DAYS = 28
MODEL_EXCEPTIONS = {"late_risk": ls.REGISTERED_NAME, "margin_anomaly": MARGIN_ANOMALY}
"""The exception types a model's score opens, and the model that opened them."""


@dataclass(frozen=True)
class AlertFeedback:
    """What the people working the queue said of a model's alerts: of the cases it opened and
    they resolved in the period, the share that was not a false alarm (KPIS.md's alert
    precision, from ``erp_core.kpis``)."""

    model: str
    precision: float | None
    resolved: int
    period: str

    def describe(self) -> str:
        if self.precision is None:
            return f"{self.model}: no alert resolved in {self.period}"
        return (
            f"{self.model}: alert precision {self.precision:.0%} over {self.resolved} resolved "
            f"alerts in {self.period}"
        )


def alert_feedback(settings: Settings, days: int = FEEDBACK_DAYS) -> list[AlertFeedback]:
    """Alert precision per model over the last ``days`` before the newest resolution (a
    simulated or imported history ends in the past; a live one ends about now)."""
    from datetime import timedelta

    from sqlalchemy import func, select

    from erp_core.db.engine import make_engine, make_session_factory
    from erp_core.db.models import ExceptionCase
    from erp_core.kpis import compute_kpis

    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as session:
            newest = session.scalar(select(func.max(ExceptionCase.resolved_at)))
            if newest is None:
                return []
            end = newest + timedelta(microseconds=1)
            start = end - timedelta(days=days)
            report = compute_kpis(session, start, end, group_by="exception_type")
    finally:
        engine.dispose()
    period = f"{start:%Y-%m-%d}..{end:%Y-%m-%d}"
    found = []
    for exception_type, model in MODEL_EXCEPTIONS.items():
        if exception_type not in report.groups:
            found.append(AlertFeedback(model, None, 0, period))
            continue
        kpi = report.kpi("alert_precision", exception_type)
        found.append(AlertFeedback(model, kpi.value, int(kpi.denominator or 0), period))
    return found


def summary_rows(result: TrainResult | MarginTrainResult) -> list[tuple[str, str]]:
    """What changed, what was promoted and why, in a few lines."""
    gate = result.gate
    verdict = "promoted to champion" if gate and gate.promote else "not promoted"
    rows = [
        ("model", f"{result.registered_name} v{result.version} ({verdict})"),
        ("why", gate.reason if gate else "no gate applied"),
    ]
    if result.drift is None:
        rows.append(("drift", "no champion profile to compare with"))
    else:
        moved = _top_moved(result.drift)
        rows.append(
            (
                "drift",
                f"score PSI {result.drift['score']:.3f}; "
                + (f"features moved: {moved}" if moved else "no feature moved (all PSI < 0.10)"),
            )
        )
    return rows


def _top_moved(found: dict[str, Any], limit: int = 5) -> str:
    moved = sorted(found["moved"], key=lambda name: -found["features"][name])[:limit]
    return ", ".join(
        f"{name} {found['features'][name]:.2f} ({found['moved'][name]})" for name in moved
    )
