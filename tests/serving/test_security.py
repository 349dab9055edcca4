"""Access: every route of the app x every role of the policy x (the role's key, the same key as
``Authorization: Bearer``, no key, a revoked key, malformed keys). The routes are read from
``app.routes``, so a route added later is walked too; the roles each admits are read from
``GET /v1/access``, which reads the same ``admits`` declarations the routes enforce.

Also: a state change made through the API is audited under the key's actor (``key:<name>``);
a key is stored only as its SHA-256 hash and never appears in the log or in any table."""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import select

from erp_core.db.models import ApiKey, AuditEntry, Base
from erp_core.services.api_keys import create_api_key, revoke_api_key
from serving.app import create_app
from serving.routes.system import endpoint_roles
from tests.conftest import ADMIN, T0
from tests.serving.conftest import Api

PUBLIC = {"/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc", "/healthz", "/readyz"}
"""What answers without a key; every other route must declare the roles it admits."""

PAGE_ASSETS = {"/static/page"}
"""The control tower's stylesheet: public, it holds no data."""

MALFORMED = [
    "",
    "   ",
    "not-a-key",
    "erpx_",
    "erpx_" + "A" * 43,
    "erpx_" + "x" * 200,
    "ERPX_" + "A" * 43,
    "erpx_é" * 4,
    "' OR '1'='1",
]


def _flat_routes(app: Any) -> list[Any]:
    """The app's routes with the included routers opened (FastAPI 0.165 keeps each included
    router as one entry of ``app.routes``)."""
    return [context.original_route for context in iter_route_contexts(app.routes)]


def _routes() -> list[tuple[str, str]]:
    """(method, path) of every route of the app, public ones included."""
    found = []
    for route in _flat_routes(create_app()):
        methods = getattr(route, "methods", None) or {"GET"}
        for method in sorted(methods - {"HEAD", "OPTIONS"}):
            found.append((method, route.path))
    return found


def _is_page_route(route: Any) -> bool:
    """The control tower's routes: guarded by the login session (a cookie), not by ``admits``;
    tests/serving/test_page.py proves their roles, the test below that they show nothing
    without a session."""
    return getattr(route, "endpoint", None) is not None and route.endpoint.__module__ == (
        "serving.page.routes"
    )


ROUTES = _routes()
PAGE = [
    (method, route.path)
    for route in _flat_routes(create_app())
    if _is_page_route(route)
    for method in sorted(route.methods - {"HEAD", "OPTIONS"})
]
GUARDED = [
    (method, path)
    for method, path in ROUTES
    if path not in PUBLIC | PAGE_ASSETS and (method, path) not in PAGE
]


def _concrete(path: str) -> str:
    """A made-up id for every path parameter (the route may answer 404 for it)."""
    return re.sub(r"\{[^}]+\}", "1", path)


def _call(client: TestClient, method: str, path: str, headers: dict[str, str]) -> Response:
    return client.request(method, _concrete(path), headers=headers)


