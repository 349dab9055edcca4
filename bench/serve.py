"""Benchmark: the real erpx API (uvicorn, one worker and two) scoring draft orders over loopback,
beside two references served the same way: ``mlflow models serve`` of the same late-shipment
champion fed precomputed features, and a bare FastAPI endpoint that only turns precomputed rows
into probabilities with the same booster.

    .venv/bin/python bench/serve.py                        # defaults: 120 days, 10 s per cell
    .venv/bin/python bench/serve.py --seconds 5 --warmup 1 # quicker

Needs nothing beyond the project's own dependencies (``pip install -e '.[dev]'``: uvicorn,
FastAPI, MLflow, LightGBM; httpx for FastAPI's TestClient in the profile) and Linux (``/proc``
is read for CPU seconds per process and for which worker holds which connection). The load
generator is this script too (``bench/serve.py client ...``, started as its own process): an
asyncio HTTP/1.1 client over raw keep-alive connections, closed loop (each connection sends its
next request when the previous answer is read), so it costs a few tens of microseconds of CPU per
request; its CPU seconds are recorded beside every figure. The bare endpoint is here too
(``bare_app``, which the ``uvicorn`` command runs as ``serve:bare_app``).

Steps, each recorded in bench/results/serve.json:

1. The world, kept under ``--world-dir`` (default var/bench-serve/, git-ignored) and reused by the
   next run: ``erpx simulate --profile medium --days N`` (N small enough to simulate in minutes
   and large enough for the training split), ``erpx train late-shipment --promote`` and
   ``erpx train margin-anomaly --promote`` into a MLflow store beside it. When a gate refuses, the
   alias ``champion`` is set on the new version directly (recorded in the notes): the benchmark
   measures serving, not model quality. ``ERPX_FROZEN_NOW`` is the world's last order entry.
2. In-process, on one runtime built as a worker builds it: every request body is checked to
   answer 200 through FastAPI's TestClient, the feature rows of the 10-line orders are computed
   (the references' precomputed input), and one 10-line request is profiled: stage by stage with
   ``perf_counter`` over ``--profile-calls`` calls, and under cProfile.
3. Each server in turn, started as a process of its own and timed to ready: for 1- and 10-line
   orders (rows for the references) at each concurrency, a warm-up, then ``--seconds`` measured
   with requests/s, p50/p90/p99 latency, the server's and the client's CPU seconds, the load
   average, and (midway) how the connections were spread over the server's processes.

The 2-worker runs also check SERVING-NOTES' two multi-worker pitfalls: a flat ~44 ms per request
(p50 at concurrency 1 of 2 workers against 1) and connections piling onto one worker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import resource
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Run as ``python bench/serve.py``, this folder heads sys.path and bench/features.py would hide
# the ``features`` package: take the folder off the path before importing the project.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]

RESULTS = _HERE / "results"
ROOT = _HERE.parent
BIN = Path(sys.executable).parent
SCORE_PATH = "/v1/orders/score"
TARGETS = {
    "p99_ms_10_lines_c8": "under 25 ms (one worker, 10-line order, concurrency 8)",
    "rps_ratio_vs_mlflow_serve": ">= 3 (same load, one worker each)",
    "rps_ratio_vs_bare_predict": ">= 0.20 (same load, one worker each)",
}
SPLIT_DAYS = {"validation": 14, "calibration": 14, "test": 28}
"""The training split: 28 train + 14 + 14 + 28 days + a 21-day label horizon fit in ~110 days."""
ORDERS_PER_SIZE = 200
LATE_SHIPMENT = "late_shipment"
MARGIN_ANOMALY = "margin_anomaly"


def main() -> None:
    """Build (or reuse) the world, profile in-process, then measure every server."""
    args = _arguments()
    load_before = os.getloadavg()
    started = time.perf_counter()
    world = prepare_world(args)
    _say(f"world ready: {world.facts['order_lines']} lines, now = {world.frozen_now}")
    bodies = order_bodies(world, args.seed)
    inproc = in_process(world, bodies, args.profile_calls)
    servers = server_plans(world, inproc, bodies, args)
    measured = measure_servers(servers, args)
    record = results(args, world, inproc, measured, load_before, time.perf_counter() - started)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(json.dumps(_summary(record), indent=2))
    print(f"wrote {args.out}")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=120, help="Days of the medium world.")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--world-dir", type=Path, default=ROOT / "var" / "bench-serve")
    parser.add_argument("--seconds", type=float, default=10.0, help="Measured seconds per cell.")
    parser.add_argument("--warmup", type=float, default=2.0, help="Unmeasured seconds per cell.")
    parser.add_argument("--concurrency", default="1,8,32", help="Connections, comma-separated.")
    parser.add_argument("--lines", default="1,10", help="Lines (rows) per request.")
    parser.add_argument("--profile-calls", type=int, default=500)
    parser.add_argument(
        "--servers",
        default="erpx_1_worker,erpx_2_workers,mlflow_models_serve,bare_predict,"
        "bare_predict_2_workers",
        help="Which servers to measure, comma-separated (default: all).",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "serve.json")
    args = parser.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.lines = [int(n) for n in args.lines.split(",")]
    args.servers = [name.strip() for name in args.servers.split(",") if name.strip()]
    args.world_dir = args.world_dir.resolve()
    return args


# --- the world ----------------------------------------------------------------------------------


@dataclass
class World:
    folder: Path
    days: int
    seed: int
    database: Path
    mlflow_db: Path
    artifacts: Path
    frozen_now: str = ""
    api_key: str = ""
    facts: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.database}"

    @property
    def mlflow_uri(self) -> str:
        return f"sqlite:///{self.mlflow_db}"

    def env(self) -> dict[str, str]:
        """What every process of the run sees: the world, its registry, the API's clock, one
        OpenMP thread (a request scores a handful of rows; SERVING-NOTES pitfall 2)."""
        env = dict(os.environ)
        env.update(
            {
                "ERPX_DATABASE_URL": self.database_url,
                "ERPX_MLFLOW_TRACKING_URI": self.mlflow_uri,
                "ERPX_MLFLOW_ARTIFACT_ROOT": str(self.artifacts),
                "ERPX_VAR_DIR": str(self.folder),
                "MLFLOW_TRACKING_URI": self.mlflow_uri,
                "OMP_NUM_THREADS": "1",
                "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
                "PYTHONPATH": str(ROOT),
            }
        )
        if self.frozen_now:
            env["ERPX_FROZEN_NOW"] = self.frozen_now
        return env


def prepare_world(args: argparse.Namespace) -> World:
    """The simulated world and its champions, made once per ``--world-dir`` and reused."""
    folder = args.world_dir
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"medium-{args.days}d-seed{args.seed}"
    world = World(
        folder=folder,
        days=args.days,
        seed=args.seed,
        database=folder / f"world-{stem}.db",
        mlflow_db=folder / f"mlflow-{stem}.db",
        artifacts=folder / f"mlartifacts-{stem}",
    )
    marker = folder / f"world-{stem}.json"
    reused = marker.exists()
    if not reused:
        world.database.unlink(missing_ok=True)
        _say(f"simulating the medium world for {args.days} days (a few minutes) ...")
        started = time.perf_counter()
        _erpx(
            world,
            "simulate",
            "--profile",
            "medium",
            "--days",
            str(args.days),
            "--seed",
            str(args.seed),
        )
        marker.write_text(json.dumps({"simulate_seconds": round(time.perf_counter() - started)}))
    else:
        # A world kept from an earlier version of erpx is brought to the current schema first:
        # a table added since (po_line_receipt_forecasts, read by every quote) would otherwise
        # fail every score with 503 "database unavailable".
        _erpx(world, "init")
    world.facts["simulation"] = json.loads(marker.read_text()) | {"reused": reused}
    world.facts["training"] = ensure_champions(world)
    world.frozen_now, world.facts["order_lines"], world.facts["orders"] = _world_clock(world)
    world.api_key = _api_key(world)
    return world


def ensure_champions(world: World) -> dict[str, Any]:
    """Each served model's champion: kept when there is one, else trained with ``--promote``;
    a version the gate refuses is made champion directly (and the notes say so)."""
    from erp_core.settings import Settings
    from training import tracking

    tracking.configure(Settings(mlflow_tracking_uri=world.mlflow_uri))
    split = [f"--{name}-days={days}" for name, days in SPLIT_DAYS.items()]
    saved_path = world.folder / f"{world.mlflow_db.stem}.champions.json"
    saved = json.loads(saved_path.read_text()) if saved_path.exists() else {}
    facts: dict[str, Any] = {}
    notes: list[str] = []
    for name, command in ((LATE_SHIPMENT, "late-shipment"), (MARGIN_ANOMALY, "margin-anomaly")):
        champion = tracking.version_by_alias(name, tracking.CHAMPION)
        if champion is not None:
            earlier = saved.get("models", {}).get(name, {})
            facts[name] = earlier | {"champion_version": champion.version, "trained_now": False}
            notes += [note for note in saved.get("notes", []) if note.startswith(f"{name}:")]
            continue
        _say(f"training {name} ...")
        started = time.perf_counter()
        output = _erpx(world, "train", command, "--promote", *split)
        gate = _gate_line(output)
        facts[name] = {
            "trained_now": True,
            "train_seconds": round(time.perf_counter() - started, 1),
            "gate": gate,
        }
        champion = tracking.version_by_alias(name, tracking.CHAMPION)
        if champion is None:
            challenger = tracking.version_by_alias(name, tracking.CHALLENGER)
            assert challenger is not None, f"erpx train {command} registered no challenger"
            tracking.set_alias(name, tracking.CHAMPION, challenger.version)
            champion = challenger
            notes.append(
                f"{name}: the gate refused v{challenger.version} on this short world ({gate}); "
                "the champion alias was set on it directly with training.tracking.set_alias"
            )
        facts[name]["champion_version"] = champion.version
    saved_path.write_text(json.dumps({"models": facts, "notes": notes}, indent=2))
    world.notes.extend(notes)
    return facts


def _gate_line(output: str) -> str:
    """The gate's verdict from the command's closing table (its cell may wrap over lines)."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.strip("│ ").startswith("gate"):
            parts = [line.split("│")[2] if line.count("│") >= 3 else line]
            for follow in lines[i + 1 :]:
                cells = follow.split("│")
                if len(cells) < 3 or cells[1].strip():
                    break
                parts.append(cells[2])
            return " ".join(" ".join(parts).split())
    return "no gate line in the output"


