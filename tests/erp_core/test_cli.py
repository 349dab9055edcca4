"""The ``erpx`` command line, driven through Typer's runner against a temporary SQLite file."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from erp_core.cli import app, database_location
from erp_core.db.migrate import head_revision
from erp_core.settings import get_settings

runner = CliRunner()


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """Every test reads its own environment: a SQLite file under tmp_path, nothing inherited."""
    for name in ("ERPX_DATABASE_URL", "ERPX_POLICY_PATH", "ERPX_API_PORT"):
        monkeypatch.delenv(name, raising=False)
    database = tmp_path / "var" / "erpx.db"
    monkeypatch.setenv("ERPX_DATABASE_URL", f"sqlite:///{database}")
    get_settings.cache_clear()
    yield database
    get_settings.cache_clear()


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "init" in result.output
    assert "info" in result.output


def test_init_creates_the_database_and_info_shows_its_tables(fresh_settings: Path) -> None:
    result = runner.invoke(app, ["init"])
    assert result.exit_code == 0, result.output
    assert fresh_settings.is_file()
    assert "created" in result.output
    assert str(fresh_settings) in result.output

    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0, result.output
    assert f"{head_revision()} (head)" in result.output
    for table in ("sales_orders", "order_lines", "inventory_movements", "audit_entries"):
        assert table in result.output
    assert "built-in default" in result.output


def test_init_twice_leaves_the_database_as_it_is() -> None:
    assert runner.invoke(app, ["init"]).exit_code == 0
    result = runner.invoke(app, ["init"])
    assert result.exit_code == 0, result.output
    assert "already up to date" in result.output


def test_info_before_init_says_so_and_creates_nothing(fresh_settings: Path) -> None:
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0, result.output
    assert "not initialised" in result.output
    assert not fresh_settings.exists()


@pytest.mark.parametrize(
    ("variable", "value"),
    [("ERPX_DATABASE_URL", "mysql://x"), ("ERPX_API_PORT", "not-a-port")],
)
def test_a_bad_setting_is_one_line_naming_it_and_exit_code_2(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    result = runner.invoke(app, ["init"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert variable in lines[0]
    assert value in lines[0]
    assert "Traceback" not in result.output


def test_a_malformed_policy_file_is_a_domain_error_with_exit_code_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("roles = 3\n", "utf-8")
    monkeypatch.setenv("ERPX_POLICY_PATH", str(policy))
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 2
    assert "roles" in result.output
    assert "Traceback" not in result.output


def test_database_location_hides_the_password() -> None:
    shown = database_location("postgresql://erpx:s3cret@db.example:5432/erp")
    assert "s3cret" not in shown
    assert "db.example" in shown


def test_the_cli_does_not_import_the_heavy_libraries() -> None:
    code = (
        "import sys, erp_core.cli; "
        "print(sorted({'pandas', 'lightgbm', 'mlflow', 'sklearn'} & set(sys.modules)))"
    )
    imported = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert imported == "[]"


def test_simulate_runs_a_world_and_prints_its_summary(fresh_settings: Path) -> None:
    result = runner.invoke(app, ["simulate", "--profile", "small", "--days", "4", "--seed", "3"])
    assert result.exit_code == 0, result.output
    for shown in ("order lines", "late-delivery rate", "oracle AUC", "truth"):
        assert shown in result.output
    assert fresh_settings.exists()


@pytest.mark.parametrize(
    ("arguments", "named"),
    [(["--profile", "huge"], "profile='huge'"), (["--days", "0"], "days=0")],
)
def test_simulate_refuses_bad_input_with_exit_code_2_and_writes_nothing(
    fresh_settings: Path, arguments: list[str], named: str
) -> None:
    result = runner.invoke(app, ["simulate", *arguments])
    assert result.exit_code == 2
    assert named in result.output
    assert not fresh_settings.exists()