def assert_error(response: Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message", "field", "value"}
    assert error["code"] == code, error


@pytest.fixture
def client(api: Api) -> TestClient:
    return TestClient(api.client.app, raise_server_exceptions=False)


@pytest.fixture
def revoked(api: Api) -> dict[str, str]:
    """For every role, a key that worked once and was revoked."""
    keys = {}
    for role in api.uow.policy.roles:
        issued = create_api_key(api.uow, ADMIN, name=f"revoked-{role}", role=role, now=T0)
        revoke_api_key(api.uow, ADMIN, name=issued.name, now=T0)
        keys[role] = issued.secret
    return keys


@pytest.fixture
def access(api: Api) -> dict[str, list[str]]:
    """The access table as GET /v1/access builds it (the same function over the same
    declarations), from every route of the app."""
    return endpoint_roles(_flat_routes(api.client.app), api.runtime)


def test_get_access_lists_the_roles_of_every_guarded_route(
    api: Api, access: dict[str, list[str]]
) -> None:
    response = api.client.get("/v1/access", headers=api.as_role("planner"))
    assert response.status_code == 200
    assert response.json() == access


def test_the_routes_are_read_from_the_app_and_include_every_resource() -> None:
    paths = {path for _, path in ROUTES}
    for expected in ("/v1/orders", "/v1/orders/score", "/v1/exceptions", "/v1/kpis", "/v1/access"):
        assert expected in paths
    routes = _flat_routes(create_app())
    assert all(isinstance(r, APIRoute) or r.path in PUBLIC | PAGE_ASSETS for r in routes), [
        r.path for r in routes
    ]
    assert {path for _, path in PAGE} >= {"/", "/login", "/logout"}


@pytest.mark.parametrize(("method", "path"), PAGE, ids=[f"{m} {p}" for m, p in PAGE])
def test_without_a_session_a_page_route_shows_no_data_even_with_an_api_key_header(
    api: Api, client: TestClient, method: str, path: str
) -> None:
    """The page reads its key from the session cookie only: an ``X-API-Key`` header (even the
    admin's) opens nothing, so a cross-site form cannot ride a key the browser never holds."""
    for headers in ({}, {"X-API-Key": api.keys["admin"]}, {"Authorization": "Bearer x"}):
        response = _call(client, method, path, headers)
        assert response.status_code in (200, 303, 401), (path, response.status_code)
        if response.status_code == 303:
            assert response.headers["location"] == "/"
        else:
            assert 'name="api_key"' in response.text, (path, response.text[:300])
            assert "Exception queue" not in response.text


@pytest.mark.parametrize("path", sorted(PUBLIC))
def test_the_docs_schema_and_probes_answer_without_a_key(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200, response.text


def test_every_route_but_the_public_ones_declares_the_roles_it_admits(
    access: dict[str, list[str]],
) -> None:
    assert set(access) == {f"{method} {path}" for method, path in GUARDED}
    assert all(roles for roles in access.values()), access


@pytest.mark.parametrize(("method", "path"), GUARDED, ids=[f"{m} {p}" for m, p in GUARDED])
def test_each_role_is_admitted_or_refused_as_the_access_table_says(
    api: Api,
    client: TestClient,
    access: dict[str, list[str]],
    revoked: dict[str, str],
    method: str,
    path: str,
) -> None:
    admitted = set(access[f"{method} {path}"])
    for refused_key in ["", *MALFORMED]:
        headers = {"X-API-Key": refused_key.encode()} if refused_key else {}  # bytes: UTF-8 too
        response = _call(client, method, path, headers)  # type: ignore[arg-type]
        assert_error(response, 401, "unauthenticated")
        assert response.headers["www-authenticate"] == "ApiKey"
    for scheme in ("Bearer", "Basic", "Token"):
        response = _call(client, method, path, {"Authorization": f"{scheme} not-a-key"})
        assert_error(response, 401, "unauthenticated")
    for role in api.uow.policy.roles:
        key = api.keys[role]
        assert_error(
            _call(client, method, path, {"X-API-Key": revoked[role]}), 401, "unauthenticated"
        )
        bearer = {"Authorization": f"Bearer {revoked[role]}"}
        assert_error(_call(client, method, path, bearer), 401, "unauthenticated")
        basic = {"Authorization": f"Basic {key}"}  # only Bearer carries a key
        assert_error(_call(client, method, path, basic), 401, "unauthenticated")
        for headers in ({"X-API-Key": key}, {"Authorization": f"Bearer {key}"}):
            response = _call(client, method, path, headers)
            if role in admitted:
                assert response.status_code not in (401, 403), (role, response.text)
                assert response.status_code < 500 or _documented_unavailable(response), (
                    role,
                    response.text,
                )
            else:
                assert_error(response, 403, "forbidden")
                assert response.json()["error"]["value"] == role


def _documented_unavailable(response: Response) -> bool:
    """The one 5xx a healthy server gives: a report whose model has no champion yet."""
    return response.status_code == 503 and response.json()["error"]["code"] == "model_unavailable"


def test_a_key_stops_working_once_revoked(api: Api, client: TestClient) -> None:
    issued = create_api_key(api.uow, ADMIN, name="soon-gone", role="planner", now=T0)
    headers = {"X-API-Key": issued.secret}
    assert client.get("/v1/models", headers=headers).status_code == 200
    revoke_api_key(api.uow, ADMIN, name="soon-gone", now=T0)
    assert_error(client.get("/v1/models", headers=headers), 401, "unauthenticated")


def test_a_key_of_one_role_does_not_open_another_roles_route(api: Api, client: TestClient) -> None:
    body = {"customer_id": "C-GOLD", "lines": [{"sku": "WIDGET", "quantity": 1}]}
    response = client.post("/v1/orders", json=body, headers=api.as_role("logistics"))
    assert_error(response, 403, "forbidden")
    assert response.json()["error"]["field"] == "role"


def test_a_change_made_through_the_api_is_audited_under_the_keys_actor(
    api: Api, client: TestClient
) -> None:
    body = {"customer_id": "C-GOLD", "lines": [{"sku": "GADGET", "quantity": 25}]}
    captured = client.post(
        "/v1/orders", json=body | {"allow_split": False}, headers=api.as_role("sales_rep")
    )
    assert captured.status_code == 201, captured.text
    order_id = captured.json()["order_id"]
    queue = client.get("/v1/exceptions", params={"type": "shortage"}, headers=api.as_role("admin"))
    (case,) = queue.json()["data"]
    resolved = client.post(
        f"/v1/exceptions/{case['id']}/resolve",
        json={"resolution": "re_sourced"},
        headers={"Authorization": f"Bearer {api.keys[case['owner_role']]}"},
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["resolved_by"] == f"key:test-{case['owner_role']}"
    with api.uow as uow:
        entries = uow.session.execute(
            select(AuditEntry.actor, AuditEntry.role, AuditEntry.entity_type, AuditEntry.entity_id)
        ).all()
    order_entries = [e for e in entries if e.entity_type == "sales_order"]
    assert order_entries and {e.entity_id for e in order_entries} == {str(order_id)}
    assert {(e.actor, e.role) for e in order_entries} == {("key:test-sales_rep", "sales_rep")}
    case_entries = [
        e for e in entries if e.entity_type == "exception_case" and e.entity_id == str(case["id"])
    ]
    owner = case["owner_role"]
    assert (f"key:test-{owner}", owner) in {(e.actor, e.role) for e in case_entries}


def test_a_key_is_stored_only_as_its_sha256_hash(api: Api) -> None:
    with api.uow as uow:
        rows = {row.name: row for row in uow.session.scalars(select(ApiKey))}
        every_value = [
            str(value)
            for table in Base.metadata.sorted_tables
            for row in uow.session.execute(select(table)).all()
            for value in row
        ]
    for role, secret in api.keys.items():
        assert rows[f"test-{role}"].key_hash == hashlib.sha256(secret.encode()).hexdigest()
        assert not any(secret in value for value in every_value), role


def test_no_key_appears_in_the_log(
    api: Api, client: TestClient, revoked: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = {"customer_id": "C-GOLD", "lines": [{"sku": "WIDGET", "quantity": 1}]}
    for role in api.uow.policy.roles:
        for key in (api.keys[role], revoked[role]):
            for headers in ({"X-API-Key": key}, {"Authorization": f"Bearer {key}"}):
                client.post("/v1/orders", json=body, headers=headers)
                client.post("/v1/orders/score", content=b"{bad", headers=headers)
                client.get("/v1/orders/1", headers=headers)
                client.get("/v1/exceptions", params={"status": "x"}, headers=headers)
                client.get(f"/v1/orders/{10**20}", headers=headers)  # a 500 logged with traceback
    logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert caplog.records, "the requests logged nothing: the capture is not working"
    for secret in [*api.keys.values(), *revoked.values()]:
        assert secret not in logged
        assert secret[5:] not in logged
