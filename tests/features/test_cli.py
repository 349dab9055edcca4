"""``erpx features``: the catalogue, a build with its summary, and bad input refused in one line
with exit code 2 and nothing written. Driven through the composed ``erpx`` command."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from erp_core.settings import get_settings
from features.registry import LATE_SHIPMENT
from serving.cli import app
from tests.features.conftest import SimulatedHistory

runner = CliRunner()
WIDE = {"COLUMNS": "250"}


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in ("ERPX_DATABASE_URL", "ERPX_POLICY_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ERPX_DATABASE_URL", f"sqlite:///{tmp_path / 'absent.db'}")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_list_prints_every_feature_with_its_description_and_marks_the_labels() -> None:
    result = runner.invoke(app, ["features", "list"], env=WIDE)
    assert result.exit_code == 0, result.output
    for spec in LATE_SHIPMENT.features:
        assert spec.name in result.output
    assert "Share of lines shipped from the location" in result.output
    label_rows = [line for line in result.output.splitlines() if "label_late_delivery" in line]
    assert "label" in label_rows[0].split("label_late_delivery")[1]


def test_list_of_an_unknown_set_is_refused_naming_it() -> None:
    result = runner.invoke(app, ["features", "list", "--set", "promotions"])
    assert result.exit_code == 2
    assert "set='promotions'" in result.output


def test_build_writes_the_frame_and_ends_with_a_summary(
    simulated_history: SimulatedHistory, tmp_path: Path
) -> None:
    out = tmp_path / "frames"
    arguments = ["features", "build", "--set", "late_shipment", "--start", "2025-01-06"]
    arguments += ["--end", "2025-02-03", "--out", str(out)]
    arguments += ["--database-url", simulated_history.url]
    result = runner.invoke(app, arguments, env=WIDE)
    assert result.exit_code == 0, result.output
    assert (out / "late_shipment.parquet").is_file()
    assert (out / "late_shipment.manifest.json").is_file()
    for shown in ("feature frame", "rows", "2025-01-06 .. 2025-02-03", "rows/s", "manifest"):
        assert shown in result.output


@pytest.mark.parametrize(
    ("window", "named"),
    [
        (["--start", "2025-02-03", "--end", "2025-01-06"], "start='2025-02-03'"),
        (["--start", "2025-01-06", "--end", "2025-01-06"], "end='2025-01-06'"),
        (["--start", "2024-01-01", "--end", "2024-02-01"], "window='2024-01-01..2024-02-01'"),
    ],
    ids=["start after end", "empty window", "no orders in the window"],
)
def test_bad_windows_are_one_line_naming_the_field_exit_2_and_write_nothing(
    simulated_history: SimulatedHistory, tmp_path: Path, window: list[str], named: str
) -> None:
    out = tmp_path / "frames"
    arguments = ["features", "build", "--set", "late_shipment", *window, "--out", str(out)]
    result = runner.invoke(app, [*arguments, "--database-url", simulated_history.url], env=WIDE)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert named in lines[0]
    assert "Traceback" not in result.output
    assert not out.exists()


def test_an_unknown_set_and_a_malformed_date_are_refused_with_exit_code_2(tmp_path: Path) -> None:
    out = tmp_path / "frames"
    common = ["--start", "2025-01-06", "--end", "2025-02-03", "--out", str(out)]
    unknown = runner.invoke(app, ["features", "build", "--set", "promotions", *common])
    assert unknown.exit_code == 2
    assert "set='promotions'" in unknown.output
    malformed = runner.invoke(
        app, ["features", "build", "--set", "late_shipment", "--start", "2025-13-01", *common[2:]]
    )
    assert malformed.exit_code == 2
    assert "--start" in malformed.output
    assert not out.exists()


def test_a_missing_database_is_named_and_not_created(tmp_path: Path) -> None:
    database = tmp_path / "absent.db"
    window = ["--start", "2025-01-06", "--end", "2025-02-03"]
    arguments = ["features", "build", "--set", "late_shipment", *window]
    result = runner.invoke(app, [*arguments, "--out", str(tmp_path / "frames")], env=WIDE)
    assert result.exit_code == 2
    assert "database_url" in result.output
    assert not database.exists()
