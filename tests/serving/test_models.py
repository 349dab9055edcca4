"""Serving the registry's champions: a simulated small world, the late-shipment and margin models
trained on it by the real jobs and registered in a real MLflow store, then served.

What is proved: a draft is scored by the champion (its name, version and reasons from the
booster's own contributions), a price typed 10x is flagged by the margin champion with its
reason, the scores of a captured order name the version, a reload that meets a corrupted
artefact keeps the serving version, and with no champion the fallback answers and /readyz says
degraded.
"""

from __future__ import annotations

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
from erp_core.simulate.run import simulate
from serving.app import create_app
from serving.models import LATE_SHIPMENT, MARGIN_ANOMALY, ModelSet, load_models
from serving.runtime import build_runtime
from tests.conftest import mlflow_store
from tests.serving.conftest import keys_for_every_role
from training import tracking
from training.frames import SplitPlan
from training.jobs import train_late_shipment
from training.margin_job import train_margin_anomaly

PLAN = SplitPlan(validation_days=14, calibration_days=14, test_days=21, min_train_days=28)


@dataclass(frozen=True)
class Registry:
    settings: Settings
    versions: dict[str, str]
    folder: Path


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    folder = tmp_path_factory.mktemp("served-world")
    base = Settings(
        database_url=f"sqlite:///{folder / 'world.db'}",
        var_dir=folder,
        mlflow_tracking_uri=mlflow_store(folder),
        mlflow_artifact_root=str(folder / "mlartifacts"),
    )
    simulate(base, "small", days=120, seed=7)
    calendar = load_policy().calendar
    late = train_late_shipment(base, calendar, plan=PLAN, seed=7)
    margin = train_margin_anomaly(base, calendar, plan=PLAN, seed=7)
    # Made champions by hand: the gate's judgement is the training tests' subject, not this.
    tracking.set_alias(LATE_SHIPMENT, tracking.CHAMPION, late.version)
    tracking.set_alias(MARGIN_ANOMALY, tracking.CHAMPION, margin.version)
    with sqlite3.connect(folder / "world.db") as db:
        (last,) = db.execute("SELECT max(entered_at) FROM sales_orders").fetchone()
    frozen = datetime.fromisoformat(last).replace(tzinfo=UTC)
    settings = base.model_copy(update={"frozen_now": frozen, "api_key_cache_seconds": 0})
    return Registry(settings, {LATE_SHIPMENT: late.version, MARGIN_ANOMALY: margin.version}, folder)


@dataclass
class Served:
    client: TestClient
    keys: dict[str, str]
    customer: str
    skus: list[str]

    def headers(self, role: str = "sales_rep") -> dict[str, str]:
        return {"X-API-Key": self.keys[role]}


def _serve(registry: Registry, models: ModelSet | None) -> Iterator[Served]:
    uow = UnitOfWork.from_url(registry.settings.database_url)
    keys = keys_for_every_role_once(uow)
    with sqlite3.connect(registry.folder / "world.db") as db:
        (customer,) = db.execute(
            "SELECT customer_id FROM sales_orders GROUP BY customer_id ORDER BY count(*) DESC"
        ).fetchone()
        skus = [row[0] for row in db.execute("SELECT sku FROM products ORDER BY sku LIMIT 3")]
    runtime = build_runtime(registry.settings, models=models)
    with TestClient(create_app(registry.settings, runtime)) as client:
        yield Served(client, keys, customer, skus)


_KEYS: dict[str, dict[str, str]] = {}


def keys_for_every_role_once(uow: UnitOfWork) -> dict[str, str]:
    url = str(uow.engine.url)
    if url not in _KEYS:
        _KEYS[url] = keys_for_every_role(uow)
    return _KEYS[url]


@pytest.fixture(scope="module")
def served(registry: Registry) -> Iterator[Served]:
    yield from _serve(registry, None)


def _draft(served: Served) -> dict:
    lines: list[dict] = [{"sku": sku, "quantity": 2} for sku in served.skus]
    return {"customer_id": served.customer, "lines": lines}


