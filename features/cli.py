"""``erpx features``: the feature catalogue and the offline frame builds.

A Typer group mounted by the top-level ``erpx`` command (``serving/cli.py``), which builds the
settings in its callback. Only the declarations (plain dataclasses) are imported here; pandas and
the pipelines load inside ``build``, so ``erpx --help`` and ``erpx features list`` stay fast.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

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
from features.registry import FEATURE_SETS, FeatureSet, feature_set

app = typer.Typer(
    name="features",
    help="Feature catalogue and point-in-time training frames.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

DATE_FORMATS = ["%Y-%m-%d"]


@app.command("list")
@reports_user_errors
def list_features(
    set_name: str | None = typer.Option(None, "--set", help="Only this feature set."),
) -> None:
    """Print the catalogue: every declared feature with its dtype, group and description."""
    chosen = [feature_set(set_name)] if set_name else list(FEATURE_SETS.values())
    for declared in chosen:
        console.print(catalogue_table(declared))


def catalogue_table(declared: FeatureSet) -> Table:
    table = Table(
        title=f"{declared.name} ({declared.entity}): {declared.description}",
        title_justify="left",
    )
    table.add_column("feature", no_wrap=True)
    table.add_column("dtype", no_wrap=True)
    table.add_column("group", no_wrap=True)
    table.add_column("description", overflow="fold")
    for spec in declared.features:
        table.add_row(spec.name, spec.dtype, spec.group, spec.description)
    for label in declared.labels:
        table.add_row(label.name, label.dtype, "[bold]label[/bold]", label.description)
    return table


@app.command()
@reports_user_errors
def build(
    ctx: typer.Context,
    set_name: str = typer.Option(..., "--set", help="Feature set to build, e.g. late_shipment."),
    start: datetime = typer.Option(..., formats=DATE_FORMATS, help="First day (inclusive, UTC)."),
    end: datetime = typer.Option(..., formats=DATE_FORMATS, help="Last day (exclusive, UTC)."),
    out: Path = typer.Option(..., help="Folder for <set>.parquet and <set>.manifest.json."),
    database_url: str | None = typer.Option(
        None, help="Read this database instead of ERPX_DATABASE_URL."
    ),
    engine: str = typer.Option(
        "pandas", help="pandas (this process) or dask (time chunks on a Dask cluster)."
    ),
    scheduler: str | None = typer.Option(
        None,
        help="Dask scheduler address, e.g. tcp://10.0.0.5:8786 (engine dask; without it a "
        "local cluster of 2 workers runs for the build).",
    ),
) -> None:
    """Build a point-in-time frame from the ERP history, validate it, and write it with its
    manifest."""
    from features.build import build_feature_set, check_engine, check_request

    settings = settings_of(ctx)
    url = database_url or settings.database_url
    calendar = load_policy(settings.policy_path).calendar
    check_engine(set_name, engine, scheduler)  # refusals before any progress shows
    check_request(set_name, url, start.date(), end.date())
    with steps_shown(set_name) as step:
        result = build_feature_set(
            set_name,
            url,
            start.date(),
            end.date(),
            out,
            calendar,
            step=step,
            engine=engine,
            scheduler=scheduler,
        )
    rows = (
        ("set", result.feature_set),
        ("source", database_location(url)),
        ("window", f"{result.start.date()} .. {result.end.date()} (end exclusive)"),
        ("rows", f"{result.rows:,}"),
        ("features", f"{result.features} ({len(result.unavailable)} unavailable)"),
        ("engine", result.engine if scheduler is None else f"{result.engine} at {scheduler}"),
        ("frame", str(result.frame_path)),
        ("manifest", str(result.manifest_path)),
        (
            "time",
            f"load {result.load_seconds:.2f} s, compute {result.compute_seconds:.2f} s "
            f"({result.lines_per_second:,.0f} rows/s), write {result.write_seconds:.2f} s",
        ),
    )
    console.print(key_value_table("feature frame", rows))
    if result.unavailable:
        console.print(unavailable_table(result.unavailable))


def unavailable_table(unavailable: dict[str, str]) -> Table:
    """The features the history could not compute, each with why: null in the frame, and left
    out by training."""
    table = Table(
        title=f"{len(unavailable)} features unavailable (null in the frame, left out by training)",
        title_justify="left",
    )
    table.add_column("feature", no_wrap=True)
    table.add_column("why", overflow="fold")
    for name, reason in unavailable.items():
        table.add_row(name, reason)
    return table
