"""Composition root of scanner: ``dramatiq thumbcache_scanner.worker``.

Settings are read and the broker set before the actor is declared (Dramatiq's import trap).
"""

from thumbcache.worker_root import build_worker_runtime

runtime = build_worker_runtime()
broker = runtime.broker

from thumbcache_scanner.actors import declare  # noqa: E402

actor = declare(broker, runtime)
