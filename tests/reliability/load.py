"""The reliability load driver, shared by the tests in this folder and ``bench/reliability.py``.

A world (the hand-made one of tests/conftest.py: WIDGET 100 at WEST and 40 at EAST, GADGET 10 at
WEST only, so the last units are fought over; four customers, one of them with a credit limit of
100; an open purchase order for every SKU x location to receive against), a real API (``erpx
serve --workers N`` in its own process group, so a kill -9 takes the workers with it), and client
processes (``multiprocessing``, forked) that each, until the deadline:

- capture orders over HTTP with an ``Idempotency-Key`` (the key is also the order's
  ``external_ref``, so the database alone tells which key made which order);
- cancel some of the orders they captured (``cancel_order_lines``: the API has no cancel route,
  the order desk's other systems write to the same database, as the warehouse does in
  tests/e2e);
- pick an order in the warehouse (``pick``) and post its milestones over HTTP (``packed``,
  ``shipped``, ``delivered``, each with its own idempotency key);
- receive goods against the open purchase orders (``receive_purchase_order_line``), which
  releases backorders;
- read an order back over HTTP and check it is the one they were told about.

A request that gets no answer (connection refused or reset, a timeout) or a 5xx is retried with
the same body and the same key until ``retry_until``; what never got an answer is *outstanding*
and :func:`recover` retries it after the load. Then :func:`check_exactly_once` holds the
database to what the clients were told, and :func:`invariant_violations` to the books
(``erp_core.services.integrity.all_violations``, owners from the policy, nothing shipped twice).
"""

from __future__ import annotations

import multiprocessing
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psutil
from sqlalchemy import func, select

from erp_core.db.engine import make_engine, make_session_factory
from erp_core.db.migrate import upgrade_to_head
from erp_core.db.models import (
    Customer,
    ExceptionCase,
    IdempotencyRecord,
    OrderLine,
    PurchaseOrderLine,
    SalesOrder,
    ShipmentLine,
)
from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import DomainError
from erp_core.policy import load_policy
from erp_core.services.fulfilment import pick
from erp_core.services.integrity import all_violations
from erp_core.services.master_data import load_master_data
from erp_core.services.order_changes import cancel_order_lines
from erp_core.services.purchasing import (
    PurchaseLineRequest,
    place_purchase_order,
    receive_purchase_order_line,
)
from tests.conftest import ADMIN, LOGISTICS, PLANNER, SALES, T0, small_world, stock
from tests.e2e.conftest import NOW, free_port, server_environment, wait_until_healthy
from tests.serving.conftest import keys_for_every_role

CUSTOMERS = ("C-GOLD", "C-BRONZE", "C-EAST", "C-SMALL")
CUSTOMER_WEIGHTS = (4, 4, 4, 1)
"""C-SMALL (credit limit 100) puts most of its orders on credit hold: a finance case each."""
SKUS = ("WIDGET", "GADGET")
PO_QUANTITY = 1_000_000
OPERATIONS = ("capture", "cancel", "ship", "receive", "read")
OPERATION_WEIGHTS = (50, 10, 20, 10, 10)
OPENING = ("capture", "capture", "cancel", "ship", "receive", "read")
"""Every client begins with one of each kind of work (a ship and a cancel need an order of
its own first), deadline or not, then draws by ``OPERATION_WEIGHTS`` until the deadline: a
short run on a busy machine still does every kind."""
HTTP_TIMEOUT_S = 30.0


# --- the world ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    database_url: str
    keys: dict[str, str]
    po_lines: list[int]


