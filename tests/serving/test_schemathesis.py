"""Schemathesis against the app's own OpenAPI schema: every operation, with bodies, parameters
and headers generated from the schema (valid ones and ones that break it), must never answer a
5xx. An admin key is sent with every request, so the calls reach the routes behind the key check.

Bounded: ``MAX_EXAMPLES`` per operation and derandomised, so a run is the same run every time
and the whole module takes well under a minute. The few bugs found that need a fix outside
serving/errors.py, schemas.py and limits.py are pinned by strict-xfail tests in
test_bad_input.py; ``KNOWN_BUGS`` keeps the generator away from exactly those inputs, so this
test keeps watching everything else. Remove a bound when its xfail starts passing.
"""

from __future__ import annotations

import copy
from typing import Any

import schemathesis
from hypothesis import HealthCheck, assume, given, settings
from schemathesis.checks import not_a_server_error

from serving.app import create_app
from tests.serving.conftest import Api

MAX_EXAMPLES = 25
PG_INT_MAX = 2**31 - 1
YEARS_THAT_FIT = r"^(19|20|21)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])$"


def _bound_integer_path_ids(schema: dict[str, Any]) -> None:
    """Known bug: an id past the database's integer range (PostgreSQL int4, SQLite int64)
    reaches the query and fails there (test_an_order_id_past_the_database_integer_range...)."""
    for item in schema["paths"].values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path" and parameter["schema"].get("type") == "integer":
                    parameter["schema"]["maximum"] = PG_INT_MAX


def _bound_exception_ages(schema: dict[str, Any]) -> None:
    """Known bug: min_age_hours/max_age_hours of 1e20 or inf overflow timedelta in the route
    (test_an_exception_age_past_timedelta_is_refused...)."""
    for parameter in schema["paths"]["/v1/exceptions"]["get"]["parameters"]:
        if parameter["name"] in {"min_age_hours", "max_age_hours"}:
            parameter["schema"] = {"type": "number", "minimum": 0, "maximum": 1_000_000}


def _bound_kpi_dates(schema: dict[str, Any]) -> None:
    """Known bug: a period at the edge of the calendar (0001-01-01, 9999-12-31 with a negative
    offset) overflows in erp_core.kpis (test_a_kpi_period_at_the_calendar_edge...)."""
    for parameter in schema["paths"]["/v1/kpis"]["get"]["parameters"]:
        if parameter["name"] in {"from", "to"}:
            parameter["schema"] = {"type": "string", "pattern": YEARS_THAT_FIT}


KNOWN_BUGS = (_bound_integer_path_ids, _bound_exception_ages, _bound_kpi_dates)
"""Bounds on the schema, so the valid examples are spent away from the known bugs."""

MAX_AGE_HOURS = 1_000_000
KPI_YEARS = range(1900, 2200)


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _year(value: Any) -> int | None:
    text = str(value)
    return int(text[:4]) if text[:4].isdigit() else None


def hits_a_known_bug(case: Any) -> bool:
    """The same bugs on a generated case, also on the cases that break the schema on purpose
    (the negative examples ignore the bounds above)."""
    for value in (case.path_parameters or {}).values():
        number = _number(value)
        if number is not None and abs(number) > PG_INT_MAX:
            return True
    query = case.query or {}
    if case.operation.path == "/v1/exceptions":
        for name in ("min_age_hours", "max_age_hours"):
            number = _number(query.get(name))
            if number is not None and not 0 <= number <= MAX_AGE_HOURS:
                return True
    if case.operation.path == "/v1/kpis":
        for name in ("from", "to"):
            year = _year(query.get(name, "2026"))
            if year is not None and year not in KPI_YEARS:
                return True
    return False


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


def _bounded_schema(api: Api) -> Any:
    raw = copy.deepcopy(api.client.app.openapi())
    for bound in KNOWN_BUGS:
        bound(raw)
    schema = schemathesis.openapi.from_dict(raw)
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
        assume(not hits_a_known_bug(case))
        response = case.call(headers=headers)
        case.validate_response(response, checks=[_no_server_error])

    no_server_error()


def test_no_generated_request_to_any_operation_gets_a_server_error(api: Api) -> None:
    """One app over one world for every operation (a world per operation would cost more than
    the examples); each operation's failure is kept and all are reported together."""
    schema = _bounded_schema(api)
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
