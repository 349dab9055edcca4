"""The Dask engine: on a LocalCluster (2 in-process workers) the late-shipment frame of the small
simulated world is the pandas frame bit for bit, rows at chunk boundaries included; a bad engine
or an unreachable scheduler is refused naming the field and nothing is written."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster
from typer.testing import CliRunner

import features.dask_engine as dask_engine
from erp_core.domain.errors import InvalidValue
from erp_core.policy import load_policy
from erp_core.settings import get_settings
from features.build import build_feature_set
from features.dask_engine import (
    as_datetime,
    chunk_frame,
    dask_frame,
    history_before,
    time_chunks,
)
from features.history import History, load_history
from features.late_shipment import late_shipment_frame, to_micros
from features.registry import LATE_SHIPMENT
from features.store import read_manifest
from serving.cli import app
from tests.features.conftest import SimulatedHistory

CALENDAR = load_policy().calendar
NOWHERE = "tcp://127.0.0.1:9"
"""The discard port: nothing listens there."""

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=False,
        protocol="tcp",
        host="127.0.0.1",
        dashboard_address=None,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def client(cluster: LocalCluster) -> Iterator[Client]:
    with Client(cluster) as connected:
        yield connected


@pytest.fixture(scope="module")
def history(simulated_history: SimulatedHistory) -> History:
    return load_history(simulated_history.url)


@pytest.fixture(scope="module")
def pandas_frame(history: History, simulated_history: SimulatedHistory) -> pd.DataFrame:
    return late_shipment_frame(history, simulated_history.start, simulated_history.end, CALENDAR)


@pytest.fixture
def quick_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dask_engine, "CONNECT_TIMEOUT", "1s")


def test_the_dask_frame_is_the_pandas_frame_bit_for_bit(
    client: Client,
    history: History,
    pandas_frame: pd.DataFrame,
    simulated_history: SimulatedHistory,
) -> None:
    start, end = simulated_history.start, simulated_history.end
    frame = dask_frame(LATE_SHIPMENT, history, start, end, CALENDAR, client)
    assert len(pandas_frame) > 500
    pd.testing.assert_frame_equal(frame, pandas_frame, check_exact=True)


def test_more_chunks_than_workers_give_the_same_frame(
    client: Client,
    history: History,
    pandas_frame: pd.DataFrame,
    simulated_history: SimulatedHistory,
) -> None:
    start, end = simulated_history.start, simulated_history.end
    frame = dask_frame(LATE_SHIPMENT, history, start, end, CALENDAR, client, chunks=7)
    pd.testing.assert_frame_equal(frame, pandas_frame, check_exact=True)


def test_chunks_cover_the_window_and_cut_only_between_moments() -> None:
    entered = np.array([10, 10, 10, 20, 30, 30, 30, 30, 40, 50], dtype=np.int64)
    # The quarter points fall on 10, 30 and 30 again: the three lines at 10 and the four at 30
    # each open a chunk whole, and the repeated cut collapses.
    assert time_chunks(entered, 0, 100, 4) == [(0, 10), (10, 30), (30, 100)]
    assert time_chunks(entered, 0, 100, 1) == [(0, 100)]
    assert time_chunks(entered, 60, 100, 4) == [(60, 100)]


def test_chunks_cut_at_multi_line_orders_see_what_the_whole_window_sees(
    history: History, pandas_frame: pd.DataFrame, simulated_history: SimulatedHistory
) -> None:
    """Cut exactly at the entry moments of orders of several lines: those lines open their chunk,
    must not see each other (stock, backlog, order totals as in one build), and their trailing
    windows reach back across the cut into history the chunk's own rows do not cover."""
    lines = pandas_frame.groupby("order_id")["line_id"].count()
    orders = lines[lines >= 3].index
    moments = pandas_frame.loc[pandas_frame["order_id"].isin(orders), "entered_at"]
    moments = sorted(set(moments))
    cuts = [to_micros(moment.to_pydatetime()) for moment in moments[5::12][:6]]
    assert len(cuts) >= 3
    edges = [to_micros(simulated_history.start), *cuts, to_micros(simulated_history.end)]
    parts = [
        chunk_frame(late_shipment_frame, history, lo, hi, CALENDAR) for lo, hi in pairwise(edges)
    ]
    for cut, part in zip(cuts, parts[1:], strict=True):
        opening = part.loc[part["entered_at"] == as_datetime(cut)]
        assert opening["order_lines"].max() >= 3
        assert (opening["location_shipped_lines_56d"] > 0).any()
    whole = dask_engine.in_pandas_order(pd.concat(parts), history, LATE_SHIPMENT)
    pd.testing.assert_frame_equal(whole, pandas_frame, check_exact=True)


def test_history_before_drops_only_what_no_row_before_the_end_can_use(
    history: History, simulated_history: SimulatedHistory
) -> None:
    end = to_micros(simulated_history.cut)
    before = history_before(history, end)
    assert before.lines["entered_at"].max() < end
    assert before.stock_moves["occurred_at"].max() < end
    assert len(before.lines) < len(history.lines)
    assert (before.milestones["known_at"] >= end).any()  # labels come after t by nature
    start = simulated_history.start
    pd.testing.assert_frame_equal(
        late_shipment_frame(before, start, simulated_history.cut, CALENDAR),
        late_shipment_frame(history, start, simulated_history.cut, CALENDAR),
        check_exact=True,
    )


