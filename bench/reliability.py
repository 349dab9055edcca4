"""Benchmark: the reliability scenarios of tests/reliability for longer, with the figures written
down (bench/results/reliability.json).

    .venv/bin/python bench/reliability.py                          # PostgreSQL, 60 s each
    .venv/bin/python bench/reliability.py --seconds 20 --kills 1   # quicker
    .venv/bin/python bench/reliability.py --sqlite                 # a SQLite file instead

Two scenarios, each on a fresh world (a private schema of ``--postgres``, dropped afterwards)
served by ``erpx serve --workers 2``, driven by the load driver the tests use
(tests/reliability/load.py: forked httpx clients capturing with idempotency keys, cancelling,
picking + posting milestones, receiving, reading back):

1. ``load``: ``--clients`` clients for ``--seconds``.
2. ``kill``: the same, with SIGKILL to the server's whole process group ``--kills`` times,
   evenly spaced, each followed by a restart on the same port while the clients retry.

After each: captures never answered are retried with their keys, then the books are checked from
the database (``all_violations``, owners from the policy, no line shipped twice) and every key
against the orders (lost, duplicated, unanswered). Recorded: operations, refusals and errors by
kind, p50/p99 latency per HTTP operation, invariant violations, orders lost, duplicates.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, make_url, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the driver lives in tests/reliability (shared with the tests)

from erp_core.db.engine import normalise_url  # noqa: E402
from tests.reliability.load import (  # noqa: E402
    LoadPlan,
    Server,
    check_exactly_once,
    figures,
    finish_clients,
    invariant_violations,
    prepare_world,
    recover,
    start_clients,
    warm_up,
)

RESULTS = ROOT / "bench" / "results" / "reliability.json"
console = Console()


def private_schema(base: str) -> tuple[str, Any]:
    """A URL whose connections live in a new schema, and a function that drops it."""
    base = normalise_url(base)
    schema = f"erpx_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})

    def drop() -> None:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return url.render_as_string(hide_password=False), drop


def scenario(name: str, args: argparse.Namespace, kills: int) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix=f"erpx-bench-reliability-{name}-"))
    if args.sqlite:
        url, drop = f"sqlite:///{folder / 'erpx.db'}", (lambda: None)
    else:
        url, drop = private_schema(args.postgres)
    try:
        world = prepare_world(url)
        server = Server(folder, url, workers=2)
        server.start()
        try:
            warm_up(server.base_url, world)
            plan = LoadPlan(
                server.base_url, world, clients=args.clients, seconds=args.seconds, run_id=name
            )
            started = time.monotonic()
            pool, pending = start_clients(plan)
            downtimes, killed = [], []
            for k in range(kills):
                time.sleep(
                    max(0.0, started + args.seconds * (k + 1) / (kills + 1) - time.monotonic())
                )
                killed.append(server.kill9())
                down = time.monotonic()
                server.start()
                downtimes.append(round(time.monotonic() - down, 2))
            reports = finish_clients(plan, pool, pending)
            elapsed = time.monotonic() - started
            retried = recover(plan, reports)
            log = server.log()
        finally:
            server.stop()
        measured = figures(reports, elapsed)
        violations = invariant_violations(url)
        once = check_exactly_once(url, reports)
    finally:
        drop()
    return {
        "clients": args.clients,
        "seconds": args.seconds,
        "elapsed_s": round(elapsed, 1),
        "kills": kills,
        "processes_killed": killed,
        "restart_s": downtimes,
        "server_starts_s": [round(s, 2) for s in server.starts],
        "captures_retried_after_load": retried,
        **measured,
        "invariant_violations": len(violations),
        "invariant_violation_examples": violations[:10],
        **once.summary(),
        "tracebacks_in_server_log": log.count("Traceback"),
    }


def show(name: str, result: dict[str, Any]) -> None:
    table = Table(
        title=f"{name}: {result['clients']} clients, {result['seconds']:.0f} s, "
        f"{result['kills']} kill -9"
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key in (
        "operations_total",
        "http_requests_answered",
        "http_requests_per_second",
        "errors_total",
        "p50_ms",
        "p99_ms",
        "keys",
        "acknowledged",
        "orders_in_database",
        "replayed_after_lost_answer",
        "invariant_violations",
        "orders_lost",
        "duplicates",
        "unacknowledged_orders",
        "restart_s",
    ):
        table.add_row(key, str(result[key]))
    for operation, value in result["operations"].items():
        table.add_row(f"  done: {operation}", str(value))
    for kind, value in result["errors_by_kind"].items():
        table.add_row(f"  error: {kind}", str(value))
    for kind, value in result["refused_by_kind"].items():
        table.add_row(f"  refused: {kind}", str(value))
    for operation, latency in result["latency_ms"].items():
        table.add_row(f"  {operation} p50 / p99 ms", f"{latency['p50']} / {latency['p99']}")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--sqlite", action="store_true", help="a SQLite file, not PostgreSQL")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--kills", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = {}
    for name, kills in (("load", 0), ("kill", args.kills)):
        console.print(f"[bold]{name}[/bold] ...")
        results[name] = scenario(name, args, kills)
        show(name, results[name])
    record = {
        "benchmark": "reliability",
        "command": "python bench/reliability.py " + " ".join(sys.argv[1:]),
        "database": "sqlite" if args.sqlite else "postgresql",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "scenarios": results,
        "all_sound": all(
            r["invariant_violations"] == 0
            and r["orders_lost"] == 0
            and r["duplicates"] == 0
            and r["unacknowledged_orders"] == 0
            and r["outstanding"] == 0
            for r in results.values()
        ),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    console.print(f"written {args.out}; all sound: {record['all_sound']}")
    sys.exit(0 if record["all_sound"] else 1)


if __name__ == "__main__":
    main()