def test_a_draft_is_scored_by_the_late_shipment_champion_with_its_reasons(
    served: Served, registry: Registry
) -> None:
    response = served.client.post("/v1/orders/score", json=_draft(served), headers=served.headers())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["models"][LATE_SHIPMENT] == registry.versions[LATE_SHIPMENT]
    scored = [line for line in body["lines"] if line["late_risk"] is not None]
    assert scored
    for line in scored:
        risk = line["late_risk"]
        assert risk["model"] == LATE_SHIPMENT
        assert risk["version"] == registry.versions[LATE_SHIPMENT]
        assert 0.0 <= risk["probability"] <= 1.0
        # Reasons are the features with the largest positive contributions, largest first.
        contributions = [reason["contribution"] for reason in risk["reasons"]]
        assert contributions == sorted(contributions, reverse=True)
        assert all(c > 0 for c in contributions)


def test_a_price_typed_ten_times_too_high_is_flagged_by_the_margin_champion(
    served: Served, registry: Registry
) -> None:
    plain = served.client.post(
        "/v1/orders/score", json=_draft(served), headers=served.headers()
    ).json()
    list_price = float(plain["lines"][0]["unit_price"])
    typo = _draft(served)
    typo["lines"][0]["unit_price"] = f"{list_price * 10:.2f}"
    body = served.client.post("/v1/orders/score", json=typo, headers=served.headers()).json()
    margin = body["lines"][0]["margin"]
    assert margin["model"] == MARGIN_ANOMALY
    assert margin["version"] == registry.versions[MARGIN_ANOMALY]
    assert margin["over_threshold"] is True
    assert margin["score"] > plain["lines"][0]["margin"]["score"]
    assert "x" in margin["reason"]


def test_readyz_is_ready_with_both_champions_and_models_lists_them(
    served: Served, registry: Registry
) -> None:
    ready = served.client.get("/readyz").json()
    assert ready["status"] == "ready", ready
    listed = served.client.get("/v1/models", headers=served.headers("planner")).json()
    for name, version in registry.versions.items():
        assert listed[name]["serving"] == version
        assert listed[name]["champion"]["window"]
        assert listed[name]["champion"]["test_metrics"]


def test_a_reload_that_meets_a_corrupted_artefact_keeps_the_serving_version(
    registry: Registry, tmp_path: Path
) -> None:
    served_models = load_models(registry.settings)
    champion = served_models.champions[LATE_SHIPMENT]
    artefacts = registry.folder / "mlartifacts"
    backup = tmp_path / "backup"
    shutil.copytree(artefacts, backup)
    try:
        for pickled in artefacts.rglob("*.pkl"):
            pickled.write_bytes(b"not a pickle")
        reloaded = load_models(registry.settings, previous=served_models)
    finally:
        shutil.rmtree(artefacts)
        shutil.copytree(backup, artefacts)
    assert reloaded.champions[LATE_SHIPMENT] is champion
    assert "failed to load" in reloaded.problems[LATE_SHIPMENT]
    assert "kept in service" in reloaded.problems[LATE_SHIPMENT]


def test_without_champions_the_fallback_answers_and_readyz_says_degraded(
    registry: Registry,
) -> None:
    for served in _serve(registry, ModelSet(problems={LATE_SHIPMENT: "no champion registered"})):
        body = served.client.post(
            "/v1/orders/score", json=_draft(served), headers=served.headers()
        ).json()
        assert body["models"] == {LATE_SHIPMENT: "fallback", MARGIN_ANOMALY: "rules"}
        ready = served.client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "degraded"
        assert "no champion registered" in ready.json()["checks"][LATE_SHIPMENT]


def test_the_admin_reload_answers_what_it_loaded(served: Served, registry: Registry) -> None:
    response = served.client.post("/v1/models/reload", headers=served.headers("admin"))
    assert response.status_code == 200, response.text
    assert response.json()["after"] == registry.versions
    refused = served.client.post("/v1/models/reload", headers=served.headers("planner"))
    assert refused.status_code == 403


