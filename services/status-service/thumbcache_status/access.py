"""Who may call what: the bearer token on every data route, the Host allowlist of loopback
listeners (DNS rebinding), and the rule that a service reachable beyond loopback has a token."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import falcon
from thumbcache.errors import ConfigError
from thumbcache.settings import StatusSettings

from thumbcache_status.auth import check_bearer
from thumbcache_status.errors import MisdirectedRequestError

TOKEN_ENV = "THUMBCACHE_API_TOKEN"
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
# Probes and the page shell (HTML, script, style): they hold no data.
OPEN_PATHS = frozenset({"/", "/healthz", "/readyz"})
OPEN_PREFIXES = ("/static/",)
READ_METHODS = frozenset({"GET", "HEAD"})


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``[::1]`` with or without brackets)."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_host(address: str) -> str:
    """The host part of a gunicorn bind (``0.0.0.0:8080``, ``[::1]:80``, ``unix:/run/s``).

    A Unix socket counts as loopback (only this machine reaches it); ``fd://`` and ``:8080``
    give ``""``, which is no loopback (unknown is treated as reachable from anywhere).
    """
    if address.startswith("unix:"):
        return "localhost"
    if address.startswith("fd://"):
        return ""
    if address.startswith("["):
        return address[1 : address.find("]")]
    return address.rsplit(":", 1)[0] if ":" in address else address


def beyond_loopback(addresses: Iterable[str]) -> bool:
    """True when any of the listen addresses is reachable from other machines."""
    return any(not is_loopback(bind_host(a)) for a in addresses)


@dataclass(frozen=True)
class Access:
    """The token (None: none configured), whether reads are open to all, and the Host names a
    request may carry (None: any, for listeners beyond loopback)."""

    token: str | None = None
    public_reads: bool = False
    allowed_hosts: frozenset[str] | None = None


# No token and any Host: what an app built without access rules (a test) runs with.
UNGUARDED = Access()


def access_for(status: StatusSettings, token: str | None, addresses: Iterable[str]) -> Access:
    """The access rules of a service listening on ``addresses``; refuse a token-less start
    beyond loopback, or when the settings require a token."""
    addresses = tuple(addresses)
    exposed = beyond_loopback(addresses)
    if exposed and not token:
        raise ConfigError(
            f"listening on {', '.join(addresses)} (beyond loopback) needs {TOKEN_ENV}: set it "
            "(e.g. openssl rand -hex 32), or listen on 127.0.0.1"
        )
    if status.require_token and not token:
        raise ConfigError(f"this configuration requires {TOKEN_ENV} to be set")
    hosts = None if exposed else loopback_hosts(status.allowed_hosts)
    return Access(token or None, status.public_reads, hosts)


def loopback_hosts(extra: Iterable[str] = ()) -> frozenset[str]:
    """The Host names a loopback listener answers: the loopback ones plus ``extra``."""
    return frozenset(h.strip("[]").lower() for h in (*LOOPBACK_HOSTS, *extra))


class AccessGuard:
    """Falcon middleware: the Host check first, then the token (open paths excepted)."""

    def __init__(self, access: Access) -> None:
        self._access = access

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Refuse a foreign Host (421) or a missing or wrong token (401)."""
        allowed = self._access.allowed_hosts
        # No Host header (HTTP/1.0) is no browser, so no rebinding; req.host drops the port.
        if allowed is not None and req.get_header("Host") and req.host.lower() not in allowed:
            raise MisdirectedRequestError(
                "this server answers only requests addressed to localhost, 127.0.0.1 or [::1] "
                "(or a name in status.allowed_hosts)"
            )
        if req.path in OPEN_PATHS or req.path.startswith(OPEN_PREFIXES):
            return
        if self._access.public_reads and req.method in READ_METHODS:
            return
        check_bearer(req.get_header("Authorization"), self._access.token)

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        """Answers that depend on the token are not shared by caches."""
        if self._access.token and not self._access.public_reads:
            resp.append_header("Vary", "Authorization")