def prepare_world(url: str) -> World:
    """The schema by the migrations, the hand-made world with credit limits a long run does not
    exhaust (except C-SMALL's), its opening stock, one open PO per SKU x location, a key per
    role."""
    upgrade_to_head(url)
    uow = UnitOfWork.from_url(url, load_policy())
    try:
        master = small_world()
        customers = [
            c if c.id == "C-SMALL" else replace(c, credit_limit=Decimal("1000000000"))
            for c in master.customers
        ]
        load_master_data(uow, ADMIN, replace(master, customers=customers), T0)
        stock(uow, "WIDGET", "WEST", 100)
        stock(uow, "WIDGET", "EAST", 40)
        stock(uow, "GADGET", "WEST", 10)
        for location in ("WEST", "EAST"):
            place_purchase_order(
                uow,
                PLANNER,
                supplier_id="SUP1",
                location_id=location,
                lines=[PurchaseLineRequest(sku, PO_QUANTITY) for sku in SKUS],
                now=T0,
            )
        with uow:
            po_lines = list(uow.session.scalars(select(PurchaseOrderLine.id)))
        keys = keys_for_every_role(uow)
    finally:
        uow.engine.dispose()
    return World(url, keys, po_lines)


# --- the server ---------------------------------------------------------------------------------


_EMPTY_REGISTRY: list[Path] = []


def empty_registry() -> Path:
    """An MLflow store with its tables and no model, made once per process: a server started
    on a folder without one spends ~7 s creating MLflow's tables before it answers."""
    if not _EMPTY_REGISTRY:
        from erp_core.settings import Settings
        from training import tracking

        folder = Path(tempfile.mkdtemp(prefix="erpx-empty-registry-"))
        settings = Settings(
            mlflow_tracking_uri=f"sqlite:///{folder / 'mlflow.db'}",
            mlflow_artifact_root=str(folder / "mlartifacts"),
            var_dir=folder,
        )
        tracking.configure(settings)
        assert tracking.version_by_alias("late_shipment", tracking.CHAMPION) is None
        _EMPTY_REGISTRY.append(folder / "mlflow.db")
    return _EMPTY_REGISTRY[0]


