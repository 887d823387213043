"""Composition root for gunicorn: read settings and the token once, build clients, build the app.

Run: ``gunicorn -c services/status-service/thumbcache_status/gunicorn.conf.py`` (which names
``thumbcache_status.wsgi:build_app()``; each worker builds its own clients after the fork).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import falcon
from thumbcache.broker import make_broker, queue_depth
from thumbcache.contracts import all_queues
from thumbcache.database import process_store
from thumbcache.errors import ConfigError
from thumbcache.logs import setup_logging
from thumbcache.pipeline.runtime import Runtime
from thumbcache.settings import Settings, load_settings

from thumbcache_status.app import create_app
from thumbcache_status.submit import runtime_planner, runtime_submitter

TOKEN_ENV = "THUMBCACHE_API_TOKEN"
READ_TIMEOUT_MS = 2000


def status_options(settings: Settings) -> tuple[tuple[str, ...], bool]:
    """(allowed roots, token required), from the ``[status]`` settings section."""
    return tuple(settings.status.allowed_roots), settings.status.require_token


def build_app(env: Mapping[str, str] | None = None) -> falcon.App[falcon.Request, falcon.Response]:
    """The production app: configured MongoDB and broker, token and roots from the edge."""
    env = os.environ if env is None else env
    setup_logging()
    settings = load_settings(env=env)
    token = env.get(TOKEN_ENV) or None
    roots, token_required = status_options(settings)
    if token_required and not token:
        raise ConfigError(f"this configuration requires {TOKEN_ENV} to be set")
    # No index is made here: the service must start, and answer /readyz 503, while the
    # database is down (the workers and commands that write make the indexes); and a request
    # waits for a missing database no longer than a readiness probe does.
    store = process_store(settings, create_indexes=False, serverSelectionTimeoutMS=READ_TIMEOUT_MS)
    if settings.in_process_broker:
        # An in-process broker here would swallow scans no worker ever sees.
        return create_app(store, settings, api_token=token)
    runtime = Runtime(settings, store, make_broker(settings))
    queues = all_queues(settings.renditions.values())
    return create_app(
        store,
        settings,
        submit_scan=runtime_submitter(runtime),
        plan_scan=runtime_planner(runtime),
        allowed_roots=roots,
        api_token=token,
        queue_depths=lambda: {q: queue_depth(runtime.broker, q) for q in queues},
    )
