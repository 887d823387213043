"""Declaring the stage actors on a given broker. Actors only decode and delegate."""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
from dramatiq.middleware import CurrentMessage

from thumbcache.contracts import (
    ACTOR_OF_STAGE,
    BACKFILL,
    QUEUE_OF_STAGE,
    SCAN_ACTOR,
    SCAN_QUEUE,
    PayloadError,
    RenderRequest,
    ScanRequest,
    queue_for,
)
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
    broker: dramatiq.Broker, rt: Runtime, stage: str
) -> dramatiq.Actor[Any, Any]:
    """A render stage's actor (``thumbnail`` or ``cache``): one rendition per message."""
    from thumbcache.pipeline.render import render_step  # the scanner never loads OpenCV

    max_retries = rt.settings.worker.max_retries

    def render(payload: dict[str, Any]) -> None:
        try:
            request = RenderRequest.from_dict(payload)
        except PayloadError as exc:
            log.error("dropping malformed %s message: %s", stage, exc)
            return
        render_step(
            rt,
            stage,
            request,
            last_try=_retries_so_far() >= max_retries,
            redelivered=_redelivered(),
        )

    render.__name__ = ACTOR_OF_STAGE[stage]
    declare = dramatiq.actor(
        actor_name=ACTOR_OF_STAGE[stage],
        queue_name=QUEUE_OF_STAGE[stage],
        broker=broker,
        max_retries=max_retries,
        time_limit=rt.settings.worker.render_actor_time_limit_seconds * 1000,
    )
    actor = declare(render)
    broker.declare_queue(queue_for(stage, BACKFILL))  # the same actor serves both lanes
    return actor


def _redelivered() -> bool:
    """True when RabbitMQ delivers this message again (its first consumer died or timed out)."""
    message = CurrentMessage.get_current_message()
    return bool(getattr(message, "redelivered", False))


def _retries_so_far() -> int:
    message = CurrentMessage.get_current_message()
    return int(message.options.get("retries", 0)) if message is not None else 0
