"""Model faults. tests/serving/test_models.py already proves, on ``load_models`` itself, that a
corrupted artefact keeps the serving version, and, with a ModelSet handed in, that the fallback
answers and /readyz says degraded. What is added here goes through the API and a real registry:

- an empty registry at start (no ModelSet handed in): the fallback scores, /readyz is degraded
  and names why, and a reload changes nothing;
- (slow: a champion is trained first) the champion's artefact deleted, or replaced by a valid
  pickle of the wrong object, before ``POST /v1/models/reload``: the reload keeps the version in
  service and says why, and that version goes on scoring; a process started while the artefact
  is missing serves the fallback and /readyz names the failed load.

The reload answers 200 with the refusal in ``problems`` (the route's documented behaviour:
"a champion that fails to load is refused and the version serving now keeps serving").
"""

from __future__ import annotations

import pickle
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from erp_core.db.uow import UnitOfWork
from erp_core.policy import load_policy
from erp_core.settings import Settings
from serving.app import create_app
from serving.models import LATE_SHIPMENT
from serving.runtime import build_runtime
from tests.e2e.conftest import NOW
from tests.reliability.load import empty_registry, prepare_world
from tests.serving.conftest import keys_for_every_role

DRAFT = {"customer_id": "C-GOLD", "lines": [{"sku": "WIDGET", "quantity": 2}]}


def test_an_empty_registry_serves_the_fallback_and_readyz_says_degraded(tmp_path: Path) -> None:
    world = prepare_world(f"sqlite:///{tmp_path / 'erpx.db'}")
    shutil.copyfile(empty_registry(), tmp_path / "mlflow.db")
    settings = Settings(
        database_url=world.database_url,
        frozen_now=NOW,
        var_dir=tmp_path,
        mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        mlflow_artifact_root=str(tmp_path / "mlartifacts"),
        api_key_cache_seconds=0,
    )
    runtime = build_runtime(settings)  # the models from the registry, as a worker loads them
    try:
        with TestClient(create_app(settings, runtime)) as client:
            sales = {"X-API-Key": world.keys["sales_rep"]}
            scored = client.post("/v1/orders/score", json=DRAFT, headers=sales)
            assert scored.status_code == 200, scored.text
            assert scored.json()["models"][LATE_SHIPMENT] == "fallback"
            assert scored.json()["lines"][0]["late_risk"]["model"] == "fallback"
            ready = client.get("/readyz")
            assert ready.status_code == 200
            assert ready.json()["status"] == "degraded"
            assert "no champion registered" in ready.json()["checks"][LATE_SHIPMENT]
            reload = client.post("/v1/models/reload", headers={"X-API-Key": world.keys["admin"]})
            assert reload.status_code == 200, reload.text
            assert reload.json()["after"] == {}
            assert "no champion registered" in reload.json()["problems"][LATE_SHIPMENT]
    finally:
        runtime.engine.dispose()


# --- with a trained champion (slow) -------------------------------------------------------------


@dataclass(frozen=True)
class Champion:
    settings: Settings
    version: str
    artefacts: Path
    keys: dict[str, str]
    customer: str
    sku: str


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory) -> Champion:
    from erp_core.simulate.run import simulate
    from training import tracking
    from training.frames import SplitPlan
    from training.jobs import train_late_shipment

    folder = tmp_path_factory.mktemp("champion")
    settings = Settings(
        database_url=f"sqlite:///{folder / 'world.db'}",
        var_dir=folder,
        mlflow_tracking_uri=f"sqlite:///{folder / 'mlflow.db'}",
        mlflow_artifact_root=str(folder / "mlartifacts"),
        api_key_cache_seconds=0,
    )
    simulate(settings, "small", days=120, seed=7)
    plan = SplitPlan(validation_days=14, calibration_days=14, test_days=21, min_train_days=28)
    trained = train_late_shipment(settings, load_policy().calendar, plan=plan, seed=7)
    tracking.set_alias(LATE_SHIPMENT, tracking.CHAMPION, trained.version)
    with sqlite3.connect(folder / "world.db") as db:
        (last,) = db.execute("SELECT max(entered_at) FROM sales_orders").fetchone()
        (customer,) = db.execute("SELECT customer_id FROM sales_orders LIMIT 1").fetchone()
        (sku,) = db.execute("SELECT sku FROM order_lines LIMIT 1").fetchone()
    frozen = datetime.fromisoformat(last).replace(tzinfo=UTC)
    uow = UnitOfWork.from_url(settings.database_url)
    keys = keys_for_every_role(uow)
    uow.engine.dispose()
    return Champion(
        settings.model_copy(update={"frozen_now": frozen}),
        trained.version,
        folder / "mlartifacts",
        keys,
        customer,
        sku,
    )


@pytest.fixture
def client(champion: Champion) -> Iterator[TestClient]:
    runtime = build_runtime(champion.settings)
    try:
        with TestClient(create_app(champion.settings, runtime)) as served:
            yield served
    finally:
        runtime.engine.dispose()


@pytest.fixture
def broken_artefacts(champion: Champion, tmp_path: Path) -> Iterator[Path]:
    """The artefact folder, restored as it was after the test."""
    backup = tmp_path / "backup"
    shutil.copytree(champion.artefacts, backup)
    try:
        yield champion.artefacts
    finally:
        shutil.rmtree(champion.artefacts, ignore_errors=True)
        shutil.copytree(backup, champion.artefacts)


def _scored_by(client: TestClient, champion: Champion) -> str:
    body = {"customer_id": champion.customer, "lines": [{"sku": champion.sku, "quantity": 2}]}
    response = client.post(
        "/v1/orders/score", json=body, headers={"X-API-Key": champion.keys["sales_rep"]}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["models"][LATE_SHIPMENT])


def _reload(client: TestClient, champion: Champion) -> dict:
    response = client.post("/v1/models/reload", headers={"X-API-Key": champion.keys["admin"]})
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["deleted", "wrong_object"])
def test_a_reload_over_a_broken_artefact_keeps_the_champion_serving(
    champion: Champion, client: TestClient, broken_artefacts: Path, fault: str
) -> None:
    assert _scored_by(client, champion) == champion.version
    pickles = list(broken_artefacts.rglob("*.pkl"))
    assert pickles, "the champion's artefact"
    if fault == "deleted":
        for path in broken_artefacts.iterdir():
            shutil.rmtree(path)
    else:  # a valid pickle of something that is not the model
        for path in pickles:
            path.write_bytes(pickle.dumps({"not": "a model"}))
    answer = _reload(client, champion)
    assert answer["after"][LATE_SHIPMENT] == champion.version
    problem = answer["problems"][LATE_SHIPMENT]
    assert "failed to load" in problem and "kept in service" in problem, problem
    assert _scored_by(client, champion) == champion.version
    ready = client.get("/readyz").json()
    assert ready["checks"][LATE_SHIPMENT] == f"champion v{champion.version}"


@pytest.mark.slow
def test_a_process_started_over_a_missing_artefact_serves_the_fallback_and_says_why(
    champion: Champion, broken_artefacts: Path
) -> None:
    for path in broken_artefacts.iterdir():
        shutil.rmtree(path)
    runtime = build_runtime(champion.settings)
    try:
        with TestClient(create_app(champion.settings, runtime)) as served:
            assert _scored_by(served, champion) == "fallback"
            ready = served.get("/readyz").json()
            assert ready["status"] == "degraded"
            assert "failed to load" in ready["checks"][LATE_SHIPMENT], ready
    finally:
        runtime.engine.dispose()
