"""The ``erpx`` command line.

The settings are built once, in the callback, and handed to every command on the Typer context.
Errors a user can cause (a bad ``ERPX_*`` value, a domain error) print one red line naming the
field and the value and exit with code 2; no traceback. Heavy libraries (pandas, lightgbm,
mlflow) stay out of this module's imports so ``erpx --help`` starts fast.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from datetime import time as datetime_time
from pathlib import Path
from typing import Any, NoReturn, ParamSpec, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, inspect, make_url, select
from sqlalchemy.exc import OperationalError

from erp_core.db.engine import make_engine
from erp_core.db.migrate import current_revision, head_revision, upgrade_to_head
from erp_core.db.models import Base
from erp_core.domain.errors import DomainError
from erp_core.policy import load_policy
from erp_core.settings import Settings, get_settings

USER_ERROR_EXIT_CODE = 2
ENVIRONMENT_EXIT_CODE = 1

app = typer.Typer(
    name="erpx",
    help="erpx: an ERP transaction core with exception prediction for wholesale distribution.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
console = Console(highlight=False, soft_wrap=True)
error_console = Console(stderr=True, highlight=False, soft_wrap=True)

P = ParamSpec("P")
R = TypeVar("R")


# --- errors a user can cause -------------------------------------------------------------------


def reports_user_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn errors a user can cause (a domain error, a bad ``ERPX_*`` value) into one red line
    each and exit code 2, and an unreachable database or unwritable path into exit code 1."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except DomainError as error:
            fail(describe_domain_error(error))
        except ValidationError as error:
            fail(*describe_validation_error(error))
        except OperationalError as error:
            reason = str(error.orig).strip().splitlines()[0]
            where = database_location(get_settings().database_url)
            fail(f"cannot use the database {where}: {reason}", exit_code=ENVIRONMENT_EXIT_CODE)
        except OSError as error:  # an unwritable database folder, an unreadable policy file
            fail(str(error), exit_code=ENVIRONMENT_EXIT_CODE)

    return wrapper


def fail(*lines: str, exit_code: int = USER_ERROR_EXIT_CODE) -> NoReturn:
    for line in lines:
        error_console.print(f"error: {line}", style="bold red", markup=False)
    raise typer.Exit(exit_code)


def describe_domain_error(error: DomainError) -> str:
    """The error's message, with the field and value added when the message leaves them out."""
    message = error.message
    value_named = re.search(rf"(?<!\w){re.escape(repr(error.value))}(?!\w)", message)
    if error.field is None or (error.field in message and value_named):
        return message
    return f"{message} ({error.field}={error.value!r})"


def describe_validation_error(error: ValidationError) -> list[str]:
    """One line per invalid value, named as the user wrote it (``ERPX_API_PORT='x': ...``)."""
    prefix = str(Settings.model_config.get("env_prefix", ""))
    lines = []
    for problem in error.errors():
        field = ".".join(str(part) for part in problem["loc"])
        name = f"{prefix}{field.upper()}" if error.title == Settings.__name__ else field
        cause = problem.get("ctx", {}).get("error")
        reason = str(cause) if cause is not None else problem["msg"]
        if not reason.startswith(name):
            reason = f"{name}={problem['input']!r}: {reason}"
        lines.append(reason)
    return lines


# --- what the commands show --------------------------------------------------------------------


def database_location(url: str) -> str:
    """The SQLite file as an absolute path, any other URL with its password hidden."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return str(Path(str(parsed.database)).resolve())
    return parsed.render_as_string(hide_password=True)


def revision_status(revision: str | None, head: str | None) -> str:
    if revision is None:
        return "not initialised (run `erpx init`)"
    if revision == head:
        return f"{revision} (head)"
    return f"{revision} (head is {head}: run `erpx init` to upgrade)"


def table_row_counts(url: str) -> dict[str, int | None]:
    """Rows in each table of the models, by name; None for a table the database lacks."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            present = set(inspect(connection).get_table_names())
            return {
                name: (
                    connection.execute(select(func.count()).select_from(table)).scalar_one()
                    if name in present
                    else None
                )
                for name, table in sorted(Base.metadata.tables.items())
            }
    finally:
        engine.dispose()


def settings_of(ctx: typer.Context) -> Settings:
    settings = ctx.obj
    if not isinstance(settings, Settings):
        raise RuntimeError("erpx commands run under the erpx callback, which builds the settings")
    return settings


