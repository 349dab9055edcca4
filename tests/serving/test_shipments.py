"""POST /v1/shipments/{id}/events: milestones from the warehouse and the carriers, idempotent."""

from __future__ import annotations

from datetime import timedelta

from erp_core.services.fulfilment import pick
from tests.conftest import LOGISTICS
from tests.serving.conftest import NOW, Api


def _picked_shipment(api: Api) -> int:
    order = api.client.post(
        "/v1/orders",
        json={"customer_id": "C-GOLD", "lines": [{"sku": "WIDGET", "quantity": 4}]},
        headers=api.as_role("sales_rep"),
    ).json()
    (line,) = order["lines"]
    result = pick(
        api.uow, LOGISTICS, order_id=order["order_id"], picks={line["line_id"]: 4}, now=NOW
    )
    return result.shipment_id


def _event(api: Api, shipment_id: int, event_type: str, key: str | None = None, **extra):  # type: ignore[no-untyped-def]
    headers = api.as_role("logistics") | ({"Idempotency-Key": key} if key else {})
    body = {"event_type": event_type, "occurred_at": NOW.isoformat()} | extra
    return api.client.post(f"/v1/shipments/{shipment_id}/events", json=body, headers=headers)


def test_milestones_move_the_shipment_to_delivered(api: Api) -> None:
    shipment_id = _picked_shipment(api)
    for event_type, status in (("packed", "packed"), ("shipped", "shipped")):
        response = _event(api, shipment_id, event_type)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == status
    delivered = _event(api, shipment_id, "delivered", details={"freight_cost": "48.00"})
    assert delivered.json()["status"] == "delivered"


def test_a_resent_event_with_its_key_is_recorded_once(api: Api) -> None:
    shipment_id = _picked_shipment(api)
    first = _event(api, shipment_id, "packed", key="carrier-evt-1")
    again = _event(api, shipment_id, "packed", key="carrier-evt-1")
    assert again.status_code == 200
    assert again.json()["replayed"] is True
    assert again.json()["event_id"] == first.json()["event_id"]


def test_an_event_out_of_order_is_a_409(api: Api) -> None:
    shipment_id = _picked_shipment(api)
    response = _event(api, shipment_id, "delivered")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "illegal_transition"


def test_an_event_in_the_future_or_without_a_zone_is_refused_naming_the_field(api: Api) -> None:
    shipment_id = _picked_shipment(api)
    future = _event(api, shipment_id, "packed", occurred_at=(NOW + timedelta(hours=2)).isoformat())
    assert future.status_code == 422
    assert future.json()["error"]["field"] == "occurred_at"
    naive = _event(api, shipment_id, "packed", occurred_at="2026-03-03T09:30:00")
    assert naive.status_code == 422
    assert naive.json()["error"]["field"] == "occurred_at"


def test_a_sales_key_may_not_post_milestones(api: Api) -> None:
    shipment_id = _picked_shipment(api)
    response = api.client.post(
        f"/v1/shipments/{shipment_id}/events",
        json={"event_type": "packed", "occurred_at": NOW.isoformat()},
        headers=api.as_role("sales_rep"),
    )
    assert response.status_code == 403


def test_an_unknown_shipment_is_a_404(api: Api) -> None:
    response = _event(api, 987654, "packed")
    assert response.status_code == 404
