"""Bearer-token check of a request (constant-time comparison)."""

from __future__ import annotations

import hmac

from thumbcache_status.errors import UnauthorizedError

SCHEME = "bearer "


def check_bearer(authorization: str | None, token: str | None) -> None:
    """Pass when no token is configured or the header carries it; else raise Unauthorized."""
    if not token:
        return
    if not authorization or not authorization[: len(SCHEME)].lower() == SCHEME:
        raise UnauthorizedError("this endpoint needs an 'Authorization: Bearer <token>' header")
    given = authorization[len(SCHEME) :].strip().encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(given, token.encode("utf-8")):
        raise UnauthorizedError("the bearer token is not valid")
