"""Composition root for gunicorn: read settings and the token once, build clients, build the app.

Run: ``gunicorn -c services/status-service/thumbcache_status/gunicorn.conf.py`` (which names
``thumbcache_status.wsgi:build_app()``; each worker builds its own clients after the fork).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, MutableMapping

import falcon
from thumbcache.broker import make_broker, queue_depth
from thumbcache.contracts import all_queues
from thumbcache.database import process_store
from thumbcache.logs import setup_logging
from thumbcache.pipeline.runtime import Runtime
from thumbcache.settings import Settings, load_settings

from thumbcache_status.access import TOKEN_ENV, Access, access_for
from thumbcache_status.app import create_app
from thumbcache_status.submit import runtime_planner, runtime_submitter

READ_TIMEOUT_MS = 2000
# Where gunicorn listens: its on_starting hook writes the binds it was given here, so every
# worker (and a token-less start) knows whether the service is reachable beyond loopback.
LISTEN_ENV = "THUMBCACHE_STATUS_LISTEN"
BIND_ENV = "THUMBCACHE_STATUS_BIND"
DEFAULT_BIND = "127.0.0.1:8080"


def status_options(settings: Settings) -> tuple[tuple[str, ...], bool]:
    """(allowed roots, token required), from the ``[status]`` settings section."""
    return tuple(settings.status.allowed_roots), settings.status.require_token


def listen_addresses(env: Mapping[str, str]) -> tuple[str, ...]:
    """The addresses the server listens on, as gunicorn's hook recorded them (else the
    configured bind, else the loopback default)."""
    recorded = env.get(LISTEN_ENV) or env.get(BIND_ENV) or DEFAULT_BIND
    return tuple(recorded.split())


def check_listen(addresses: Iterable[str], env: MutableMapping[str, str] | None = None) -> Access:
    """Record ``addresses`` for the workers; refuse (ConfigError) a token-less exposed start."""
    env = os.environ if env is None else env
    env[LISTEN_ENV] = " ".join(addresses)
    return access_for(load_settings(env=env).status, env.get(TOKEN_ENV) or None, addresses)


def build_app(env: Mapping[str, str] | None = None) -> falcon.App[falcon.Request, falcon.Response]:
    """The production app: configured MongoDB and broker, token, roots and listen addresses
    from the edge (ConfigError when the token is missing where it is needed)."""
    env = os.environ if env is None else env
    setup_logging()
    settings = load_settings(env=env)
    roots = tuple(settings.status.allowed_roots)
    access = access_for(settings.status, env.get(TOKEN_ENV) or None, listen_addresses(env))
    show_paths = settings.status.show_paths
    # No index is made here: the service must start, and answer /readyz 503, while the
    # database is down (the workers and commands that write make the indexes); and a request
    # waits for a missing database no longer than a readiness probe does.
    store = process_store(settings, create_indexes=False, serverSelectionTimeoutMS=READ_TIMEOUT_MS)
    if settings.in_process_broker:
        # An in-process broker here would swallow scans no worker ever sees.
        return create_app(store, settings, access=access, show_paths=show_paths)
    runtime = Runtime(settings, store, make_broker(settings))
    queues = all_queues(settings.renditions.values())
    return create_app(
        store,
        settings,
        submit_scan=runtime_submitter(runtime),
        plan_scan=runtime_planner(runtime),
        allowed_roots=roots,
        access=access,
        show_paths=show_paths,
        queue_depths=lambda: {q: queue_depth(runtime.broker, q) for q in queues},
    )
