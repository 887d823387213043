"""Declaring the stage actors on a given broker. Actors only decode and delegate."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import dramatiq
from dramatiq.middleware import CurrentMessage

from thumbcache.contracts import (
    BACKFILL,
    FRESH,
    SCAN_ACTOR,
    SCAN_QUEUE,
    PayloadError,
    RenderBatch,
    RenderRequest,
    ScanRequest,
    render_queue,
)
from thumbcache.pipeline.render import render_batch_step, render_step
from thumbcache.pipeline.runtime import Runtime
from thumbcache.pipeline.scan_guard import scan_or_end_job

log = logging.getLogger(__name__)


def declare_scan_actor(broker: dramatiq.Broker, rt: Runtime) -> dramatiq.Actor[Any, Any]:
    """The scanner's actor: one time slice of a checkpointed scan (a scan that cannot go on
    ends its job failed, with the reason)."""
    max_retries = rt.settings.worker.max_retries

    def scan_collection(payload: dict[str, Any]) -> None:
        try:
            request = ScanRequest.from_dict(payload)
        except PayloadError as exc:
            log.error("dropping malformed scan message: %s", exc)
            return
        scan_or_end_job(rt, request, tries=_retries_so_far() + 1, max_tries=max_retries + 1)

    declare = dramatiq.actor(
        actor_name=SCAN_ACTOR,
        queue_name=SCAN_QUEUE,
        broker=broker,
        max_retries=max_retries,
        time_limit=rt.settings.worker.scan_time_limit_seconds * 1000,
    )
    return declare(scan_collection)


def declare_render_actor(
    broker: dramatiq.Broker, rt: Runtime, name: str
) -> dramatiq.Actor[Any, Any]:
    """A rendition's actors (names, queue and backfill queue from the registry): one for a
    message of one image, returned, and one for a batch of images (ADR 0010), which keeps a
    render message's time limit (it hands on what it has not started by half of it). Both serve
    both lanes."""
    rendition = rt.settings.rendition(name)

    def batch_requests(payload: Any) -> tuple[RenderRequest, ...]:
        return RenderBatch.from_dict(payload).requests

    _declare_render(broker, rt, name, rendition.batch_actor_name, batch_requests,
                    render_batch_step)  # fmt: skip
    actor = _declare_render(broker, rt, name, rendition.actor_name, RenderRequest.from_dict,
                            render_step)  # fmt: skip
    broker.declare_queue(render_queue(rendition, BACKFILL))
    return actor


def _declare_render(
    broker: dramatiq.Broker,
    rt: Runtime,
    name: str,
    actor_name: str,
    decode: Callable[[Any], Any],
    step: Callable[..., Any],
) -> dramatiq.Actor[Any, Any]:
    """An actor on the rendition's fresh queue that decodes its payload and runs ``step``."""
    worker = rt.settings.worker

    def render(payload: dict[str, Any]) -> None:
        try:
            work = decode(payload)
        except PayloadError as exc:
            log.error("dropping malformed %s message: %s", actor_name, exc)
            return
        step(
            rt,
            name,
            work,
            last_try=_retries_so_far() >= worker.max_retries,
            redelivered=_redelivered(),
        )

    render.__name__ = actor_name
    declare = dramatiq.actor(
        actor_name=actor_name,
        queue_name=render_queue(rt.settings.rendition(name), FRESH),
        broker=broker,
        max_retries=worker.max_retries,
        time_limit=worker.render_actor_time_limit_seconds * 1000,
    )
    return declare(render)


def declare_actors(
    broker: dramatiq.Broker, rt: Runtime, *, scan: bool, renditions: tuple[str, ...]
) -> None:
    """Declare the scan actor (if ``scan``) and the actors of ``renditions`` on ``broker``."""
    if scan:
        declare_scan_actor(broker, rt)
    rt.hosted_renditions = tuple(dict.fromkeys((*rt.hosted_renditions, *renditions)))
    for name in renditions:
        declare_render_actor(broker, rt, name)


def _redelivered() -> bool:
    """True when RabbitMQ delivers this message again (its first consumer died or timed out)."""
    message = CurrentMessage.get_current_message()
    return bool(getattr(message, "redelivered", False))


def _retries_so_far() -> int:
    message = CurrentMessage.get_current_message()
    return int(message.options.get("retries", 0)) if message is not None else 0
