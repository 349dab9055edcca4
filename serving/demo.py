"""``erpx demo``: from a fresh checkout to a served API with trained models, in a few minutes.

The steps are the ones an operator would run by hand (``erpx init``, ``erpx simulate``, ``erpx
train ... --promote``, ``erpx apikey create``, ``erpx serve``), composed so that a second run
reuses what the first produced: a database that already holds a world is not simulated again, a
model that already has a champion is not retrained. Only API keys are made on every run, because
a key is shown once and only its hash is stored: the keys of an earlier run cannot be printed.

A simulated world ends in the past, so the served API's clock (``ERPX_FROZEN_NOW``) is set to the
world's last order entry unless the user set it: promises, backlogs and ages are then computed as
of the world's "today".

The small world scores honestly against its baselines, and on half a year of it the late-shipment
and margin gates usually refuse the first version (a logistic regression or the rules do as well).
A demo that served only the fallback would show none of the models, so by default a refused model
is promoted anyway, and the summary, the command's output and a tag on the registered version all
say "promoted without passing the gate: demo world"; ``respect_gate`` leaves it on the fallback.

Every function here is called by the test (``tests/serving/test_demo.py``) as the command calls it.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

from sqlalchemy import func, inspect, make_url, select

from erp_core.db.engine import make_engine
from erp_core.db.migrate import upgrade_to_head
from erp_core.db.models import OrderLine, Product, SalesOrder
from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import InvalidValue
from erp_core.policy import Actor, load_policy
from erp_core.services.api_keys import IssuedKey, create_api_key, list_api_keys
from erp_core.settings import Settings
from training.frames import SplitPlan

Step = Callable[[str], None]

DEMO_PLAN = SplitPlan(validation_days=14, calibration_days=14, test_days=28, min_train_days=28)
"""Two weeks each to stop and calibrate, four to test: a half-year world keeps most of its
history to train on, and the tiniest world training accepts stays small enough for a test."""

MIN_DAYS = DEMO_PLAN.min_window_days + DEMO_PLAN.label_horizon_days + 1
"""The fewest simulated days the three jobs accept (the late-shipment window ends
``label_horizon_days`` before the last entry): 106."""

DEFAULT_PROFILE = "small"
DEFAULT_DAYS = 180
"""On 2 cores the small world's 180 days simulate in about 30 s and the three models train in
about 20 s; the medium world's year takes about an hour (``--profile medium``)."""

MODELS = ("late_shipment", "margin_anomaly", "demand_forecast")
WITHOUT_GATE = "promoted without passing the gate: demo world"
PROMOTION_TAG = "erpx.promotion"
"""Tag on a registered version the demo made champion although its gate refused it."""
DEMO_OPERATOR = Actor("demo", "admin")


@dataclass(frozen=True)
class World:
    """The history in the database, and whether this run simulated it."""

    simulated: bool
    orders: int
    lines: int
    first_entry: datetime
    last_entry: datetime

    def describe(self) -> str:
        how = "simulated now" if self.simulated else "reused"
        return (
            f"{how}: {self.orders:,} orders, {self.lines:,} lines, entered "
            f"{self.first_entry:%Y-%m-%d} .. {self.last_entry:%Y-%m-%d}"
        )


@dataclass(frozen=True)
class ModelOutcome:
    """What the demo did for one registered model, and what serves its scores now."""

    name: str
    status: str
    """``reused`` (a champion existed), ``promoted`` (passed its gate), ``forced`` (promoted
    without passing it) or ``fallback`` (refused and left so)."""
    version: str | None
    note: str

    @property
    def served(self) -> str:
        return "fallback" if self.version is None else f"v{self.version}"

    def describe(self) -> str:
        return f"{self.served} ({self.status}): {self.note}"


@dataclass(frozen=True)
class DemoResult:
    world: World
    models: list[ModelOutcome]
    keys: list[IssuedKey]
    clock: datetime
    clock_from_user: bool
    base_url: str
    commands: list[str]


# --- the world ---------------------------------------------------------------------------------


def demo_days(profile: str, days: int | None) -> int:
    """The days to simulate: ``days`` as asked, or the profile's own, at least DEFAULT_DAYS; fewer
    than training accepts is refused before anything is written."""
    from erp_core.simulate.run import check_request

    world_profile, asked = check_request(profile, days)
    chosen = asked if days is not None else max(world_profile.days, DEFAULT_DAYS)
    if chosen < MIN_DAYS:
        raise InvalidValue(
            "days",
            chosen,
            f"the demo trains three models, which needs at least {MIN_DAYS} days "
            f"({DEMO_PLAN.min_window_days} to split + {DEMO_PLAN.label_horizon_days} for "
            "late-shipment outcomes + 1)",
        )
    return chosen


