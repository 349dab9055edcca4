"""``simulate()``: build a world, run it day by day through the services, write the truth, and
summarise what came out (the CLI and the tests call this same function)."""

from __future__ import annotations

import time as clock
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import func, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from erp_core.db.engine import make_engine, make_session_factory
from erp_core.db.migrate import upgrade_to_head
from erp_core.db.models import Customer, ExceptionCase, Location, OrderLine, Product, SalesOrder
from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import InvalidValue
from erp_core.policy import load_policy
from erp_core.settings import Settings
from erp_core.simulate import truth
from erp_core.simulate.demand import expected_quantity_by_channel, expected_units
from erp_core.simulate.engine import Simulation
from erp_core.simulate.profiles import Profile, get_profile
from erp_core.simulate.world import DEMAND_CLASSES, World, build_world

SETTLING_DAYS = 21
"""Rates and AUCs judge lines entered at least this long before the end: later ones may still be
on their way, and the late ones would be missing more often than the on-time ones."""

Progress = Callable[[int, int, int], None]
"""(days done, days in all, order lines so far) -> None"""


@dataclass
class SimulationSummary:
    profile: str
    seed: int
    days: int
    truth_dir: str
    orders: int
    lines: int
    shipments: int
    purchase_orders: int
    receipts: int
    transfers: int
    returns: int
    cancellations: int
    cycle_counts: int
    exceptions: int
    pricing_anomalies: int
    late_delivery_rate: float
    late_ship_rate: float
    line_fill_rate: float
    oracle_auc_delivery: float
    oracle_auc_ship: float
    oracle_calibration: dict[str, dict[str, float]]
    """Mean P(late delivery) beside the realised late rate, for lines from stock (exact by
    construction) and backorders (approximate: see hazards)."""
    item_mix: dict[str, float]
    customer_cadence_mix: dict[str, float]
    wall_seconds: float
    lines_per_second: float
    refused: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def simulate(
    settings: Settings,
    profile: str = "small",
    days: int | None = None,
    seed: int = 7,
    progress: Progress | None = None,
    append: bool = False,
) -> SimulationSummary:
    """Simulate ``days`` of a ``profile`` world into the database of ``settings``.

    The database must be empty, unless ``append``: then the world is added beside what is there,
    provided none of its master-data ids is taken; its desks only work its own orders.
    """
    world_profile, days = check_request(profile, days)
    world = build_world(world_profile, seed, days)
    url = settings.database_url
    engine = make_engine(url)
    _refuse_unusable(engine, url, world, append)
    upgrade_to_head(url)
    started = clock.perf_counter()
    policy = load_policy(settings.policy_path)
    uow = UnitOfWork(make_session_factory(engine), policy)
    world.holidays = policy.calendar.holidays
    rng = np.random.default_rng(seed + 1)
    run_id = truth.record_run(
        engine,
        profile=profile,
        seed=seed,
        days=days,
        started_at=datetime.now(UTC),
        truth_dir="",
    )
    truth_dir = truth.truth_dir_for(url, settings.var_dir) / f"run-{run_id}"
    sim = Simulation(uow, world, rng)
    sim.load_world()
    for day in range(days):
        sim.run_day(day)
        if progress is not None:
            progress(day + 1, days, sim.counters.lines)
    wall = clock.perf_counter() - started
    _write_truth(sim, truth_dir, days)
    summary = _summarise(sim, uow, profile, seed, days, truth_dir, wall)
    truth.finish_run(engine, run_id, datetime.now(UTC), summary.as_dict(), truth_dir)
    engine.dispose()
    return summary


def check_request(profile: str, days: int | None) -> tuple[Profile, int]:
    """The profile and the number of days, or a domain error naming the bad one."""
    world_profile = get_profile(profile)
    days = world_profile.days if days is None else days
    if isinstance(days, bool) or not isinstance(days, int) or days <= 0:
        raise InvalidValue("days", days, "must be a whole number > 0")
    return world_profile, days


def _refuse_unusable(engine: Any, url: str, world: World, append: bool) -> None:
    """Unreachable, holding data (without ``append``), or holding this world's ids: refuse
    before writing anything."""
    try:
        with engine.connect() as conn:
            if not {"sales_orders", "products"} <= set(inspect(conn).get_table_names()):
                return
            held = conn.execute(select(func.count()).select_from(Product)).scalar_one()
            held += conn.execute(select(func.count()).select_from(SalesOrder)).scalar_one()
            if held and not append:
                raise InvalidValue(
                    "database_url",
                    _hide(url),
                    "already holds products or orders; simulate into an empty database, "
                    "or add this world beside them with --append",
                )
            for model, key, ids in (
                (Product, Product.sku, world.skus),
                (Customer, Customer.id, world.customers),
                (Location, Location.id, world.locations),
            ):
                taken = conn.execute(select(key).where(key.in_(ids)).limit(1)).scalar()
                if taken is not None:
                    raise InvalidValue(
                        model.__tablename__,
                        taken,
                        "already in the database: this world (profile and seed) was simulated "
                        "into it before",
                    )
    except OperationalError as exc:
        raise InvalidValue("database_url", _hide(url), f"cannot connect: {exc.orig}") from exc


