"""Throughput of the ERP services on the hot path the simulator drives, day-batch style.

A distributor of ~300 SKUs x 4 locations x 400 customers is loaded through
``erp_core.services.master_data``; stock appears by cycle counts. Then, for each simulated business
day, ONE outer unit of work (``with uow: ... uow.commit()``; every service joins it in a savepoint)
runs, in order:

1. capture: N orders of 1-8 lines through ``orders.capture_order``;
2. fulfilment: each order's allocated lines at one location are picked (``fulfilment.pick``), then
   packed, shipped and delivered (``fulfilment.record_shipment_event``);
3. purchasing: receive yesterday's purchase orders (releasing backorders) and place a few new ones.

Figures (per backend): lines captured per second (capture phase only), full-lifecycle lines per
second (lines captured / wall time of the whole day, commit included), and SQL statements per line
(counted with a ``before_cursor_execute`` listener). The same rates are also given per second of
this process's CPU time (``*_per_cpu_s``): on a shared machine they move less with other load than
wall time does; on SQLite they include the database's work, on PostgreSQL they do not. The books
are checked with ``erp_core.services.integrity.all_violations`` after the run (not timed).

Usage::

    .venv/bin/python bench/services.py --label baseline   # or --label after
    ERPX_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/services.py --label after

Results are printed and merged into ``bench/results/services.json`` under the label (other labels
in the file are kept, so baseline and after figures sit side by side).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import tempfile
import time as clock
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url

from erp_core.db.engine import make_engine, make_session_factory, normalise_url
from erp_core.db.models import Base
from erp_core.db.uow import UnitOfWork
from erp_core.policy import Actor, load_policy
from erp_core.services import fulfilment, purchasing
from erp_core.services.integrity import all_violations
from erp_core.services.inventory import record_cycle_count
from erp_core.services.master_data import (
    CarrierSpec,
    CustomerSpec,
    LaneSpec,
    LocationSpec,
    MasterData,
    PriceSpec,
    ProductSpec,
    SupplierSpec,
    load_master_data,
)
from erp_core.services.orders import CapturedOrder, LineRequest, capture_order

RESULTS = Path(__file__).parent / "results" / "services.json"
POSTGRES_ENV = "ERPX_TEST_POSTGRES_URL"

ADMIN = Actor("bench-admin", "admin")
SALES = Actor("bench-sales", "sales_rep")
LOGISTICS = Actor("bench-logistics", "logistics")
PLANNER = Actor("bench-planner", "planner")

TIERS = ("platinum", "gold", "silver", "bronze")
TIER_FACTOR = {"platinum": "0.92", "gold": "0.95", "silver": "0.98", "bronze": "1.00"}
REGIONS = ("north", "south", "east", "west")
CHANNELS = ("edi", "e_commerce", "field_sales", "key_account")
START = date(2025, 1, 6)  # a Monday
CENT = Decimal("0.01")
KG_COST = Decimal("0.35")
BREAK_FACTOR = Decimal("0.97")


@dataclass(frozen=True)
class Shape:
    skus: int = 300
    locations: int = 4
    customers: int = 400
    suppliers: int = 12
    days: int = 4
    orders_per_day: int = 120
    max_lines: int = 8
    seed: int = 7


@dataclass
class DayFigures:
    lines: int = 0
    allocated_lines: int = 0
    delivered_lines: int = 0
    shipments: int = 0
    capture_s: float = 0.0
    fulfilment_s: float = 0.0
    purchasing_s: float = 0.0
    day_s: float = 0.0
    capture_cpu_s: float = 0.0
    day_cpu_s: float = 0.0
    capture_queries: int = 0
    fulfilment_queries: int = 0
    day_queries: int = 0


@dataclass
class RunFigures:
    backend: str
    shape: dict[str, int]
    setup_s: float = 0.0
    days: list[DayFigures] = field(default_factory=list)
    violations: int = 0

    def summary(self) -> dict[str, Any]:
        lines = sum(d.lines for d in self.days)
        allocated = sum(d.allocated_lines for d in self.days)
        delivered = sum(d.delivered_lines for d in self.days)
        capture_s = sum(d.capture_s for d in self.days)
        fulfilment_s = sum(d.fulfilment_s for d in self.days)
        day_s = sum(d.day_s for d in self.days)
        capture_cpu_s = sum(d.capture_cpu_s for d in self.days)
        day_cpu_s = sum(d.day_cpu_s for d in self.days)
        return {
            "backend": self.backend,
            "shape": self.shape,
            "setup_s": round(self.setup_s, 2),
            "lines_captured": lines,
            "lines_allocated": allocated,
            "lines_delivered": delivered,
            "shipments": sum(d.shipments for d in self.days),
            "capture_s": round(capture_s, 2),
            "fulfilment_s": round(fulfilment_s, 2),
            "purchasing_s": round(sum(d.purchasing_s for d in self.days), 2),
            "day_s": round(day_s, 2),
            "capture_lines_per_s": round(lines / capture_s, 1),
            "fulfilment_lines_per_s": round(delivered / fulfilment_s, 1) if fulfilment_s else None,
            "lifecycle_lines_per_s": round(lines / day_s, 1),
            "capture_lines_per_cpu_s": round(lines / capture_cpu_s, 1),
            "lifecycle_lines_per_cpu_s": round(lines / day_cpu_s, 1),
            "queries_per_captured_line": round(
                sum(d.capture_queries for d in self.days) / lines, 1
            ),
            "queries_per_fulfilled_line": (
                round(sum(d.fulfilment_queries for d in self.days) / delivered, 1)
                if delivered
                else None
            ),
            "queries_per_line_whole_day": round(sum(d.day_queries for d in self.days) / lines, 1),
            "integrity_violations": self.violations,
        }


class QueryCounter:
    """Counts the SQL statements an engine sends (an executemany counts once)."""

    def __init__(self, engine: Engine) -> None:
        self.count = 0
        event.listen(engine, "before_cursor_execute", self._on_execute)

    def _on_execute(self, *_args: Any) -> None:
        self.count += 1


@contextmanager
def phase(figures: DayFigures, name: str, counter: QueryCounter) -> Iterator[None]:
    """Time a phase of the day and count its statements into ``figures``."""
    started, cpu, queries = clock.perf_counter(), clock.process_time(), counter.count
    yield
    setattr(figures, f"{name}_s", getattr(figures, f"{name}_s") + clock.perf_counter() - started)
    if hasattr(figures, f"{name}_cpu_s"):
        spent_cpu = clock.process_time() - cpu
        setattr(figures, f"{name}_cpu_s", getattr(figures, f"{name}_cpu_s") + spent_cpu)
    if hasattr(figures, f"{name}_queries"):
        spent = counter.count - queries
        setattr(figures, f"{name}_queries", getattr(figures, f"{name}_queries") + spent)


# --- the world ---------------------------------------------------------------------------------


def world(shape: Shape, rng: random.Random) -> MasterData:
    """A distributor like the simulator's medium profile: every location serves every region."""
    regions = [REGIONS[i % len(REGIONS)] for i in range(shape.locations)]
    locations = [
        LocationSpec(f"DC-{region.upper()}{i}", f"{region} DC", region, shape.orders_per_day)
        for i, region in enumerate(regions)
    ]
    suppliers = [
        SupplierSpec(f"SUP-{i:03d}", f"Supplier {i}", rng.randint(7, 28))
        for i in range(shape.suppliers)
    ]
    products = [_product(i, rng, suppliers) for i in range(shape.skus)]
    customers = [_customer(i, rng, locations) for i in range(shape.customers)]
    carriers = [CarrierSpec("CAR-0", "Carrier 0"), CarrierSpec("CAR-1", "Carrier 1")]
    lanes = []
    for c, carrier in enumerate(carriers):
        for location in locations:
            for region in sorted(set(regions)):
                transit = (1 if region == location.region else rng.randint(2, 4)) + c
                cost = Decimal(40 + 15 * transit)
                lanes.append(
                    LaneSpec(carrier.id, location.id, region, transit, cost, cost_per_kg=KG_COST)
                )
    prices = [price for product in products for price in _tier_prices(product)]
    return MasterData(suppliers, locations, products, customers, carriers, lanes, prices)


