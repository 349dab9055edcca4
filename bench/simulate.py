"""Benchmark: simulate a profile into a fresh SQLite file and record wall time and lines/s.

    .venv/bin/python bench/simulate.py --profile medium        # the issue's target: < 90 s
    .venv/bin/python bench/simulate.py --profile small --days 60

Prints the figures and writes them to bench/results/simulate-<profile>.json (``--out`` names
another file). Besides wall time it records the process's CPU seconds and the load average: on
a shared machine the wall clock measures the neighbours too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from erp_core.settings import Settings
from erp_core.simulate.run import simulate

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="medium")
    parser.add_argument("--days", type=int, default=None)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--note", default="", help="recorded in the JSON (machine load, ...)")
    parser.add_argument("--out", default=None, help="JSON file name (default simulate-<profile>)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="erpx-bench-") as folder:
        settings = Settings(database_url=f"sqlite:///{folder}/world.db", var_dir=Path(folder))
        started = time.perf_counter()
        cpu_started = time.process_time()
        load_before = os.getloadavg()[0]
        last = [started]

        def progress(done: int, total: int, lines: int) -> None:
            now = time.perf_counter()
            if now - last[0] > 10 or done == total:
                last[0] = now
                rate = lines / (now - started)
                print(f"  day {done}/{total}: {lines:,} lines, {rate:,.0f} lines/s", flush=True)

        summary = simulate(settings, args.profile, args.days, args.seed, progress=progress)
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        db_bytes = Path(folder, "world.db").stat().st_size
    figures = {
        "benchmark": "simulate",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": _cpus(), "python": platform.python_version()},
        "note": args.note,
        "profile": args.profile,
        "days": summary.days,
        "seed": args.seed,
        "database": "sqlite",
        "wall_seconds": round(wall, 1),
        "simulation_seconds": summary.wall_seconds,
        "cpu_seconds": round(cpu, 1),
        "load_average_1m": {"start": round(load_before, 2), "end": round(os.getloadavg()[0], 2)},
        "order_lines": summary.lines,
        "order_lines_per_second": round(summary.lines / wall, 1),
        "orders": summary.orders,
        "shipments": summary.shipments,
        "late_delivery_rate": round(summary.late_delivery_rate, 4),
        "line_fill_rate": round(summary.line_fill_rate, 4),
        "oracle_auc_delivery": round(summary.oracle_auc_delivery, 4),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "database_mib": round(db_bytes / 2**20, 1),
        "target": "medium profile in under 90 s on 2 cores with SQLite",
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / (args.out or f"simulate-{args.profile}.json")
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    print(f"written to {out}")


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()
