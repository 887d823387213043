"""The broker from a URL: ``amqp://`` is RabbitMQ with publisher confirms, ``memory://`` is
Dramatiq's in-process broker (the embedded default). Plus batch publishing and queue depth.
"""

from __future__ import annotations

import threading
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
            middleware.time_limit = worker.render_actor_time_limit_seconds * 1000
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
    """Publish messages; when this returns, the broker has taken every one of them.

    With RabbitMQ a batch is one AMQP transaction on a channel of this thread: its commit-ok
    acknowledges the whole batch (eight times faster here than a confirm per message, ADR
    0004). A failed batch is sent again whole; a duplicate is harmless downstream.
    """
    if not messages:
        return
    if isinstance(broker, StubBroker):
        for message in messages:
            broker.enqueue(message)
        return
    _publish_transaction(broker, messages)


_TX_CHANNELS = threading.local()
MAX_BATCH_ATTEMPTS = 3


def _publish_transaction(
    broker: dramatiq.Broker, messages: Sequence[dramatiq.Message[Any]]
) -> None:
    import pika
    import pika.exceptions

    for attempt in range(1, MAX_BATCH_ATTEMPTS + 1):
        try:
            for queue in {m.queue_name for m in messages}:
                broker.declare_queue(queue, ensure=True)  # type: ignore[call-arg]
            channel = _tx_channel(broker)
            # The blocking channel flushes the socket after every publish; inside a
            # transaction nothing needs to leave before the commit, so the frames are queued on
            # the underlying channel and tx_commit sends them all (and waits for commit-ok).
            publish = channel._impl.basic_publish
            for message in messages:
                broker.emit_before("enqueue", message, None)
                publish(
                    exchange="",
                    routing_key=message.queue_name,
                    body=message.encode(),
                    properties=pika.BasicProperties(
                        delivery_mode=2, priority=message.options.get("broker_priority")
                    ),
                )
            channel.tx_commit()
            for message in messages:
                broker.emit_after("enqueue", message, None)
            return
        except (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError):
            _channels().pop(id(broker), None)
            del broker.connection  # type: ignore[attr-defined]  # the next use reconnects
            if attempt == MAX_BATCH_ATTEMPTS:
                raise


def _channels() -> dict[int, Any]:
    channels: dict[int, Any] | None = getattr(_TX_CHANNELS, "channels", None)
    if channels is None:
        channels = _TX_CHANNELS.channels = {}
    return channels


def _tx_channel(broker: dramatiq.Broker) -> Any:
    """This thread's transactional channel on the broker's (thread-local) connection."""
    channel = _channels().get(id(broker))
    if channel is None or channel.is_closed:
        channel = broker.connection.channel()  # type: ignore[attr-defined]
        channel.tx_select()
        _channels()[id(broker)] = channel
    return channel


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
