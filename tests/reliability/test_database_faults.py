"""Database faults under requests: the connection is cut or the database is locked for a moment.

- PostgreSQL: every backend of the API (found by the ``application_name`` its URL gives it) is
  terminated with ``pg_terminate_backend`` over and over for a few seconds, while client
  threads capture orders, read them back and ask ``/readyz``;
- SQLite: another connection holds an ``EXCLUSIVE`` transaction on the file for a few seconds
  (longer than the API's lock timeout, set to 1 s by the URL's ``?timeout=``).

What must hold: while the fault lasts, a request either succeeds or is a 503 with
``Retry-After`` and the API's error body (``database_unavailable``), never a 500 or a
traceback; once the fault ends the service answers again on its own (no restart), every capture
retried with its key exists exactly once, and the books hold. One worker serves (the faults are
the database's; tests/reliability/test_load.py has the two).
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import OperationalError

from erp_core.db.engine import make_engine
from tests.reliability.load import (
    Capture,
    ClientReport,
    Server,
    World,
    check_exactly_once,
    invariant_violations,
    prepare_world,
    warm_up,
)

CLIENT_THREADS = 4
BEFORE_S = 1.0
FAULT_S = 3.0
RECOVERY_S = 20.0
"""How long after the fault every kind of request must be answered again."""


@dataclass
class Seen:
    """Every answer the client threads got, the 503s kept whole."""

    statuses: Counter[int] = field(default_factory=Counter)
    transport: Counter[str] = field(default_factory=Counter)
    unavailable: list[httpx.Response] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)
    captures: list[Capture] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, response: httpx.Response) -> None:
        with self.lock:
            self.statuses[response.status_code] += 1
            if response.status_code == 503:
                self.unavailable.append(response)
            elif response.status_code >= 500 or "Traceback" in response.text:
                self.bad.append(f"{response.status_code} {response.request.url}: {response.text}")


def _client(
    base_url: str, world: World, seen: Seen, name: str, until: float, stop: threading.Event
) -> None:
    """Capture (retrying each key until it is answered), read the order back, ask /readyz."""
    sales = {"X-API-Key": world.keys["sales_rep"]}
    with httpx.Client(base_url=base_url, timeout=30.0) as http:

        def call(method: str, path: str, **kwargs: Any) -> httpx.Response | None:
            try:
                response = http.request(method, path, **kwargs)
            except httpx.TransportError as error:
                with seen.lock:
                    seen.transport[type(error).__name__] += 1
                return None
            seen.note(response)
            return response

        n = 0
        while time.monotonic() < until and not stop.is_set():
            n += 1
            key = f"{name}-{n}"
            body = {
                "customer_id": "C-GOLD",
                "lines": [{"sku": "WIDGET", "quantity": 1}],
                "external_ref": key,
            }
            record = Capture(key, body)
            with seen.lock:
                seen.captures.append(record)
            while not record.order_ids and not stop.is_set():
                record.attempts += 1
                answer = call(
                    "POST", "/v1/orders", json=body, headers=sales | {"Idempotency-Key": key}
                )
                if answer is not None and answer.status_code == 201:
                    record.order_ids.append(answer.json()["order_id"])
                    record.replayed.append(answer.json()["replayed"])
                elif answer is not None and answer.status_code < 500:
                    with seen.lock:
                        seen.bad.append(f"capture {key}: {answer.status_code} {answer.text}")
                    break
                else:
                    time.sleep(0.1)
            if record.order_ids:
                call("GET", f"/v1/orders/{record.order_ids[0]}", headers=sales)
            call("GET", "/readyz")


def _run(server: Server, world: World, fault: Any) -> tuple[Seen, float]:
    """Client threads for BEFORE_S + FAULT_S + 1 s with ``fault(seconds)`` run in between;
    returns what they saw and how long after the fault everything answered again."""
    seen = Seen()
    stop = threading.Event()
    until = time.monotonic() + BEFORE_S + FAULT_S + 1.0
    threads = [
        threading.Thread(
            target=_client, args=(server.base_url, world, seen, f"t{i}", until, stop), daemon=True
        )
        for i in range(CLIENT_THREADS)
    ]
    for thread in threads:
        thread.start()
    time.sleep(BEFORE_S)
    fault(FAULT_S)
    ended = time.monotonic()
    recovered_after = _answered_again(server, world) - ended
    for thread in threads:
        thread.join(timeout=RECOVERY_S + 30)
    stop.set()
    return seen, recovered_after


def _answered_again(server: Server, world: World) -> float:
    """The moment a capture, a read and /readyz all answer 2xx (within RECOVERY_S)."""
    deadline = time.monotonic() + RECOVERY_S
    sales = {"X-API-Key": world.keys["sales_rep"]}
    body = {"customer_id": "C-BRONZE", "lines": [{"sku": "WIDGET", "quantity": 1}]}
    while time.monotonic() < deadline:
        with httpx.Client(base_url=server.base_url, timeout=10.0) as http:
            ready = http.get("/readyz").status_code
            exceptions = http.get("/v1/exceptions", headers=sales).status_code
            score = http.post("/v1/orders/score", json=body, headers=sales).status_code
        if (ready, exceptions, score) == (200, 200, 200):
            return time.monotonic()
        time.sleep(0.2)
    raise AssertionError(
        f"not answering {RECOVERY_S} s after the fault: {ready} {exceptions} {score}"
    )


def _assert_faults_answered_503_and_books_hold(server: Server, world: World, seen: Seen) -> None:
    assert seen.bad == [], seen.bad[:5]
    assert seen.unavailable, f"the fault hit no request: {seen.statuses}"
    for response in seen.unavailable:
        if response.request.url.path == "/readyz":  # the probe's own answer: not ready now
            assert response.json()["status"] == "unavailable", response.text
            continue
        assert response.headers.get("retry-after", "").isdigit(), response.headers
        assert response.json()["error"]["code"] == "database_unavailable", response.text
    assert set(seen.statuses) <= {200, 201, 503}, seen.statuses
    assert seen.transport == Counter(), seen.transport  # the server never dropped a connection
    log = server.log()
    assert "Traceback" not in log and "unexpected error" not in log, log[-5000:]
    reports = [ClientReport(0, captures=seen.captures)]
    once = check_exactly_once(world.database_url, reports)
    # The recovery probe scored drafts only: every order in the database is a client's.
    assert once.ok, once
    assert invariant_violations(world.database_url) == []


def test_postgres_backends_terminated_mid_request_are_503s_and_the_api_recovers(
    postgres_schema_url: str, tmp_path: Path
) -> None:
    world = prepare_world(postgres_schema_url)
    name = f"erpx-reliability-{uuid.uuid4().hex[:8]}"
    served_url = (
        make_url(postgres_schema_url)
        .update_query_dict({"application_name": name})
        .render_as_string(hide_password=False)
    )
    server = Server(tmp_path, served_url, workers=1)
    server.start()
    admin = create_engine(make_url(postgres_schema_url).set(query={}))
    terminated = 0

    def terminate(seconds: float) -> None:
        nonlocal terminated
        end = time.monotonic() + seconds
        with admin.connect() as connection:
            while time.monotonic() < end:
                terminated += sum(
                    connection.execute(
                        text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE application_name = :name"
                        ),
                        {"name": name},
                    ).scalars()
                )
                connection.commit()
                time.sleep(0.02)

    try:
        warm_up(server.base_url, world)
        seen, recovered_after = _run(server, world, terminate)
        print(
            f"terminated {terminated} backends; {dict(seen.statuses)}; recovered in "
            f"{recovered_after:.2f} s"
        )
        assert terminated > 0
        _assert_faults_answered_503_and_books_hold(server, world, seen)
    except BaseException:
        print(server.log()[-20000:])
        raise
    finally:
        server.stop()
        admin.dispose()


def test_a_locked_sqlite_file_is_503s_and_the_api_recovers(tmp_path: Path) -> None:
    path = tmp_path / "erpx.db"
    world = prepare_world(f"sqlite:///{path}")
    # The API waits 1 s for the write lock (the default 30 s would outlast any test).
    server = Server(tmp_path, f"sqlite:///{path}?timeout=1", workers=1)
    server.start()

    def lock(seconds: float) -> None:
        holder = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            holder.execute("BEGIN EXCLUSIVE")
            time.sleep(seconds)
            holder.execute("ROLLBACK")
        finally:
            holder.close()

    try:
        warm_up(server.base_url, world)
        seen, recovered_after = _run(server, world, lock)
        print(f"{dict(seen.statuses)}; recovered in {recovered_after:.2f} s")
        _assert_faults_answered_503_and_books_hold(server, world, seen)
    except BaseException:
        print(server.log()[-20000:])
        raise
    finally:
        server.stop()


def test_a_sqlite_urls_timeout_is_how_long_a_writer_waits_for_the_lock(tmp_path: Path) -> None:
    """The URL's ``?timeout=`` (pysqlite's own parameter) was overridden by the engine's fixed
    30 s: a writer behind a locked file now waits what the URL says, then gets the error the
    API answers with a 503."""
    path = tmp_path / "locked.db"
    engine = make_engine(f"sqlite:///{path}?timeout=0.5")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        with pytest.raises(OperationalError, match="locked"), engine.begin() as connection:
            connection.exec_driver_sql("INSERT INTO t VALUES (1)")
        waited = time.monotonic() - started
    finally:
        holder.close()
        engine.dispose()
    assert 0.4 <= waited < 5.0
