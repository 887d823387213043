"""Naming the cause of a redelivery when it is RabbitMQ's consumer timeout.

RabbitMQ closes a channel with ``PRECONDITION_FAILED`` (406) when one of its deliveries is not
acknowledged within ``consumer_timeout`` (30 min by default, checked on the channel tick, about
once a minute). Every unacknowledged message of that channel goes back to its queue flagged
``redelivered``. The render that was too slow goes on, wins its guarded transition, and its ack
then fails; the redelivered copy finds the stage done (or, if it arrives first, claims it again
and renders a second time, with one transition winning). Harmless, but Dramatiq only reports a
consumer "connection error". This middleware says what happened, with a WARNING:

- when Dramatiq's consumer logs a channel closed by the broker's acknowledgement timeout;
- when a redelivered render message arrives while this same process is still running the
  first delivery of that item's stage (certainly the consumer timeout), or while the item's
  stage is ``running`` with a heartbeat younger than the render time limit (the timeout, or a
  worker that died: both named).

Wired into a stage worker by :func:`thumbcache.worker_root.build_worker_runtime`.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from thumbcache.pipeline.runtime import Runtime
from thumbcache.state.clock import utcnow
from thumbcache.state.model import RUNNING

log = logging.getLogger(__name__)
DRAMATIQ_CONSUMER_LOGGER = "dramatiq.worker"  # ConsumerThread(queue) loggers are its children
ACK_TIMEOUT_MARKERS = ("PRECONDITION_FAILED", "acknowledgement", "timed out")
ADVICE = (
    "raise RabbitMQ's consumer_timeout (rabbitmq.conf, milliseconds) above the render time "
    "limit (worker.render_time_limit_seconds = {limit} s) plus the time a prefetched message "
    "waits in the worker"
)


def names_ack_timeout(text: str) -> bool:
    """True for the broker's reason when it closed a channel over an unacknowledged delivery."""
    return all(marker in text for marker in ACK_TIMEOUT_MARKERS)


class _AckTimeoutLogWatcher(logging.Handler):
    """Turns Dramatiq's consumer connection error into a WARNING that names the cause."""

    def __init__(self, limit_seconds: int) -> None:
        super().__init__(level=logging.WARNING)
        self.limit_seconds = limit_seconds

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a malformed record from someone else: not ours to report
            return
        if not names_ack_timeout(text):
            return
        log.warning(
            "RabbitMQ closed the consumer channel of %s: a delivery was not acknowledged within "
            "its consumer_timeout (%s). Its unacknowledged messages are redelivered (harmless: "
            "transitions are guarded, a render is at worst done twice); %s",
            record.name.removeprefix(f"{DRAMATIQ_CONSUMER_LOGGER}."),
            text,
            ADVICE.format(limit=self.limit_seconds),
        )


class RedeliveryWarnings(Middleware):
    """Log every redelivered message (INFO) and name the consumer timeout (WARNING)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.rendition_of_actor = {
            actor: name
            for name, r in rt.settings.renditions.items()
            for actor in (r.actor_name, r.batch_actor_name)
        }
        self.limit_seconds = rt.settings.worker.render_time_limit_seconds
        self.watcher = _AckTimeoutLogWatcher(self.limit_seconds)
        self._lock = threading.Lock()
        self._running: Counter[tuple[str, str, str]] = Counter()  # (job, image, stage) here
        self._keys: dict[str, tuple[str, str, str]] = {}  # message id -> key

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        """Start watching Dramatiq's consumer threads for the broker's ack-timeout closure."""
        logging.getLogger(DRAMATIQ_CONSUMER_LOGGER).addHandler(self.watcher)

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        """Stop watching."""
        logging.getLogger(DRAMATIQ_CONSUMER_LOGGER).removeHandler(self.watcher)

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        """Note the render this process starts; name the cause of a redelivered one."""
        key = _render_key(message, self.rendition_of_actor)
        if key is None:
            return
        with self._lock:
            already_here = self._running[key] > 0
            self._running[key] += 1
            self._keys[message.message_id] = key
        if getattr(message, "redelivered", False):
            try:
                self._explain(message, key, already_here)
            except Exception:  # never fail a message over a diagnosis
                log.debug("could not explain redelivery of %s", message.message_id, exc_info=True)

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        """Forget a finished render, whatever its outcome."""
        with self._lock:
            key = self._keys.pop(message.message_id, None)
            if key is not None:
                self._running[key] -= 1
                if self._running[key] <= 0:
                    del self._running[key]

    after_skip_message = after_process_message

    def _explain(self, message: Any, key: tuple[str, str, str], already_here: bool) -> None:
        job_id, image_id, stage = key
        source = _first_image(message.args[0]).get("source", image_id)
        if already_here:
            log.warning(
                "%s message for %s redelivered while this worker is still running its first "
                "delivery: RabbitMQ's consumer_timeout expired before the render finished "
                "(the second run is harmless: one transition wins); %s",
                stage, source, ADVICE.format(limit=self.limit_seconds),
            )  # fmt: skip
            return
        item = self.rt.store.items.get(job_id, image_id)
        sub = ((item or {}).get("stages") or {}).get(stage) or {}
        state = sub.get("state")
        log.info("%s message for %s redelivered (stage %s)", stage, source, state)
        beat = sub.get("heartbeat_at")
        if state != RUNNING or not isinstance(beat, dt.datetime):
            return
        if beat.tzinfo is None:
            beat = beat.replace(tzinfo=dt.UTC)
        age = (utcnow() - beat).total_seconds()
        if age < self.limit_seconds:
            log.warning(
                "%s message for %s redelivered while its first delivery has run only %.0f s on "
                "%s: RabbitMQ's consumer_timeout expired before that render finished, or that "
                "worker died. If it is alive: %s",
                stage, source, age, sub.get("worker"), ADVICE.format(limit=self.limit_seconds),
            )  # fmt: skip


def _render_key(message: Any, rendition_of_actor: Mapping[str, str]) -> tuple[str, str, str] | None:
    stage = rendition_of_actor.get(getattr(message, "actor_name", ""))
    if stage is None or not message.args:
        return None
    payload = message.args[0]
    if not isinstance(payload, dict):
        return None
    job_id, image_id = payload.get("job_id"), _first_image(payload).get("image_id")
    if not isinstance(job_id, str) or not isinstance(image_id, str):
        return None
    return job_id, image_id, stage


def _first_image(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    """A render payload's image, or a batch's first (which stands for the batch here)."""
    images = payload.get("images")
    if isinstance(images, list) and images and isinstance(images[0], list) and images[0]:
        first = images[0]
        return {"image_id": first[0], "source": first[1] if len(first) > 1 else first[0]}
    return payload