class Server:
    """``erpx serve --workers N`` as a process-group leader: ``kill9`` ends the supervisor and
    its workers at once (no graceful shutdown, no atexit), as a power cut or the OOM killer
    would; ``start`` again binds the same port."""

    def __init__(self, folder: Path, url: str, workers: int = 2, port: int | None = None):
        self.folder = folder
        self.url = url
        self.workers = workers
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = folder / "serve.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts: list[float] = []
        """Seconds from spawn to the first /healthz answer, per start."""

    def start(self) -> None:
        registry = self.folder / "mlflow.db"
        if not registry.exists():
            shutil.copyfile(empty_registry(), registry)
        erpx = str(Path(sys.executable).parent / "erpx")
        command = [erpx, "serve", "--workers", str(self.workers), "--port", str(self.port)]
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=self.folder,
                env=server_environment(self.folder, self.url),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until_healthy(self.process, self.base_url, self.log_path)
        self.starts.append(time.monotonic() - started)

    def _group(self) -> list[psutil.Process]:
        assert self.process is not None
        try:
            leader = psutil.Process(self.process.pid)
            return [leader, *leader.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill9(self) -> int:
        """SIGKILL to the whole process group; returns how many processes it ended."""
        assert self.process is not None
        members = self._group()
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        _gone, alive = psutil.wait_procs(members, timeout=10)
        assert not alive, f"still alive after SIGKILL: {alive}"
        return len(members)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        members = self._group()
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        psutil.wait_procs(members, timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


# --- the clients --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadPlan:
    base_url: str
    world: World
    clients: int = 16
    seconds: float = 4.0
    retry_seconds: float = 60.0
    """How long past the deadline an operation begun before it keeps retrying."""
    run_id: str = "r"
    seed: int = 1


@dataclass
class Capture:
    """One idempotency key: the body sent with it and every order id a 2xx answered."""

    key: str
    body: dict[str, Any]
    order_ids: list[int] = field(default_factory=list)
    replayed: list[bool] = field(default_factory=list)
    attempts: int = 0


@dataclass
class ClientReport:
    client: int
    done: Counter[str] = field(default_factory=Counter)
    """Operations completed, by kind."""
    refused: Counter[str] = field(default_factory=Counter)
    """Business refusals (a 4xx, a domain error): expected under contention, e.g. cancelling
    an order whose lines were all released elsewhere."""
    errors: Counter[str] = field(default_factory=Counter)
    """Failed attempts by kind (``capture:http_503``, ``ship:transport:ConnectError``)."""
    latencies: dict[str, list[float]] = field(default_factory=dict)
    """Seconds per answered HTTP request, by operation."""
    captures: list[Capture] = field(default_factory=list)
    mismatched_reads: list[str] = field(default_factory=list)


class _Client:
    def __init__(self, plan: LoadPlan, index: int) -> None:
        self.plan = plan
        self.index = index
        self.rng = random.Random(plan.seed * 1000 + index)
        self.report = ClientReport(index)
        self.http = httpx.Client(base_url=plan.base_url, timeout=HTTP_TIMEOUT_S)
        engine = make_engine(plan.world.database_url, pool_size=1, max_overflow=2)
        self.uow = UnitOfWork(make_session_factory(engine), load_policy())
        self.keys = plan.world.keys
        self.orders: list[int] = []
        self.sequence = 0
        self.retry_until = 0.0

    # HTTP with retries -----------------------------------------------------------------------

    def send(
        self, operation: str, method: str, path: str, role: str, **kwargs: Any
    ) -> httpx.Response | None:
        """The first answer below 500, retrying the same request on no answer or a 5xx; None
        when ``retry_until`` passes first."""
        headers = {"X-API-Key": self.keys[role]} | kwargs.pop("headers", {})
        delay = 0.05
        while True:
            started = time.perf_counter()
            try:
                response = self.http.request(method, path, headers=headers, **kwargs)
            except httpx.TransportError as error:
                self.report.errors[f"{operation}:transport:{type(error).__name__}"] += 1
            else:
                if response.status_code < 500:
                    seconds = time.perf_counter() - started
                    self.report.latencies.setdefault(operation, []).append(seconds)
                    return response
                self.report.errors[f"{operation}:http_{response.status_code}"] += 1
                retry_after = response.headers.get("retry-after")
                if retry_after and retry_after.isdigit():
                    delay = max(delay, min(float(retry_after), 2.0))
            if time.monotonic() + delay > self.retry_until:
                return None
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    # operations ------------------------------------------------------------------------------

    def capture(self) -> None:
        self.sequence += 1
        key = f"{self.plan.run_id}-{self.index}-{self.sequence}"
        customer = self.rng.choices(CUSTOMERS, CUSTOMER_WEIGHTS)[0]
        skus = self.rng.sample(SKUS, self.rng.randint(1, 2))
        body = {
            "customer_id": customer,
            "lines": [{"sku": sku, "quantity": self.rng.randint(1, 6)} for sku in skus],
            "allow_split": self.rng.random() < 0.7,
            "external_ref": key,
        }
        record = Capture(key, body)
        self.report.captures.append(record)
        self.post_capture(record)

    def post_capture(self, record: Capture) -> None:
        record.attempts += 1
        response = self.send(
            "capture",
            "POST",
            "/v1/orders",
            "sales_rep",
            json=record.body,
            headers={"Idempotency-Key": record.key},
        )
        if response is None:
            return
        if response.status_code != 201:
            self.report.refused[f"capture:http_{response.status_code}"] += 1
            return
        answer = response.json()
        record.order_ids.append(int(answer["order_id"]))
        record.replayed.append(bool(answer["replayed"]))
        self.orders.append(int(answer["order_id"]))
        self.report.done["capture"] += 1

    def cancel(self) -> None:
        if not self.orders:
            return
        order_id = self.orders.pop(self.rng.randrange(len(self.orders)))
        try:
            cancel_order_lines(self.uow, SALES, order_id=order_id, now=NOW)
        except DomainError as error:
            self.report.refused[f"cancel:{error.code}"] += 1
        except Exception as error:
            self.report.errors[f"cancel:{type(error).__name__}"] += 1
        else:
            self.report.done["cancel"] += 1

    def ship(self) -> None:
        """Pick one order's allocated lines at one location (sometimes one unit short), then
        post packed, shipped and delivered."""
        if not self.orders:
            return
        order_id = self.orders.pop(self.rng.randrange(len(self.orders)))
        with self.uow as uow:
            lines = list(
                uow.session.execute(
                    select(OrderLine.id, OrderLine.quantity, OrderLine.location_id).where(
                        OrderLine.order_id == order_id,
                        OrderLine.state == "allocated",
                        OrderLine.price_approval_pending.is_(False),
                    )
                )
            )
        if not lines:
            return
        location = lines[0].location_id
        picks = {
            line.id: line.quantity - (1 if line.quantity > 1 and self.rng.random() < 0.1 else 0)
            for line in lines
            if line.location_id == location
        }
        key = f"{self.plan.run_id}-{self.index}-pick-{order_id}"
        try:
            picked = pick(
                self.uow, LOGISTICS, order_id=order_id, picks=picks, now=NOW, idempotency_key=key
            )
        except DomainError as error:
            self.report.refused[f"pick:{error.code}"] += 1
            return
        except Exception as error:
            self.report.errors[f"pick:{type(error).__name__}"] += 1
            return
        self.report.done["pick"] += 1
        for event in ("packed", "shipped", "delivered"):
            body: dict[str, Any] = {"event_type": event, "occurred_at": NOW.isoformat()}
            if event == "delivered":
                body["details"] = {"freight_cost": "48.00"}
            response = self.send(
                "event",
                "POST",
                f"/v1/shipments/{picked.shipment_id}/events",
                "logistics",
                json=body,
                headers={"Idempotency-Key": f"{key}-{event}"},
            )
            if response is None:
                return
            if response.status_code != 200:
                self.report.refused[f"event:http_{response.status_code}"] += 1
                return
            self.report.done["event"] += 1
        self.report.done["ship"] += 1

    def receive(self) -> None:
        try:
            receive_purchase_order_line(
                self.uow,
                LOGISTICS,
                purchase_order_line_id=self.rng.choice(self.plan.world.po_lines),
                quantity=self.rng.randint(1, 10),
                now=NOW,
            )
        except DomainError as error:
            self.report.refused[f"receive:{error.code}"] += 1
        except Exception as error:
            self.report.errors[f"receive:{type(error).__name__}"] += 1
        else:
            self.report.done["receive"] += 1

    def read(self) -> None:
        acked = [c for c in self.report.captures if c.order_ids]
        if not acked:
            return
        record = self.rng.choice(acked)
        order_id = record.order_ids[0]
        response = self.send("read", "GET", f"/v1/orders/{order_id}", "customer_service")
        if response is None:
            return
        body = response.json() if response.status_code == 200 else {}
        if (body.get("external_ref"), body.get("customer_id")) != (
            record.key,
            record.body["customer_id"],
        ):
            self.report.mismatched_reads.append(f"{record.key} -> {order_id}: {response.text}")
        self.report.done["read"] += 1

    def run(self, deadline: float) -> ClientReport:
        self.retry_until = deadline + self.plan.retry_seconds
        act = {
            "capture": self.capture,
            "cancel": self.cancel,
            "ship": self.ship,
            "receive": self.receive,
            "read": self.read,
        }
        try:
            for operation in OPENING:
                act[operation]()
            while time.monotonic() < deadline:
                act[self.rng.choices(OPERATIONS, OPERATION_WEIGHTS)[0]]()
        finally:
            self.http.close()
            self.uow.engine.dispose()
        return self.report


def warm_up(base_url: str, world: World, connections: int = 4) -> None:
    """Score a draft on a few connections (so on both workers, most likely): the first request
    of a worker pays for its first feature lookup and model call. A draft writes nothing."""
    body = {"customer_id": "C-GOLD", "lines": [{"sku": sku, "quantity": 1} for sku in SKUS]}
    for _ in range(connections):
        with httpx.Client(base_url=base_url, timeout=HTTP_TIMEOUT_S) as client:
            response = client.post(
                "/v1/orders/score", json=body, headers={"X-API-Key": world.keys["sales_rep"]}
            )
            response.raise_for_status()


def _client_main(arguments: tuple[LoadPlan, int, float]) -> ClientReport:
    plan, index, deadline = arguments
    return _Client(plan, index).run(deadline)


def start_clients(plan: LoadPlan) -> tuple[Any, Any]:
    """Fork ``plan.clients`` processes and start the load; returns (pool, async result) so the
    caller can act (kill the server, break the database) while the clients run."""
    context = multiprocessing.get_context("fork")
    pool = context.Pool(plan.clients)
    deadline = time.monotonic() + plan.seconds
    pending = pool.map_async(_client_main, [(plan, i, deadline) for i in range(plan.clients)])
    return pool, pending


def run_clients(plan: LoadPlan) -> list[ClientReport]:
    pool, pending = start_clients(plan)
    return finish_clients(plan, pool, pending)


def finish_clients(plan: LoadPlan, pool: Any, pending: Any) -> list[ClientReport]:
    try:
        reports: list[ClientReport] = pending.get(timeout=plan.seconds + plan.retry_seconds + 120)
    finally:
        pool.terminate()
        pool.join()
    return reports


def recover(plan: LoadPlan, reports: list[ClientReport]) -> int:
    """Retry every capture that never got an answer, with its own key and body; returns how
    many were retried (each must be answered now)."""
    client = _Client(plan, -1)
    client.retry_until = time.monotonic() + plan.retry_seconds
    retried = 0
    try:
        for report in reports:
            for record in report.captures:
                if not record.order_ids:
                    client.post_capture(record)
                    retried += 1
    finally:
        client.http.close()
        client.uow.engine.dispose()
    for kind, count in client.report.errors.items():
        reports[0].errors[f"recovery:{kind}"] += count
    return retried


# --- the checks ---------------------------------------------------------------------------------


@dataclass
class ExactlyOnce:
    keys: int
    acknowledged: int
    orders_in_database: int
    outstanding: list[str]
    """Keys no client ever got a 2xx for."""
    lost: list[str]
    """Keys answered with an order id the database does not hold (or holds for another key)."""
    duplicates: list[str]
    """Keys with more than one order in the database."""
    unacknowledged: list[int]
    """Orders in the database whose key no client was answered for."""
    inconsistent: list[str]
    """Keys answered with two different order ids, or whose idempotency record disagrees."""
    replayed_after_lost_answer: int
    """Keys whose first 2xx was a replay: an earlier attempt committed, its answer was lost
    (a kill between commit and reply), and the retry returned it instead of a second order."""

    @property
    def ok(self) -> bool:
        return (
            not (self.outstanding or self.lost or self.duplicates or self.unacknowledged)
            and not self.inconsistent
        )

    def summary(self) -> dict[str, Any]:
        return {
            "keys": self.keys,
            "acknowledged": self.acknowledged,
            "orders_in_database": self.orders_in_database,
            "outstanding": len(self.outstanding),
            "orders_lost": len(self.lost),
            "duplicates": len(self.duplicates),
            "unacknowledged_orders": len(self.unacknowledged),
            "inconsistent": len(self.inconsistent),
            "replayed_after_lost_answer": self.replayed_after_lost_answer,
        }


def check_exactly_once(url: str, reports: list[ClientReport]) -> ExactlyOnce:
    records = [record for report in reports for record in report.captures]
    acked: dict[str, int] = {}
    inconsistent: list[str] = []
    replayed_first = 0
    for record in records:
        if record.order_ids:
            acked[record.key] = record.order_ids[0]
            if record.replayed[0]:
                replayed_first += 1
        if len(set(record.order_ids)) > 1:
            inconsistent.append(f"{record.key} answered orders {sorted(set(record.order_ids))}")
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            orders = dict(connection.execute(select(SalesOrder.id, SalesOrder.external_ref)).all())
            remembered = {
                key: response
                for key, response in connection.execute(
                    select(IdempotencyRecord.key, IdempotencyRecord.response).where(
                        IdempotencyRecord.scope == "capture_order"
                    )
                )
            }
    finally:
        engine.dispose()
    by_key: dict[str | None, list[int]] = {}
    for order_id, ref in orders.items():
        by_key.setdefault(ref, []).append(order_id)
    for key, order_id in acked.items():
        stored = remembered.get(key)
        if stored is None or int(stored["order_id"]) != order_id:
            inconsistent.append(f"{key}: answered {order_id}, idempotency record {stored}")
    return ExactlyOnce(
        keys=len(records),
        acknowledged=len(acked),
        orders_in_database=len(orders),
        outstanding=[record.key for record in records if not record.order_ids],
        lost=[key for key, order_id in acked.items() if orders.get(order_id, object()) != key],
        duplicates=[str(key) for key, ids in by_key.items() if len(ids) > 1],
        unacknowledged=[order_id for order_id, ref in orders.items() if ref not in acked],
        inconsistent=inconsistent,
        replayed_after_lost_answer=replayed_first,
    )


def invariant_violations(url: str) -> list[str]:
    """``all_violations`` (ledger, no oversell, on order, reservations, audit), plus: every
    exception's owner is the one the policy routes it to, and no order line is shipped in more
    than one shipment or for more than its quantity."""
    uow = UnitOfWork.from_url(url, load_policy())
    try:
        with uow:
            session = uow.session
            problems = all_violations(session)
            tiers = {
                c.id: (c.tier, float(c.service_level_target))
                for c in session.scalars(select(Customer))
            }
            for case in session.scalars(select(ExceptionCase)):
                tier, level = tiers.get(case.customer_id or "", (None, None))
                route = uow.policy.route(
                    case.type,
                    margin_at_risk=case.margin_at_risk,
                    customer_tier=tier,
                    service_level=level,
                )
                if case.owner_role not in uow.policy.roles or case.owner_role != route.owner_role:
                    problems.append(
                        f"exception {case.id} ({case.type}) owned by {case.owner_role!r}, "
                        f"the policy routes it to {route.owner_role!r}"
                    )
            shipped = session.execute(
                select(
                    ShipmentLine.line_id,
                    func.count(),
                    func.sum(ShipmentLine.quantity),
                    OrderLine.quantity,
                )
                .join(OrderLine, OrderLine.id == ShipmentLine.line_id)
                .group_by(ShipmentLine.line_id, OrderLine.quantity)
            )
            for line_id, shipments, quantity, ordered in shipped:
                if shipments > 1 or quantity > ordered:
                    problems.append(
                        f"line {line_id} in {shipments} shipments, {quantity} of {ordered} units"
                    )
    finally:
        uow.engine.dispose()
    return problems


# --- figures ------------------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[round(share * 1000) - 1]


def figures(reports: list[ClientReport], seconds: float) -> dict[str, Any]:
    """Operations done, refusals and errors by kind, latency percentiles (ms) per HTTP
    operation and over all of them."""
    done: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    latencies: dict[str, list[float]] = {}
    for report in reports:
        done.update(report.done)
        refused.update(report.refused)
        errors.update(report.errors)
        for operation, values in report.latencies.items():
            latencies.setdefault(operation, []).extend(values)
    every = [value for values in latencies.values() for value in values]

    def ms(values: list[float], share: float) -> float | None:
        found = percentile(values, share)
        return None if found is None else round(found * 1000, 1)

    return {
        "operations": dict(sorted(done.items())),
        "operations_total": sum(done.values()),
        "http_requests_answered": len(every),
        "http_requests_per_second": round(len(every) / seconds, 1),
        "refused_by_kind": dict(sorted(refused.items())),
        "errors_by_kind": dict(sorted(errors.items())),
        "errors_total": sum(errors.values()),
        "latency_ms": {
            operation: {"p50": ms(values, 0.5), "p99": ms(values, 0.99), "n": len(values)}
            for operation, values in sorted(latencies.items())
        },
        "p50_ms": ms(every, 0.5),
        "p99_ms": ms(every, 0.99),
        "mismatched_reads": [m for report in reports for m in report.mismatched_reads],
    }