def test_a_dask_build_writes_the_pandas_frame_and_records_its_engine(
    cluster: LocalCluster, simulated_history: SimulatedHistory, tmp_path: Path
) -> None:
    window = (simulated_history.start.date(), simulated_history.cut.date())
    on_pandas = build_feature_set(
        "late_shipment", simulated_history.url, *window, tmp_path / "pandas", CALENDAR
    )
    steps: list[str] = []
    on_dask = build_feature_set(
        "late_shipment",
        simulated_history.url,
        *window,
        tmp_path / "dask",
        CALENDAR,
        steps.append,
        engine="dask",
        scheduler=cluster.scheduler_address,
    )
    assert steps[0] == "connecting to the Dask scheduler"
    pd.testing.assert_frame_equal(
        pd.read_parquet(on_dask.frame_path),
        pd.read_parquet(on_pandas.frame_path),
        check_exact=True,
    )
    assert read_manifest(on_dask.manifest_path)["engine"] == "dask"
    assert read_manifest(on_pandas.manifest_path)["engine"] == "pandas"


@pytest.mark.slow
def test_without_a_scheduler_a_local_cluster_of_worker_processes_runs_for_the_build(
    simulated_history: SimulatedHistory, tmp_path: Path
) -> None:
    """The path a user without a cluster takes: 2 worker processes, so the history and the rows
    really cross process boundaries (pickled), and the cluster is closed after the build."""
    window = (simulated_history.start.date(), simulated_history.cut.date())
    steps: list[str] = []
    on_dask = build_feature_set(
        "late_shipment",
        simulated_history.url,
        *window,
        tmp_path / "dask",
        CALENDAR,
        steps.append,
        engine="dask",
    )
    assert steps[0] == "starting a local Dask cluster"
    on_pandas = build_feature_set(
        "late_shipment", simulated_history.url, *window, tmp_path / "pandas", CALENDAR
    )
    pd.testing.assert_frame_equal(
        pd.read_parquet(on_dask.frame_path),
        pd.read_parquet(on_pandas.frame_path),
        check_exact=True,
    )


@pytest.mark.parametrize(
    ("engine", "scheduler", "field"),
    [
        ("spark", None, "engine"),
        ("pandas", "tcp://127.0.0.1:8786", "scheduler"),
        ("dask", NOWHERE, "scheduler"),
        ("dask", "not an address", "scheduler"),
    ],
    ids=["unknown engine", "scheduler without dask", "nothing listens", "malformed address"],
)
@pytest.mark.usefixtures("quick_timeout")
def test_a_bad_engine_or_scheduler_is_refused_and_nothing_is_written(
    simulated_history: SimulatedHistory,
    tmp_path: Path,
    engine: str,
    scheduler: str | None,
    field: str,
) -> None:
    out = tmp_path / "frames"
    with pytest.raises(InvalidValue) as refused:
        build_feature_set(
            "late_shipment",
            simulated_history.url,
            simulated_history.start.date(),
            simulated_history.cut.date(),
            out,
            CALENDAR,
            engine=engine,
            scheduler=scheduler,
        )
    assert refused.value.field == field
    assert repr(scheduler if field == "scheduler" else engine) in refused.value.message
    assert not out.exists()


# --- through the command line --------------------------------------------------------------------

runner = CliRunner()


@pytest.fixture
def settings_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.delenv("ERPX_POLICY_PATH", raising=False)
    monkeypatch.setenv("ERPX_DATABASE_URL", f"sqlite:///{tmp_path / 'absent.db'}")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def cli_build(simulated_history: SimulatedHistory, out: Path, *options: str):
    return runner.invoke(
        app,
        [
            "features",
            "build",
            "--set",
            "late_shipment",
            "--start",
            simulated_history.start.date().isoformat(),
            "--end",
            simulated_history.cut.date().isoformat(),
            "--out",
            str(out),
            "--database-url",
            simulated_history.url,
            *options,
        ],
        env={"COLUMNS": "250"},
    )


@pytest.mark.usefixtures("settings_from_env")
def test_the_cli_builds_on_a_scheduler_and_says_so(
    cluster: LocalCluster, simulated_history: SimulatedHistory, tmp_path: Path
) -> None:
    address = cluster.scheduler_address
    result = cli_build(simulated_history, tmp_path, "--engine", "dask", "--scheduler", address)
    assert result.exit_code == 0, result.output
    assert f"dask at {address}" in result.output
    assert read_manifest(tmp_path / "late_shipment.manifest.json")["engine"] == "dask"


@pytest.mark.usefixtures("settings_from_env", "quick_timeout")
@pytest.mark.parametrize(
    ("options", "shown"),
    [
        (("--engine", "spark"), "engine='spark'"),
        (("--engine", "dask", "--scheduler", NOWHERE), f"scheduler='{NOWHERE}'"),
    ],
    ids=["unknown engine", "unreachable scheduler"],
)
def test_the_cli_refuses_a_bad_engine_or_scheduler_with_exit_code_2(
    simulated_history: SimulatedHistory, tmp_path: Path, options: tuple[str, ...], shown: str
) -> None:
    out = tmp_path / "frames"
    result = cli_build(simulated_history, out, *options)
    assert result.exit_code == 2, result.output
    assert shown in result.output
    assert "Traceback" not in result.output
    assert not out.exists()