def test_a_challenger_scores_a_captured_order_in_the_shadow(registry: Registry) -> None:
    from dataclasses import replace

    from sqlalchemy import select

    from erp_core.db.models import ExceptionCase, RiskScore

    champions = load_models(registry.settings)
    late = champions.champions[LATE_SHIPMENT]
    challenger = replace(late, alias="challenger", version="shadow-test")
    models = replace(champions, challengers={LATE_SHIPMENT: challenger})
    for served in _serve(registry, models):
        created = served.client.post(
            "/v1/orders", json=_draft(served), headers=served.headers()
        ).json()
        uow = UnitOfWork.from_url(registry.settings.database_url)
        with uow:
            scores = list(
                uow.session.scalars(
                    select(RiskScore).where(RiskScore.order_id == created["order_id"])
                )
            )
            shadow_cases = uow.session.scalars(
                select(ExceptionCase.id).where(
                    ExceptionCase.id.in_([s.exception_id for s in scores if s.exception_id])
                )
            ).all()
    shadow = [s for s in scores if s.purpose == "shadow"]
    captured = [s for s in scores if s.purpose == "capture" and s.kind == "late_shipment"]
    assert shadow and {s.model_version for s in shadow} == {"shadow-test"}
    assert {s.line_id for s in shadow} == {s.line_id for s in captured}
    assert all(s.exception_id is None for s in shadow)
    assert len(shadow_cases) == len([s for s in captured if s.exception_id])


def test_reasons_come_for_risky_lines_by_default_and_for_every_line_on_request(
    served: Served,
) -> None:
    half_threshold = load_policy().late_risk_probability / 2
    default = served.client.post(
        "/v1/orders/score", json=_draft(served), headers=served.headers()
    ).json()
    every = served.client.post(
        "/v1/orders/score?explain=all", json=_draft(served), headers=served.headers()
    ).json()
    for risky, full in zip(default["lines"], every["lines"], strict=True):
        if risky["late_risk"] is None:
            continue
        assert risky["late_risk"]["probability"] == full["late_risk"]["probability"]
        assert full["late_risk"]["explained"] is True
        assert risky["late_risk"]["explained"] is (
            risky["late_risk"]["probability"] >= half_threshold
        )
        if risky["late_risk"]["explained"]:
            assert risky["late_risk"]["reasons"] == full["late_risk"]["reasons"]
        else:
            assert risky["late_risk"]["reasons"] == []
    bad = served.client.post(
        "/v1/orders/score?explain=some", json=_draft(served), headers=served.headers()
    )
    assert bad.status_code == 422


def test_the_served_margin_score_is_the_models_own_score_of_the_pricing_frame(
    registry: Registry,
) -> None:
    """serving builds the model's frame from arrays (text kept as objects); the numbers must
    be those of the pricing index's own frame."""
    import numpy as np

    from erp_core.services.orders import LineRequest
    from erp_core.services.quotes import quote_order
    from serving.lines import draft_of
    from serving.margin import score_margin
    from serving.views import view_of_quote
    from training.margin_anomaly import APPROVAL_COLUMN

    runtime = build_runtime(registry.settings)
    champion = runtime.models.champions[MARGIN_ANOMALY]
    with sqlite3.connect(registry.folder / "world.db") as db:
        customers = [r[0] for r in db.execute("SELECT id FROM customers ORDER BY id LIMIT 5")]
        skus = [r[0] for r in db.execute("SELECT sku FROM products ORDER BY sku LIMIT 8")]
    for customer in customers:
        lines = [LineRequest(sku, 1 + i) for i, sku in enumerate(skus)]
        lines[0] = LineRequest(skus[0], 3, "999.00")  # a typed price, far off the list
        quote = quote_order(runtime.reader(), customer_id=customer, lines=lines, now=runtime.now())
        view = view_of_quote(quote, runtime.now())
        served = [m.score for m in score_margin(view, runtime.pricing, champion, runtime.policy)]
        frame = runtime.pricing.features(draft_of(view))
        frame[APPROVAL_COLUMN] = [line.price_approval_pending for line in view.lines]
        expected = champion.estimator.anomaly_score(frame)
        np.testing.assert_allclose(served, np.round(expected, 6), rtol=0, atol=1e-12)
