"""Who is looking at the page: the API key, kept in a cookie after the login form.

The cookie holds the key itself, not a session of its own. Keys are 32 random bytes stored only
as SHA-256 (``erp_core.services.api_keys``), so every request through the page is checked
exactly as an API call is (``serving.security.KeyCache``): the page's role is the key's role, a
revoked key stops the page within the cache's time, and several API workers need no shared
session secret or session table. What protects the key in the browser is how the cookie is set:
``HttpOnly`` (no script can read it), ``SameSite=Strict`` (never sent with a request another
site starts), ``Secure`` when the page is served over HTTPS, and a working day's lifetime.

Forms that change something also carry a token derived from the key (HMAC), checked on post:
a second guard against cross-site requests for browsers that ignore ``SameSite``.
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import Request, Response

from erp_core.policy import Actor
from serving.runtime import Runtime

COOKIE = "erpx_session"
MAX_AGE_SECONDS = 8 * 3600
"""A working shift: the browser forgets the key after it even if nobody logs out."""
_FORM_TOKEN_PURPOSE = b"erpx control tower form"


def key_of(request: Request) -> str | None:
    key = request.cookies.get(COOKIE)
    return key.strip() if key and key.strip() else None


def actor_of(request: Request, runtime: Runtime) -> Actor | None:
    """The actor of the key in the cookie, checked as the API checks a header's key."""
    return runtime.keys.actor(runtime, key_of(request))


def form_token(key: str) -> str:
    return hmac.new(key.encode("utf-8"), _FORM_TOKEN_PURPOSE, hashlib.sha256).hexdigest()[:32]


def token_matches(request: Request, presented: str) -> bool:
    key = key_of(request)
    return key is not None and hmac.compare_digest(form_token(key), presented or "")


def remember(response: Response, request: Request, key: str) -> None:
    response.set_cookie(
        COOKIE,
        key,
        max_age=MAX_AGE_SECONDS,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def forget(response: Response, request: Request) -> None:
    response.delete_cookie(
        COOKIE,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
