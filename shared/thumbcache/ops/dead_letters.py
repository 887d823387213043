"""Dead letters: list the ``.XQ`` queues, record each message in MongoDB, requeue on demand.

RabbitMQ keeps a dead letter for a week (Dramatiq's ``x-message-ttl``), so each one seen is also
recorded in the ``dead_letters`` collection (``_id`` = Dramatiq message id) and outlives it.

Listing never loses a message: every message of a queue is taken with ``basic_get`` and *no*
acknowledgement, all held unacknowledged on one channel (so none is read twice), then given back
with ``basic_nack(requeue=True)``, which puts them back in place with their original expiry. A
crash in between gives them back too (the channel closes). Requeueing publishes a copy to the
original queue through the broker, which waits for RabbitMQ's publisher confirm, and only then
acknowledges (removes) the dead letter: a crash between the two leaves a duplicate, never a loss,
and the pipeline is idempotent. Dramatiq's in-process ``StubBroker`` is supported as well.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import dramatiq
from dramatiq.brokers.stub import StubBroker

from thumbcache.state.dead_letters import DeadLetterRepository

log = logging.getLogger(__name__)

XQ_SUFFIX = ".XQ"
DQ_SUFFIX = ".DQ"
# Options a retry added to the message; a requeued message starts its retries afresh.
RETRY_OPTIONS = ("retries", "traceback", "requeue_timestamp", "eta")
TAKE_LIMIT = 10_000
PAYLOAD_FIELDS = ("job_id", "image_id", "source", "collection_id")


def xq_name(queue: str) -> str:
    """The dead-letter queue of a queue: ``thumbnail`` -> ``thumbnail.XQ``."""
    return f"{queue}{XQ_SUFFIX}"


def origin_queue(name: str) -> str:
    """The canonical queue a dead-letter (or delay) queue belongs to."""
    for suffix in (XQ_SUFFIX, DQ_SUFFIX):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered message as read from its queue (``message`` None if undecodable)."""

    message_id: str
    dead_queue: str
    actor: str | None
    payload: dict[str, Any]
    retries: int
    error: str | None
    message: dramatiq.Message[Any] | None

    @property
    def queue(self) -> str:
        """The queue a requeue publishes to."""
        return origin_queue(self.dead_queue)


def describe(body: bytes, dead_queue: str) -> DeadLetter:
    """Decode a dead letter's body; an undecodable one gets a content-derived id."""
    try:
        message = dramatiq.Message.decode(body)
    except Exception:  # any garbage on the queue: record it, never requeue it
        digest = hashlib.sha256(body).hexdigest()[:24]
        text = body[:500].decode("utf-8", errors="replace")
        return DeadLetter(f"raw-{digest}", dead_queue, None, {"raw": text}, 0, None, None)
    return describe_message(message, dead_queue)


def describe_message(message: dramatiq.Message[Any], dead_queue: str) -> DeadLetter:
    """What a dead letter is about: its actor, its payload and its last error."""
    args = message.args
    payload = dict(args[0]) if args and isinstance(args[0], Mapping) else {"args": list(args)}
    traceback = message.options.get("traceback")
    error = str(traceback).strip().splitlines()[-1] if traceback else None
    return DeadLetter(
        message_id=message.message_id,
        dead_queue=dead_queue,
        actor=message.actor_name,
        payload=payload,
        retries=int(message.options.get("retries", 0)),
        error=error,
        message=message,
    )


def requeue_copy(message: dramatiq.Message[Any], queue: str) -> dramatiq.Message[Any]:
    """The message to publish again: same id and payload, retries reset, a requeue counted."""
    options = {k: v for k, v in message.options.items() if k not in RETRY_OPTIONS}
    options["dead_letter_requeues"] = int(options.get("dead_letter_requeues", 0)) + 1
    return dataclasses.replace(message, queue_name=queue, options=options)


class _Source(Protocol):
    """Where dead letters are read from: a RabbitMQ vhost or the in-process stub broker."""

    def depths(self, queues: Sequence[str]) -> dict[str, int]: ...
    def take(self, queue: str, limit: int) -> list[tuple[object, DeadLetter]]: ...
    def remove(self, handle: object) -> None: ...
    def close(self) -> None: ...


class _StubSource:
    """The stub broker's dead letters, kept in memory per queue (delay queues included)."""

    def __init__(self, broker: StubBroker) -> None:
        self._broker = broker

    def _lists(self, queue: str) -> Iterator[list[Any]]:
        for name, letters in list(self._broker.dead_letters_by_queue.items()):
            if origin_queue(name) == queue:
                yield letters

    def depths(self, queues: Sequence[str]) -> dict[str, int]:
        return {xq_name(q): sum(len(x) for x in self._lists(q)) for q in queues}

    def take(self, queue: str, limit: int) -> list[tuple[object, DeadLetter]]:
        taken: list[tuple[object, DeadLetter]] = []
        for letters in self._lists(queue):
            for proxy in list(letters)[: limit - len(taken)]:
                message = getattr(proxy, "_message", proxy)
                taken.append(((letters, proxy), describe_message(message, xq_name(queue))))
        return taken

    def remove(self, handle: object) -> None:
        assert isinstance(handle, tuple)
        letters, proxy = handle
        letters.remove(proxy)

    def close(self) -> None:
        return None


