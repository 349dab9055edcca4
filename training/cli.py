"""``erpx train``: train a model, compare it with its baselines and the oracle, register it as the
challenger, and with ``--promote`` put it through the gate.

Mounted by the top-level ``erpx`` command (``serving/cli.py``). LightGBM, scikit-learn and MLflow
load inside the command, so ``erpx --help`` stays quick.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from erp_core.cli import (
    console,
    database_location,
    key_value_table,
    reports_user_errors,
    settings_of,
    steps_shown,
)
from erp_core.policy import load_policy
from erp_core.settings import Settings

app = typer.Typer(
    name="train",
    help="Train models on the ERP history, track them in MLflow, promote through the gate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

DATE_FORMATS = ["%Y-%m-%d"]
SCORE_COLUMNS = (
    ("roc_auc", "ROC AUC"),
    ("pr_auc", "PR AUC"),
    ("brier", "Brier"),
    ("ece", "ECE"),
    ("recall_at_budget", "recall@10%"),
)


@app.command("late-shipment")
@reports_user_errors
def late_shipment(
    ctx: typer.Context,
    start: datetime | None = typer.Option(
        None, formats=DATE_FORMATS, help="First entry day to learn from (default: the first)."
    ),
    end: datetime | None = typer.Option(
        None,
        formats=DATE_FORMATS,
        help="Day after the last entry day (default: the last day whose lines had "
        "--label-horizon-days to reach their outcome).",
    ),
    validation_days: int = typer.Option(28, help="Days that stop the boosting."),
    calibration_days: int = typer.Option(21, help="Days the calibrator is fitted on."),
    test_days: int = typer.Option(28, help="The newest days, scored for the report and gate."),
    label_horizon_days: int = typer.Option(21, help="Days a line is given to be delivered."),
    seed: int = typer.Option(7, help="Seed of the model (same data + seed = same model)."),
    promote: bool = typer.Option(
        False, "--promote", help="Apply the gate: make it the champion if it beats the current one."
    ),
    database_url: str | None = typer.Option(None, help="Read this database instead."),
    engine: str = typer.Option(
        "pandas", help="pandas (one machine) or dask (frames and trees on a Dask cluster)."
    ),
    scheduler: str | None = typer.Option(
        None, help="Dask scheduler address, e.g. tcp://10.0.0.5:8786 (default: a local cluster)."
    ),
    target: str = typer.Option(
        "delivery",
        help="delivery: P(late against the promised delivery date), registered late_shipment; "
        "ship: against the promised ship date, registered late_shipment_ship.",
    ),
) -> None:
    """Train the late-shipment model (P(line misses its promised delivery date))."""
    from training.frames import SplitPlan
    from training.jobs import train_late_shipment

    settings = settings_of(ctx)
    plan = SplitPlan(
        validation_days=validation_days,
        calibration_days=calibration_days,
        test_days=test_days,
        label_horizon_days=label_horizon_days,
    )
    calendar = load_policy(settings.policy_path).calendar
    with steps_shown("late_shipment") as step:
        result = train_late_shipment(
            settings,
            calendar,
            database_url=database_url,
            start=start.date() if start else None,
            end=end.date() if end else None,
            plan=plan,
            seed=seed,
            promote=promote,
            step=step,
            engine=engine,
            scheduler=scheduler,
            target=target,
        )
    console.print(scores_table(result.score_rows()))
    oracle = (
        f"(AUC - 0.5) / (oracle AUC - 0.5) = {result.auc_ratio:.3f}"
        if result.auc_ratio is not None
        else "no oracle: the database was not simulated"
    )
    middle = [
        ("dropped", f"{result.unlabelled_rows:,} lines without an outcome yet"),
        ("trees", f"{trees_text(result.trees)} (early stopping), engine {engine}"),
        ("left out", left_out_text(result.left_out)),
    ]
    url = database_url or settings.database_url
    console.print(run_summary(result, url, settings, middle, [("vs oracle", oracle)]))


def trees_text(trees: dict[str, int]) -> str:
    """Trees per booster, named by the label it learnt when there are several (hazards)."""
    if len(trees) == 1:
        return str(next(iter(trees.values())))
    return ", ".join(f"{n} on {label}" for label, n in trees.items())


def left_out_text(left_out: dict[str, str]) -> str:
    """The features the model was trained without, each with why (or none)."""
    if not left_out:
        return "none: every feature was available"
    by_reason: dict[str, list[str]] = {}
    for name, reason in left_out.items():
        by_reason.setdefault(reason, []).append(name)
    reasons = "; ".join(f"{', '.join(names)} ({why})" for why, names in by_reason.items())
    return f"{len(left_out)} unavailable in the history: {reasons}"


def run_summary(
    result: Any,
    url: str,
    settings: Settings,
    middle: list[tuple[str, str]],
    after: list[tuple[str, str]] | None = None,
) -> Table:
    """The closing summary every training command prints: where the data came from and how it
    was split, the model's own lines (``middle``), what was registered where, how long it took,
    then ``after`` and the gate's verdict."""
    rows = [
        ("source", database_location(url)),
        ("window", f"{result.window} (end exclusive)"),
        ("slices", ", ".join(f"{k} {v} ({result.rows[k]:,})" for k, v in result.slices.items())),
        *middle,
        ("registered", f"{result.registered_name} v{result.version} as challenger"),
        ("mlflow run", f"{result.run_id} at {settings.mlflow_tracking_uri}"),
        ("time", ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())),
        *(after or []),
    ]
    if result.gate is not None:
        verdict = "PROMOTED to champion" if result.gate.promote else "not promoted"
        rows.append(("gate", f"{verdict}: {result.gate.reason}"))
    return key_value_table("training run", rows)


