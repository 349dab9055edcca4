"""GET /metrics: request latency by route template, the scores given, the fallbacks."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.serving.conftest import Api


def _samples(api: Api) -> dict[tuple[str, frozenset], float]:
    response = api.client.get("/metrics", headers=api.as_role("admin"))
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_a_scored_draft_shows_in_latency_scores_and_fallbacks(api: Api) -> None:
    for _ in range(3):
        api.client.post(
            "/v1/orders/score",
            json={"customer_id": "C-GOLD", "lines": [{"sku": "WIDGET", "quantity": 1}]},
            headers=api.as_role("sales_rep"),
        )
    samples = _samples(api)
    route = frozenset({"route": "/v1/orders/score", "method": "POST", "status": "200"}.items())
    assert samples[("erpx_request_seconds_count", route)] == 3
    assert (
        samples[("erpx_fallback_scores_total", frozenset({"kind": "late_shipment"}.items()))] == 3
    )
    late = frozenset({"kind": "late_shipment", "model": "fallback"}.items())
    assert samples[("erpx_score_count", late)] == 3


def test_an_unknown_path_is_counted_as_unmatched_not_by_its_path(api: Api) -> None:
    api.client.get("/no/such/path/12345", headers=api.as_role("admin"))
    names = {labels for (name, labels) in _samples(api) if name == "erpx_request_seconds_count"}
    routes = {dict(labels)["route"] for labels in names}
    assert "unmatched" in routes
    assert not any("12345" in route for route in routes)


def test_metrics_need_a_key(api: Api) -> None:
    assert api.client.get("/metrics").status_code == 401
