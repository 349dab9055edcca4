"""Schemathesis against the app's own OpenAPI schema: every operation, with bodies, parameters
and headers generated from the schema (valid ones and ones that break it), must never answer a
5xx. An admin key is sent with every request, so the calls reach the routes behind the key check.

Bounded: ``MAX_EXAMPLES`` per operation and derandomised, so a run is the same run every time
and the whole module takes well under a minute. Its first runs found path ids past the
database's integer, exception ages past a time span and KPI periods at the calendar's edge (now
4xx, pinned in test_bad_input.py).
"""

from __future__ import annotations

import copy
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from serving.app import create_app
from tests.serving.conftest import Api

MAX_EXAMPLES = 25


def _operations() -> list[str]:
    schema = create_app().openapi()
    return [
        f"{method.upper()} {path}"
        for path, item in schema["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    ]


def _no_server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    """not_a_server_error, except the one 5xx the API documents for a healthy server: the
    replenishment report without a demand-forecast champion (503 model_unavailable)."""
    if response.status_code == 503:
        body = response.json()
        if body.get("error", {}).get("code") == "model_unavailable":
            return None
    return not_a_server_error(ctx, response, case)


def _schema(api: Api) -> Any:
    schema = schemathesis.openapi.from_dict(copy.deepcopy(api.client.app.openapi()))
    schema.app = api.client.app
    return schema


def _run(operation: Any, headers: dict[str, str]) -> None:
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    @given(case=operation.as_strategy())
    def no_server_error(case: Any) -> None:
        response = case.call(headers=headers)
        case.validate_response(response, checks=[_no_server_error])

    no_server_error()


def test_no_generated_request_to_any_operation_gets_a_server_error(api: Api) -> None:
    """One app over one world for every operation (a world per operation would cost more than
    the examples); each operation's failure is kept and all are reported together."""
    schema = _schema(api)
    headers = api.as_role("admin")
    failures: dict[str, str] = {}
    labels = _operations()
    for label in labels:
        method, path = label.split(" ", 1)
        try:
            _run(schema[path][method], headers)
        except Exception as failure:  # a hypothesis failure, with the case to reproduce it
            failures[label] = f"{type(failure).__name__}: {failure}"[:3000]
    assert labels, "the schema lists no operation"
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
