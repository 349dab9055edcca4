"""GET /v1/kpis (the numbers of erp_core.kpis, over HTTP) and the replenishment report's answer
when no demand forecast is in service."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest

from erp_core.kpis import compute_kpis
from serving.routes import reports
from tests.serving.conftest import NOW, Api


def test_kpis_over_http_are_erp_cores_numbers(api: Api) -> None:
    api.client.post(
        "/v1/orders",
        json={"customer_id": "C-GOLD", "lines": [{"sku": "GADGET", "quantity": 25}]},
        headers=api.as_role("sales_rep"),
    )
    start, end = NOW - timedelta(days=1), NOW + timedelta(days=1)
    response = api.client.get(
        "/v1/kpis",
        params={"from": start.isoformat(), "to": end.isoformat()},
        headers=api.as_role("planner"),
    )
    assert response.status_code == 200, response.text
    expected = compute_kpis(api.uow, start, end).as_dict()
    body = response.json()
    assert body["kpis"] == expected["kpis"]
    assert set(body["definitions"]) >= {kpi["name"] for kpi in body["kpis"]}


def test_kpis_by_location_and_plain_dates(api: Api) -> None:
    response = api.client.get(
        "/v1/kpis",
        params={"from": "2026-03-01", "to": "2026-03-08", "by": "location"},
        headers=api.as_role("customer_service"),
    )
    assert response.status_code == 200, response.text
    assert response.json()["group_by"] == "location"


def test_kpis_refuse_a_period_that_ends_before_it_starts(api: Api) -> None:
    response = api.client.get(
        "/v1/kpis", params={"from": "2026-03-08", "to": "2026-03-01"}, headers=api.as_role("admin")
    )
    assert response.status_code == 422
    assert response.json()["error"]["field"] in ("from", "to", "start", "end")


def test_kpis_refuse_an_unknown_grouping_and_a_bad_date(api: Api) -> None:
    unknown = api.client.get(
        "/v1/kpis",
        params={"from": "2026-03-01", "to": "2026-03-08", "by": "planet"},
        headers=api.as_role("admin"),
    )
    assert unknown.status_code == 422
    assert unknown.json()["error"]["field"] == "group_by"
    bad = api.client.get(
        "/v1/kpis", params={"from": "yesterday", "to": "2026-03-08"}, headers=api.as_role("admin")
    )
    assert bad.status_code == 422
    assert bad.json()["error"]["field"].startswith("query.from")


def test_replenishment_without_a_demand_champion_says_so_with_a_503(api: Api) -> None:
    response = api.client.get("/v1/replenishment/recommendations", headers=api.as_role("planner"))
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "model_unavailable"


def test_a_cached_replenishment_report_answers_only_for_the_world_it_was_built_from(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[tuple[str, str | None]] = []

    def build(runtime: SimpleNamespace, location: str | None) -> str:
        built.append((runtime.settings.database_url, location))
        return f"report of {runtime.settings.database_url} at {location}"

    monkeypatch.setattr(reports, "_build", build)
    cache = reports._ReportCache()
    north, south = (
        SimpleNamespace(
            settings=SimpleNamespace(
                database_url=f"sqlite:///{name}.db", mlflow_tracking_uri=f"sqlite:///{name}-ml.db"
            )
        )
        for name in ("north", "south")
    )
    assert cache.get(north, None) == "report of sqlite:///north.db at None"
    assert cache.get(south, None) == "report of sqlite:///south.db at None"
    assert cache.get(north, "DC-1") == "report of sqlite:///north.db at DC-1"
    assert cache.get(north, None) == "report of sqlite:///north.db at None"  # from the cache
    assert built == [
        ("sqlite:///north.db", None),
        ("sqlite:///south.db", None),
        ("sqlite:///north.db", "DC-1"),
    ]