# --- commands ----------------------------------------------------------------------------------


@app.callback()
@reports_user_errors
def main(ctx: typer.Context) -> None:
    """erpx: an ERP transaction core with exception prediction for wholesale distribution.

    Configured by ERPX_* environment variables (see README.md).
    """
    ctx.obj = get_settings()


@app.command()
@reports_user_errors
def init(ctx: typer.Context) -> None:
    """Create the ERP database at ERPX_DATABASE_URL, or upgrade it to the newest schema."""
    url = settings_of(ctx).database_url
    before = current_revision(url)
    upgrade_to_head(url)
    after = current_revision(url)
    if before is None:
        outcome = "created"
    elif before == after:
        outcome = "already up to date"
    else:
        outcome = f"upgraded from {before}"
    console.print(f"database {database_location(url)}: {outcome}, schema revision {after}")


@app.command()
@reports_user_errors
def info(ctx: typer.Context) -> None:
    """Show the database, its schema revision, rows per table, and the policy in use."""
    settings = settings_of(ctx)
    url = settings.database_url
    load_policy(settings.policy_path)  # a malformed policy file is reported here, not later
    revision = current_revision(url)

    about = Table.grid(padding=(0, 2))
    about.add_row("database", database_location(url))
    about.add_row("revision", revision_status(revision, head_revision()))
    about.add_row("policy", str(settings.policy_path or "built-in default (policy_default.toml)"))
    console.print(about)
    if revision is None:
        return

    counts = Table(title="rows per table", title_justify="left")
    counts.add_column("table")
    counts.add_column("rows", justify="right")
    for name, rows in table_row_counts(url).items():
        counts.add_row(name, "[yellow]missing[/yellow]" if rows is None else f"{rows:,}")
    console.print(counts)