def _product(i: int, rng: random.Random, suppliers: list[SupplierSpec]) -> ProductSpec:
    cost = Decimal(str(round(rng.lognormvariate(2.3, 0.9) + 0.5, 2)))
    markup = Decimal(str(round(rng.uniform(1.35, 1.9), 2)))
    return ProductSpec(
        f"SKU-{i:05d}",
        f"item {i}",
        rng.choice(("fasteners", "electrical", "plumbing", "tools")),
        cost,
        (cost * markup).quantize(CENT),
        Decimal(str(round(rng.lognormvariate(0, 0.8), 3))),
        preferred_supplier_id=rng.choice(suppliers).id,
    )


def _customer(i: int, rng: random.Random, locations: list[LocationSpec]) -> CustomerSpec:
    home = rng.choice(locations)
    return CustomerSpec(
        f"C-{i:05d}",
        f"Customer {i}",
        rng.choices(TIERS, weights=(5, 15, 30, 50))[0],
        Decimal(10**7),  # credit holds are not what this benchmark measures
        rng.choice(CHANNELS),
        home.region,
        home_location_id=home.id,
    )


def _tier_prices(product: ProductSpec) -> list[PriceSpec]:
    """Each tier's price from one unit, and a quantity break from 50."""
    prices = []
    for tier in TIERS:
        price = (product.list_price * Decimal(TIER_FACTOR[tier])).quantize(CENT)
        prices.append(PriceSpec(tier, product.sku, price))
        prices.append(PriceSpec(tier, product.sku, (price * BREAK_FACTOR).quantize(CENT), 50))
    return prices


