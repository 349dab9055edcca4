"""The reliability scenarios' database: a private PostgreSQL schema when ERPX_TEST_POSTGRES_URL
is set (as on CI), else a SQLite file; and a live ``erpx serve --workers 2`` over it, whose log
is printed when its test fails."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import POSTGRES_ENV
from tests.e2e.conftest import pytest_runtest_makereport  # noqa: F401  (reports on the item)
from tests.reliability.load import Server, World, prepare_world, warm_up


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if os.environ.get(POSTGRES_ENV):
        return str(request.getfixturevalue("postgres_schema_url"))
    return f"sqlite:///{tmp_path / 'erpx.db'}"


@pytest.fixture
def world(database_url: str) -> World:
    return prepare_world(database_url)


@pytest.fixture
def server(world: World, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Server]:
    """``erpx serve --workers 2`` over the world, stopped (or killed) at the end."""
    live = Server(tmp_path, world.database_url, workers=2)
    live.start()
    try:
        warm_up(live.base_url, world)
        yield live
    finally:
        live.stop()
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            print(f"--- erpx serve log ({live.log_path}) ---\n{live.log()[-20000:]}")