def _world_clock(world: World) -> tuple[str, int, int]:
    """The API's frozen clock: the last order entry of the world (UTC), so every feature window
    has history behind it."""
    with sqlite3.connect(world.database) as db:
        last = db.execute("SELECT max(entered_at) FROM sales_orders").fetchone()[0]
        lines = db.execute("SELECT count(*) FROM order_lines").fetchone()[0]
        orders = db.execute("SELECT count(*) FROM sales_orders").fetchone()[0]
    moment = datetime.fromisoformat(str(last)).replace(tzinfo=UTC)
    return moment.isoformat(), int(lines), int(orders)


def _api_key(world: World) -> str:
    """A fresh sales-rep key (``erpx apikey create`` prints it once as ``name (role): key``)."""
    name = f"bench-serve-{int(time.time())}"
    output = _erpx(world, "apikey", "create", "--role", "sales_rep", "--name", name)
    first = next(line for line in output.splitlines() if line.startswith(name))
    return first.rsplit(": ", 1)[1].strip()


def _erpx(world: World, *arguments: str) -> str:
    done = subprocess.run(
        [str(BIN / "erpx"), *arguments],
        env=world.env() | {"COLUMNS": "200"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"erpx {' '.join(arguments)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


# --- the orders ---------------------------------------------------------------------------------


def order_bodies(world: World, seed: int) -> dict[int, list[bytes]]:
    """Draft orders of real customers and SKUs of the world, drawn from its last 28 days of
    order lines (so popular SKUs come up as often as they are ordered), with their quantities;
    a 10-line order holds 10 different SKUs."""
    with sqlite3.connect(world.database) as db:
        rows = db.execute(
            "SELECT o.customer_id, l.sku, l.quantity FROM order_lines l "
            "JOIN sales_orders o ON o.id = l.order_id "
            "WHERE o.entered_at >= datetime((SELECT max(entered_at) FROM sales_orders), '-28 days')"
            " AND l.parent_line_id IS NULL"
        ).fetchall()
    generator = random.Random(seed)
    customers = sorted({row[0] for row in rows})
    out: dict[int, list[bytes]] = {}
    for size in (1, 10):
        bodies = []
        for _ in range(ORDERS_PER_SIZE):
            picked: dict[str, int] = {}
            while len(picked) < size:
                _, sku, quantity = generator.choice(rows)
                picked.setdefault(sku, int(quantity))
            order = {
                "customer_id": generator.choice(customers),
                "lines": [{"sku": sku, "quantity": qty} for sku, qty in picked.items()],
            }
            bodies.append(json.dumps(order, separators=(",", ":")).encode())
        out[size] = bodies
    return out


# --- in-process: the request checked, the reference rows, the profile -------------------------


@dataclass
class InProcess:
    """What the in-process pass hands to the server runs."""

    bodies: dict[int, list[bytes]]
    frame_rows: list[dict[str, Any]]
    matrix_rows: list[list[float | None]]
    columns: list[str]
    booster_paths: list[Path]
    """The champion's boosters (one per hazard), each saved with its trees."""
    trees: int
    features: int
    checked: dict[str, Any]
    profile: dict[str, Any]


def in_process(world: World, bodies: dict[int, list[bytes]], calls: int) -> InProcess:
    """One runtime built as a worker builds it: check the bodies, compute the references' rows
    from the 10-line orders, and profile a 10-line request."""
    os.environ["OMP_NUM_THREADS"] = "1"
    from fastapi.testclient import TestClient

    from erp_core.settings import Settings
    from serving.app import create_app
    from serving.runtime import build_runtime

    settings = Settings(
        database_url=world.database_url,
        mlflow_tracking_uri=world.mlflow_uri,
        mlflow_artifact_root=str(world.artifacts),
        var_dir=world.folder,
        frozen_now=datetime.fromisoformat(world.frozen_now),
    )
    _say("building a runtime in-process (feature index, champions) ...")
    started = time.perf_counter()
    runtime = build_runtime(settings)
    build_seconds = time.perf_counter() - started
    assert not runtime.models.degraded, f"champions not loaded: {runtime.models.problems}"
    client = TestClient(create_app(settings, runtime=runtime))
    headers = {"X-API-Key": world.api_key, "Content-Type": "application/json"}
    kept, checked = _check_bodies(client, headers, bodies)
    champion = runtime.models.champion(LATE_SHIPMENT)
    assert champion is not None
    model = champion.estimator
    frames = [_stages(runtime, body, world.api_key)[1] for body in kept[10]]
    frame_rows, matrix_rows, columns = _reference_rows(model, frames)
    booster_paths = []
    for index, (booster, trees) in enumerate(
        zip(model.boosters_, model.best_iterations_, strict=True)
    ):
        path = world.folder / f"late_shipment-v{champion.version}.booster{index}.txt"
        booster.save_model(str(path), num_iteration=trees)
        booster_paths.append(path)
    _say(f"profiling {calls} 10-line requests in-process ...")
    profile = profile_request(client, headers, runtime, kept[10], world.api_key, calls)
    profile["runtime_build_seconds_in_process"] = round(build_seconds, 2)
    return InProcess(
        bodies=kept,
        frame_rows=frame_rows,
        matrix_rows=matrix_rows,
        columns=columns,
        booster_paths=booster_paths,
        trees=sum(model.trees_),
        features=len(model.encoder_.names),
        checked=checked,
        profile=profile,
    )


def _check_bodies(
    client: Any, headers: dict[str, str], bodies: dict[int, list[bytes]]
) -> tuple[dict[int, list[bytes]], dict[str, Any]]:
    """Every body once through the app: only those answering 200 are sent under load, and
    what the orders hold is recorded (lines scored by the model, backorders, actions)."""
    kept: dict[int, list[bytes]] = {}
    checked: dict[str, Any] = {}
    for size, group in bodies.items():
        statuses: Counter[int] = Counter()
        lines = scored = backordered = with_actions = held = 0
        kept[size] = []
        for body in group:
            answer = client.post(SCORE_PATH, content=body, headers=headers)
            statuses[answer.status_code] += 1
            if answer.status_code != 200:
                continue
            kept[size].append(body)
            payload = answer.json()
            held += bool(payload["order"]["credit_hold"])
            for line in payload["lines"]:
                lines += 1
                scored += line["late_risk"] is not None and line["late_risk"]["model"] != "fallback"
                backordered += line["state"] == "backordered"
                with_actions += bool(line["actions"])
        checked[f"{size}_line_orders"] = {
            "bodies": len(group),
            "statuses": dict(statuses),
            "credit_hold_orders": held,
            "lines_returned": lines,
            "lines_scored_by_champion": scored,
            "lines_backordered": backordered,
            "lines_with_actions": with_actions,
        }
        assert kept[size], f"no {size}-line order answered 200: {dict(statuses)}"
    return kept, checked


def _stages(runtime: Any, body: bytes, api_key: str) -> tuple[dict[str, tuple[int, int]], Any]:
    """The score route's work, step by step as serving/routes/orders.py and serving/scoring.py
    do it, each step timed (wall and this thread's CPU, nanoseconds: on a shared machine the
    CPU time is the steadier figure); also the late-shipment feature frame it built."""
    import numpy as np
    import pandas as pd

    from serving.late_risk import ACTION_FEATURES, REASON_LIMIT, LateRisk, _row
    from serving.margin import score_margin
    from serving.routes import orders as routes
    from serving.schemas import DraftOrderIn, ScoredOrderOut
    from serving.scoring import (
        EXPLAIN_SHARE,
        ScoredLine,
        ScoredOrder,
        _versions,
        _with_lines,
        at_risk,
        draft_of,
        with_actions,
    )
    from serving.security import admitted_roles
    from serving.views import view_of_quote
    from training.reasons import reasons_of_rows

    marks: dict[str, tuple[int, int]] = {}
    last = (time.perf_counter_ns(), time.thread_time_ns())

    def mark(name: str) -> None:
        nonlocal last
        now = (time.perf_counter_ns(), time.thread_time_ns())
        wall, cpu = marks.get(name, (0, 0))
        marks[name] = (wall + now[0] - last[0], cpu + now[1] - last[1])
        last = now

    order_in = DraftOrderIn.model_validate_json(body)
    mark("request_validation")
    actor = runtime.keys.actor(runtime, api_key)
    assert actor.role in admitted_roles(runtime, "capture_order")
    mark("api_key")
    now = runtime.now()
    first: dict[str, Any] = {}

    def lines_at_risk(quote: Any) -> list[int]:
        # The route's first phase: the quote without alternatives, then the scoring, in the
        # quote's unit of work; the lines at risk get their alternatives after this returns.
        mark("quote_atp_promises_sql")
        view = view_of_quote(quote, now)
        online = runtime.features()
        champion = runtime.models.champion(LATE_SHIPMENT)
        scorable = [line for line in view.lines if line.location_id is not None]
        contexts = [
            {"location": ln.location_id or "", "carrier": ln.carrier_id or ""} for ln in scorable
        ]
        draft = draft_of(_with_lines(view, scorable))
        mark("view_and_draft")
        frame = None
        risks: list[LateRisk] = []
        if scorable:
            # As serving/late_risk.score_late_risk does it for a draft: reasons only
            # for the lines at least half as risky as the alert threshold, and of the feature
            # values only those the actions read (a draft's scores are not kept).
            values = online.feature_values(draft)
            mark("late_features_online")
            model = champion.estimator
            matrix = model.encoder_.transform_columns(values)
            mark("late_encode")
            explain_from = runtime.policy.late_risk_probability * EXPLAIN_SHARE
            scored = model.score_rows(matrix, explain_from, num_threads=1)
            probabilities, explained = scored.probability, scored.explained
            contributions = scored.contributions
            mark("late_predict_calibrated_and_contributions")
            reasons: list[tuple[Any, ...]] = [() for _ in probabilities]
            if len(explained):
                names = model.encoder_.names
                columns = {
                    name: np.asarray(values[name], dtype=object)[explained] for name in names
                }
                found = reasons_of_rows(
                    contributions, columns, names, REASON_LIMIT, [contexts[i] for i in explained]
                )
                for i, row_reasons in zip(explained, found, strict=True):
                    reasons[i] = tuple(row_reasons)
                mark("late_reason_texts")
            risks = [
                LateRisk(
                    float(p),
                    champion.name,
                    champion.version,
                    reasons[i],
                    _row(values, i, ACTION_FEATURES),
                    explained=i in set(explained.tolist()),
                )
                for i, p in enumerate(probabilities)
            ]
            mark("late_risks")
            frame = pd.DataFrame(values)  # the references' input (bench only): not a route step
            mark("_untimed")
        late = {line.line_no: risk for line, risk in zip(scorable, risks, strict=True)}
        margins = score_margin(
            view, runtime.pricing, runtime.models.champion(MARGIN_ANOMALY), runtime.policy
        )
        mark("margin_features_and_model")
        threshold = runtime.policy.late_risk_probability
        unrecommended = tuple(
            ScoredLine(line, late.get(line.line_no), margin, ())
            for line, margin in zip(view.lines, margins, strict=True)
        )
        first["scored"] = ScoredOrder(view, unrecommended, _versions(runtime.models, unrecommended))
        first["frame"] = frame
        return [ln.line_no for ln in view.lines if at_risk(ln, late.get(ln.line_no), threshold)]

    quote = routes._quote(runtime, order_in, actor, options_for=lines_at_risk)
    mark("quote_alternatives_of_lines_at_risk")
    result = with_actions(first["scored"], view_of_quote(quote, now), runtime.policy)
    frame = first["frame"]
    mark("actions")
    out = ScoredOrderOut(**routes._scored_fields(result, now, runtime.policy))
    mark("response_model_build")
    routes._json(out)
    mark("response_json")
    marks.pop("_untimed", None)
    return marks, frame


def _reference_rows(
    model: Any, frames: list[Any]
) -> tuple[list[dict[str, Any]], list[list[float | None]], list[str]]:
    """The references' precomputed input: the late-shipment feature rows of the 10-line orders
    as MLflow's ``dataframe_split`` takes them, and as the booster's numeric matrix."""
    import pandas as pd

    frame = pd.concat([f for f in frames if f is not None], ignore_index=True)
    matrix = model.encoder_.transform(frame)
    columns = [str(c) for c in frame.columns]
    frame_rows = [
        {c: _json_value(v) for c, v in zip(columns, row, strict=True)}
        for row in frame.itertuples(index=False)
    ]
    matrix_rows = [[_json_value(float(v)) for v in row] for row in matrix]
    return frame_rows, matrix_rows, columns


def _json_value(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool | int | float | str):
        return value
    text = str(value)
    return None if text in ("<NA>", "NaT", "nan") else text


def profile_request(
    client: Any, headers: dict[str, str], runtime: Any, bodies: list[bytes], key: str, calls: int
) -> dict[str, Any]:
    """Where a 10-line score request spends its time: the route's steps timed one by one over
    ``calls`` requests, the whole request through the app (ASGI, on this thread's event loop),
    and the hottest functions under cProfile (which inflates small functions: read the shares,
    not the sums)."""
    import cProfile
    import pstats

    call, loop = _asgi_caller(client.app, headers)
    for body in bodies[:50]:
        call(body)
    cycle = [bodies[i % len(bodies)] for i in range(calls)]
    stage_wall: dict[str, list[int]] = {}
    stage_cpu: dict[str, list[int]] = {}
    through_app, through_app_cpu = [], []
    for body in cycle:  # the steps and the whole request take turns, so load hits both alike
        marks, _ = _stages(runtime, body, key)
        for name, (wall_ns, cpu_ns) in marks.items():
            stage_wall.setdefault(name, []).append(wall_ns)
            stage_cpu.setdefault(name, []).append(cpu_ns)
        started, started_cpu = time.perf_counter_ns(), time.process_time_ns()
        status = call(body)
        through_app.append(time.perf_counter_ns() - started)
        through_app_cpu.append(time.process_time_ns() - started_cpu)
        assert status == 200, status
    profiler = cProfile.Profile()
    profiler.enable()
    for body in cycle:
        call(body)
    profiler.disable()
    loop.close()
    stats = pstats.Stats(profiler)
    mean_ms = {name: statistics.fmean(v) / 1e6 for name, v in stage_wall.items()}
    cpu_ms = {name: statistics.fmean(v) / 1e6 for name, v in stage_cpu.items()}
    route_ms = sum(mean_ms.values())
    route_cpu_ms = sum(cpu_ms.values())
    app_ms = statistics.fmean(through_app) / 1e6
    app_cpu_ms = statistics.fmean(through_app_cpu) / 1e6
    return {
        "calls": calls,
        "request": "POST /v1/orders/score, 10-line orders of the world (cycled), 1 OpenMP thread",
        "through_app_asgi_ms": {
            "cpu_mean": round(app_cpu_ms, 3),
            "mean": round(app_ms, 3),
            "p50": round(_percentile(through_app, 50) / 1e6, 3),
            "p99": round(_percentile(through_app, 99) / 1e6, 3),
        },
        "route_steps_cpu_mean_ms": {name: round(ms, 3) for name, ms in cpu_ms.items()},
        "route_steps_cpu_share": {name: round(ms / route_cpu_ms, 3) for name, ms in cpu_ms.items()},
        "route_steps_cpu_total_mean_ms": round(route_cpu_ms, 3),
        "route_steps_wall_mean_ms": {name: round(ms, 3) for name, ms in mean_ms.items()},
        "route_steps_wall_total_mean_ms": round(route_ms, 3),
        "framework_cpu_ms": round(app_cpu_ms - route_cpu_ms, 3),
        "framework_note": "the whole request's process CPU through the ASGI app minus the "
        "route's steps (measured in turns over the same bodies): Starlette/FastAPI routing, "
        "dependency solving (runtime_of and admits' check are async, run on the loop), body "
        "reading and parsing, the middlewares, a background feature-index read when one falls "
        "due (its CPU is the process's); a figure within +-2 ms of zero is within the noise of "
        "this shared machine. Not the HTTP server (h11): real_server_minus_route_steps "
        "compares the real server's CPU per request with the route's steps",
        "hot_functions_by_own_time": _hot(stats, calls, "tottime", 20, project_only=False),
        "hot_project_functions_cumulative": _hot(stats, calls, "cumulative", 25, project_only=True),
    }


def _asgi_caller(app: Any, headers: dict[str, str]) -> tuple[Any, asyncio.AbstractEventLoop]:
    """A function that sends one score request through the ASGI app on an event loop of this
    thread (the route's work then runs where cProfile sees it) and returns the status."""
    loop = asyncio.new_event_loop()
    header_list = [(b"host", b"bench"), (b"content-type", b"application/json")] + [
        (name.lower().encode(), value.encode())
        for name, value in headers.items()
        if name.lower() != "content-type"
    ]

    def call(body: bytes) -> int:
        status = 0
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if delivered:
                return {"type": "http.disconnect"}
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": SCORE_PATH,
            "raw_path": SCORE_PATH.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [*header_list, (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 80),
        }
        loop.run_until_complete(app(scope, receive, send))
        return status

    return call, loop


def _hot(
    stats: Any, calls: int, key: str, limit: int, *, project_only: bool
) -> list[dict[str, Any]]:
    rows = []
    for (filename, line, function), (_, ncalls, tottime, cumtime, _) in stats.stats.items():
        where = _short_path(filename)
        if project_only and not where.startswith(
            ("erp_core/", "features/", "serving/", "training/")
        ):
            continue
        rows.append(
            {
                "function": f"{where}:{line}({function})",
                "calls_per_request": round(ncalls / calls, 1),
                "own_ms_per_request": round(tottime * 1000 / calls, 4),
                "cumulative_ms_per_request": round(cumtime * 1000 / calls, 4),
            }
        )
    order = "own_ms_per_request" if key == "tottime" else "cumulative_ms_per_request"
    rows.sort(key=lambda row: row[order], reverse=True)
    return rows[:limit]


def _short_path(filename: str) -> str:
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1]
    if filename.startswith(str(ROOT)):
        return filename[len(str(ROOT)) + 1 :]
    return filename.rsplit("/lib/", 1)[-1]


# --- the servers --------------------------------------------------------------------------------


@dataclass
class ServerPlan:
    name: str
    command: list[str]
    workers: int
    env: dict[str, str]
    port: int
    ready_path: str
    path: str
    headers: dict[str, str]
    bodies: dict[int, list[bytes]]
    """Request bodies by lines (or rows) per request."""
    describe: str


def server_plans(
    world: World, inproc: InProcess, bodies: dict[int, list[bytes]], args: argparse.Namespace
) -> list[ServerPlan]:
    """The servers measured, in order: erpx as ``erpx serve`` with 1 and 2 workers, plain
    ``uvicorn --workers 2`` (the way SERVING-NOTES saw the pitfalls), and the two references."""
    env = world.env()
    key = {"X-API-Key": world.api_key}
    erpx_bodies = {n: inproc.bodies[n] for n in args.lines}
    plans: dict[str, ServerPlan] = {}
    for workers in (1, 2):
        port = _free_port()
        plans[f"erpx_{workers}_worker" + ("s" if workers > 1 else "")] = ServerPlan(
            name=f"erpx_{workers}_worker" + ("s" if workers > 1 else ""),
            command=[str(BIN / "erpx"), "serve", "--port", str(port), "--workers", str(workers)],
            workers=workers,
            env=env,
            port=port,
            ready_path="/readyz",
            path=SCORE_PATH,
            headers=key,
            bodies=erpx_bodies,
            describe=f"erpx serve --workers {workers} (serving/cli.py serve)",
        )
    port = _free_port()
    plans["uvicorn_2_workers"] = ServerPlan(
        name="uvicorn_2_workers",
        command=[
            str(BIN / "uvicorn"),
            "--factory",
            "serving.app:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "2",
            "--no-access-log",
            "--log-level",
            "info",
        ],
        workers=2,
        env=env,
        port=port,
        ready_path="/readyz",
        path=SCORE_PATH,
        headers=key,
        bodies=erpx_bodies,
        describe="uvicorn --factory serving.app:create_app --workers 2 (uvicorn's own "
        "multiprocess supervisor, one listening socket shared by the workers)",
    )
    port = _free_port()
    plans["mlflow_models_serve"] = ServerPlan(
        name="mlflow_models_serve",
        command=[
            str(BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            f"models:/{LATE_SHIPMENT}@champion",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-w",
            "1",
            "--env-manager",
            "local",
        ],
        workers=1,
        env=env,
        port=port,
        ready_path="/ping",
        path="/invocations",
        headers={},
        bodies={n: _mlflow_bodies(inproc, n) for n in args.lines},
        describe="mlflow models serve of late_shipment@champion (pyfunc of the logged "
        "scikit-learn estimator: encode + booster + calibrator), precomputed feature rows in "
        "dataframe_split; no ATP, no reasons, no margin",
    )
    for workers in (1, 2):
        port = _free_port()
        name = "bare_predict" if workers == 1 else "bare_predict_2_workers"
        plans[name] = ServerPlan(
            name=name,
            command=[
                str(BIN / "uvicorn"),
                "--app-dir",
                str(_HERE),
                "--factory",
                f"{Path(__file__).stem}:bare_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--no-access-log",
                "--log-level",
                "info",
            ],
            workers=workers,
            env=env | {BOOSTER_VARIABLE: os.pathsep.join(map(str, inproc.booster_paths))},
            port=port,
            ready_path="/ping",
            path="/predict",
            headers={},
            bodies={n: _bare_bodies(inproc, n) for n in args.lines},
            describe=f"bare_app of this script under uvicorn --workers {workers}: one async "
            "def endpoint, JSON rows -> numpy -> booster.predict (num_threads=1), no access log"
            + (" (the multi-worker pitfall check without erpx's own work)" if workers > 1 else ""),
        )
    return [plans[name] for name in args.servers]


def _mlflow_bodies(inproc: InProcess, rows: int) -> list[bytes]:
    return [
        json.dumps(
            {
                "dataframe_split": {
                    "columns": inproc.columns,
                    "data": [list(r.values()) for r in _rows_at(inproc.frame_rows, i, rows)],
                }
            }
        ).encode()
        for i in range(ORDERS_PER_SIZE)
    ]


def _bare_bodies(inproc: InProcess, rows: int) -> list[bytes]:
    return [
        json.dumps({"rows": _rows_at(inproc.matrix_rows, i, rows)}).encode()
        for i in range(ORDERS_PER_SIZE)
    ]


def _rows_at(pool: list[Any], i: int, rows: int) -> list[Any]:
    start = (i * rows) % len(pool)
    return [pool[(start + k) % len(pool)] for k in range(rows)]


@dataclass
class Running:
    plan: ServerPlan
    process: subprocess.Popen[bytes]
    record: dict[str, Any]


def measure_servers(plans: list[ServerPlan], args: argparse.Namespace) -> dict[str, Any]:
    """Start every server (one at a time, each timed to ready while the others idle), then run
    each load level on all of them back to back, so that a burst of load from elsewhere on the
    shared machine hits the servers being compared alike; stop them all at the end."""
    running: list[Running] = []
    try:
        for plan in plans:
            running.append(start_server(plan, args))
        for lines in args.lines:
            for concurrency in args.concurrency:
                for server in running:
                    cell = run_cell(server.plan, server.process.pid, lines, concurrency, args)
                    server.record["cells"][f"{lines}_lines_c{concurrency}"] = cell
                    _say(
                        f"{server.plan.name} {lines} lines c{concurrency}: "
                        f"{cell['requests_per_second']} req/s, p50 {cell['p50_ms']} ms, "
                        f"p99 {cell['p99_ms']} ms"
                    )
        for server in running:
            total = sum(_tree_cpu(server.process.pid).values())
            server.record["cpu_seconds_whole_run"] = round(total, 2)
    finally:
        for server in running:
            _stop(server.process)
    return {server.plan.name: server.record for server in running}


def start_server(plan: ServerPlan, args: argparse.Namespace) -> Running:
    """Start one server as its own process (session), time it to ready and probe it."""
    log_path = args.world_dir / "logs" / f"{plan.name}.log"
    log_path.parent.mkdir(exist_ok=True)
    _say(f"starting {plan.name}: {' '.join(plan.command)}")
    started = time.perf_counter()
    with log_path.open("w") as log:
        process = subprocess.Popen(
            plan.command,
            env=plan.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        readiness = _wait_ready(plan, process, log_path, started)
        _probe(plan)
        if plan.path == "/predict":
            readiness["accepted_sockets_tcp_nodelay_by_process"] = _socket_options(plan)
    except BaseException:
        _stop(process)
        raise
    record = {
        "command": " ".join(
            Path(part).name if i == 0 else part for i, part in enumerate(plan.command)
        ),
        "describe": plan.describe,
        "workers": plan.workers,
        **readiness,
        "cells": {},
    }
    return Running(plan, process, record)


def _wait_ready(
    plan: ServerPlan, process: subprocess.Popen[bytes], log_path: Path, started: float
) -> dict[str, Any]:
    """Seconds from the process start until every worker has started its application and the
    ready path answers 200 (for erpx, ``/readyz`` says ``ready``: champions and index loaded)."""
    url = f"http://127.0.0.1:{plan.port}{plan.ready_path}"
    deadline = started + 300
    status = None
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{plan.name} exited ({process.returncode}); see {log_path}")
        log = log_path.read_text(errors="replace")
        workers_up = log.count("Application startup complete")
        if plan.workers == 1 or workers_up >= plan.workers:
            try:
                with urllib.request.urlopen(url, timeout=5) as answer:
                    body = answer.read().decode()
                    status = (
                        json.loads(body).get("status") if plan.ready_path == "/readyz" else "ok"
                    )
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
                pass
        time.sleep(0.1)
    else:
        raise SystemExit(f"{plan.name} not ready after 300 s; see {log_path}")
    seconds = time.perf_counter() - started
    if status not in ("ready", "ok"):
        raise SystemExit(f"{plan.name} answered {plan.ready_path} with {status!r}; see {log_path}")
    return {"startup_seconds_to_ready": round(seconds, 2), "ready_status": status}


def _probe(plan: ServerPlan) -> None:
    """One request of each kind answers 200 before any load is sent."""
    for bodies in plan.bodies.values():
        request = urllib.request.Request(
            f"http://127.0.0.1:{plan.port}{plan.path}",
            data=bodies[0],
            headers={"Content-Type": "application/json", **plan.headers},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                answer.read()
        except urllib.error.HTTPError as error:
            raise SystemExit(f"{plan.name} answered {error.code}: {error.read()[:500]!r}") from None


def _socket_options(plan: ServerPlan) -> dict[str, list[int]]:
    """Ask the bare server, over fresh connections (which land on either worker), which
    TCP_NODELAY its accepted connections carry."""
    found: dict[str, set[int]] = {}
    for _ in range(12):
        url = f"http://127.0.0.1:{plan.port}/socket-options"
        with urllib.request.urlopen(url, timeout=10) as answer:
            report = json.loads(answer.read())
        found.setdefault(str(report["pid"]), set()).update(report["tcp_nodelay"])
    return {pid: sorted(values) for pid, values in found.items()}


def run_cell(
    plan: ServerPlan, server_pid: int, lines: int, concurrency: int, args: argparse.Namespace
) -> dict[str, Any]:
    """One load level: the client process warms up, then measures; the server's CPU seconds per
    process are read at the edges of the measured phase, and its connections midway."""
    spec = args.world_dir / "logs" / f"{plan.name}-{lines}.requests.json"
    spec.write_text(
        json.dumps(
            {
                "path": plan.path,
                "headers": plan.headers,
                "bodies": [b.decode() for b in plan.bodies[lines]],
            }
        )
    )
    client = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "client",
            "--port",
            str(plan.port),
            "--requests",
            str(spec),
            "--concurrency",
            str(concurrency),
            "--warmup",
            str(args.warmup),
            "--seconds",
            str(args.seconds),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert client.stdout is not None
    line = client.stdout.readline().strip()
    assert line == "MEASURE", f"client said {line!r}"
    load_1m = os.getloadavg()[0]
    cpu_before = _tree_cpu(server_pid)
    time.sleep(args.seconds / 2)
    spread = _connections_by_pid(plan.port, list(cpu_before))
    line = client.stdout.readline().strip()
    cpu_after = _tree_cpu(server_pid)
    assert line == "END", f"client said {line!r}"
    report = json.loads(client.stdout.read())
    client.wait()
    by_process = {
        pid: round(cpu_after.get(pid, 0.0) - cpu_before.get(pid, 0.0), 2) for pid in cpu_after
    }
    server_cpu = sum(by_process.values())
    requests = report["requests"]
    return {
        "lines_per_request": lines,
        "concurrency": concurrency,
        **report,
        "server_cpu_seconds": round(server_cpu, 2),
        "server_cpu_ms_per_request": round(server_cpu * 1000 / requests, 3) if requests else None,
        "server_cpu_seconds_by_process": {
            str(pid): cpu for pid, cpu in by_process.items() if cpu > 0.05
        },
        "connections_by_process_midway": {str(pid): n for pid, n in spread.items()},
        "load_average_1m_at_start": round(load_1m, 2),
    }


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's own process group (a session this script started), then SIGKILL
    to the same group if it lingers."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    time.sleep(0.5)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- /proc: CPU seconds per process, connections per process ----------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _tree(pid: int) -> list[int]:
    """The process and its descendants (uvicorn's workers, MLflow's uvicorn child)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None:
                parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


def _tree_cpu(pid: int) -> dict[int, float]:
    out = {}
    for member in _tree(pid):
        fields = _stat(member)
        if fields is not None:
            out[member] = (int(fields[11]) + int(fields[12])) / _TICKS
    return out


def _connections_by_pid(port: int, pids: list[int]) -> dict[int, int]:
    """How many established connections to ``port`` each of ``pids`` holds (socket inodes of
    /proc/net/tcp matched against each process's open descriptors)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cells = row.split()
            local_port = int(cells[1].rsplit(":", 1)[1], 16)
            if local_port == port and cells[3] == "01":
                inodes.add(cells[9])
    counts = {}
    for pid in pids:
        held = 0
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    held += 1
        except OSError:
            continue
        if held:
            counts[pid] = held
    return counts


# --- the load generator (its own process) -------------------------------------------------------


def client_main(argv: list[str]) -> None:
    """``bench/serve.py client``: keep-alive connections to one server for warm-up + measured
    seconds; prints MEASURE and END at the edges of the measured phase, then a JSON report."""
    parser = argparse.ArgumentParser(prog="bench/serve.py client")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--requests", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    spec = json.loads(args.requests.read_text())
    requests = [_http_request(spec["path"], spec["headers"], body) for body in spec["bodies"]]
    report = asyncio.run(_drive(args.port, requests, args.concurrency, args.warmup, args.seconds))
    print(json.dumps(report), flush=True)


def _http_request(path: str, headers: dict[str, str], body: str) -> bytes:
    payload = body.encode()
    head = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        f"Content-Length: {len(payload)}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + payload


class _LoadState:
    def __init__(self, requests: list[bytes]) -> None:
        self.requests = requests
        self.next_index = 0
        self.measuring = False
        self.stopping = False
        self.latencies_ns: list[int] = []
        self.statuses: Counter[int] = Counter()
        self.lost = 0

    def next_request(self) -> bytes:
        self.next_index = (self.next_index + 1) % len(self.requests)
        return self.requests[self.next_index]


class _Connection(asyncio.Protocol):
    """One keep-alive connection sending its next request as soon as the answer is read."""

    def __init__(self, state: _LoadState, done: asyncio.Future[None]) -> None:
        self.state = state
        self.done = done
        self.buffer = bytearray()
        self.expected: int | None = None
        self.status = 0
        self.sent_ns = 0
        self.count = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        self.sent_ns = time.perf_counter_ns()
        self.transport.write(self.state.next_request())

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.expected is None:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(self.buffer[:end]).split(b"\r\n")
                self.status = int(head[0].split(b" ", 2)[1])
                length = None
                for header in head[1:]:
                    name, _, value = header.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if length is None:
                    raise RuntimeError("a response without Content-Length (chunked?)")
                self.expected = end + 4 + length
            if len(self.buffer) < self.expected:
                return
            del self.buffer[: self.expected]
            self.expected = None
            self._answered()
            if self.state.stopping:
                assert self.transport is not None
                self.transport.close()
                return
            self._send()

    def _answered(self) -> None:
        state = self.state
        if state.measuring and not state.stopping:
            state.latencies_ns.append(time.perf_counter_ns() - self.sent_ns)
            state.statuses[self.status] += 1
            self.count += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.state.stopping:
            self.state.lost += 1
        if not self.done.done():
            self.done.set_result(None)


async def _drive(
    port: int, requests: list[bytes], concurrency: int, warmup: float, seconds: float
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    state = _LoadState(requests)
    connections = []
    for _ in range(concurrency):
        done: asyncio.Future[None] = loop.create_future()
        _, protocol = await loop.create_connection(
            lambda done=done: _Connection(state, done), "127.0.0.1", port
        )
        connections.append(protocol)
    await asyncio.sleep(warmup)
    state.measuring = True
    usage = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    print("MEASURE", flush=True)
    await asyncio.sleep(seconds)
    state.stopping = True
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    print("END", flush=True)
    await asyncio.wait_for(asyncio.gather(*(c.done for c in connections)), timeout=60)
    latencies = state.latencies_ns
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    per_connection = [c.count for c in connections]
    return {
        "requests": len(latencies),
        "seconds": round(wall, 3),
        "requests_per_second": round(len(latencies) / wall, 1),
        "p50_ms": round(_percentile(latencies, 50) / 1e6, 3),
        "p90_ms": round(_percentile(latencies, 90) / 1e6, 3),
        "p99_ms": round(_percentile(latencies, 99) / 1e6, 3),
        "max_ms": round(max(latencies, default=0) / 1e6, 3),
        "statuses": {str(k): v for k, v in state.statuses.items()},
        "connections_lost": state.lost,
        "requests_per_connection": {"min": min(per_connection), "max": max(per_connection)},
        "client_cpu_seconds": round(cpu, 3),
        "client_cpu_share_of_one_core": round(cpu / wall, 3),
    }


def _percentile(values: list[int], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))])


# --- the bare reference endpoint (its own process) ----------------------------------------------


BOOSTER_VARIABLE = "BENCH_SERVE_BOOSTER"


def bare_app() -> Any:
    """The least a FastAPI service can do with this model, the limit the erpx figures are read
    against (SERVING-NOTES: async def, numpy in, the native booster). A uvicorn factory
    (``uvicorn --app-dir bench --factory serve:bare_app``), so it runs under uvicorn's own
    worker supervisor like erpx does; the booster files (one per hazard, ``os.pathsep`` between
    them) come from ``BENCH_SERVE_BOOSTER``, and every one predicts each request's rows."""
    import lightgbm
    import numpy as np
    from fastapi import FastAPI, Request, Response

    # FastAPI reads the endpoint's annotations (strings here) in this module's namespace.
    globals().update(Request=Request, Response=Response)
    boosters = [
        lightgbm.Booster(model_file=path) for path in os.environ[BOOSTER_VARIABLE].split(os.pathsep)
    ]
    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        rows = np.asarray(json.loads(await request.body())["rows"], dtype=np.float64)
        hazards = [booster.predict(rows, num_threads=1) for booster in boosters]
        probabilities = 1.0 - np.prod([1.0 - p for p in hazards], axis=0)
        return Response(json.dumps({"p": probabilities.tolist()}), media_type="application/json")

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/socket-options")
    async def socket_options() -> dict[str, Any]:
        return {"pid": os.getpid(), "tcp_nodelay": _connected_tcp_nodelay()}

    return app


def _connected_tcp_nodelay() -> list[int]:
    """TCP_NODELAY of every connected TCP socket this process holds: the accepted connections,
    as uvicorn's worker supervisor hands them over (SERVING-NOTES pitfall 1)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                continue
            with socket.socket(fileno=os.dup(int(fd))) as sock:
                if sock.family == socket.AF_INET and sock.type == socket.SOCK_STREAM:
                    sock.getpeername()
                    found.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        except OSError:
            continue
    return found


# --- the record ---------------------------------------------------------------------------------


def results(
    args: argparse.Namespace,
    world: World,
    inproc: InProcess,
    measured: dict[str, Any],
    load_before: tuple[float, float, float],
    wall: float,
) -> dict[str, Any]:
    """The JSON record: every cell, the three target figures with their verdicts, the multi-worker
    findings, the profile and the notes."""
    key = "10_lines_c8"

    def cell(server: str, name: str = key) -> dict[str, Any] | None:
        return measured.get(server, {}).get("cells", {}).get(name)

    ours, mlflow_cell, bare = (
        cell("erpx_1_worker"),
        cell("mlflow_models_serve"),
        cell("bare_predict"),
    )
    p99 = ours["p99_ms"] if ours else None
    vs_mlflow = _ratio(ours, mlflow_cell)
    vs_bare = _ratio(ours, bare)
    profile = inproc.profile
    quiet = cell("erpx_1_worker", "10_lines_c1")
    if ours and quiet:
        server_cpu = quiet["server_cpu_ms_per_request"]
        profile["real_server_cpu_ms_per_request"] = {
            "10_lines_c1": server_cpu,
            "10_lines_c8": ours["server_cpu_ms_per_request"],
        }
        profile["real_server_minus_route_steps_cpu_ms_10_lines_c1"] = round(
            server_cpu - profile["route_steps_cpu_total_mean_ms"], 3
        )
    return {
        "benchmark": "serve",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python bench/serve.py " + " ".join(sys.argv[1:]),
        "machine": {
            "cpus": len(os.sched_getaffinity(0)),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "note": "2 cores shared with other sessions; server, client and references share them",
        },
        "wall_seconds": round(wall, 1),
        "code": _git_state(),
        "p99_ms_10_lines_c8": p99,
        "rps_ratio_vs_mlflow_serve": vs_mlflow,
        "rps_ratio_vs_bare_predict": vs_bare,
        "requests_per_second_10_lines_c8": {
            name: c["requests_per_second"] for name in measured if (c := cell(name)) is not None
        },
        "targets": {
            "p99_ms_10_lines_c8": _verdict(
                TARGETS["p99_ms_10_lines_c8"], p99, p99 is not None and p99 < 25
            ),
            "rps_ratio_vs_mlflow_serve": _verdict(
                TARGETS["rps_ratio_vs_mlflow_serve"],
                vs_mlflow,
                vs_mlflow is not None and vs_mlflow >= 3,
            ),
            "rps_ratio_vs_bare_predict": _verdict(
                TARGETS["rps_ratio_vs_bare_predict"],
                vs_bare,
                vs_bare is not None and vs_bare >= 0.2,
            ),
        },
        "multi_worker": multi_worker(measured),
        "world": {
            "profile": "medium",
            "days": world.days,
            "seed": world.seed,
            "orders": world.facts["orders"],
            "order_lines": world.facts["order_lines"],
            "frozen_now": world.frozen_now,
            "folder": str(world.folder),
            "simulation": world.facts["simulation"],
            "training_split_days": SPLIT_DAYS,
            "champions": world.facts["training"],
            "late_shipment_booster": {"trees": inproc.trees, "features": inproc.features},
        },
        "load": {
            "client": "bench/serve.py client: one asyncio process, raw HTTP/1.1 keep-alive "
            "connections, closed loop, requests cycled over the bodies below",
            "warmup_seconds": args.warmup,
            "measured_seconds": args.seconds,
            "concurrency": args.concurrency,
            "lines_per_request": args.lines,
            "erpx_orders": f"{ORDERS_PER_SIZE} draft orders per size, real customers and SKUs "
            "drawn from the world's last 28 days of lines, tier prices",
            "reference_rows": f"{len(inproc.frame_rows)} late-shipment feature rows computed "
            "by the online path for the 10-line orders",
            "orders_checked_in_process": inproc.checked,
        },
        "servers": measured,
        "profile": profile,
        "notes": world.notes + NOTES,
    }


NOTES = [
    "requests_per_second and latencies are the client's, over the measured seconds after the "
    "warm-up; server_cpu_seconds sums user+system CPU of the server's processes over the same "
    "seconds (from /proc), client_cpu_seconds the load generator's own.",
    "mlflow models serve runs the pyfunc of the logged estimator, whose predict() encodes the "
    "frame, runs the booster and the calibrator and thresholds at 0.5: it does less than erpx "
    "(no quote, no online features, no reasons, no margin model, no actions).",
    "The bare endpoint's boosters are the champion's (one per hazard) saved with their kept "
    "trees: the same trees, combined as 1 - prod(1 - p); it returns uncalibrated probabilities.",
    "multi_worker: flat_44ms_delay_seen compares p50 at concurrency 1 (2 workers against 1; "
    "a difference over 30 ms counts); accepted_sockets_tcp_nodelay_by_process is TCP_NODELAY as "
    "the bare server reads it on its own accepted connections under uvicorn's worker "
    "supervisor (1 = set: asyncio's selector transport sets it on every accepted TCP socket); "
    "connections_by_process is sampled midway through each cell from /proc/net/tcp.",
    "All servers are started first and each load level then runs on every server back to back; "
    "the machine's other sessions load it unevenly (load_average_1m_at_start per cell).",
]


def _git_state() -> dict[str, Any]:
    """Which code was measured: the commit, and the files of the four packages that differed
    from it (other sessions edit the same working tree)."""

    def git(*arguments: str) -> str:
        done = subprocess.run(["git", *arguments], cwd=ROOT, capture_output=True, text=True)
        return done.stdout

    changed = git("status", "--porcelain", "--", "erp_core", "features", "training", "serving")
    return {
        "commit": git("rev-parse", "HEAD").strip(),
        "uncommitted_changes_measured": [line[3:] for line in changed.splitlines()],
    }


def _ratio(ours: dict[str, Any] | None, reference: dict[str, Any] | None) -> float | None:
    if not ours or not reference or not reference["requests_per_second"]:
        return None
    return round(ours["requests_per_second"] / reference["requests_per_second"], 3)


def _verdict(target: str, measured: float | None, met: bool) -> dict[str, Any]:
    return {"target": target, "measured": measured, "met": met}


def multi_worker(measured: dict[str, Any]) -> dict[str, Any]:
    """SERVING-NOTES' two multi-worker pitfalls, read off the cells: a flat ~44 ms (p50 at
    concurrency 1 against one worker) and connections (and CPU) piling onto one worker."""
    found: dict[str, Any] = {}
    pairs = (
        ("erpx_2_workers", "erpx_1_worker"),
        ("uvicorn_2_workers", "erpx_1_worker"),
        ("bare_predict_2_workers", "bare_predict"),
    )
    for name, single in pairs:
        cells = measured.get(name, {}).get("cells", {})
        one = measured.get(single, {}).get("cells", {})
        if not cells or not one:
            continue
        p50 = {
            f"{lines}_lines_c1": {
                "one_worker": one.get(f"{lines}_lines_c1", {}).get("p50_ms"),
                "two_workers": cells.get(f"{lines}_lines_c1", {}).get("p50_ms"),
            }
            for lines in (1, 10)
        }
        flat = any((v["two_workers"] or 0) - (v["one_worker"] or 0) > 30 for v in p50.values())
        spread = {
            cell_name: {
                "connections_by_process": cell["connections_by_process_midway"],
                "cpu_seconds_by_process": cell["server_cpu_seconds_by_process"],
            }
            for cell_name, cell in cells.items()
            if cell["concurrency"] > 1
        }
        shares = {
            cell_name: round(max(spread_of.values()) / sum(spread_of.values()), 2)
            for cell_name, cell in cells.items()
            if cell["concurrency"] > 1 and (spread_of := cell["connections_by_process_midway"])
        }
        found[name] = {
            "compared_with": single,
            "largest_share_of_connections_on_one_worker": shares,
            "accepted_sockets_tcp_nodelay_by_process": measured[name].get(
                "accepted_sockets_tcp_nodelay_by_process"
            ),
            "p50_ms_at_concurrency_1": p50,
            "flat_44ms_delay_seen": flat,
            "spread_over_workers": spread,
            "requests_per_second_ratio_to_one_worker": {
                cell_name: _ratio(cell, one.get(cell_name)) for cell_name, cell in cells.items()
            },
        }
    return found


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    table = {}
    for name, server in record["servers"].items():
        table[name] = {
            "startup_s": server["startup_seconds_to_ready"],
            **{
                cell_name: f"{c['requests_per_second']}/s p50 {c['p50_ms']} p99 {c['p99_ms']} ms"
                for cell_name, c in server["cells"].items()
            },
        }
    return {
        "figures": {
            k: record[k]
            for k in (
                "p99_ms_10_lines_c8",
                "rps_ratio_vs_mlflow_serve",
                "rps_ratio_vs_bare_predict",
            )
        },
        "targets": {k: v["met"] for k, v in record["targets"].items()},
        "servers": table,
        "profile_steps_cpu_ms": record["profile"]["route_steps_cpu_mean_ms"],
    }


def _say(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        client_main(sys.argv[2:])
    else:
        main()
