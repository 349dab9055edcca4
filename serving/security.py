"""Who is calling: an API key in the ``X-API-Key`` header (or ``Authorization: Bearer``), bound to
one role of the governance policy; and which roles each endpoint admits.

An endpoint admits either the roles a policy permission grants (capturing an order admits who may
``capture_order``; the service checks the same permission again) or every role (reading). The
admitted roles are declared once per route with :func:`admits`, and ``GET /v1/access`` lists them,
so the matrix test and an auditor read the same table.

The dependencies are ``async``: FastAPI runs a plain ``def`` dependency in its thread pool, a
hand-off per dependency per request; these are a dict lookup (a key checked within the cache's
time) or one indexed read, done on the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from erp_core.policy import Actor
from erp_core.services.api_keys import authenticate, hash_key
from serving.errors import Forbidden, Unauthenticated
from serving.runtime import Runtime

ANY_ROLE = "any_role"
"""An endpoint every authenticated role may call (reading what the ERP knows)."""


@dataclass
class _Cached:
    actor: Actor | None
    checked_at: float


class KeyCache:
    """Keys checked recently, by hash (never the key itself), so a busy order desk does not
    read the key table on every request; a revoked key stops working within ``ttl`` seconds."""

    def __init__(self, ttl: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, _Cached] = {}

    def actor(self, runtime: Runtime, secret: str | None) -> Actor | None:
        if not secret:
            return None
        digest = hash_key(secret)
        cached = self._entries.get(digest)
        now = time.monotonic()
        if cached is not None and now - cached.checked_at < self.ttl:
            return cached.actor
        actor = authenticate(runtime.reader(), secret)
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[digest] = _Cached(actor, now)
        return actor


def presented_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key.strip()
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


async def runtime_of(request: Request) -> Runtime:
    runtime = request.app.state.runtime
    assert isinstance(runtime, Runtime)
    return runtime


RuntimeDep = Annotated[Runtime, Depends(runtime_of)]


def current_actor(request: Request, runtime: RuntimeDep) -> Actor:
    actor = runtime.keys.actor(runtime, presented_key(request))
    if actor is None:
        raise Unauthenticated("a valid API key is required (header X-API-Key)", field="X-API-Key")
    return actor


def admitted_roles(runtime: Runtime, permission: str) -> frozenset[str]:
    if permission == ANY_ROLE:
        return frozenset(runtime.policy.roles)
    return runtime.policy.permissions.get(permission, frozenset())


def admits(permission: str) -> Callable[..., Actor]:
    """A dependency that returns the caller's actor when its role holds ``permission`` (a policy
    permission, or ``ANY_ROLE``), and answers 401/403 otherwise."""

    async def check(request: Request, runtime: RuntimeDep) -> Actor:
        actor = current_actor(request, runtime)
        if actor.role not in admitted_roles(runtime, permission):
            raise Forbidden(
                f"role {actor.role!r} may not call {request.method} {request.url.path}",
                field="role",
                value=actor.role,
            )
        return actor

    check.permission = permission  # type: ignore[attr-defined]
    return check
