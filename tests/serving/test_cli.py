"""The composed ``erpx`` command: erp_core's commands and the features group under one name,
still fast to start."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from sqlalchemy import select
from typer.testing import CliRunner

from erp_core import cli as core
from erp_core.db.models import ApiKey
from erp_core.db.uow import UnitOfWork
from erp_core.policy import Actor, load_policy
from erp_core.services.api_keys import authenticate
from erp_core.settings import get_settings
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


# --- erpx apikey create | revoke | list ----------------------------------------------------------


@pytest.fixture
def fresh_database(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """An initialised SQLite file under tmp_path, and settings read afresh from the environment."""
    for name in ("ERPX_DATABASE_URL", "ERPX_POLICY_PATH"):
        monkeypatch.delenv(name, raising=False)
    url = f"sqlite:///{tmp_path / 'erpx.db'}"
    monkeypatch.setenv("ERPX_DATABASE_URL", url)
    get_settings.cache_clear()
    assert runner.invoke(app, ["init"]).exit_code == 0
    yield url
    get_settings.cache_clear()


def _stored(url: str) -> list[tuple[str, str, str, bool]]:
    uow = UnitOfWork.from_url(url, load_policy())
    with uow:
        rows = uow.session.execute(select(ApiKey.name, ApiKey.role, ApiKey.key_hash, ApiKey.active))
        found = [tuple(row) for row in rows]
    uow.engine.dispose()
    return found  # type: ignore[return-value]


def test_apikey_create_prints_the_key_once_and_stores_only_its_hash(fresh_database: str) -> None:
    result = runner.invoke(app, ["apikey", "create", "--role", "planner", "--name", "plan-desk"])
    assert result.exit_code == 0, result.output
    keys = re.findall(r"erpx_[A-Za-z0-9_-]{20,}", result.output)
    assert len(keys) == 1, result.output
    assert "plan-desk (planner)" in result.output
    ((name, role, key_hash, active),) = _stored(fresh_database)
    assert (name, role, active) == ("plan-desk", "planner", True)
    assert key_hash == hashlib.sha256(keys[0].encode()).hexdigest()
    uow = UnitOfWork.from_url(fresh_database, load_policy())
    assert authenticate(uow, keys[0]) == Actor("key:plan-desk", "planner")
    uow.engine.dispose()


def test_apikey_create_without_a_name_names_it_after_the_role(fresh_database: str) -> None:
    for _ in range(2):
        assert runner.invoke(app, ["apikey", "create", "--role", "finance"]).exit_code == 0
    assert [row[0] for row in _stored(fresh_database)] == ["finance-1", "finance-2"]


def test_apikey_create_with_an_unknown_role_is_one_red_line_naming_it_and_exit_2(
    fresh_database: str,
) -> None:
    result = runner.invoke(app, ["apikey", "create", "--role", "wizard"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error:") and "wizard" in lines[0] and "role" in lines[0]
    assert "erpx_" not in result.output
    assert _stored(fresh_database) == []


def test_the_error_line_is_printed_bold_red_to_stderr() -> None:
    from rich.style import Style

    assert core.error_console.stderr
    printed: list[tuple[str, object]] = []

    class Recorder:
        def print(self, text: str, style: object = None, markup: bool = True) -> None:
            printed.append((text, style))

    original = core.error_console
    core.error_console = Recorder()  # type: ignore[assignment]
    try:
        with pytest.raises(typer.Exit):
            core.fail("invalid role='wizard'")
    finally:
        core.error_console = original
    ((text, style),) = printed
    assert "wizard" in text
    assert Style.parse(str(style)).color.name == "red"  # type: ignore[union-attr]


def test_apikey_create_with_a_taken_name_is_exit_2_naming_it(fresh_database: str) -> None:
    assert (
        runner.invoke(app, ["apikey", "create", "--role", "admin", "--name", "ops"]).exit_code == 0
    )
    result = runner.invoke(app, ["apikey", "create", "--role", "planner", "--name", "ops"])
    assert result.exit_code == 2
    assert "ops" in result.output and "erpx_" not in result.output
    assert len(_stored(fresh_database)) == 1


def test_apikey_list_shows_each_key_without_the_key_and_revoke_turns_it_off(
    fresh_database: str,
) -> None:
    created = runner.invoke(app, ["apikey", "create", "--role", "logistics", "--name", "dock"])
    (secret,) = re.findall(r"erpx_[A-Za-z0-9_-]{20,}", created.output)
    listed = runner.invoke(app, ["apikey", "list"])
    assert listed.exit_code == 0, listed.output
    assert "dock" in listed.output and "logistics" in listed.output and "active" in listed.output
    ((_, _, key_hash, _),) = _stored(fresh_database)
    assert secret not in listed.output and key_hash not in listed.output

    revoked = runner.invoke(app, ["apikey", "revoke", "dock"])
    assert revoked.exit_code == 0, revoked.output
    assert "revoked dock" in revoked.output
    assert "revoked" in runner.invoke(app, ["apikey", "list"]).output
    uow = UnitOfWork.from_url(fresh_database, load_policy())
    assert authenticate(uow, secret) is None
    uow.engine.dispose()


def test_apikey_revoke_of_an_unknown_name_is_exit_2_naming_it(fresh_database: str) -> None:
    result = runner.invoke(app, ["apikey", "revoke", "ghost"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "ghost" in lines[0], result.output
