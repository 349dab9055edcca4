"""Kill and restart: mid-load, SIGKILL goes to the server's whole process group (the supervisor
and both workers, with requests in flight and transactions open); it is started again on the
same port while the 16 clients keep retrying what got no answer, each with its own idempotency
key and body. Then the books hold and every order exists exactly once: nothing a client was told
is lost, no retry made a second order, and an order whose answer the kill swallowed (committed,
never answered) is what its retry returned."""

from __future__ import annotations

import json
import time

from tests.reliability.load import (
    LoadPlan,
    Server,
    World,
    check_exactly_once,
    figures,
    finish_clients,
    invariant_violations,
    recover,
    start_clients,
)

CLIENTS = 16
SECONDS = 6.0
KILL_AFTER_S = 2.5


def test_a_kill_9_mid_load_loses_no_order_and_duplicates_none(server: Server, world: World) -> None:
    plan = LoadPlan(server.base_url, world, clients=CLIENTS, seconds=SECONDS, run_id="kill")
    pool, pending = start_clients(plan)
    time.sleep(KILL_AFTER_S)
    killed = server.kill9()
    down_at = time.monotonic()
    server.start()
    downtime = time.monotonic() - down_at
    reports = finish_clients(plan, pool, pending)
    recovered = recover(plan, reports)
    measured = figures(reports, SECONDS + downtime)
    once = check_exactly_once(world.database_url, reports)
    print(json.dumps({"killed": killed, "downtime_s": downtime, "recovered": recovered}))
    print(json.dumps(measured | {"exactly_once": once.summary()}, indent=1))

    assert killed >= 3, "the supervisor and its two workers"
    # The kill hit the load: requests failed without an answer while the server was down.
    transport = sum(n for kind, n in measured["errors_by_kind"].items() if ":transport:" in kind)
    assert transport > 0, measured["errors_by_kind"]
    assert invariant_violations(world.database_url) == []
    assert once.ok, once
    assert once.acknowledged == once.orders_in_database == once.keys
    assert measured["mismatched_reads"] == []
    # Only the kill's own failures: no answer, or none yet from the restarting server; no 5xx.
    assert all(":transport:" in kind for kind in measured["errors_by_kind"]), measured
