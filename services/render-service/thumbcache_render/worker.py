"""Composition root of a render worker: ``dramatiq thumbcache_render.worker``.

Settings are read and the broker set before the actors are declared (Dramatiq's import trap);
which renditions it renders is ``worker.renditions`` (``THUMBCACHE_WORKER__RENDITIONS``).
"""

from thumbcache.worker_root import build_worker_runtime

runtime = build_worker_runtime()
broker = runtime.broker

from thumbcache_render.actors import declare  # noqa: E402

renditions = declare(broker, runtime)