def at(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute, second), tzinfo=UTC)


def set_up(uow: UnitOfWork, data: MasterData, rng: random.Random) -> None:
    """Master data, then opening stock by cycle counts (a tenth of the balances nearly empty, so
    backorders, receipts and backorder releases happen too)."""
    opening = at(START - timedelta(days=1), 8)
    load_master_data(uow, ADMIN, data, opening)
    with uow:
        for product in data.products:
            for location in data.locations:
                low = rng.random() < 0.1
                record_cycle_count(
                    uow,
                    ADMIN,
                    sku=product.sku,
                    location_id=location.id,
                    counted_quantity=rng.randint(0, 5) if low else rng.randint(150, 600),
                    now=opening,
                    reason="opening balance",
                )
        uow.commit()


# --- one day -----------------------------------------------------------------------------------


@dataclass
class Purchasing:
    """Purchase orders placed one day and received the next (lines: id, quantity)."""

    open_lines: list[tuple[int, int]] = field(default_factory=list)


def run_day(
    uow: UnitOfWork,
    data: MasterData,
    shape: Shape,
    rng: random.Random,
    today: date,
    counter: QueryCounter,
    buying: Purchasing,
) -> DayFigures:
    figures = DayFigures()
    started, cpu, queries = clock.perf_counter(), clock.process_time(), counter.count
    with uow:
        with phase(figures, "capture", counter):
            captured = capture_orders(uow, data, shape, rng, today)
        figures.lines = sum(len(order.lines) for order in captured)
        with phase(figures, "fulfilment", counter):
            fulfil(uow, captured, today, figures)
        with phase(figures, "purchasing", counter):
            receive_and_buy(uow, data, rng, today, buying)
        uow.commit()
    figures.day_s = clock.perf_counter() - started
    figures.day_cpu_s = clock.process_time() - cpu
    figures.day_queries = counter.count - queries
    return figures


def capture_orders(
    uow: UnitOfWork, data: MasterData, shape: Shape, rng: random.Random, today: date
) -> list[CapturedOrder]:
    captured = []
    for n in range(shape.orders_per_day):
        customer = rng.choice(data.customers)
        skus = rng.sample(data.products, rng.randint(1, shape.max_lines))
        lines = [LineRequest(p.sku, max(1, int(rng.expovariate(1 / 8)))) for p in skus]
        captured.append(
            capture_order(
                uow,
                SALES,
                customer_id=customer.id,
                lines=lines,
                now=at(today, 7, 0, 0) + timedelta(seconds=n * 30),
            )
        )
    return captured


def fulfil(
    uow: UnitOfWork, captured: list[CapturedOrder], today: date, figures: DayFigures
) -> None:
    """Pick each order's allocated lines per location into a shipment; pack, ship, deliver it."""
    for order in captured:
        groups: dict[str, dict[int, int]] = defaultdict(dict)
        for line in order.lines:
            if line.state == "allocated" and not line.price_approval_pending:
                assert line.location_id is not None
                groups[line.location_id][line.line_id] = line.quantity
        for picks in groups.values():
            figures.allocated_lines += len(picks)
            picked = fulfilment.pick(
                uow, LOGISTICS, order_id=order.order_id, picks=picks, now=at(today, 19, 30)
            )
            for event_type, hour, minute in (
                ("packed", 19, 45),
                ("shipped", 19, 59),
                ("delivered", 23, 0),
            ):
                fulfilment.record_shipment_event(
                    uow,
                    LOGISTICS,
                    shipment_id=picked.shipment_id,
                    event_type=event_type,
                    occurred_at=at(today, hour, minute),
                    now=at(today, hour, minute),
                )
            figures.shipments += 1
            figures.delivered_lines += len(picks)


