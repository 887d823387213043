"""Composition root of cache-service: ``dramatiq thumbcache_cache.worker``.

Settings are read and the broker set before the actor is declared (Dramatiq's import trap).
"""

from thumbcache.worker_root import build_worker_runtime

runtime = build_worker_runtime()
broker = runtime.broker

from thumbcache_cache.actors import declare  # noqa: E402

actor = declare(broker, runtime)
