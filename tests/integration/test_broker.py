"""Batch publishing on the real RabbitMQ: transactions, counts, recovery from a lost connection."""

from __future__ import annotations

import pytest
from thumbcache.broker import make_broker, publish_batch, queue_depth
from thumbcache.contracts import RenderRequest, render_message
from thumbcache.renditions import THUMBNAIL
from thumbcache.settings import load_settings

pytestmark = pytest.mark.integration


def messages(count: int, lane: str = "fresh") -> list:
    return [
        render_message(THUMBNAIL, RenderRequest("job", "col", f"img{i}", f"a/{i}.jpg"), lane)
        for i in range(count)
    ]


def test_batches_land_whole_on_their_lanes_and_survive_a_dropped_connection(amqp_url):
    broker = make_broker(load_settings(files=[], env={}, overrides={"broker_url": amqp_url}))
    try:
        publish_batch(broker, messages(300))
        publish_batch(broker, messages(50, "backfill"))
        assert queue_depth(broker, "thumbnail") == 300
        assert queue_depth(broker, "thumbnail-backfill") == 50

        broker.connection.close()  # the broker went away under the publisher
        publish_batch(broker, messages(20))

        assert queue_depth(broker, "thumbnail") == 320
        publish_batch(broker, [])  # nothing to do, nothing sent
        assert queue_depth(broker, "thumbnail") == 320
    finally:
        broker.close()