def scores_table(
    rows: list[dict[str, float | str]],
    columns: tuple[tuple[str, str], ...] = SCORE_COLUMNS,
) -> Table:
    table = Table(title="test window scores", title_justify="left")
    table.add_column("scorer")
    table.add_column("lines", justify="right")
    for _, title in columns:
        table.add_column(title, justify="right")
    for row in rows:
        table.add_row(
            str(row["scorer"]),
            f"{int(float(row['lines'])):,}",
            *(f"{float(row[key]):.4f}" for key, _ in columns),
        )
    return table


@reports_user_errors
def retrain(
    ctx: typer.Context,
    model: list[str] | None = typer.Option(
        None,
        "--model",
        metavar="NAME",
        help="Retrain this model (repeatable); default: those with a champion.",
    ),
    all_models: bool = typer.Option(
        False, "--all", help="Also train models that have no champion yet."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan; train nothing."),
    validation_days: int = typer.Option(28, help="Days that stop the boosting."),
    calibration_days: int = typer.Option(21, help="Days the calibrator is fitted on."),
    test_days: int = typer.Option(28, help="The newest days, scored for the gate."),
) -> None:
    """Rebuild frames, measure drift against the champions, train challengers and promote only
    what beats its champion on the newest data. Exit code 0 also when nothing is promoted."""
    from training.frames import SplitPlan
    from training.retrain import alert_feedback, plan_retraining, summary_rows
    from training.retrain import retrain as run_retraining

    settings = settings_of(ctx)
    plan = SplitPlan(
        validation_days=validation_days, calibration_days=calibration_days, test_days=test_days
    )
    for feedback in alert_feedback(settings):
        console.print(f"feedback: {feedback.describe()}")
    planned = plan_retraining(settings, model, all_models, plan)
    if not planned:
        console.print(
            "nothing to retrain: no model has a champion yet (use --all, or --model NAME, "
            "to train one)"
        )
        return
    for run in planned:
        console.print(("would " if dry_run else "") + run.describe())
    if dry_run:
        return
    calendar = load_policy(settings.policy_path).calendar
    results = run_retraining(settings, calendar, planned, plan, step=console.print)
    for result in results:
        table = Table(title=f"retrained {result.registered_name}", title_justify="left")
        table.add_column("what")
        table.add_column("value")
        for what, value in summary_rows(result):
            table.add_row(what, value)
        console.print(
            scores_table(result.score_rows(), getattr(result, "score_columns", SCORE_COLUMNS))
        )
        console.print(table)
    promoted = sum(1 for r in results if r.gate and r.gate.promote)
    console.print(f"{len(results)} challenger(s) trained, {promoted} promoted")


@app.command("margin-anomaly")
@reports_user_errors
def margin_anomaly(
    ctx: typer.Context,
    start: datetime | None = typer.Option(
        None, formats=DATE_FORMATS, help="First entry day to learn from (default: the first)."
    ),
    end: datetime | None = typer.Option(
        None,
        formats=DATE_FORMATS,
        help="Day after the last entry day (default: the day after the last entry).",
    ),
    validation_days: int = typer.Option(28, help="Days that stop the expected-price boosting."),
    calibration_days: int = typer.Option(
        21, help="Days the residual scales, IsolationForest and score scale are measured on."
    ),
    test_days: int = typer.Option(28, help="The newest days, scored for the report and gate."),
    seed: int = typer.Option(7, help="Seed of the model (same data + seed = same model)."),
    promote: bool = typer.Option(
        False, "--promote", help="Apply the gate: make it the champion if it beats the current one."
    ),
    database_url: str | None = typer.Option(None, help="Read this database instead."),
) -> None:
    """Train the margin-anomaly detector (how unusual a line's price is at entry, in [0, 1])."""
    from training.frames import SplitPlan
    from training.margin_job import train_margin_anomaly

    settings = settings_of(ctx)
    plan = SplitPlan(
        validation_days=validation_days, calibration_days=calibration_days, test_days=test_days
    )
    calendar = load_policy(settings.policy_path).calendar
    with steps_shown("margin_anomaly") as step:
        result = train_margin_anomaly(
            settings,
            calendar,
            database_url=database_url,
            start=start.date() if start else None,
            end=end.date() if end else None,
            plan=plan,
            seed=seed,
            promote=promote,
            step=step,
        )
    if result.metrics_note:
        console.print(result.metrics_note)
    else:
        console.print(scores_table(result.score_rows(), result.score_columns))
        console.print(recall_by_type_table(result.recall_by_type()))
    middle = [
        (
            "labelled anomalies",
            ", ".join(f"{k} {v}" for k, v in result.anomalies.items()) or "none (no truth)",
        ),
        ("trees", f"{result.best_iteration} (expected-price model, early stopping)"),
    ]
    url = database_url or settings.database_url
    console.print(run_summary(result, url, settings, middle))


def recall_by_type_table(recalls: dict[str, dict[str, float]]) -> Table:
    table = Table(title="recall at the 1% alert rate, by anomaly type", title_justify="left")
    kinds = sorted({kind for by_type in recalls.values() for kind in by_type})
    table.add_column("scorer")
    for kind in kinds:
        table.add_column(kind, justify="right")
    for scorer, by_type in recalls.items():
        table.add_row(scorer, *(f"{by_type[k]:.2f}" if k in by_type else "-" for k in kinds))
    return table


@app.command("demand-forecast")
@reports_user_errors
def demand_forecast(
    ctx: typer.Context,
    start: datetime | None = typer.Option(
        None, formats=DATE_FORMATS, help="First day to learn from (default: the first)."
    ),
    end: datetime | None = typer.Option(
        None,
        formats=DATE_FORMATS,
        help="Day after the last day to learn from (default: the last complete day).",
    ),
    validation_days: int = typer.Option(28, help="Days that stop the boosting (with the next)."),
    calibration_days: int = typer.Option(21, help="More stopping days (no calibrator here)."),
    test_days: int = typer.Option(28, help="The newest days, scored for the report and gate."),
    seed: int = typer.Option(7, help="Seed of the model (same data + seed = same model)."),
    promote: bool = typer.Option(
        False, "--promote", help="Apply the gate: make it the champion if it beats the current one."
    ),
    database_url: str | None = typer.Option(None, help="Read this database instead."),
) -> None:
    """Train the daily demand forecast per SKU x location (LightGBM Tweedie, global model)."""
    from training.demand_forecast import train_demand_forecast
    from training.frames import SplitPlan

    settings = settings_of(ctx)
    plan = SplitPlan(
        validation_days=validation_days, calibration_days=calibration_days, test_days=test_days
    )
    calendar = load_policy(settings.policy_path).calendar
    with steps_shown("demand_forecast") as step:
        result = train_demand_forecast(
            settings,
            calendar,
            database_url=database_url,
            start=start.date() if start else None,
            end=end.date() if end else None,
            plan=plan,
            seed=seed,
            promote=promote,
            step=step,
        )
    table = Table(title="test window scores by intermittency class", title_justify="left")
    for title in ("scorer", "class", "series", "rows", "MASE", "WRMSSE", "bias", "MAE"):
        table.add_column(title, justify="left" if title in ("scorer", "class") else "right")
    for row in result.class_rows():
        table.add_row(
            str(row["scorer"]),
            str(row["class"]),
            f"{int(row['series']):,}",
            f"{int(row['rows']):,}",
            *(f"{row[k]:.4f}" for k in ("mase", "wrmsse", "bias", "mae")),
        )
    console.print(table)
    middle = [
        ("MASE scale", "in-sample one-step naive MAE of each series over the train slice"),
        ("trees", f"{result.best_iteration} (early stopping)"),
    ]
    oracle = (
        f"the simulator's expected units on {result.oracle_rows:,} rows"
        if "oracle" in result.scores
        else "no oracle: the database was not simulated"
    )
    url = database_url or settings.database_url
    console.print(run_summary(result, url, settings, middle, [("oracle", oracle)]))


@app.command("receipt-delay")
@reports_user_errors
def receipt_delay(
    ctx: typer.Context,
    validation_days: int = typer.Option(14, help="Days of placements that stop the boosting."),
    test_days: int = typer.Option(21, help="The newest days of placements, scored for the gate."),
    label_horizon_days: int = typer.Option(
        42, help="Days the newest test line is given to be received."
    ),
    seed: int = typer.Option(7, help="Seed of the model (same data + seed = same model)."),
    promote: bool = typer.Option(
        False, "--promote", help="Apply the gate: make it the champion if it beats the current one."
    ),
    database_url: str | None = typer.Option(None, help="Read this database instead."),
) -> None:
    """Train the receipt-delay quantiles of open purchase-order lines (P50/P80/P90 days after the
    expected date) and score them beside the supplier history on the same test lines."""
    from training.receipt_delay import DelaySplit, train_receipt_delay

    settings = settings_of(ctx)
    split = DelaySplit(
        validation_days=validation_days, test_days=test_days, label_horizon_days=label_horizon_days
    )
    with steps_shown("receipt_delay") as step:
        result = train_receipt_delay(
            settings, database_url=database_url, split=split, seed=seed, promote=promote, step=step
        )
    table = Table(title="test lines: delay quantiles (days)", title_justify="left")
    for title in ("scorer", "rows at", "rows", "lines", "pinball P50", "P80", "P90", "mean"):
        table.add_column(title, justify="left" if title in ("scorer", "rows at") else "right")
    for title in ("coverage P80", "mean P80"):
        table.add_column(title, justify="right")
    for row in result.score_rows():
        table.add_row(
            str(row["scorer"]),
            str(row["rows_at"]),
            f"{int(row['rows']):,}",
            f"{int(row['lines']):,}",
            *(f"{row[k]:.3f}" for k in ("pinball_p50", "pinball_p80", "pinball_p90")),
            f"{row['pinball_mean']:.3f}",
            f"{row['coverage_p80']:.3f}",
            f"{row['mean_p80_days']:.2f}",
        )
    console.print(table)
    middle = [
        ("dropped", f"{result.unlabelled_rows:,} rows of lines not received yet"),
        ("trees", ", ".join(str(n) for n in result.best_iterations) + " (P50, P80, P90)"),
        ("choice", result.choice_reason),
    ]
    url = database_url or settings.database_url
    console.print(run_summary(result, url, settings, middle))


@app.command("receipt-forecasts")
@reports_user_errors
def receipt_forecasts(
    ctx: typer.Context,
    database_url: str | None = typer.Option(None, help="Write into this database instead."),
) -> None:
    """Write the P50/P80/P90 receipt dates of every open purchase-order line as of now (the
    receipt_delay champion's, else the supplier history's): what a promise reads under
    promise.inbound_quantile = "p80". Run daily."""
    from datetime import UTC

    from training.receipt_delay import write_receipt_forecasts

    settings = settings_of(ctx)
    written, method = write_receipt_forecasts(
        settings, now=datetime.now(UTC), database_url=database_url
    )
    console.print(f"{written:,} open purchase-order lines forecast ({method})")


@reports_user_errors
def replenishment_report(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", help="report.html (sortable, with charts) or .csv"),
    location: str | None = typer.Option(None, help="Only this location (default: all)."),
    review_days: int = typer.Option(7, help="Days between two order reviews."),
    database_url: str | None = typer.Option(None, help="Read this database instead."),
) -> None:
    """What to order now per SKU x location: the champion demand forecast, supplier lead times
    from receipts and the ledger's inventory position. Nothing is written on bad input."""
    from erp_core.domain.errors import InvalidValue
    from training.report import build_report, check_output, write_report

    settings = settings_of(ctx)
    check_output(out)
    if review_days < 1:
        raise InvalidValue("review_days", str(review_days), "must be at least 1 day")
    calendar = load_policy(settings.policy_path).calendar
    report = build_report(
        settings, calendar, database_url=database_url, location=location, review_days=review_days
    )
    write_report(report, out)
    recs = report.recommendations
    ordering = recs.loc[recs["order_qty"] > 0]
    console.print(
        f"{len(ordering)} of {len(recs)} SKU x location pairs to order now "
        f"({int(ordering['order_qty'].sum()):,} units, value {ordering['value'].sum():,.2f}), "
        f"{len(report.transfers)} transfer(s); forecast demand_forecast "
        f"v{report.model_version} as of {report.as_of:%Y-%m-%d %H:%M} UTC -> {out}"
    )