def receive_and_buy(
    uow: UnitOfWork, data: MasterData, rng: random.Random, today: date, buying: Purchasing
) -> None:
    """Receive what was ordered yesterday (releasing backorders), then place one PO per
    location for a dozen random SKUs."""
    for po_line_id, quantity in buying.open_lines:
        purchasing.receive_purchase_order_line(
            uow, LOGISTICS, purchase_order_line_id=po_line_id, quantity=quantity, now=at(today, 6)
        )
    buying.open_lines.clear()
    for location in data.locations:
        supplier = rng.choice(data.suppliers)
        skus = rng.sample(data.products, 12)
        po_id = purchasing.place_purchase_order(
            uow,
            PLANNER,
            supplier_id=supplier.id,
            location_id=location.id,
            lines=[purchasing.PurchaseLineRequest(p.sku, rng.randint(50, 200)) for p in skus],
            now=at(today, 20),
        )
        with uow:
            order = uow.session.get(purchasing.PurchaseOrder, po_id)
            assert order is not None
            buying.open_lines.extend((line.id, line.quantity) for line in order.lines)


# --- backends ----------------------------------------------------------------------------------


def run(url: str, backend: str, shape: Shape) -> dict[str, Any]:
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    uow = UnitOfWork(make_session_factory(engine), load_policy())
    rng = random.Random(shape.seed)
    data = world(shape, rng)
    figures = RunFigures(backend, asdict(shape))
    started = clock.perf_counter()
    set_up(uow, data, rng)
    figures.setup_s = clock.perf_counter() - started
    counter = QueryCounter(engine)
    calendar = uow.policy.calendar
    today = calendar.next_business_day_on_or_after(START)
    buying = Purchasing()
    for number in range(shape.days):
        day = run_day(uow, data, shape, rng, today, counter, buying)
        figures.days.append(day)
        print(
            f"  {backend} day {number + 1}: {day.lines} lines, capture "
            f"{day.lines / day.capture_s:.0f} lines/s, day {day.lines / day.day_s:.0f} lines/s, "
            f"{day.day_queries / max(day.lines, 1):.1f} queries/line"
        )
        today = calendar.add_business_days(today, 1)
    with uow:
        problems = all_violations(uow.session)
    figures.violations = len(problems)
    for problem in problems[:10]:
        print(f"  VIOLATION {problem}")
    engine.dispose()
    return figures.summary()


def run_sqlite(shape: Shape) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="erpx-bench-") as folder:
        return run(f"sqlite:///{folder}/erpx.db", "sqlite", shape)


def run_postgres(base_url: str, shape: Shape) -> dict[str, Any]:
    """In a private schema that is dropped afterwards (as the tests do)."""
    base = normalise_url(base_url)
    schema = f"erpx_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        return run(url.render_as_string(hide_password=False), "postgresql", shape)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="latest", help="section of the results file to write")
    parser.add_argument("--days", type=int, default=Shape.days)
    parser.add_argument("--orders-per-day", type=int, default=Shape.orders_per_day)
    parser.add_argument("--seed", type=int, default=Shape.seed)
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    shape = Shape(days=args.days, orders_per_day=args.orders_per_day, seed=args.seed)

    runs = [run_sqlite(shape)]
    postgres = os.environ.get(POSTGRES_ENV)
    if postgres and not args.no_postgres:
        runs.append(run_postgres(postgres, shape))
    section = {
        "commit": git_commit(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, "
        f"Python {platform.python_version()}",
        "command": (
            f"python bench/services.py --label {args.label} --days {args.days} "
            f"--orders-per-day {args.orders_per_day} --seed {args.seed}"
        ),
        "runs": {r["backend"]: r for r in runs},
    }
    for r in runs:
        print(
            f"{r['backend']}: capture {r['capture_lines_per_s']} lines/s "
            f"({r['capture_lines_per_cpu_s']} per CPU s), lifecycle "
            f"{r['lifecycle_lines_per_s']} lines/s ({r['lifecycle_lines_per_cpu_s']} per CPU s), "
            f"{r['queries_per_captured_line']} queries per "
            f"captured line, {r['queries_per_fulfilled_line']} per fulfilled line, "
            f"violations {r['integrity_violations']}"
        )
    results = json.loads(args.output.read_text()) if args.output.exists() else {}
    results[args.label] = section
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.output} [{args.label}]")


if __name__ == "__main__":
    main()
