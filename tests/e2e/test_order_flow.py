"""One order through a real uvicorn process over HTTP: captured with a backordered line, its
shortage routed to the planner, refused to logistics and resolved by the planner; the allocated
line picked in the warehouse, its milestones posted (a carrier's retry replayed), and the day's
KPIs read back as erp_core computes them from the same database."""

from __future__ import annotations

from datetime import timedelta

import httpx

from erp_core.kpis import compute_kpis
from erp_core.services.fulfilment import pick
from tests.conftest import LOGISTICS
from tests.e2e.conftest import NOW, LiveServer

DAY = NOW.replace(hour=0, minute=0)


def _capture(server: LiveServer) -> dict:
    """C-GOLD orders 4 WIDGET (100 at WEST: allocated) and 25 GADGET (10 at WEST, no split:
    backordered, a shortage for the planner)."""
    response = server.client.post(
        "/v1/orders",
        json={
            "customer_id": "C-GOLD",
            "lines": [{"sku": "WIDGET", "quantity": 4}, {"sku": "GADGET", "quantity": 25}],
            "allow_split": False,
            "external_ref": "E2E-1",
        },
        headers=server.as_role("sales_rep") | {"Idempotency-Key": "e2e-order-1"},
    )
    assert response.status_code == 201, response.text
    return response.json()


def _open_cases(server: LiveServer, role: str) -> list[dict]:
    response = server.client.get(
        "/v1/exceptions", params={"owner_role": role}, headers=server.as_role(role)
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]


def _event(
    server: LiveServer, shipment_id: int, event_type: str, **extra: object
) -> httpx.Response:
    body = {"event_type": event_type, "occurred_at": NOW.isoformat()} | extra
    return server.client.post(
        f"/v1/shipments/{shipment_id}/events",
        json=body,
        headers=server.as_role("logistics") | {"Idempotency-Key": f"e2e-{event_type}"},
    )


def test_an_order_goes_from_capture_through_its_exception_to_delivery_and_the_kpis(
    server: LiveServer,
) -> None:
    order = _capture(server)
    states = {line["sku"]: line["state"] for line in order["lines"]}
    assert states == {"WIDGET": "allocated", "GADGET": "backordered"}
    widget = next(line for line in order["lines"] if line["sku"] == "WIDGET")

    # The backorder's shortage case is in the planner's queue, linked to the order.
    shortages = [
        case
        for case in _open_cases(server, "planner")
        if case["type"] == "shortage" and case["order_id"] == order["order_id"]
    ]
    assert len(shortages) == 1, shortages
    (case,) = shortages
    assert case["owner_role"] == "planner"
    assert case["id"] in order["exception_ids"]

    # Logistics may not close the planner's case; the planner may, and it leaves the queue.
    resolution = {"resolution": "customer_accepted_new_date", "note": "GADGET next week"}
    refused = server.client.post(
        f"/v1/exceptions/{case['id']}/resolve", json=resolution, headers=server.as_role("logistics")
    )
    assert refused.status_code == 403, refused.text
    resolved = server.client.post(
        f"/v1/exceptions/{case['id']}/resolve", json=resolution, headers=server.as_role("planner")
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["status"] == "resolved"
    assert case["id"] not in {c["id"] for c in _open_cases(server, "planner")}

    # The warehouse picks the allocated line (no pick endpoint: the service, same database).
    picked = pick(
        server.uow,
        LOGISTICS,
        order_id=order["order_id"],
        picks={widget["line_id"]: widget["quantity"]},
        now=NOW,
    )
    packed = _event(server, picked.shipment_id, "packed")
    assert packed.status_code == 200, packed.text
    assert packed.json()["replayed"] is False
    retried = _event(server, picked.shipment_id, "packed")
    assert retried.status_code == 200, retried.text
    assert retried.json()["replayed"] is True
    assert retried.json()["event_id"] == packed.json()["event_id"]
    assert _event(server, picked.shipment_id, "shipped").json()["status"] == "shipped"
    delivered = _event(server, picked.shipment_id, "delivered", details={"freight_cost": "48.00"})
    assert delivered.status_code == 200, delivered.text
    assert delivered.json()["status"] == "delivered"

    # The day's KPIs over HTTP are erp_core's own: shipped and delivered on the same day as
    # promised (ship today, deliver by tomorrow), in full.
    period = {"from": DAY.date().isoformat(), "to": (DAY + timedelta(days=1)).date().isoformat()}
    response = server.client.get("/v1/kpis", params=period, headers=server.as_role("planner"))
    assert response.status_code == 200, response.text
    served = {kpi["name"]: kpi for kpi in response.json()["kpis"]}
    expected = compute_kpis(server.uow, DAY, DAY + timedelta(days=1))
    for name in ("on_time_shipment", "otif"):
        kpi = expected.kpi(name)
        assert (served[name]["value"], served[name]["numerator"], served[name]["denominator"]) == (
            kpi.value,
            kpi.numerator,
            kpi.denominator,
        )
    assert (served["otif"]["numerator"], served["otif"]["denominator"]) == (1, 1)
    assert (served["on_time_shipment"]["numerator"], served["on_time_shipment"]["denominator"]) == (
        1,
        1,
    )


def test_a_request_without_a_key_is_refused_with_401(server: LiveServer) -> None:
    response = server.client.get("/v1/exceptions")
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "unauthenticated"


def test_a_key_that_does_not_exist_is_refused_with_401(server: LiveServer) -> None:
    response = server.client.get("/v1/kpis", headers={"X-API-Key": "erpx_not-a-real-key"})
    assert response.status_code == 401, response.text
