"""The ``erpx`` command, assembled in the top layer.

``erp_core`` may not import the layers above it, so it cannot mount their commands; this module
can. It takes erp_core's callback (which builds the settings once and hands them to every command
on the Typer context) and its commands as they are declared there, and mounts the groups of the
layers above (``erpx features ...``). A command added to ``erp_core.cli.app`` appears here without
a change. Like erp_core's CLI, this module imports no heavy library, so ``erpx --help`` is fast.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Annotated

import typer

from erp_core import cli as core
from erp_core.db.migrate import upgrade_to_head
from erp_core.db.uow import UnitOfWork
from erp_core.importers.cli import export_app, import_app
from erp_core.policy import Actor, load_policy
from erp_core.settings import Settings
from features.cli import app as features_app
from training.cli import app as train_app
from training.cli import replenishment_report, retrain
from training.scms_anomaly_cli import scms_anomalies_report

app = typer.Typer(
    name="erpx",
    help=core.app.info.help,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
app.registered_callback = core.app.registered_callback
app.registered_commands.extend(core.app.registered_commands)
app.add_typer(features_app, name="features")
app.add_typer(train_app, name="train")
app.add_typer(import_app, name="import")
app.add_typer(export_app, name="export")
app.command("retrain")(retrain)
report_app = typer.Typer(
    name="report",
    help="Reports a person reads: what to order now; anomalies in a delivery history.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
report_app.command("replenishment")(replenishment_report)
report_app.command("scms-anomalies")(scms_anomalies_report)
app.add_typer(report_app, name="report")

apikey_app = typer.Typer(
    name="apikey",
    help="API keys, each bound to one role of the governance policy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
app.add_typer(apikey_app, name="apikey")

OPERATOR = Actor("cli", "admin")
"""Whoever runs the command on the server holds the database: the audit trail says ``cli``."""


def _uow(settings: Settings) -> UnitOfWork:
    return UnitOfWork.from_url(settings.database_url, load_policy(settings.policy_path))


@apikey_app.command("create")
@core.reports_user_errors
def apikey_create(
    ctx: typer.Context,
    role: Annotated[str, typer.Option(help="A role of the governance policy.")],
    name: Annotated[
        str | None, typer.Option(help="A name to revoke it by (default: role-N).")
    ] = None,
) -> None:
    """Create a key and print it once: only its hash is stored."""
    from erp_core.services.api_keys import create_api_key, list_api_keys

    settings = core.settings_of(ctx)
    uow = _uow(settings)
    if name is None:
        taken = {existing[0] for existing in list_api_keys(uow)}
        name = next(f"{role}-{n}" for n in range(1, len(taken) + 2) if f"{role}-{n}" not in taken)
    issued = create_api_key(uow, OPERATOR, name=name, role=role, now=datetime.now(UTC))
    core.console.print(f"{issued.name} ({issued.role}): {issued.secret}", markup=False)
    core.console.print("Keep it now: it cannot be shown again.", style="dim")


@apikey_app.command("revoke")
@core.reports_user_errors
def apikey_revoke(ctx: typer.Context, name: Annotated[str, typer.Argument()]) -> None:
    """Revoke a key by name (the API stops accepting it within ERPX_API_KEY_CACHE_SECONDS)."""
    from erp_core.services.api_keys import revoke_api_key

    revoke_api_key(_uow(core.settings_of(ctx)), OPERATOR, name=name, now=datetime.now(UTC))
    core.console.print(f"revoked {name}")


@apikey_app.command("list")
@core.reports_user_errors
def apikey_list(ctx: typer.Context) -> None:
    """Every key's name, role, creation time and state (never the key)."""
    from erp_core.services.api_keys import list_api_keys

    rows = list_api_keys(_uow(core.settings_of(ctx)))
    table = core.key_value_table(
        "API keys",
        [
            (name, f"{role}, created {created:%Y-%m-%d %H:%M}, {'active' if on else 'revoked'}")
            for name, role, created, on in rows
        ],
    )
    core.console.print(table)


@app.command("serve")
@core.reports_user_errors
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Default: ERPX_API_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Default: ERPX_API_PORT.")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64)] = 1,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
) -> None:
    """Serve the API with uvicorn (the interactive docs at /docs); several workers each listen
    on their own SO_REUSEPORT socket, so connections spread over them."""
    from serving.server import serve as run_server

    settings = core.settings_of(ctx)
    upgrade_to_head(settings.database_url)
    # One LightGBM thread per worker: a request scores a handful of rows, and two workers
    # each spinning two OpenMP threads on two cores collapse throughput (SERVING-NOTES).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    host = host or settings.api_host
    port = port or settings.api_port
    core.console.print(f"erpx API on http://{host}:{port} (docs: http://{host}:{port}/docs)")
    run_server(host, port, workers, access_log=access_log, log_level="info")


@app.command("demo")
@core.reports_user_errors
def demo(
    ctx: typer.Context,
    profile: Annotated[
        str, typer.Option(help="World to simulate into an empty database: small, medium, large.")
    ] = "small",
    days: Annotated[
        int | None, typer.Option(help="Days to simulate (default: the profile's, at least 180).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the world and the models.")] = 7,
    port: Annotated[int | None, typer.Option(help="Default: ERPX_API_PORT.")] = None,
    serve_api: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve the API at the end.")
    ] = True,
    respect_gate: Annotated[
        bool,
        typer.Option(
            "--respect-gate",
            help="Leave a model its gate refuses on the fallback (default: "
            "promote it anyway and say so).",
        ),
    ] = False,
) -> None:
    """Initialise, simulate a world (or reuse the database's), train and promote the three
    models (or reuse their champions), create a key per role and serve on ERPX_API_HOST."""
    from serving import demo as steps

    settings = core.settings_of(ctx)
    host, port = settings.api_host, port or settings.api_port
    with core.steps_shown("demo") as step:
        result = steps.run_demo(
            settings,
            profile=profile,
            days=days,
            seed=seed,
            host=host,
            port=port,
            respect_gate=respect_gate,
            step=step,
        )
    where = core.database_location(settings.database_url)
    rows = steps.summary_rows(result, where, settings.mlflow_tracking_uri)
    core.console.print(core.key_value_table("erpx demo", rows))
    for outcome in result.models:
        if outcome.status == "forced":
            core.console.print(f"{outcome.name}: {steps.WITHOUT_GATE}", style="bold yellow")
    core.console.print("API keys (shown once: only their hashes are stored):", style="bold")
    for key in result.keys:
        core.console.print(f"  {key.role:<17} {key.name:<26} {key.secret}", markup=False)
    core.console.print("Score an order, then save the replenishment report and open it:")
    for command in result.commands:
        core.console.print(command, markup=False, soft_wrap=True)
    if serve_api:
        steps.serve_for_demo(result, host, port)
