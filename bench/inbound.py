"""Benchmark: backorder promises kept with the nominal receipt date and with the P80 one.

    .venv/bin/python bench/inbound.py                      # small world, 120 days, seed 7 + 4 more
    .venv/bin/python bench/inbound.py --profile medium --days 365 --seeds 7 \\
        --out inbound-medium.json                          # the issue's world: about 2 hours

Each seed's world is simulated twice through the ERP services, once under each
``promise.inbound_quantile`` (``nominal``; ``p80``: the simulator refreshes the supplier-history
forecasts every evening and capture promises by them). The world (suppliers, their delays and
disruptions, demand) is the seed's in both; the runs part once promises differ, since the
simulator draws each line's fate from one random stream, so several seeds are run and pooled.

A backorder promise is the first promise of a line backordered when it was made (capture or
credit release), judged as the KPIs judge promises: kept when the line's first shipment left by
the promised ship date (and delivered by the promised delivery date), dates at the fulfilling
location (``erp_core.services.inbound.backorder_promises``). Promises made in the last 21 days are
left out (they may not have come due). Beside it: how much later the P80 promises are, the KPIs
of every line over the same days, and the two receipt-delay candidates scored on the nominal
world of the first seed (``training.receipt_delay``, the same test lines as ``erpx train
receipt-delay``). Writes bench/results/inbound.json (``--out`` names another file).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# Run as ``python bench/inbound.py``, this folder heads sys.path and bench/features.py would hide
# the ``features`` package: take the folder off the path before importing from it.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]

from sqlalchemy import func, select  # noqa: E402

from erp_core.db.models import OrderLine  # noqa: E402
from erp_core.db.uow import UnitOfWork  # noqa: E402
from erp_core.kpis import compute_kpis  # noqa: E402
from erp_core.services.inbound import backorder_promises  # noqa: E402
from erp_core.settings import Settings  # noqa: E402
from erp_core.simulate.run import simulate  # noqa: E402
from features.inbound import LABEL, load_inbound_history  # noqa: E402
from training.receipt_delay import (  # noqa: E402
    EMPIRICAL,
    MODEL,
    DelaySplit,
    ReceiptDelayModel,
    choose,
    delay_frame,
    empirical_quantiles,
    score_quantiles,
)

RESULTS = Path(__file__).parent / "results"
POLICY = Path(__file__).parents[1] / "erp_core" / "policy_default.toml"
MODES = ("nominal", "p80")
SETTLING_DAYS = 21
KPIS = ("on_time_shipment", "otif", "line_fill_rate", "unit_fill_rate", "order_cycle_time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="small")
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 11, 13, 17, 19])
    parser.add_argument("--out", default="inbound.json")
    args = parser.parse_args()
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    runs: list[dict[str, Any]] = []
    candidates: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="erpx-inbound-") as folder:
        for seed in args.seeds:
            for mode in MODES:
                url, seconds = _simulate(Path(folder), args.profile, args.days, seed, mode)
                runs.append({"seed": seed, "mode": mode, "seconds": seconds, **_measure(url)})
                _show(runs[-1])
                if candidates is None and mode == "nominal":
                    candidates = _candidates(url)
    record = {
        "benchmark": "inbound",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "bench/inbound.py " + " ".join(sys.argv[1:]),
        "commit": _commit(),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_1m": {
                "start": round(load_before, 2),
                "end": round(os.getloadavg()[0], 2),
            },
            "note": "shared 2-core machine, other sessions' jobs running",
        },
        "world": {"profile": args.profile, "days": args.days, "seeds": args.seeds},
        "judged": (
            f"first promises made to backordered lines from the first day to {SETTLING_DAYS} days "
            "before the last order entry, not cancelled; kept = first shipment on or before the "
            "promised ship date (delivery: first delivery on or before the promised delivery "
            "date), as known at the end of the run"
        ),
        "headline": _pooled([r for r in runs if r["seed"] == args.seeds[0]]),
        "pooled_over_seeds": _pooled(runs),
        "runs": runs,
        "receipt_delay_candidates": candidates,
        "medium_command": "bench/inbound.py --profile medium --days 365 --seeds 7 "
        "--out inbound-medium.json (two medium runs of about an hour each on this machine)",
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / args.out
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(
        json.dumps(
            {"headline": record["headline"], "pooled": record["pooled_over_seeds"]}, indent=2
        )
    )
    print(f"wrote {out}")


def _simulate(folder: Path, profile: str, days: int, seed: int, mode: str) -> tuple[str, float]:
    policy = folder / f"policy-{mode}.toml"
    text = POLICY.read_text("utf-8")
    if 'inbound_quantile = "nominal"' not in text:
        raise SystemExit(f"{POLICY}: no promise.inbound_quantile line to switch")
    policy.write_text(text.replace('inbound_quantile = "nominal"', f'inbound_quantile = "{mode}"'))
    name = f"{profile}-{seed}-{mode}"
    settings = Settings(
        database_url=f"sqlite:///{folder / name}.db", var_dir=folder / name, policy_path=policy
    )
    started = time.perf_counter()
    simulate(settings, profile, days=days, seed=seed)
    return settings.database_url, round(time.perf_counter() - started, 1)


def _measure(url: str) -> dict[str, Any]:
    uow = UnitOfWork.from_url(url)
    try:
        with uow:
            first, last = _entry_span(uow)
            start = _midnight(first)
            end = _midnight(last) - timedelta(days=SETTLING_DAYS - 1)
            promises = backorder_promises(uow.session, start, end, last + timedelta(days=1))
            kpis = compute_kpis(uow.session, start, end)
        return {
            "period": f"{start.date()}..{end.date()}",
            "backorder_promises": promises.as_dict(),
            "kpis": {name: kpis.kpi(name).value for name in KPIS},
        }
    finally:
        uow.engine.dispose()


def _entry_span(uow: UnitOfWork) -> tuple[datetime, datetime]:
    first, last = uow.session.execute(
        select(func.min(OrderLine.entered_at), func.max(OrderLine.entered_at))
    ).one()
    return first, last


def _midnight(moment: datetime) -> datetime:
    return datetime.combine(moment.astimezone(UTC).date(), datetime.min.time(), tzinfo=UTC)


def _pooled(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per mode: promises judged and kept summed over the runs; the mean days to the ready date
    and to the promised ship date weighted by promises; and P80 minus nominal."""
    pooled: dict[str, Any] = {}
    for mode in MODES:
        mine = [r["backorder_promises"] for r in runs if r["mode"] == mode]
        lines = sum(p["lines"] for p in mine)
        pooled[mode] = {
            "runs": len(mine),
            "backorder_promises": lines,
            "shipped_by_promise": sum(p["shipped_by_promise"] for p in mine),
            "delivered_by_promise": sum(p["delivered_by_promise"] for p in mine),
            "ship_kept_share": _share(sum(p["shipped_by_promise"] for p in mine), lines),
            "delivery_kept_share": _share(sum(p["delivered_by_promise"] for p in mine), lines),
            "mean_ready_days": _weighted(mine, "mean_ready_days"),
            "mean_promised_ship_days": _weighted(mine, "mean_promised_ship_days"),
        }
    nominal, p80 = pooled["nominal"], pooled["p80"]
    pooled["p80_minus_nominal"] = {
        key: round(p80[key] - nominal[key], 3)
        for key in (
            "ship_kept_share",
            "delivery_kept_share",
            "mean_ready_days",
            "mean_promised_ship_days",
        )
        if p80[key] is not None and nominal[key] is not None
    }
    by_seed = {}
    for seed in sorted({r["seed"] for r in runs}):
        shares = {
            r["mode"]: r["backorder_promises"]["ship_kept_share"] for r in runs if r["seed"] == seed
        }
        if None not in shares.values() and len(shares) == 2:
            by_seed[str(seed)] = round(shares["p80"] - shares["nominal"], 3)
    pooled["ship_kept_share_gain_by_seed"] = by_seed
    return pooled


