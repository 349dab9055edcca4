"""``erpx import erp-export DIR``, ``erpx export erp-export DIR`` and ``erpx import scms PATH``:
the ERP export format (``docs/import-format.md``) in and out of the database at
ERPX_DATABASE_URL, and the USAID SCMS delivery history mapped to it and loaded.

A refused load (no manifest, an unknown format version, a missing file or column, a file that is
not UTF-8 or not comma separated) prints one red line naming file, column and value and exits
with code 2, the database untouched (not even created). Rows rejected one by one are listed in
``rejects.csv`` beside ``report.json`` and summarised at the end; ``--fail-on-reject`` turns any
reject into exit code 2 as well. The heavy imports happen inside the commands, so ``erpx --help``
stays fast.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.table import Table

from erp_core.cli import (
    USER_ERROR_EXIT_CODE,
    console,
    database_location,
    error_console,
    key_value_table,
    reports_user_errors,
    settings_of,
    steps_shown,
)

import_app = typer.Typer(
    name="import",
    help="Load history kept in another system into the ERP database.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
export_app = typer.Typer(
    name="export",
    help="Write the ERP database out for another system (or another erpx).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

REJECTS_SHOWN = 10


@import_app.command("erp-export")
@reports_user_errors
def import_erp_export_command(
    ctx: typer.Context,
    directory: Path = typer.Argument(
        ..., help="The export: manifest.json and one file per entity."
    ),
    database_url: str | None = typer.Option(
        None, help="Load into this database instead of ERPX_DATABASE_URL."
    ),
    report_dir: Path | None = typer.Option(
        None,
        help="Folder for report.json and rejects.csv (default: ERPX_VAR_DIR/imports/"
        "<source system>-<UTC time>).",
    ),
    fail_on_reject: bool = typer.Option(
        False, "--fail-on-reject", help="Exit with code 2 when any row was rejected."
    ),
) -> None:
    """Load an ERP export (docs/import-format.md) idempotently: rows imported before are skipped."""
    from erp_core.db.engine import make_engine, make_session_factory
    from erp_core.db.migrate import upgrade_to_head
    from erp_core.db.uow import UnitOfWork
    from erp_core.importers.erp_export import import_erp_export
    from erp_core.importers.erp_export_schema import read_export
    from erp_core.policy import load_policy

    settings = settings_of(ctx)
    url = database_url or settings.database_url
    started = time.perf_counter()
    with steps_shown("import") as step:
        step("reading files")
        parsed = read_export(directory)  # a refusal stops here, before the database is touched
        step("preparing the database")
        upgrade_to_head(url)
        engine = make_engine(url)
        try:
            uow = UnitOfWork(make_session_factory(engine), load_policy(settings.policy_path))
            report = import_erp_export(uow, directory, progress=step, parsed=parsed)
        finally:
            engine.dispose()
    report.elapsed_seconds = time.perf_counter() - started  # reading the files included
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = report_dir or settings.var_dir / "imports" / f"{report.source_system}-{stamp}"
    report_path, rejects_path = report.write(folder)
    console.print(entity_table(report))
    if report.rejects:
        console.print(rejects_table(report))
    rate = report.rows_read / max(report.elapsed_seconds, 1e-9)
    console.print(
        key_value_table(
            "import",
            (
                ("database", database_location(url)),
                ("source system", report.source_system),
                ("exported at", report.exported_at),
                (
                    "rows",
                    f"{report.rows_read:,} read, {report.rows_loaded:,} loaded, "
                    f"{report.rows_present:,} already present, {report.rows_rejected:,} rejected",
                ),
                ("rejects by rule", _by_rule(report.rejects_by_rule())),
                ("stock ledger", _by_rule(report.ledger)),
                ("time", f"{report.elapsed_seconds:.2f} s ({rate:,.0f} rows/s)"),
                ("report", str(report_path)),
                ("rejects", str(rejects_path)),
            ),
        )
    )
    if fail_on_reject and report.rejects:
        error_console.print(
            f"error: {report.rows_rejected:,} rows rejected (see {rejects_path})",
            style="bold red",
            markup=False,
        )
        raise typer.Exit(USER_ERROR_EXIT_CODE)


@import_app.command("scms")
@reports_user_errors
def import_scms_command(
    ctx: typer.Context,
    path: Path = typer.Argument(..., help="SCMS_Delivery_History_Dataset.csv (USAID SCMS)."),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Folder for the export-format files the SCMS file is mapped to (default: the "
        "report folder's export/).",
    ),
    database_url: str | None = typer.Option(
        None, help="Load into this database instead of ERPX_DATABASE_URL."
    ),
    report_dir: Path | None = typer.Option(
        None,
        help="Folder for report.json and rejects.csv (default: ERPX_VAR_DIR/imports/"
        "usaid-scms-<UTC time>).",
    ),
    fail_on_reject: bool = typer.Option(
        False, "--fail-on-reject", help="Exit with code 2 when any SCMS row was rejected."
    ),
) -> None:
    """Map the USAID SCMS delivery history to the ERP export format (docs/import-format.md,
    "The SCMS mapping") and load it, idempotently: a second import of the same file loads 0."""
    from erp_core.db.engine import make_engine, make_session_factory
    from erp_core.db.migrate import upgrade_to_head
    from erp_core.db.uow import UnitOfWork
    from erp_core.importers.erp_export import import_erp_export
    from erp_core.importers.erp_export_schema import read_export
    from erp_core.importers.scms_export import SOURCE_SYSTEM, write_scms_export
    from erp_core.policy import load_policy

    settings = settings_of(ctx)
    url = database_url or settings.database_url
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = report_dir or settings.var_dir / "imports" / f"{SOURCE_SYSTEM}-{stamp}"
    export_dir = out or folder / "export"
    started = time.perf_counter()
    with steps_shown("import scms") as step:
        report = write_scms_export(path, export_dir, progress=step)  # refusals stop here
        parsed = read_export(export_dir)
        step("preparing the database")
        upgrade_to_head(url)
        engine = make_engine(url)
        try:
            uow = UnitOfWork(make_session_factory(engine), load_policy(settings.policy_path))
            report.load = import_erp_export(uow, export_dir, progress=step, parsed=parsed)
        finally:
            engine.dispose()
    report.elapsed_seconds = time.perf_counter() - started
    report_path, rejects_path = report.write(folder)
    loaded = report.load
    console.print(entity_table(loaded))
    if loaded.rejects:
        console.print(rejects_table(loaded))
    read = report.scms
    rate = report.rows_read / max(report.elapsed_seconds, 1e-9)
    console.print(
        key_value_table(
            "import scms",
            (
                ("database", database_location(url)),
                ("file", str(path)),
                (
                    "SCMS rows",
                    f"{report.rows_read:,} read, {report.lines_loaded:,} in the database as "
                    f"order lines ({loaded.entities['order_lines'].loaded:,} loaded now), "
                    f"{report.rows_rejected:,} rejected",
                ),
                ("rejected when read", _rules(r.rule for r in read.rejects)),
                ("rejected by the mapping", _rules(r.rule for r in report.mapping_rejects)),
                ("repaired when read", _repairs(read.repairs)),
                ("approximated by the mapping", _repairs(report.mapping_repairs)),
                (
                    "export rows",
                    f"{loaded.rows_read:,} read, {loaded.rows_loaded:,} loaded, "
                    f"{loaded.rows_present:,} already present, {loaded.rows_rejected:,} rejected",
                ),
                ("stock ledger", _by_rule(loaded.ledger)),
                (
                    "time",
                    f"{report.elapsed_seconds:.2f} s (mapping {report.map_seconds:.2f} s, "
                    f"{rate:,.0f} SCMS rows/s)",
                ),
                ("export", str(export_dir)),
                ("report", str(report_path)),
                ("rejects", str(rejects_path)),
            ),
        )
    )
    if fail_on_reject and report.rows_rejected:
        error_console.print(
            f"error: {report.rows_rejected:,} SCMS rows rejected (see {rejects_path})",
            style="bold red",
            markup=False,
        )
        raise typer.Exit(USER_ERROR_EXIT_CODE)


def _rules(rules: Iterable[str]) -> str:
    return _by_rule(dict(Counter(rules).most_common()))


def _repairs(repairs: dict[str, dict[str, int]]) -> str:
    return (
        "; ".join(
            f"{column}: " + ", ".join(f"{rule} {count:,}" for rule, count in rules.items())
            for column, rules in repairs.items()
        )
        or "none"
    )


def entity_table(report: object) -> Table:
    from erp_core.importers.erp_export import ImportReport

    assert isinstance(report, ImportReport)
    table = Table(title="rows per entity", title_justify="left")
    table.add_column("entity")
    for name in ("read", "loaded", "present", "rejected"):
        table.add_column(name, justify="right")
    for name, counts in report.entities.items():
        if counts.absent:
            table.add_row(name, "[dim]absent[/dim]", "", "", "")
            continue
        rejected = f"[red]{counts.rejected:,}[/red]" if counts.rejected else "0"
        table.add_row(
            name, f"{counts.read:,}", f"{counts.loaded:,}", f"{counts.present:,}", rejected
        )
    return table


def rejects_table(report: object) -> Table:
    from erp_core.importers.erp_export import ImportReport

    assert isinstance(report, ImportReport)
    shown = report.rejects[:REJECTS_SHOWN]
    title = f"rejects (first {len(shown)} of {len(report.rejects):,})"
    table = Table(title=title, title_justify="left")
    for name in ("file", "row", "column", "value", "rule", "why"):
        table.add_column(name, justify="right" if name == "row" else "left")
    for reject in shown:
        table.add_row(
            reject.file,
            str(reject.row),
            reject.column,
            reject.value[:40],
            reject.rule,
            reject.message,
            style=None,
        )
    return table


def _by_rule(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count:,}" for name, count in counts.items()) or "none"


@export_app.command("erp-export")
@reports_user_errors
def export_erp_export_command(
    ctx: typer.Context,
    directory: Path = typer.Argument(..., help="Folder to write manifest.json and the files to."),
    source_system: str = typer.Option("erpx", help="The manifest's source_system."),
    file_format: str = typer.Option("csv", "--format", help="csv or parquet."),
    database_url: str | None = typer.Option(
        None, help="Export this database instead of ERPX_DATABASE_URL."
    ),
) -> None:
    """Write the ERP database out in the export format (docs/import-format.md)."""
    from erp_core.cli import fail
    from erp_core.db.migrate import current_revision
    from erp_core.importers.erp_export_writer import export_erp_export

    url = database_url or settings_of(ctx).database_url
    if current_revision(url) is None:
        fail(f"database {database_location(url)} is not initialised (run `erpx init`)")
    with steps_shown("export") as step:
        summary = export_erp_export(
            url, directory, source_system=source_system, file_format=file_format, progress=step
        )
    rows = sum(summary.rows.values())
    console.print(
        key_value_table(
            "export",
            (
                ("database", database_location(url)),
                ("directory", summary.directory),
                ("source system / format", f"{summary.source_system} / {summary.file_format}"),
                ("exported at", summary.exported_at),
                ("rows", ", ".join(f"{name} {n:,}" for name, n in summary.rows.items())),
                ("time", f"{summary.elapsed_seconds:.2f} s ({rows:,} rows)"),
            ),
        )
    )
