"""The ``erpx`` command, assembled in the top layer.

``erp_core`` may not import the layers above it, so it cannot mount their commands; this module
can. It takes erp_core's callback (which builds the settings once and hands them to every command
on the Typer context) and its commands as they are declared there, and mounts the groups of the
layers above (``erpx features ...``). A command added to ``erp_core.cli.app`` appears here without
a change. Like erp_core's CLI, this module imports no heavy library, so ``erpx --help`` is fast.
"""

from __future__ import annotations

import typer

from erp_core import cli as core
from features.cli import app as features_app
from training.cli import app as train_app
from training.cli import replenishment_report, retrain

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
app.command("retrain")(retrain)
report_app = typer.Typer(
    name="report",
    help="Reports a planner reads: what to order now.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
report_app.command("replenishment")(replenishment_report)
app.add_typer(report_app, name="report")