def holds_world(url: str) -> bool:
    """Whether the database already holds master data or orders (then it is reused, never
    simulated into: the simulator refuses a database that holds data)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and not Path(str(parsed.database)).is_file():
        return False  # not even created: and connecting would create the file
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            tables = set(inspect(connection).get_table_names())
            if not {Product.__tablename__, SalesOrder.__tablename__} <= tables:
                return False
            products = connection.execute(select(func.count()).select_from(Product)).scalar_one()
            orders = connection.execute(select(func.count()).select_from(SalesOrder)).scalar_one()
    finally:
        engine.dispose()
    return bool(products or orders)


def world_in(url: str, simulated: bool) -> World:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            orders = connection.execute(select(func.count()).select_from(SalesOrder)).scalar_one()
            lines, first, last = connection.execute(
                select(func.count(), func.min(OrderLine.entered_at), func.max(OrderLine.entered_at))
            ).one()
    finally:
        engine.dispose()
    if first is None or last is None:
        raise InvalidValue(
            "database_url", url, "holds master data but no orders: the demo has nothing to learn"
        )
    return World(simulated, int(orders), int(lines), _aware(first), _aware(last))


def prepare_world(
    settings: Settings,
    profile: str,
    days: int | None,
    seed: int,
    step: Step,
) -> World:
    """Create or upgrade the schema; simulate the world into an empty database, or reuse what
    the database holds."""
    from erp_core.simulate.run import simulate

    url = settings.database_url
    total = (
        None if holds_world(url) else demo_days(profile, days)
    )  # refused before anything is written
    step("initialising the database")
    upgrade_to_head(url)
    if total is None:
        return world_in(url, simulated=False)

    def progress(done: int, _all: int, lines: int) -> None:
        step(f"simulating the {profile} world: day {done}/{total}, {lines:,} lines")

    simulate(settings, profile, total, seed, progress=progress)
    return world_in(url, simulated=True)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- the models --------------------------------------------------------------------------------


def ensure_champions(
    settings: Settings, seed: int, step: Step, respect_gate: bool = False
) -> list[ModelOutcome]:
    """Each model's champion: the registry's if it has one, else a version trained now and put
    through its gate (and promoted anyway, said so, unless ``respect_gate``)."""
    from training import tracking

    tracking.configure(settings)
    outcomes = []
    for name in MODELS:
        existing = tracking.version_by_alias(name, tracking.CHAMPION)
        if existing is not None:
            forced = existing.tags.get(PROMOTION_TAG) == WITHOUT_GATE
            note = (
                f"the registry's champion, {WITHOUT_GATE}" if forced else "the registry's champion"
            )
            outcomes.append(ModelOutcome(name, "reused", existing.version, note))
            continue
        outcomes.append(_train_and_promote(settings, name, seed, step, respect_gate))
    return outcomes


def _train_and_promote(
    settings: Settings, name: str, seed: int, step: Step, respect_gate: bool
) -> ModelOutcome:
    from training import tracking

    calendar = load_policy(settings.policy_path).calendar
    job = _job(name)
    result = job(
        settings,
        calendar,
        plan=DEMO_PLAN,
        seed=seed,
        promote=True,
        step=lambda what: step(f"training {name}: {what}"),
    )
    gate = result.gate
    if gate is not None and gate.promote:
        return ModelOutcome(name, "promoted", result.version, f"passed its gate: {gate.reason}")
    reason = gate.reason if gate is not None else "no gate decision"
    if respect_gate:
        return ModelOutcome(
            name, "fallback", None, f"gate refused v{result.version} ({reason}); not served"
        )
    tracking.set_alias(name, tracking.CHAMPION, result.version)
    _tag_forced(name, result.version, reason)
    return ModelOutcome(name, "forced", result.version, f"{WITHOUT_GATE} (gate: {reason})")


def _job(name: str) -> Callable[..., object]:
    if name == "late_shipment":
        from training.jobs import train_late_shipment

        return train_late_shipment
    if name == "margin_anomaly":
        from training.margin_job import train_margin_anomaly

        return train_margin_anomaly
    from training.demand_forecast import train_demand_forecast

    return train_demand_forecast


def _tag_forced(name: str, version: str, reason: str) -> None:
    """The registry itself says the champion did not pass its gate, so nobody reading MLflow
    later mistakes the demo's champion for a governed promotion."""
    from mlflow import MlflowClient

    client = MlflowClient()
    client.set_model_version_tag(name, version, PROMOTION_TAG, WITHOUT_GATE)
    client.set_model_version_tag(name, version, "erpx.gate_reason", reason[:500])


# --- keys, clock, examples ---------------------------------------------------------------------


