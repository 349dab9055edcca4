"""Concurrent load: 16 client processes capture orders (each with its idempotency key), cancel
some, pick and ship others (milestones over HTTP) and receive goods, against ``erpx serve
--workers 2``, for a few seconds; then, from the database alone, the books hold (no oversell, the
ledger explains every balance, reservations and audit entries match, every case has the owner
the policy names, no line shipped twice) and every order exists exactly once: each 2xx a client
got is one order, and every order in the database was answered to some client."""

from __future__ import annotations

import json

from tests.reliability.load import (
    LoadPlan,
    Server,
    World,
    check_exactly_once,
    figures,
    invariant_violations,
    recover,
    run_clients,
)

CLIENTS = 16
SECONDS = 5.0


def test_sixteen_clients_keep_the_books_and_every_order_exactly_once(
    server: Server, world: World
) -> None:
    plan = LoadPlan(server.base_url, world, clients=CLIENTS, seconds=SECONDS, run_id="load")
    reports = run_clients(plan)
    measured = figures(reports, SECONDS)
    print(json.dumps(measured, indent=1))
    assert recover(plan, reports) == 0, "a healthy server left a capture unanswered"

    assert invariant_violations(world.database_url) == []
    once = check_exactly_once(world.database_url, reports)
    assert once.ok, once
    assert once.acknowledged == once.orders_in_database == once.keys
    # The load did what it says: orders of every kind of work, and reads that match.
    for operation in ("capture", "cancel", "pick", "event", "receive", "read"):
        assert measured["operations"].get(operation, 0) > 0, measured["operations"]
    assert measured["mismatched_reads"] == []
    # A healthy server answers everything: no 5xx, no dropped connection.
    assert measured["errors_by_kind"] == {}
    assert "Traceback" not in server.log()
