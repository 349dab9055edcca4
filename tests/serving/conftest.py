"""The API over a real database: the hand-made world of tests/conftest.py (two warehouses, two
SKUs, four customers), served by the app in-process (FastAPI's TestClient runs the real routes,
dependencies and error handlers), with one API key per role of the policy."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from erp_core.db.uow import UnitOfWork
from erp_core.services.api_keys import create_api_key
from erp_core.settings import Settings
from serving.app import create_app
from serving.models import ModelSet
from serving.runtime import Runtime, build_runtime
from tests.conftest import ADMIN, T0, mlflow_store, stock

NOW = T0 + timedelta(hours=1)
"""The API's frozen clock: Tuesday 2026-03-03 10:00 UTC, before both locations' cut-off."""


@dataclass
class Api:
    client: TestClient
    runtime: Runtime
    keys: dict[str, str]
    uow: UnitOfWork

    def as_role(self, role: str) -> dict[str, str]:
        return {"X-API-Key": self.keys[role]}


def url_of(uow: UnitOfWork) -> str:
    return uow.engine.url.render_as_string(hide_password=False)


def keys_for_every_role(uow: UnitOfWork) -> dict[str, str]:
    return {
        role: create_api_key(uow, ADMIN, name=f"test-{role}", role=role, now=T0).secret
        for role in uow.policy.roles
    }


def serve(uow: UnitOfWork, tmp_path, models: ModelSet | None = None) -> Iterator[Api]:  # type: ignore[no-untyped-def]
    settings = Settings(
        database_url=url_of(uow),
        frozen_now=NOW,
        var_dir=tmp_path,
        mlflow_tracking_uri=mlflow_store(tmp_path),
        mlflow_artifact_root=str(tmp_path / "mlartifacts"),
        api_key_cache_seconds=0,
    )
    keys = keys_for_every_role(uow)
    runtime = build_runtime(settings, models=ModelSet() if models is None else models)
    with TestClient(create_app(settings, runtime)) as client:
        yield Api(client, runtime, keys, uow)
    runtime.engine.dispose()


@pytest.fixture
def stocked(world: UnitOfWork) -> UnitOfWork:
    """WIDGET: 100 at WEST, 40 at EAST; GADGET: 10 at WEST only."""
    stock(world, "WIDGET", "WEST", 100)
    stock(world, "WIDGET", "EAST", 40)
    stock(world, "GADGET", "WEST", 10)
    return world


@pytest.fixture
def api(stocked: UnitOfWork, tmp_path) -> Iterator[Api]:  # type: ignore[no-untyped-def]
    """The API over the stocked world (SQLite, and PostgreSQL when configured), every score
    from the fallback (no model registered)."""
    yield from serve(stocked, tmp_path)
