"""Composition root of thumbnail-service: ``dramatiq thumbcache_thumbnail.worker``.

Settings are read and the broker set before the actor is declared (Dramatiq's import trap).
"""

from thumbcache.worker_root import build_worker_runtime

runtime = build_worker_runtime()
broker = runtime.broker

from thumbcache_thumbnail.actors import declare  # noqa: E402

actor = declare(broker, runtime)