class _RabbitSource:
    """A vhost's ``.XQ`` queues over a connection of our own (unacked gets, then nack-requeue)."""

    def __init__(self, broker: dramatiq.Broker) -> None:
        import pika

        self._pika = pika
        self._connection = pika.BlockingConnection(broker.parameters)  # type: ignore[attr-defined]
        self._channel = self._connection.channel()
        self._probe = self._connection.channel()
        self._held = 0

    def depths(self, queues: Sequence[str]) -> dict[str, int]:
        depths: dict[str, int] = {}
        for queue in queues:
            try:
                ok = self._probe.queue_declare(queue=xq_name(queue), passive=True)
            except self._pika.exceptions.ChannelClosedByBroker:  # no such queue yet: empty
                self._probe = self._connection.channel()
                depths[xq_name(queue)] = 0
            else:
                depths[xq_name(queue)] = int(ok.method.message_count)
        return depths

    def take(self, queue: str, limit: int) -> list[tuple[object, DeadLetter]]:
        if not self.depths([queue])[xq_name(queue)]:
            return []
        taken: list[tuple[object, DeadLetter]] = []
        while len(taken) < limit:
            method, _props, body = self._channel.basic_get(queue=xq_name(queue), auto_ack=False)
            if method is None:
                break
            self._held += 1
            taken.append((method.delivery_tag, describe(body, xq_name(queue))))
        return taken

    def remove(self, handle: object) -> None:
        self._channel.basic_ack(delivery_tag=handle)
        self._held -= 1

    def close(self) -> None:
        try:
            if self._held and self._channel.is_open:
                self._channel.basic_nack(delivery_tag=0, multiple=True, requeue=True)
        finally:
            if self._connection.is_open:
                self._connection.close()  # anything still unacknowledged goes back as well


@contextmanager
def _open_source(broker: dramatiq.Broker) -> Iterator[_Source]:
    source: _Source = (
        _StubSource(broker) if isinstance(broker, StubBroker) else _RabbitSource(broker)
    )
    try:
        yield source
    finally:
        source.close()


def dead_letter_depths(broker: dramatiq.Broker, queues: Sequence[str]) -> dict[str, int]:
    """Messages in each ``.XQ`` queue, by dead-letter queue name (a missing queue counts 0)."""
    with _open_source(broker) as source:
        return source.depths(queues)


@dataclass(frozen=True)
class Handled:
    """One dead letter seen by a pass, and whether this pass requeued it."""

    letter: DeadLetter
    requeued: bool


def handle_dead_letters(
    broker: dramatiq.Broker,
    records: DeadLetterRepository,
    *,
    queues: Iterable[str],
    requeue: bool = False,
    limit_per_queue: int = TAKE_LIMIT,
) -> list[Handled]:
    """Record every dead letter (``store.dead_letters``) and, with ``requeue``, send it back
    to its queue. Undecodable messages are recorded but stay where they are.
    """
    if requeue and not getattr(broker, "confirm_delivery", True):
        raise ValueError("requeueing dead letters needs a broker with publisher confirms")
    handled: list[Handled] = []
    with _open_source(broker) as source:
        for queue in queues:
            for handle, letter in source.take(queue, limit_per_queue):
                records.seen(letter.message_id, letter_fields(letter))
                done = False
                if requeue and letter.message is not None:
                    broker.enqueue(requeue_copy(letter.message, letter.queue))  # confirmed
                    source.remove(handle)
                    records.requeued(letter.message_id)
                    log.info("requeued dead letter %s to %s", letter.message_id, letter.queue)
                    done = True
                handled.append(Handled(letter, done))
    return handled


def letter_fields(letter: DeadLetter) -> dict[str, Any]:
    """What is recorded of a dead letter."""
    return {
        "queue": letter.queue,
        "dead_queue": letter.dead_queue,
        "actor": letter.actor,
        "payload": letter.payload,
        **{k: letter.payload.get(k) for k in PAYLOAD_FIELDS},
        "retries": letter.retries,
        "error": letter.error,
    }


def record_view(letter: DeadLetter, requeued: bool) -> dict[str, Any]:
    """A dead letter as a JSON-ready line (``thumbcache dead-letters --json``)."""
    return {
        "message_id": letter.message_id,
        "queue": letter.queue,
        "dead_queue": letter.dead_queue,
        "actor": letter.actor,
        **{k: letter.payload.get(k) for k in PAYLOAD_FIELDS},
        "payload": letter.payload,
        "retries": letter.retries,
        "error": letter.error,
        "requeued": requeued,
    }