@app.command()
@reports_user_errors
def simulate(
    ctx: typer.Context,
    profile: str = typer.Option("small", help="World size: small, medium or large."),
    days: int | None = typer.Option(None, help="Days to simulate (default: the profile's)."),
    seed: int = typer.Option(7, help="Same seed, same database content."),
    database_url: str | None = typer.Option(
        None, help="Simulate into this database instead of ERPX_DATABASE_URL."
    ),
    append: bool = typer.Option(
        False, "--append", help="Add the world beside data already in the database."
    ),
) -> None:
    """Simulate a distributor day by day through the ERP services, with its ground truth."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn  # noqa: I001
    from erp_core.simulate.run import check_request
    from erp_core.simulate.run import simulate as run_simulation

    settings = settings_of(ctx)
    if database_url is not None:
        settings = Settings(**{**settings.model_dump(), "database_url": database_url})
    _, total = check_request(profile, days)
    columns = (
        TextColumn("[bold]simulating"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("days  {task.fields[lines]:,} lines  {task.fields[rate]:,.0f} lines/s"),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("days", total=max(total, 1), lines=0, rate=0.0)
        started = time.perf_counter()

        def advance(done: int, _all: int, lines: int) -> None:
            rate = lines / max(time.perf_counter() - started, 1e-9)
            bar.update(task, completed=done, lines=lines, rate=rate)

        summary = run_simulation(settings, profile, days, seed, progress=advance, append=append)
    console.print(simulation_table(summary.as_dict(), database_location(settings.database_url)))


@contextmanager
def steps_shown(label: str) -> Iterator[Callable[[str], None]]:
    """A spinner naming each step of a long job as it starts; gone when the job ends, so the
    closing summary stands alone."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("[bold]{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(f"{label}: starting", total=None)
        yield lambda name: progress.update(task, description=f"{label}: {name}")


def key_value_table(title: str, rows: Iterable[tuple[str, str]]) -> Table:
    """A closing summary: one row per thing produced or measured."""
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value")
    for what, value in rows:
        table.add_row(what, value)
    return table


def simulation_table(summary: dict[str, object], where: str) -> Table:
    """The closing summary: what the run produced, how it looks, and where it is."""
    table = Table(title="simulation", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    rows = [
        ("database", where),
        ("truth", summary["truth_dir"]),
        ("profile / seed / days", f"{summary['profile']} / {summary['seed']} / {summary['days']}"),
        ("orders", f"{summary['orders']:,}"),
        ("order lines", f"{summary['lines']:,}"),
        ("shipments", f"{summary['shipments']:,}"),
        ("purchase orders", f"{summary['purchase_orders']:,}"),
        ("exceptions", f"{summary['exceptions']:,}"),
        ("pricing anomalies (labelled)", f"{summary['pricing_anomalies']:,}"),
        ("late-delivery rate", f"{summary['late_delivery_rate']:.1%}"),
        ("line fill rate from stock", f"{summary['line_fill_rate']:.1%}"),
        ("oracle AUC (late delivery)", f"{summary['oracle_auc_delivery']:.3f}"),
        ("oracle AUC (late ship)", f"{summary['oracle_auc_ship']:.3f}"),
        ("oracle P(late) vs realised", _calibration(summary["oracle_calibration"])),
        ("item mix", _shares(summary["item_mix"])),
        ("customer cadence", _shares(summary["customer_cadence_mix"])),
        (
            "wall time",
            f"{summary['wall_seconds']:.1f} s ({summary['lines_per_second']:,.0f} lines/s)",
        ),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    return table


def _calibration(segments: object) -> str:
    assert isinstance(segments, dict)
    return "; ".join(
        f"{name.replace('_', ' ')} {seg['mean_p_late']:.1%} vs {seg['late_rate']:.1%}"
        for name, seg in segments.items()
    )


def _shares(mix: object) -> str:
    assert isinstance(mix, dict)
    return ", ".join(f"{name} {share:.0%}" for name, share in mix.items())


# --- erpx kpis ---------------------------------------------------------------------------------


@app.command()
@reports_user_errors
def kpis(
    ctx: typer.Context,
    start: str = typer.Option(..., "--from", help="First day of the period (YYYY-MM-DD)."),
    end: str = typer.Option(..., "--to", help="Day after the period (YYYY-MM-DD), excluded."),
    by: str | None = typer.Option(
        None, "--by", help="Also per location, customer_tier, channel or carrier."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """The KPIs of KPIS.md for the period [--from, --to), from the ERP's events."""
    import json

    from erp_core.db.engine import make_session_factory
    from erp_core.db.uow import UnitOfWork
    from erp_core.kpis import GROUPINGS, compute_kpis

    first, after = _period_option("--from", start), _period_option("--to", end)
    if first >= after:
        fail(f"--from={start!r}: must be before --to={end!r}")
    if by is not None and by not in GROUPINGS:
        fail(f"--by={by!r}: not one of {', '.join(GROUPINGS)}")
    settings = settings_of(ctx)
    if current_revision(settings.database_url) is None:
        where = database_location(settings.database_url)
        fail(f"database {where} is not initialised (run `erpx init`)")
    engine = make_engine(settings.database_url)
    try:
        uow = UnitOfWork(make_session_factory(engine), load_policy(settings.policy_path))
        report = compute_kpis(uow, first, after, group_by=by)
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
        return
    console.print(kpi_table(f"KPIs {start} .. {end} (excluded)", report.kpis))
    for group, group_kpis in report.groups.items():
        console.print(kpi_table(f"{by} = {group}", group_kpis))


def _period_option(option: str, value: str) -> datetime:
    """A day given on the command line as the UTC midnight that starts it."""
    try:
        day = date.fromisoformat(value)
    except ValueError:
        fail(f"{option}={value!r}: not a date (YYYY-MM-DD)")
    return datetime.combine(day, datetime_time(0), UTC)


def kpi_table(title: str, rows: Iterable[Any]) -> Table:
    """One row per KPI: its value, what it is a share (or median) of, and its details."""
    table = Table(title=title, title_justify="left")
    for column, justify in (("KPI", "left"), ("value", "right"), ("of", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    table.add_column("details")
    for kpi in rows:
        table.add_row(
            kpi.name.replace("_", " "),
            _kpi_value(kpi.value, kpi.unit),
            _kpi_base(kpi.numerator, kpi.denominator),
            ", ".join(f"{k.replace('_', ' ')} {_kpi_number(v)}" for k, v in kpi.details.items()),
        )
    return table


def _kpi_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:.1%}" if unit == "share" else f"{value:,.2f} {unit}"


def _kpi_base(numerator: float | None, denominator: float | None) -> str:
    if denominator is None:
        return ""
    if numerator is None:
        return f"n={_kpi_number(denominator)}"
    return f"{_kpi_number(numerator)} / {_kpi_number(denominator)}"


def _kpi_number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"