def _share(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def _weighted(promises: list[dict[str, Any]], key: str) -> float | None:
    known = [(p[key], p["lines"]) for p in promises if p[key] is not None and p["lines"]]
    weight = sum(n for _v, n in known)
    return round(sum(v * n for v, n in known) / weight, 3) if weight else None


def _candidates(url: str) -> dict[str, Any]:
    """LightGBM quantiles and the supplier history on the test lines of ``erpx train
    receipt-delay``'s default split, without MLflow."""
    data = delay_frame(load_inbound_history(url), DelaySplit())
    train, valid, test = data.part("train"), data.part("validation"), data.part("test")
    model = ReceiptDelayModel().fit(train, train[LABEL], eval_set=(valid, valid[LABEL]))
    label, ids = test[LABEL].to_numpy(), test["po_line_id"].to_numpy()
    scores = {
        MODEL: score_quantiles(label, model.predict_quantiles(test), ids),
        EMPIRICAL: score_quantiles(label, empirical_quantiles(test), ids),
    }
    chosen, reason = choose(scores)
    return {
        "slices": data.slices.as_dict(),
        "test_lines": int(test["po_line_id"].nunique()),
        "scores": {name: s.as_dict() for name, s in scores.items()},
        "chosen": chosen,
        "reason": reason,
    }


def _show(run: dict[str, Any]) -> None:
    p = run["backorder_promises"]
    print(
        f"seed {run['seed']} {run['mode']:>7}: {p['lines']} backorder promises, "
        f"{p['shipped_by_promise']} shipped by the promised date "
        f"({(p['ship_kept_share'] or 0):.1%}), promised ship "
        f"{(p['mean_promised_ship_days'] or 0):.1f} days after entry ({run['seconds']} s)",
        flush=True,
    )


def _commit() -> str:
    try:
        return subprocess.check_output(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, text=True
        ).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


if __name__ == "__main__":
    main()
