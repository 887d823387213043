"""The broker from a URL: ``amqp://`` is RabbitMQ with publisher confirms, ``memory://`` is
Dramatiq's in-process broker (the embedded default). Plus batch publishing and queue depth.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage, Retries, TimeLimit

from thumbcache.settings import Settings


def make_broker(settings: Settings) -> dramatiq.Broker:
    """Build the configured broker with thumbcache's retry and time-limit policy."""
    if settings.broker_url.startswith("memory://"):
        broker: dramatiq.Broker = StubBroker()
    else:
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        broker = RabbitmqBroker(url=settings.broker_url, confirm_delivery=True)
    _configure_middleware(broker, settings)
    return broker


def _configure_middleware(broker: dramatiq.Broker, settings: Settings) -> None:
    worker = settings.worker
    for middleware in list(broker.middleware):
        if isinstance(middleware, Retries):
            middleware.max_retries = worker.max_retries
            middleware.min_backoff = worker.min_backoff_ms
            middleware.max_backoff = worker.max_backoff_ms
        if isinstance(middleware, TimeLimit):
            middleware.time_limit = worker.render_time_limit_seconds * 1000
    if not any(isinstance(m, CurrentMessage) for m in broker.middleware):
        broker.add_middleware(CurrentMessage())


def queue_depth(broker: dramatiq.Broker, queue_name: str) -> int:
    """Messages waiting in a queue (ready plus delayed retries), as the broker reports them."""
    if isinstance(broker, StubBroker):
        queues = broker.queues
        total = 0
        for name in (queue_name, f"{queue_name}.DQ"):
            if name in queues:
                total += queues[name].qsize()
        return total
    get_counts: Callable[[str], Sequence[int]] = broker.get_queue_message_counts  # type: ignore[attr-defined]
    ready, delayed, _dead = get_counts(queue_name)
    return int(ready) + int(delayed)


def publish_batch(broker: dramatiq.Broker, messages: Sequence[dramatiq.Message[Any]]) -> None:
    """Publish messages; with RabbitMQ each is confirmed by the broker before this returns."""
    for message in messages:
        broker.enqueue(message)


def wait_below_high_water(
    broker: dramatiq.Broker,
    queue_names: Sequence[str],
    high_water: int,
    poll_seconds: float,
    deadline: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Hold back while any queue is above its high-water mark (the thundering-herd guard).

    Returns False if ``deadline`` (a ``time.monotonic()`` value) passed while waiting.
    """
    while any(queue_depth(broker, q) >= high_water for q in queue_names):
        if deadline is not None and time.monotonic() >= deadline:
            return False
        sleep(poll_seconds)
    return True