def create_demo_keys(uow: UnitOfWork, now: datetime) -> list[IssuedKey]:
    """One fresh key per role of the policy, named ``demo-<role>-<n>`` with the next free n."""
    taken = {row[0] for row in list_api_keys(uow)}
    keys = []
    for role in uow.policy.roles:
        name = next(
            f"demo-{role}-{n}" for n in range(1, len(taken) + 2) if f"demo-{role}-{n}" not in taken
        )
        keys.append(create_api_key(uow, DEMO_OPERATOR, name=name, role=role, now=now))
    return keys


def api_clock(settings: Settings, world: World) -> tuple[datetime, bool]:
    """The served API's clock and whether the user chose it: ERPX_FROZEN_NOW when set, else
    the world's last order entry (the world's "today")."""
    if settings.frozen_now is not None:
        return settings.frozen_now, True
    return world.last_entry, False


def example_order(url: str) -> tuple[str, list[str]]:
    """A real customer of the world (the one with the most orders) and the two SKUs it orders
    most, for a draft that scores like the world's usual business."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            customer = connection.execute(
                select(SalesOrder.customer_id)
                .group_by(SalesOrder.customer_id)
                .order_by(func.count().desc(), SalesOrder.customer_id)
                .limit(1)
            ).scalar_one()
            skus = connection.execute(
                select(OrderLine.sku)
                .join(SalesOrder, SalesOrder.id == OrderLine.order_id)
                .where(SalesOrder.customer_id == customer)
                .group_by(OrderLine.sku)
                .order_by(func.count().desc(), OrderLine.sku)
                .limit(2)
            ).scalars()
            return str(customer), [str(sku) for sku in skus]
    finally:
        engine.dispose()


def curl_commands(
    base_url: str, keys: Sequence[IssuedKey], customer: str, skus: Sequence[str]
) -> list[str]:
    """Two commands to paste: score a draft order as the sales rep, and save the replenishment
    report as HTML as the planner (a browser cannot send the key header)."""
    by_role = {key.role: key.secret for key in keys}
    body = json.dumps({"customer_id": customer, "lines": [{"sku": s, "quantity": 2} for s in skus]})
    score = (
        f"curl -s -X POST {base_url}/v1/orders/score "
        f"-H {shlex.quote('X-API-Key: ' + by_role['sales_rep'])} "
        f"-H 'Content-Type: application/json' -d {shlex.quote(body)}"
    )
    report = (
        f"curl -s -H {shlex.quote('X-API-Key: ' + by_role['planner'])} "
        f"'{base_url}/v1/replenishment/recommendations?format=html' -o replenishment.html"
    )
    return [score, report]


# --- the whole demo ----------------------------------------------------------------------------


def run_demo(
    settings: Settings,
    *,
    profile: str = DEFAULT_PROFILE,
    days: int | None = None,
    seed: int = 7,
    host: str = "127.0.0.1",
    port: int = 8000,
    respect_gate: bool = False,
    step: Step = lambda _what: None,
) -> DemoResult:
    """Everything but serving: the world, the champions, the keys, the clock and the examples."""
    world = prepare_world(settings, profile, days, seed, step)
    models = ensure_champions(settings, seed, step, respect_gate)
    step("creating an API key per role")
    uow = UnitOfWork.from_url(settings.database_url, load_policy(settings.policy_path))
    try:
        keys = create_demo_keys(uow, datetime.now(UTC))
    finally:
        uow.engine.dispose()
    clock, from_user = api_clock(settings, world)
    customer, skus = example_order(settings.database_url)
    base_url = f"http://{host}:{port}"
    return DemoResult(
        world,
        models,
        keys,
        clock,
        from_user,
        base_url,
        curl_commands(base_url, keys, customer, skus),
    )


def summary_rows(result: DemoResult, where: str, tracking_uri: str) -> list[tuple[str, str]]:
    """The closing summary, one row per thing the demo produced or chose."""
    clock_how = "ERPX_FROZEN_NOW, as set" if result.clock_from_user else "the world's last entry"
    return [
        ("database", where),
        ("world", result.world.describe()),
        *((f"model {m.name}", m.describe()) for m in result.models),
        ("mlflow", tracking_uri),
        ("API clock", f"{result.clock.isoformat()} ({clock_how})"),
        ("API", result.base_url),
        ("interactive docs", f"{result.base_url}/docs"),
    ]


def serve_for_demo(result: DemoResult, host: str, port: int) -> NoReturn:
    """Replace this process by ``erpx serve`` with the demo's clock: a fresh process (the
    training's memory returned, one LightGBM thread per worker as ``serve`` sets it) that serves
    exactly as ``erpx serve`` does."""
    environment = dict(os.environ)
    environment.setdefault("ERPX_FROZEN_NOW", result.clock.isoformat())
    arguments = [
        sys.executable,
        "-c",
        "from serving.cli import app; app(prog_name='erpx')",
        "serve",
        "--host",
        host,
        "--port",
        str(port),
    ]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, arguments, environment)
