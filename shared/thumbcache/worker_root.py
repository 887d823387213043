"""The shared shape of a stage worker's composition root (``dramatiq thumbcache_X.worker``)."""

from __future__ import annotations

import dramatiq

from thumbcache.broker import make_broker
from thumbcache.database import process_store
from thumbcache.errors import ConfigError
from thumbcache.heartbeat import Heartbeat
from thumbcache.logs import setup_logging
from thumbcache.ops.alerts import completion_hook
from thumbcache.ops.recovery import StartupRecovery
from thumbcache.pipeline.runtime import Runtime
from thumbcache.redelivery import RedeliveryWarnings
from thumbcache.settings import load_settings


def build_worker_runtime() -> Runtime:
    """Read settings once, build the broker and the store, make the broker global.

    Called before a service's actors are declared, so no actor binds to Dramatiq's default.
    """
    setup_logging(take_over=True)  # Dramatiq configured this process first, in its format
    settings = load_settings()
    if settings.in_process_broker:
        raise ConfigError("a stage worker needs THUMBCACHE_BROKER_URL (amqp://...)")
    broker = make_broker(settings)
    worker = settings.worker
    longest = max(worker.render_actor_time_limit_seconds, worker.scan_time_limit_seconds)
    broker.add_middleware(Heartbeat(stall_after=longest + 60))
    if worker.prometheus:
        from dramatiq.middleware.prometheus import Prometheus

        broker.add_middleware(Prometheus())
    dramatiq.set_broker(broker)
    store = process_store(settings)
    runtime = Runtime(settings, store, broker, on_job_finished=completion_hook(store, settings))
    broker.add_middleware(StartupRecovery(runtime))
    broker.add_middleware(RedeliveryWarnings(runtime))
    return runtime
