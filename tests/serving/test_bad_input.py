"""Bad input, one case at a time: each is a 4xx with the JSON error body naming the field at
fault, never a 5xx, and nothing is written; text the API stores comes back exactly as it went
in. At the end, the cases that were 500s once: ids past the database's integer, ages past a
time span, KPI periods at the calendar's edge, a price a thousand times the list."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select

from erp_core.db.models import AuditEntry, OrderLine, SalesOrder
from serving.limits import MAX_BODY_BYTES
from tests.serving.conftest import Api

GOOD_LINE = {"sku": "WIDGET", "quantity": 1}
GOOD_ORDER = {"customer_id": "C-GOLD", "lines": [GOOD_LINE]}
ORDER_ROUTES = ("/v1/orders/score", "/v1/orders")

STORED_INERT = [
    "'; DROP TABLE sales_orders; --",
    "1' OR '1'='1",
    '" OR ""="',
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "\u202eevil\u202c",  # right-to-left override
    "\u200f\u05e9\u05dc\u05d5\u05dd",  # right-to-left mark, Hebrew
    "📦🚚",
    "👨\u200d👩\u200d👧",  # zero-width joiners
    "e\u0301e\u0301",  # combining accents
    "😀" * 64,  # 64 characters (256 bytes in UTF-8): the limit counts characters
    "%s %(x)s {0} ${x}",
]
"""Text a field may carry: stored as given and echoed back unchanged."""

REFUSED = {
    "nul": "a\x00b",
    "line_break": "PO\n778",
    "escape": "\x1b[31mred",
    "overlong": "x" * 65,
    "overlong_emoji": "😀" * 65,
    "empty": "",
}
"""Text no code or reference may be: a 422 naming the field."""


@pytest.fixture
def client(api: Api) -> Iterator[TestClient]:
    """The same app, answering a server error as a 500 (the fixture's client raises it)."""
    with TestClient(api.client.app, raise_server_exceptions=False) as lenient:
        yield lenient


def _count(api: Api, model: type) -> int:
    with api.uow as uow:
        return int(uow.session.scalar(select(func.count()).select_from(model)) or 0)


def _written(api: Api) -> tuple[int, ...]:
    return tuple(_count(api, model) for model in (SalesOrder, OrderLine, AuditEntry))


def assert_error(response: Response, status: int, field: str | None) -> dict[str, Any]:
    """The one error shape, naming ``field``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"code", "message", "field", "value"}, error
    assert error["message"]
    assert error["field"] == field, error
    return error


def _post(api: Api, client: TestClient, route: str, body: Any, **headers: str) -> Response:
    return client.post(route, json=body, headers=api.as_role("sales_rep") | headers)


def _raw(api: Api, client: TestClient, route: str, content: bytes) -> Response:
    headers = api.as_role("sales_rep") | {"content-type": "application/json"}
    return client.post(route, content=content, headers=headers)


def _line(**fields: Any) -> dict[str, Any]:
    return {"customer_id": "C-GOLD", "lines": [GOOD_LINE | fields]}


# --- the body as a whole ------------------------------------------------------------------------


@pytest.mark.parametrize("route", ORDER_ROUTES)
def test_malformed_json_is_a_422_naming_the_body(api: Api, client: TestClient, route: str) -> None:
    before = _written(api)
    error = assert_error(_raw(api, client, route, b'{"customer_id": "C-GOLD", '), 422, "body")
    assert "JSON" in error["message"]
    assert _written(api) == before


def test_a_body_of_another_content_type_is_a_415_naming_it(api: Api, client: TestClient) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
        response = client.post(
            "/v1/orders",
            content=json.dumps(GOOD_ORDER),
            headers=api.as_role("sales_rep") | {"content-type": content_type},
        )
        error = assert_error(response, 415, "Content-Type")
        assert error["value"] == content_type


def test_a_missing_body_is_a_422_naming_the_body(api: Api, client: TestClient) -> None:
    assert_error(client.post("/v1/orders", headers=api.as_role("sales_rep")), 422, "body")


def test_a_body_that_is_not_an_object_is_a_422(api: Api, client: TestClient) -> None:
    for body in ([], ["C-GOLD"], "C-GOLD", 42, None):
        response = _post(api, client, "/v1/orders/score", body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"]["field"] is not None


def test_a_body_over_one_mebibyte_is_a_413_before_it_is_read(api: Api, client: TestClient) -> None:
    before = _written(api)
    padding = "x" * MAX_BODY_BYTES
    response = _post(api, client, "/v1/orders", GOOD_ORDER | {"external_ref": padding})
    error = assert_error(response, 413, "body")
    assert error["code"] == "too_large"
    assert _written(api) == before


def test_a_chunked_body_over_one_mebibyte_is_a_413(api: Api, client: TestClient) -> None:
    """Without a Content-Length the limit counts the bytes as they arrive."""

    def chunks() -> Iterator[bytes]:
        yield b'{"customer_id": "C-GOLD", "lines": [], "external_ref": "'
        for _ in range(20):
            yield b"x" * 65_536
        yield b'"}'

    headers = api.as_role("sales_rep") | {"content-type": "application/json"}
    response = client.post("/v1/orders", content=chunks(), headers=headers)
    assert "content-length" not in {k.lower() for k in response.request.headers}
    assert_error(response, 413, "body")


def test_a_body_just_under_the_limit_is_read(api: Api, client: TestClient) -> None:
    """The limit refuses only what is over it: this one is read, and refused for its field."""
    body = GOOD_ORDER | {"external_ref": "x" * (MAX_BODY_BYTES - 200)}
    assert_error(_post(api, client, "/v1/orders", body), 422, "external_ref")


def test_json_nested_past_what_the_parser_reads_is_a_400_naming_the_body(
    api: Api, client: TestClient
) -> None:
    for depth in (10_000, 100_000):
        content = b"[" * depth + b"]" * depth
        error = assert_error(_raw(api, client, "/v1/orders/score", content), 400, "body")
        assert error["code"] == "invalid_json"
    objects = b'{"a": ' * 10_000 + b"1" + b"}" * 10_000
    assert_error(_raw(api, client, "/v1/orders/score", objects), 400, "body")


def test_deep_nesting_inside_a_field_is_a_422_naming_that_field(
    api: Api, client: TestClient
) -> None:
    nested = b"[" * 900 + b"]" * 900
    content = b'{"customer_id": "C-GOLD", "lines": [{"quantity": 1, "sku": ' + nested + b"}]}"
    assert_error(_raw(api, client, "/v1/orders/score", content), 422, "lines[0].sku")


def test_a_body_that_is_not_utf8_is_a_400_naming_the_body(api: Api, client: TestClient) -> None:
    content = b'{"customer_id": "\xc0\xaf", "lines": [{"sku": "WIDGET", "quantity": 1}]}'
    assert_error(_raw(api, client, "/v1/orders/score", content), 400, "body")


def test_a_number_of_thousands_of_digits_is_a_4xx_naming_the_body(
    api: Api, client: TestClient
) -> None:
    content = b'{"customer_id": "C-GOLD", "lines": [{"sku": "WIDGET", "quantity": '
    response = _raw(api, client, "/v1/orders/score", content + b"9" * 5000 + b"}]}")
    assert_error(response, 400, "body")


def test_a_lone_surrogate_is_refused_and_echoed_as_its_escape(api: Api, client: TestClient) -> None:
    content = b'{"customer_id": "\\ud800", "lines": [{"sku": "WIDGET", "quantity": 1}]}'
    error = assert_error(_raw(api, client, "/v1/orders", content), 422, "customer_id")
    assert error["value"] == "\\ud800"


# --- the fields ---------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ORDER_ROUTES)
def test_an_unknown_sku_is_a_404_naming_the_line(api: Api, client: TestClient, route: str) -> None:
    before = _written(api)
    body = {"customer_id": "C-GOLD", "lines": [GOOD_LINE, {"sku": "NOPE", "quantity": 1}]}
    error = assert_error(_post(api, client, route, body), 404, "lines[1].sku")
    assert error["value"] == "NOPE"
    assert _written(api) == before


@pytest.mark.parametrize("route", ORDER_ROUTES)
def test_an_unknown_customer_is_a_404_naming_customer_id(
    api: Api, client: TestClient, route: str
) -> None:
    body = GOOD_ORDER | {"customer_id": "NOBODY"}
    error = assert_error(_post(api, client, route, body), 404, "customer_id")
    assert error["value"] == "NOBODY"


BAD_QUANTITIES = [0, -1, -(10**20), 2.5, 1.0, "5", "", 1e30, 10**20, 1_000_001, True, None, [1]]


@pytest.mark.parametrize("route", ORDER_ROUTES)
def test_a_quantity_that_is_not_a_positive_whole_number_in_range_is_a_422(
    api: Api, client: TestClient, route: str
) -> None:
    before = _written(api)
    for quantity in BAD_QUANTITIES:
        response = _post(api, client, route, _line(quantity=quantity))
        assert response.status_code == 422, (quantity, response.text)
        assert_error(response, 422, "lines[0].quantity")
    assert _written(api) == before


BAD_PRICES = ["9.12345", "0", "-1", "0.00001", "1e30", 1e30, 10**20, "NaN", "Infinity",
              "-Infinity", "abc", "", "1000000000.0001", [9], True]  # fmt: skip


def test_a_price_out_of_range_or_with_too_many_decimals_is_a_422(
    api: Api, client: TestClient
) -> None:
    for price in BAD_PRICES:
        response = _post(api, client, "/v1/orders", _line(unit_price=price))
        assert response.status_code == 422, (price, response.text)
        assert_error(response, 422, "lines[0].unit_price")


@pytest.mark.parametrize("route", ORDER_ROUTES)
def test_ten_thousand_lines_are_a_422_naming_lines(
    api: Api, client: TestClient, route: str
) -> None:
    before = _written(api)
    body = {"customer_id": "C-GOLD", "lines": [GOOD_LINE] * 10_000}
    error = assert_error(_post(api, client, route, body), 422, "lines")
    limit = api.runtime.settings.max_order_lines
    assert limit == 500
    assert error["value"] == "10000" and str(limit) in error["message"]
    assert _written(api) == before


def test_one_line_over_the_limit_is_refused_and_the_limit_itself_is_accepted(
    api: Api, client: TestClient
) -> None:
    api.runtime.settings = api.runtime.settings.model_copy(update={"max_order_lines": 3})
    over = {"customer_id": "C-GOLD", "lines": [GOOD_LINE] * 4}
    assert_error(_post(api, client, "/v1/orders/score", over), 422, "lines")
    at = {"customer_id": "C-GOLD", "lines": [GOOD_LINE] * 3}
    assert _post(api, client, "/v1/orders/score", at).status_code == 200


def test_an_order_without_lines_is_a_422_naming_lines(api: Api, client: TestClient) -> None:
    body = {"customer_id": "C-GOLD", "lines": []}
    assert_error(_post(api, client, "/v1/orders", body), 422, "lines")


UNKNOWN_FIELDS = [
    (GOOD_ORDER | {"bogus": 1}, "bogus"),
    (GOOD_ORDER | {"Customer_ID": "C-GOLD"}, "Customer_ID"),
    ({"customer_id": "C-GOLD", "lines": [GOOD_LINE | {"colour": "red"}]}, "lines[0].colour"),
    (GOOD_ORDER | {"order_id": 1}, "order_id"),
]


def test_an_unknown_field_is_a_422_naming_it(api: Api, client: TestClient) -> None:
    for body, field in UNKNOWN_FIELDS:
        assert_error(_post(api, client, "/v1/orders", body), 422, field)


WRONG_TYPES = [
    ("requested_date", "2026-02-30"),
    ("requested_date", "tomorrow"),
    ("requested_date", 20260310),
    ("allow_split", "maybe"),
    ("customer_id", 42),
    ("channel", ["edi"]),
]


def test_a_wrong_type_is_a_422_naming_the_field(api: Api, client: TestClient) -> None:
    for field, value in WRONG_TYPES:
        assert_error(_post(api, client, "/v1/orders", GOOD_ORDER | {field: value}), 422, field)


# --- text: injection strings and unicode edge cases ---------------------------------------------


def test_every_text_field_refuses_control_characters_and_overlong_text(
    api: Api, client: TestClient
) -> None:
    before = _written(api)
    for name, text in REFUSED.items():
        for field in ("customer_id", "channel", "ship_to_region", "external_ref"):
            response = _post(api, client, "/v1/orders", GOOD_ORDER | {field: text})
            assert response.status_code == 422, (name, field, response.text)
            assert response.json()["error"]["field"] == field, (name, field)
        response = _post(api, client, "/v1/orders", _line(sku=text))
        assert response.status_code == 422, (name, response.text)
        assert response.json()["error"]["field"] == "lines[0].sku", name
    assert _written(api) == before


@pytest.mark.parametrize(("field", "status"), [("customer_id", 404), ("ship_to_region", 422)])
def test_injection_and_unicode_in_a_looked_up_field_are_refused_and_echoed_verbatim(
    api: Api, client: TestClient, field: str, status: int
) -> None:
    for text in STORED_INERT:
        error = assert_error(
            _post(api, client, "/v1/orders", GOOD_ORDER | {field: text}), status, field
        )
        assert error["value"] == text
    assert _count(api, SalesOrder) == 0


def test_injection_and_unicode_in_a_sku_are_a_404_echoed_verbatim(
    api: Api, client: TestClient
) -> None:
    for text in STORED_INERT:
        error = assert_error(_post(api, client, "/v1/orders", _line(sku=text)), 404, "lines[0].sku")
        assert error["value"] == text


@pytest.mark.parametrize(("field", "longest"), [("external_ref", 64), ("channel", 32)])
def test_injection_and_unicode_in_stored_text_round_trip_unchanged(
    api: Api, client: TestClient, field: str, longest: int
) -> None:
    texts = [text for text in STORED_INERT if len(text) <= longest] + ["😀" * longest]
    for n, text in enumerate(texts):
        body = GOOD_ORDER | {field: text}
        created = _post(api, client, "/v1/orders", body, **{"Idempotency-Key": f"{field}-{n}"})
        assert created.status_code == 201, (text, created.text)
        read = client.get(f"/v1/orders/{created.json()['order_id']}", headers=api.as_role("admin"))
        assert read.status_code == 200
        assert read.headers["content-type"].startswith("application/json")
        assert read.json()[field] == text
    assert _count(api, SalesOrder) == len(texts)  # the tables are all still there
    too_long = _post(api, client, "/v1/orders", GOOD_ORDER | {field: "😀" * (longest + 1)})
    assert_error(too_long, 422, field)


def _open_shortage(api: Api, client: TestClient) -> int:
    body = {"customer_id": "C-GOLD", "lines": [{"sku": "GADGET", "quantity": 25}]}
    captured = _post(api, client, "/v1/orders", body | {"allow_split": False})
    assert captured.status_code == 201, captured.text
    queue = client.get("/v1/exceptions", params={"type": "shortage"}, headers=api.as_role("admin"))
    (case,) = queue.json()["data"]
    return int(case["id"])


def test_a_resolution_note_is_stored_inert_and_one_with_control_characters_refused(
    api: Api, client: TestClient
) -> None:
    case_id = _open_shortage(api, client)
    route = f"/v1/exceptions/{case_id}/resolve"
    for text in ("a\x00b", "\x1b[2J", "x" * 401):
        refused = client.post(
            route, json={"resolution": "other", "note": text}, headers=api.as_role("admin")
        )
        assert_error(refused, 422, "note")
    note = " | ".join(STORED_INERT[:10]) + "\nsecond line\ttab"
    resolved = client.post(
        route, json={"resolution": "other", "note": note}, headers=api.as_role("admin")
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["resolution"] == f"other: {note}"


def test_an_unknown_resolution_or_field_is_a_422_naming_it(api: Api, client: TestClient) -> None:
    case_id = _open_shortage(api, client)
    route = f"/v1/exceptions/{case_id}/resolve"
    headers = api.as_role("admin")
    assert_error(
        client.post(route, json={"resolution": "magic"}, headers=headers), 422, "resolution"
    )
    body = {"resolution": "other", "by": "me"}
    assert_error(client.post(route, json=body, headers=headers), 422, "by")


# --- known bugs outside serving/errors.py, schemas.py, limits.py ---------------------------------

ID_ROUTES = [
    ("get", "/v1/orders/{id}"),
    ("get", "/v1/orders/{id}/risk"),
    ("get", "/v1/orders/{id}/trail"),
    ("post", "/v1/exceptions/{id}/acknowledge"),
    ("post", "/v1/exceptions/{id}/resolve"),
    ("post", "/v1/shipments/{id}/events"),
]
ID_BODIES = {
    "/v1/exceptions/{id}/resolve": {"resolution": "other"},
    "/v1/shipments/{id}/events": {"event_type": "packed", "occurred_at": "2026-03-03T09:30:00Z"},
}


@pytest.mark.parametrize(("method", "route"), ID_ROUTES)
def test_an_id_past_the_database_integer_range_is_a_4xx_naming_it(
    api: Api, client: TestClient, method: str, route: str
) -> None:
    path = route.format(id=10**20)
    body = ID_BODIES.get(route)
    response = client.request(method, path, json=body, headers=api.as_role("admin"))
    assert 400 <= response.status_code < 500, response.text


@pytest.mark.parametrize("order_id", [2**31, 2**63 - 1])
def test_an_order_id_past_postgresqls_int4_is_a_4xx(
    api: Api, client: TestClient, request: pytest.FixtureRequest, order_id: int
) -> None:
    response = client.get(f"/v1/orders/{order_id}", headers=api.as_role("admin"))
    assert 400 <= response.status_code < 500, response.text


@pytest.mark.parametrize("age", ["1e20", "inf"])
@pytest.mark.parametrize("name", ["min_age_hours", "max_age_hours"])
def test_an_exception_age_past_timedelta_is_refused_naming_it(
    api: Api, client: TestClient, name: str, age: str
) -> None:
    response = client.get("/v1/exceptions", params={name: age}, headers=api.as_role("admin"))
    assert response.status_code == 422, response.text
    assert name in response.json()["error"]["field"]


@pytest.mark.parametrize(
    ("start", "end"),
    [("0001-01-01", "2026-03-04"), ("2026-03-01", "9999-12-31T23:59:59-14:00")],
)
def test_a_kpi_period_at_the_calendar_edge_is_answered_or_refused_naming_it(
    api: Api, client: TestClient, start: str, end: str
) -> None:
    response = client.get(
        "/v1/kpis", params={"from": start, "to": end}, headers=api.as_role("admin")
    )
    assert response.status_code < 500, response.text


def test_a_price_a_thousand_times_the_list_price_is_captured_or_refused_naming_it(
    api: Api, client: TestClient, request: pytest.FixtureRequest
) -> None:
    response = _post(api, client, "/v1/orders", _line(unit_price="20000"))
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.json()["error"]["field"] == "lines[0].unit_price"