def _hide(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _write_truth(sim: Simulation, folder: Path, days: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lines = sim.line_truth()
    pq.write_table(pa.Table.from_pylist(lines), folder / truth.LINES)
    pq.write_table(pa.Table.from_pylist(list(sim.truth_pricing.values())), folder / truth.PRICING)
    world = sim.world
    table = expected_quantity_by_channel(world)
    n_sku, n_loc = world.n_skus, len(world.locations)
    chunks = []
    business_index = 0
    for day in range(days):
        units = expected_units(world, day, business_index, table)
        if sim.calendar.is_business_day(world.day_date(day)):
            business_index += 1
        chunks.append(units.astype(np.float32).ravel())
    pq.write_table(
        pa.table(
            {
                "day": pa.array(np.repeat([world.day_date(d) for d in range(days)], n_sku * n_loc)),
                "sku": pa.array(np.tile(np.repeat(world.skus, n_loc), days)),
                "location_id": pa.array(np.tile(world.locations, n_sku * days)),
                "expected_units": pa.array(np.concatenate(chunks)),
            }
        ),
        folder / truth.DEMAND,
    )


def _calibration(delivered: list[Any]) -> dict[str, dict[str, float]]:
    segments: dict[str, list[Any]] = {"from_stock": [], "backordered": []}
    for plan in delivered:
        segments["backordered" if "stock" in plan.cause else "from_stock"].append(plan)
    return {
        name: {
            "lines": len(plans),
            "mean_p_late": float(np.mean([p.hazard.p_delivery_late for p in plans])),
            "late_rate": float(
                np.mean([_after(p.delivered_on, p.promised_delivery) for p in plans])
            ),
        }
        for name, plans in segments.items()
        if plans
    }


def _after(actual: date | None, promised: date) -> bool:
    return actual is not None and actual > promised


def rank_auc(scores: np.ndarray, outcomes: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum statistic (ties share their ranks)."""
    positives = outcomes.sum()
    negatives = len(outcomes) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(average, counts)
    return float(
        (ranks[outcomes].sum() - positives * (positives + 1) / 2) / (positives * negatives)
    )


def _summarise(
    sim: Simulation,
    uow: UnitOfWork,
    profile: str,
    seed: int,
    days: int,
    truth_dir: Path,
    wall: float,
) -> SimulationSummary:
    settled_by = sim.world.day_date(days - 1) - timedelta(days=SETTLING_DAYS)
    plans = [p for p in sim.plans.values() if not p.cancelled and p.entered_day <= settled_by]
    delivered = [p for p in plans if p.delivered_on is not None]
    shipped = [p for p in plans if p.shipped_on is not None]
    late_delivery = np.array([_after(p.delivered_on, p.promised_delivery) for p in delivered])
    late_ship = np.array([_after(p.shipped_on, p.promised_ship) for p in shipped])
    with uow:
        exceptions = uow.session.execute(select(func.count(ExceptionCase.id))).scalar_one()
        first_lines = uow.session.execute(
            select(func.count(OrderLine.id)).where(OrderLine.parent_line_id.is_(None))
        ).scalar_one()
    world = sim.world
    mix = Counter(DEMAND_CLASSES[c] for c in world.demand_class)
    cadence = Counter(int(c) for c in world.customer_cadence)
    names = {1: "daily", 5: "weekly", 10: "biweekly", 21: "monthly", 63: "quarterly"}
    c = sim.counters
    return SimulationSummary(
        profile=profile,
        seed=seed,
        days=days,
        truth_dir=str(truth_dir),
        orders=c.orders,
        lines=c.lines,
        shipments=c.shipments,
        purchase_orders=c.purchase_orders,
        receipts=c.receipts,
        transfers=c.transfers,
        returns=c.returns,
        cancellations=c.cancellations,
        cycle_counts=c.cycle_counts,
        exceptions=int(exceptions),
        pricing_anomalies=sum(1 for row in sim.truth_pricing.values() if row["is_anomaly"]),
        late_delivery_rate=float(late_delivery.mean()) if len(late_delivery) else float("nan"),
        late_ship_rate=float(late_ship.mean()) if len(late_ship) else float("nan"),
        line_fill_rate=c.lines_from_stock / first_lines if first_lines else float("nan"),
        oracle_auc_delivery=rank_auc(
            np.array([p.hazard.p_delivery_late for p in delivered]), late_delivery
        ),
        oracle_auc_ship=rank_auc(np.array([p.hazard.p_ship_late for p in shipped]), late_ship),
        oracle_calibration=_calibration(delivered),
        item_mix={k: mix[k] / world.n_skus for k in DEMAND_CLASSES},
        customer_cadence_mix={names[k]: cadence[k] / len(world.customers) for k in sorted(cadence)},
        wall_seconds=round(wall, 2),
        lines_per_second=round(c.lines / wall, 1) if wall else 0.0,
        refused=dict(c.refused),
    )
