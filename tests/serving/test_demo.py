"""``erpx demo --no-serve``: on an empty folder it simulates the tiniest world training accepts,
trains and promotes the three models (saying so when a gate refused one), prints a working key
per role and two commands with the world's own ids; run again it reuses the world and the
champions and only makes new keys. The parts that do not train are tested on the hand-made world.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from erp_core.db.models import Customer, Product, SalesOrder
from erp_core.db.uow import UnitOfWork
from erp_core.domain.errors import InvalidValue
from erp_core.services.api_keys import IssuedKey, authenticate
from erp_core.services.orders import LineRequest, capture_order
from erp_core.settings import Settings, get_settings
from serving import demo
from serving.cli import app
from tests.conftest import SALES, T0
from tests.e2e.conftest import stocked_world
from training import tracking

runner = CliRunner()
WIDE = {"COLUMNS": "250"}
KEY_LINE = re.compile(r"^\s+(\w+)\s+(demo-\w+-\d+)\s+(erpx_\S+)$", re.MULTILINE)


def _environment(folder: Path) -> dict[str, str]:
    return WIDE | {
        "ERPX_DATABASE_URL": f"sqlite:///{folder / 'erpx.db'}",
        "ERPX_VAR_DIR": str(folder / "var"),
        "ERPX_MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
        "ERPX_MLFLOW_ARTIFACT_ROOT": str(folder / "mlartifacts"),
    }


def _demo(folder: Path, *arguments: str) -> str:
    """``erpx demo --no-serve`` with every ERPX_ path under ``folder``; the output."""
    get_settings.cache_clear()
    try:
        result = runner.invoke(app, ["demo", "--no-serve", *arguments], env=_environment(folder))
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    return result.output


@dataclass(frozen=True)
class DemoRuns:
    folder: Path
    first: str
    second: str

    @property
    def url(self) -> str:
        return f"sqlite:///{self.folder / 'erpx.db'}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRuns]:
    """Two runs on one folder: the first on an empty one (~25 s on 2 cores), then again."""
    folder = tmp_path_factory.mktemp("demo")
    first = _demo(folder, "--days", str(demo.MIN_DAYS))
    second = _demo(folder, "--days", str(demo.MIN_DAYS))
    yield DemoRuns(folder, first, second)
    get_settings.cache_clear()


def _keys(output: str) -> dict[str, tuple[str, str]]:
    return {role: (name, secret) for role, name, secret in KEY_LINE.findall(output)}


def _count(url: str, model: type) -> int:
    uow = UnitOfWork.from_url(url)
    try:
        with uow:
            return int(uow.session.scalar(select(func.count()).select_from(model)) or 0)
    finally:
        uow.engine.dispose()


def test_a_fresh_folder_gets_a_world_and_a_champion_for_each_model(runs: DemoRuns) -> None:
    assert "simulated now" in runs.first
    assert _count(runs.url, SalesOrder) > 0
    tracking.configure(Settings(mlflow_tracking_uri=f"sqlite:///{runs.folder / 'mlflow.db'}"))
    for name in demo.MODELS:
        champion = tracking.version_by_alias(name, tracking.CHAMPION)
        assert champion is not None, name
        assert re.search(rf"model {name}\s+. v{champion.version} \((promoted|forced)\)", runs.first)
        forced = champion.tags.get(demo.PROMOTION_TAG) == demo.WITHOUT_GATE
        assert forced == bool(re.search(rf"model {name}\s+. v\S+ \(forced\)", runs.first))
        if forced:  # said in the summary and again on a line of its own
            assert f"{name}: {demo.WITHOUT_GATE}" in runs.first


def test_every_role_gets_a_key_that_the_api_accepts(runs: DemoRuns) -> None:
    keys = _keys(runs.first)
    uow = UnitOfWork.from_url(runs.url)
    try:
        assert set(keys) == set(uow.policy.roles)
        for role, (name, secret) in keys.items():
            assert name == f"demo-{role}-1"
            actor = authenticate(uow, secret)
            assert actor is not None and actor.role == role
    finally:
        uow.engine.dispose()


def test_the_commands_score_a_real_customer_and_open_the_report_as_html(runs: DemoRuns) -> None:
    keys = _keys(runs.first)
    score, report = [line for line in runs.first.splitlines() if line.startswith("curl ")]
    words = shlex.split(score)
    assert "/v1/orders/score" in score
    body = json.loads(words[words.index("-d") + 1])
    uow = UnitOfWork.from_url(runs.url)
    try:
        with uow:
            assert uow.session.get(Customer, body["customer_id"]) is not None
            skus = [line["sku"] for line in body["lines"]]
            assert len(skus) == 2 and all(uow.session.get(Product, sku) for sku in skus)
    finally:
        uow.engine.dispose()
    assert f"X-API-Key: {keys['sales_rep'][1]}" in words
    assert f"X-API-Key: {keys['planner'][1]}" in shlex.split(report)
    assert "format=html" in report
    assert "http://127.0.0.1:8000/docs" in runs.first


def test_a_second_run_reuses_the_world_and_the_champions_and_makes_new_keys(
    runs: DemoRuns,
) -> None:
    assert "reused:" in runs.second and "simulated now" not in runs.second
    for name in demo.MODELS:
        assert re.search(rf"model {name}\s+. v1 \(reused\)", runs.second), name
    assert {name for name, _ in _keys(runs.second).values()} == {
        f"demo-{role}-2" for role in _keys(runs.first)
    }


def test_the_api_clock_is_the_worlds_last_order_entry(runs: DemoRuns) -> None:
    with_clock = re.search(r"API clock\s+. (\S+) \(the world's last entry\)", runs.first)
    assert with_clock is not None
    uow = UnitOfWork.from_url(runs.url)
    try:
        with uow:
            last = uow.session.scalar(select(func.max(SalesOrder.entered_at)))
    finally:
        uow.engine.dispose()
    assert last is not None and with_clock.group(1).startswith(last.strftime("%Y-%m-%dT%H:%M"))


# --- the parts that do not train ---------------------------------------------------------------


def test_too_few_days_for_training_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    get_settings.cache_clear()
    try:
        arguments = ["demo", "--no-serve", "--days", str(demo.MIN_DAYS - 1)]
        result = runner.invoke(app, arguments, env=_environment(tmp_path))
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2, result.output
    assert "days" in result.output and str(demo.MIN_DAYS) in result.output
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_database_holding_orders_is_reused_not_simulated(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'erpx.db'}"
    uow = stocked_world(url)
    capture_order(uow, SALES, customer_id="C-GOLD", lines=[LineRequest("WIDGET", 4)], now=T0)
    settings = Settings(database_url=url, var_dir=tmp_path / "var")
    seen: list[str] = []
    world = demo.prepare_world(settings, "small", None, 7, seen.append)
    assert not world.simulated
    assert (world.orders, world.lines) == (1, 1)
    assert world.last_entry == T0
    assert _count(url, Product) == 2
    assert not any("simulating" in step for step in seen)
    clock, from_user = demo.api_clock(settings, world)
    assert (clock, from_user) == (T0, False)
    chosen = T0 + timedelta(days=3)
    assert demo.api_clock(settings.model_copy(update={"frozen_now": chosen}), world) == (
        chosen,
        True,
    )
    uow.engine.dispose()


def test_a_database_with_master_data_but_no_orders_is_refused_naming_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'erpx.db'}"
    stocked_world(url).engine.dispose()
    settings = Settings(database_url=url, var_dir=tmp_path / "var")
    with pytest.raises(InvalidValue, match="no orders"):
        demo.prepare_world(settings, "small", None, 7, lambda _step: None)


def test_demo_keys_are_numbered_after_those_of_earlier_runs(tmp_path: Path) -> None:
    uow = stocked_world(f"sqlite:///{tmp_path / 'erpx.db'}")
    first = demo.create_demo_keys(uow, T0)
    again = demo.create_demo_keys(uow, T0)
    assert [k.role for k in first] == list(uow.policy.roles)
    assert {k.name for k in first} == {f"demo-{role}-1" for role in uow.policy.roles}
    assert {k.name for k in again} == {f"demo-{role}-2" for role in uow.policy.roles}
    assert len({k.secret for k in [*first, *again]}) == 2 * len(uow.policy.roles)
    uow.engine.dispose()


def test_the_score_command_carries_valid_json_even_for_odd_ids() -> None:
    keys = [IssuedKey("a", "sales_rep", "erpx_s"), IssuedKey("b", "planner", "erpx_p")]
    score, report = demo.curl_commands("http://h:1", keys, "C-O'Hara", ["SKU-1", 'SKU-"2"'])
    words = shlex.split(score)
    assert json.loads(words[words.index("-d") + 1]) == {
        "customer_id": "C-O'Hara",
        "lines": [{"sku": "SKU-1", "quantity": 2}, {"sku": 'SKU-"2"', "quantity": 2}],
    }
    assert "X-API-Key: erpx_p" in shlex.split(report)
