"""``build_feature_set``: a frame and its manifest for a good request; for a bad one, one error
naming the field and the value, and nothing written."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import InvalidValue
from erp_core.policy import load_policy
from erp_core.services.orders import LineRequest, capture_order
from features.build import build_feature_set
from features.store import read_manifest
from tests.conftest import SALES, T0, stock

CALENDAR = load_policy().calendar
DAY = T0.date()


@pytest.fixture
def one_order(sqlite_world: UnitOfWork, sqlite_url: str) -> str:
    stock(sqlite_world, "WIDGET", "WEST", 10)
    capture_order(
        sqlite_world,
        SALES,
        customer_id="C-GOLD",
        lines=[LineRequest("WIDGET", 2), LineRequest("GADGET", 1)],
        now=T0 + timedelta(minutes=5),
    )
    return sqlite_url


def build(url: str, start: date, end: date, out: Path, name: str = "late_shipment"):
    return build_feature_set(name, url, start, end, out, CALENDAR)


def test_a_build_writes_the_frame_and_its_manifest_and_reports_each_step(
    one_order: str, tmp_path: Path
) -> None:
    steps: list[str] = []
    result = build_feature_set(
        "late_shipment", one_order, DAY, DAY + timedelta(days=1), tmp_path, CALENDAR, steps.append
    )
    assert result.rows == 2
    assert pd.read_parquet(result.frame_path).shape[0] == 2
    assert read_manifest(result.manifest_path)["rows"] == 2
    assert steps == [
        "loading history",
        "computing features",
        "validating and writing",
    ]


@pytest.mark.parametrize(
    ("start", "end", "name", "field", "value"),
    [
        (DAY + timedelta(days=1), DAY, "late_shipment", "start", DAY + timedelta(days=1)),
        (DAY, DAY, "late_shipment", "end", DAY),
        (DAY - timedelta(days=30), DAY, "late_shipment", "window", None),
        (DAY, DAY + timedelta(days=1), "demand_forecast", "set", "demand_forecast"),
    ],
    ids=["start after end", "empty window", "no orders in the window", "unknown set"],
)
def test_bad_requests_are_refused_naming_the_field_and_nothing_is_written(
    one_order: str, tmp_path: Path, start: date, end: date, name: str, field: str, value
) -> None:
    out = tmp_path / "frames"
    with pytest.raises(InvalidValue) as refused:
        build(one_order, start, end, out, name)
    assert refused.value.field == field
    if value is not None:
        assert str(value) in refused.value.message
    assert not out.exists()


def test_a_missing_database_file_is_refused_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.db"
    with pytest.raises(InvalidValue) as refused:
        build(f"sqlite:///{missing}", DAY, DAY + timedelta(days=1), tmp_path / "out")
    assert refused.value.field == "database_url"
    assert not missing.exists()
    assert not (tmp_path / "out").exists()


def test_a_naive_datetime_is_refused_rather_than_guessed(one_order: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidValue) as refused:
        build_feature_set("late_shipment", one_order, datetime(2026, 3, 3), DAY, tmp_path, CALENDAR)
    assert refused.value.field == "start"
