"""GET /v1/exceptions (filters, priority order) and acknowledge/resolve, role-checked against
the policy: a shortage belongs to the planner, a credit hold to finance."""

from __future__ import annotations

import pytest

from tests.serving.conftest import Api


def _order(api: Api, customer: str, sku: str, quantity: int) -> dict:
    response = api.client.post(
        "/v1/orders",
        json={
            "customer_id": customer,
            "lines": [{"sku": sku, "quantity": quantity}],
            "allow_split": False,
        },
        headers=api.as_role("sales_rep"),
    )
    assert response.status_code == 201, response.text
    return response.json()


def _queue(api: Api, role: str = "admin", **params: str) -> list[dict]:
    response = api.client.get("/v1/exceptions", params=params, headers=api.as_role(role))
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_the_queue_filters_by_owner_and_type(api: Api) -> None:
    _order(api, "C-GOLD", "GADGET", 25)  # backordered: a shortage for the planner
    _order(api, "C-SMALL", "WIDGET", 50)  # 500 against a credit limit of 100: finance
    assert {case["type"] for case in _queue(api, owner_role="planner")} == {"shortage"}
    assert {case["type"] for case in _queue(api, owner_role="finance")} == {"credit_hold"}
    assert {case["owner_role"] for case in _queue(api, type="shortage")} == {"planner"}


def test_the_queue_is_sorted_by_risk_times_value_times_tier(api: Api) -> None:
    _order(api, "C-BRONZE", "GADGET", 25)  # bronze (weight 1), 25 x 40.00 = 1000
    _order(api, "C-GOLD", "GADGET", 12)  # gold (weight 3), 12 x 40.00 = 480 -> 1440
    shortages = _queue(api, type="shortage")
    assert [case["customer_id"] for case in shortages] == ["C-GOLD", "C-BRONZE"]
    assert [case["priority"] for case in shortages] == [1440.0, 1000.0]


def test_the_owner_acknowledges_and_resolves_and_the_case_leaves_the_open_queue(
    api: Api,
) -> None:
    _order(api, "C-GOLD", "GADGET", 25)
    (case,) = _queue(api, type="shortage")
    ack = api.client.post(
        f"/v1/exceptions/{case['id']}/acknowledge", headers=api.as_role("planner")
    )
    assert ack.status_code == 200, ack.text
    assert ack.json()["status"] == "acknowledged"
    assert ack.json()["acknowledged_by"] == "key:test-planner"
    resolved = api.client.post(
        f"/v1/exceptions/{case['id']}/resolve",
        json={"resolution": "re_sourced", "note": "moved to EAST"},
        headers=api.as_role("planner"),
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["resolution"] == "re_sourced: moved to EAST"
    assert _queue(api, type="shortage") == []
    assert [c["id"] for c in _queue(api, type="shortage", status="resolved")] == [case["id"]]


@pytest.mark.parametrize("role", ["logistics", "finance", "customer_service"])
def test_another_role_may_not_work_the_planners_case(api: Api, role: str) -> None:
    _order(api, "C-GOLD", "GADGET", 25)
    (case,) = _queue(api, type="shortage")
    response = api.client.post(
        f"/v1/exceptions/{case['id']}/resolve",
        json={"resolution": "false_alarm"},
        headers=api.as_role(role),
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert _queue(api, type="shortage")[0]["status"] == "open"


def test_a_sales_rep_may_not_work_exceptions_at_all(api: Api) -> None:
    _order(api, "C-GOLD", "GADGET", 25)
    (case,) = _queue(api, type="shortage")
    response = api.client.post(
        f"/v1/exceptions/{case['id']}/acknowledge", headers=api.as_role("sales_rep")
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


def test_a_resolution_outside_the_list_is_refused_naming_the_field(api: Api) -> None:
    _order(api, "C-GOLD", "GADGET", 25)
    (case,) = _queue(api, type="shortage")
    response = api.client.post(
        f"/v1/exceptions/{case['id']}/resolve",
        json={"resolution": "made it up"},
        headers=api.as_role("planner"),
    )
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "resolution"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"owner_role": "wizard"}, "owner_role"),
        ({"type": "meteor"}, "type"),
        ({"status": "x"}, "status"),
    ],
)
def test_an_unknown_filter_value_is_a_422_naming_it(api: Api, params: dict, field: str) -> None:
    response = api.client.get("/v1/exceptions", params=params, headers=api.as_role("admin"))
    assert response.status_code == 422
    assert response.json()["error"]["field"] == field


def test_an_unknown_case_is_a_404(api: Api) -> None:
    response = api.client.post("/v1/exceptions/424242/acknowledge", headers=api.as_role("admin"))
    assert response.status_code == 404
    assert response.json()["error"]["field"] == "exception_id"


def test_acknowledging_answers_the_priority_the_queue_ranks_by(api: Api) -> None:
    _order(api, "C-GOLD", "GADGET", 12)  # gold (weight 3), 12 x 40.00 = 480 -> 1440
    (case,) = _queue(api, type="shortage")
    ack = api.client.post(
        f"/v1/exceptions/{case['id']}/acknowledge", headers=api.as_role("planner")
    )
    assert ack.json()["priority"] == case["priority"] == 1440.0
