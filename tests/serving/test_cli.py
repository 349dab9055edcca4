"""The composed ``erpx`` command: erp_core's commands and the features group under one name,
still fast to start."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from erp_core import cli as core
from serving.cli import app

runner = CliRunner()


def test_help_lists_the_core_commands_and_the_features_group() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    for command in ("init", "info", "simulate", "features", "train"):
        assert command in result.output


def test_the_core_commands_are_erp_cores_own() -> None:
    composed = {info.callback for info in app.registered_commands}
    assert {info.callback for info in core.app.registered_commands} <= composed


def test_features_help_lists_list_and_build() -> None:
    result = runner.invoke(app, ["features", "--help"])
    assert result.exit_code == 0, result.output
    assert "list" in result.output
    assert "build" in result.output


def test_the_console_script_points_at_the_composed_app() -> None:
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "erpx"]
    assert script.value == "serving.cli:app"


def test_the_composed_cli_does_not_import_the_heavy_libraries() -> None:
    code = (
        "import sys, serving.cli; "
        "print(sorted({'pandas', 'lightgbm', 'mlflow', 'sklearn'} & set(sys.modules)))"
    )
    imported = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert imported == "[]"
