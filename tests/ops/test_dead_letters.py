"""Dead letters: produced for real on a private RabbitMQ vhost, listed, recorded, requeued."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import CurrentMessage
from thumbcache.broker import make_broker
from thumbcache.contracts import RenderRequest, all_queues, render_message
from thumbcache.ops.dead_letters import (
    dead_letter_depths,
    describe,
    handle_dead_letters,
    origin_queue,
    requeue_copy,
)
from thumbcache.renditions import CACHE, DEFAULT_RENDITIONS, THUMBNAIL
from thumbcache.settings import load_settings
from thumbcache.state.store import Store, connect
from thumbcache_control import cli

pytestmark = pytest.mark.integration
REQUEST = RenderRequest("job-1", "coll-1", "img-1", "book.cbz#p/001.jpg")

QUEUES = all_queues(DEFAULT_RENDITIONS.values())


class Flaky:
    """A thumbnail actor body that fails while ``broken`` and remembers what it processed."""

    def __init__(self) -> None:
        self.broken = True
        self.processed: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def __call__(self, payload: dict[str, Any]) -> None:
        if self.broken:
            raise RuntimeError("disk on fire")
        message = CurrentMessage.get_current_message()
        assert message is not None
        self.processed.append((payload, dict(message.options)))


def declare_flaky(broker: dramatiq.Broker) -> Flaky:
    body = Flaky()

    def generate_thumbnail(payload: dict[str, Any]) -> None:
        body(payload)

    dramatiq.actor(
        actor_name=THUMBNAIL.actor_name, queue_name="thumbnail", broker=broker, max_retries=0
    )(generate_thumbnail)
    return body


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def store(mongo_url: str, db_name: str) -> Store:
    return connect(mongo_url, db_name)


@pytest.fixture
def rabbit(amqp_url: str, mongo_url: str, db_name: str) -> Iterator[dramatiq.Broker]:
    settings = load_settings(
        files=[],
        env={"THUMBCACHE_WORKER__MAX_RETRIES": "0"},
        overrides={"broker_url": amqp_url, "mongo_url": mongo_url, "database": db_name},
    )
    broker = make_broker(settings)
    yield broker
    broker.close()


def counts(broker: dramatiq.Broker, queue: str = "thumbnail") -> tuple[int, int, int]:
    """Ready, delayed and dead messages of a queue."""
    return broker.get_queue_message_counts(queue)  # type: ignore[attr-defined,no-any-return]


def test_a_real_dead_letter_is_listed_without_loss_recorded_requeued_and_processed(
    rabbit: dramatiq.Broker, store: Store
) -> None:
    actor = declare_flaky(rabbit)
    message = rabbit.enqueue(render_message(THUMBNAIL, REQUEST))
    worker = dramatiq.Worker(rabbit, queues={"thumbnail"}, worker_threads=1, worker_timeout=100)
    worker.start()
    try:  # the fault: the actor raises and has no retries left, so RabbitMQ dead-letters it
        wait_for(lambda: counts(rabbit)[2] == 1)
    finally:
        worker.stop()

    for _ in range(2):  # listing twice: nothing lost, nothing recorded twice
        (seen,) = handle_dead_letters(rabbit, store.dead_letters, queues=QUEUES)
        assert not seen.requeued and counts(rabbit) == (0, 0, 1)
    letter = seen.letter
    assert (letter.message_id, letter.actor, letter.queue, letter.dead_queue) == (
        message.message_id, THUMBNAIL.actor_name, "thumbnail", "thumbnail.XQ")  # fmt: skip
    assert letter.payload["image_id"] == "img-1" and letter.message is not None
    record = store.db["dead_letters"].find_one({"_id": message.message_id})
    assert record is not None
    assert (record["job_id"], record["image_id"], record["source"], record["status"]) == (
        "job-1", "img-1", "book.cbz#p/001.jpg", "dead")  # fmt: skip
    assert record["first_seen"] <= record["last_seen"]
    assert store.db["dead_letters"].count_documents({}) == 1

    actor.broken = False  # the repair, then the requeue
    (requeued,) = handle_dead_letters(rabbit, store.dead_letters, queues=QUEUES, requeue=True)
    assert requeued.requeued and counts(rabbit) == (1, 0, 0)
    record = store.db["dead_letters"].find_one({"_id": message.message_id})
    assert record is not None and (record["status"], record["requeues"]) == ("requeued", 1)

    worker = dramatiq.Worker(rabbit, queues={"thumbnail"}, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        wait_for(lambda: bool(actor.processed))
    finally:
        worker.stop()
    ((payload, options),) = actor.processed
    assert payload == REQUEST.to_dict()
    assert "retries" not in options and options["dead_letter_requeues"] == 1
    assert counts(rabbit) == (0, 0, 0)


def test_the_command_lists_requeues_and_leaves_garbage_in_place(
    rabbit: dramatiq.Broker,
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    amqp_url: str,
    mongo_url: str,
    db_name: str,
) -> None:
    for name in [n for n in os.environ if n.startswith("THUMBCACHE_")]:
        monkeypatch.delenv(name)
    for name, value in {
        "BROKER_URL": amqp_url,
        "MONGO_URL": mongo_url,
        "DATABASE": db_name,
    }.items():
        monkeypatch.setenv(f"THUMBCACHE_{name}", value)
    dead = render_message(CACHE, REQUEST).copy(
        options={"retries": 5, "traceback": "Traceback ...\nOSError: disk full\n"}
    )
    rabbit.declare_queue("cache", ensure=True)
    channel = rabbit.channel  # type: ignore[attr-defined]
    for body in (dead.encode(), b"\x00garbage"):  # the fault: two messages in cache.XQ
        channel.basic_publish(exchange="", routing_key="cache.XQ", body=body)

    assert cli.main(["dead-letters", "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(x["dead_queue"], x["actor"], x["requeued"]) for x in lines] == [
        ("cache.XQ", "generate_cache", False),
        ("cache.XQ", None, False),
    ]
    assert lines[0]["error"] == "OSError: disk full" and lines[0]["retries"] == 5
    assert counts(rabbit, "cache") == (0, 0, 2)

    assert cli.main(["dead-letters", "--requeue", "--queue", "cache"]) == 0
    out = capsys.readouterr().out
    assert "2 dead letter(s), 1 requeued" in out
    assert counts(rabbit, "cache") == (1, 0, 1)  # the garbage stays for a human
    _method, _props, body = channel.basic_get(queue="cache", auto_ack=True)
    requeued = dramatiq.Message.decode(body)
    assert requeued.message_id == dead.message_id and requeued.args == dead.args
    assert "retries" not in requeued.options and "traceback" not in requeued.options
    assert store.db["dead_letters"].count_documents({"status": "dead"}) == 1


def test_the_embedded_stub_brokers_dead_letters_are_handled_too(store: Store) -> None:
    broker = StubBroker()
    broker.add_middleware(CurrentMessage())
    actor = declare_flaky(broker)
    broker.enqueue(render_message(THUMBNAIL, REQUEST))
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=50)
    worker.start()
    try:
        broker.join("thumbnail", fail_fast=False)
        assert dead_letter_depths(broker, QUEUES)["thumbnail.XQ"] == 1
        assert not handle_dead_letters(broker, store.dead_letters, queues=QUEUES)[0].requeued
        assert dead_letter_depths(broker, QUEUES)["thumbnail.XQ"] == 1
        actor.broken = False
        assert handle_dead_letters(broker, store.dead_letters, queues=QUEUES, requeue=True)[
            0
        ].requeued
        broker.join("thumbnail", fail_fast=False)
        worker.join()
    finally:
        worker.stop()
    assert dead_letter_depths(broker, QUEUES)["thumbnail.XQ"] == 0
    assert [p for p, _ in actor.processed] == [REQUEST.to_dict()]


def test_requeue_copies_keep_the_id_and_payload_and_reset_the_retries() -> None:
    original = render_message(THUMBNAIL, REQUEST, lane="backfill").copy(
        queue_name="thumbnail-backfill.DQ",
        options={"retries": 3, "eta": 1, "traceback": "x", "max_retries": 7},
    )
    copy = requeue_copy(original, origin_queue("thumbnail-backfill.XQ"))
    assert (copy.queue_name, copy.message_id, copy.args) == (
        "thumbnail-backfill", original.message_id, original.args)  # fmt: skip
    assert copy.options == {"max_retries": 7, "dead_letter_requeues": 1}
    assert requeue_copy(copy, "thumbnail-backfill").options["dead_letter_requeues"] == 2
    assert origin_queue("thumbnail-backfill.DQ") == "thumbnail-backfill"
    garbage = describe(b"\xff\xfe", "scan.XQ")
    assert garbage.message is None and garbage.message_id.startswith("raw-")
    assert garbage.message_id == describe(b"\xff\xfe", "scan.XQ").message_id
