"""Alerts: pure rules over jobs, cache folders and dead-letter depths, and the pass applying them.

Rules (each yields a candidate whose id is ``"{subject}:{kind}"``):

- ``failure_ratio``: at least ``alert_min_images`` images have an outcome and the failed share
  is at or above ``alert_failure_ratio`` (subject: the job);
- ``stalled``: the job's status is ``stalled``, or it is running without progress for
  ``stalled_after_seconds`` (subject: the job);
- ``dead_letters``: a ``.XQ`` queue holds messages (subject: the queue, e.g. ``thumbnail.XQ``);
- ``folder_high_water``: a cache folder with a capacity holds ``capacity * high_water`` bytes
  or more (subject: the folder id).

A pass raises each candidate once (insert if absent; an alert still true is not raised again)
and resolves each active alert that the pass checked and found cleared. Raising logs one ERROR
line, counts ``thumbcache_alerts_raised_total{kind}`` and queues the webhook POST.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import dramatiq
from prometheus_client import Counter

from thumbcache.contracts import all_queues
from thumbcache.ops.dead_letters import dead_letter_depths
from thumbcache.ops.webhook import shared_notifier
from thumbcache.pipeline.runtime import Runtime
from thumbcache.reports import alert_record
from thumbcache.settings import OpsSettings, Settings
from thumbcache.state.alerts import AlertRepository
from thumbcache.state.clock import Clock, utcnow
from thumbcache.state.model import JOB_RUNNING, JOB_STALLED
from thumbcache.state.store import Store

log = logging.getLogger(__name__)

FAILURE_RATIO = "failure_ratio"
STALLED = "stalled"
DEAD_LETTERS = "dead_letters"
FOLDER_HIGH_WATER = "folder_high_water"
KINDS = (FAILURE_RATIO, STALLED, DEAD_LETTERS, FOLDER_HIGH_WATER)
RECENT_JOBS = 50  # finished jobs a scheduled pass still looks at (beyond every unfinished one)

ALERTS_RAISED = Counter(
    "thumbcache_alerts_raised", "Alerts raised (not counting repeats while active)", ["kind"]
)

Notify = Callable[[Mapping[str, Any]], object]


def alert_id(subject: str, kind: str) -> str:
    """The deduplication key: one alert per subject and kind."""
    return f"{subject}:{kind}"


@dataclass(frozen=True)
class AlertCandidate:
    """A condition that holds now and deserves an alert."""

    subject: str
    kind: str
    message: str
    job_id: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def alert_id(self) -> str:
        """The alert document's ``_id``."""
        return alert_id(self.subject, self.kind)

    def fields(self) -> dict[str, Any]:
        """The descriptive fields stored on the alert."""
        return {
            "subject": self.subject,
            "kind": self.kind,
            "job_id": self.job_id,
            "message": self.message,
            "details": dict(self.details),
        }


@dataclass(frozen=True)
class Evaluation:
    """What the rules found: the candidates, and every alert id they checked (true or not)."""

    candidates: tuple[AlertCandidate, ...]
    checked: frozenset[str]


def failure_ratio_rule(job: Mapping[str, Any], ops: OpsSettings) -> AlertCandidate | None:
    """A job whose failed share of images with an outcome reached the threshold."""
    failed = int(job.get("failed", 0))
    processed = int(job.get("completed", 0)) + int(job.get("skipped", 0)) + failed
    if processed < ops.alert_min_images or failed / processed < ops.alert_failure_ratio:
        return None
    ratio = failed / processed
    job_id = str(job["_id"])
    return AlertCandidate(
        subject=job_id,
        kind=FAILURE_RATIO,
        job_id=job_id,
        message=(
            f"job {job_id}: {failed} of {processed} images failed ({ratio:.0%}, "
            f"threshold {ops.alert_failure_ratio:.0%}); see `thumbcache status {job_id}`"
        ),
        details={"failed": failed, "processed": processed, "ratio": round(ratio, 4)},
    )


def stalled_rule(
    job: Mapping[str, Any], ops: OpsSettings, now: dt.datetime
) -> AlertCandidate | None:
    """A job marked stalled, or running with no progress for ``stalled_after_seconds``."""
    status = job.get("status")
    if status not in (JOB_RUNNING, JOB_STALLED):
        return None
    last = job.get("last_progress_at")
    idle = (now - _aware(last)).total_seconds() if isinstance(last, dt.datetime) else None
    if status == JOB_RUNNING and (idle is None or idle < ops.stalled_after_seconds):
        return None
    job_id = str(job["_id"])
    since = f"no progress for {int(idle)} s" if idle is not None else "no progress recorded"
    return AlertCandidate(
        subject=job_id,
        kind=STALLED,
        job_id=job_id,
        message=f"job {job_id} is stalled ({since}); see `thumbcache status {job_id}`",
        details={"idle_seconds": int(idle) if idle is not None else None, "status": status},
    )


def dead_letter_rule(dead_queue: str, depth: int) -> AlertCandidate | None:
    """A dead-letter queue that is not empty."""
    if depth <= 0:
        return None
    return AlertCandidate(
        subject=dead_queue,
        kind=DEAD_LETTERS,
        message=(
            f"{depth} message(s) in dead-letter queue {dead_queue} (kept 7 days); "
            "see `thumbcache dead-letters`"
        ),
        details={"depth": depth},
    )


def folder_rule(folder: Mapping[str, Any]) -> AlertCandidate | None:
    """A cache folder with a capacity that is at or over its high-water mark."""
    capacity = folder.get("capacity_bytes")
    if not capacity:
        return None
    size = int(folder.get("current_size_bytes", 0))
    high_water = float(folder.get("high_water", 0.9))
    if size < capacity * high_water:
        return None
    folder_id = str(folder["_id"])
    return AlertCandidate(
        subject=folder_id,
        kind=FOLDER_HIGH_WATER,
        message=(
            f"cache folder {folder.get('path', folder_id)} holds {size} of {capacity} bytes "
            f"({size / capacity:.0%}, high-water {high_water:.0%}): no new collections go there"
        ),
        details={"bytes": size, "capacity_bytes": capacity, "high_water": high_water},
    )


def evaluate_rules(
    ops: OpsSettings,
    now: dt.datetime,
    *,
    jobs: Iterable[Mapping[str, Any]] = (),
    folders: Iterable[Mapping[str, Any]] | None = None,
    dead_letter_depths: Mapping[str, int] | None = None,
) -> Evaluation:
    """Run every rule over what was given; ``None`` leaves a whole kind unchecked."""
    candidates: list[AlertCandidate | None] = []
    checked: set[str] = set()
    for job in jobs:
        job_id = str(job["_id"])
        checked |= {alert_id(job_id, FAILURE_RATIO), alert_id(job_id, STALLED)}
        candidates += [failure_ratio_rule(job, ops), stalled_rule(job, ops, now)]
    for folder in folders or ():
        checked.add(alert_id(str(folder["_id"]), FOLDER_HIGH_WATER))
        candidates.append(folder_rule(folder))
    for dead_queue, depth in (dead_letter_depths or {}).items():
        checked.add(alert_id(dead_queue, DEAD_LETTERS))
        candidates.append(dead_letter_rule(dead_queue, depth))
    return Evaluation(tuple(c for c in candidates if c is not None), frozenset(checked))


@dataclass(frozen=True)
class AlertPass:
    """What a pass changed: alerts newly raised (documents) and alerts resolved (ids)."""

    raised: tuple[dict[str, Any], ...]
    resolved: tuple[str, ...]
    active: tuple[str, ...]


def apply_evaluation(
    repo: AlertRepository, evaluation: Evaluation, notify: Notify | None = None
) -> AlertPass:
    """Raise new alerts (log, metric, webhook) and resolve checked ones that cleared."""
    active_before = repo.active_ids()
    raised: list[dict[str, Any]] = []
    for candidate in evaluation.candidates:
        doc = repo.raise_alert(
            candidate.alert_id, candidate.fields(), known_active=candidate.alert_id in active_before
        )
        if doc is None:
            continue
        raised.append(doc)
        log.error("ALERT %s: %s", doc["_id"], candidate.message)
        ALERTS_RAISED.labels(kind=candidate.kind).inc()
        if notify is not None:
            notify(alert_payload(doc))
    holding = {c.alert_id for c in evaluation.candidates}
    resolved = []
    for cleared in sorted((active_before & evaluation.checked) - holding):
        if repo.resolve(cleared):
            log.info("alert %s resolved: its condition cleared", cleared)
            resolved.append(cleared)
    active = (active_before | holding) - set(resolved)
    return AlertPass(tuple(raised), tuple(resolved), tuple(sorted(active)))


WEBHOOK_FIELDS = ("alert_id", "kind", "subject", "job_id", "message", "details", "raised_at",
                  "occurrences")  # fmt: skip


def alert_payload(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The webhook body of a raised alert."""
    return alert_record(doc, WEBHOOK_FIELDS)


def default_notifier(ops: OpsSettings) -> Notify | None:
    """The process's webhook sender for the configured URL, or None when none is set."""
    if not ops.alert_webhook_url:
        return None
    notifier = shared_notifier(
        ops.alert_webhook_url, ops.alert_webhook_retries, ops.alert_webhook_timeout_seconds
    )
    return notifier.send


def evaluate_alerts(
    target: Runtime | Store,
    broker: dramatiq.Broker | None = None,
    *,
    settings: Settings | None = None,
    notify: Notify | None = None,
    clock: Clock = utcnow,
    recent_jobs: int = RECENT_JOBS,
) -> AlertPass:
    """One full pass: unfinished and recent jobs, every cache folder, the ``.XQ`` depths.

    With a Runtime, its settings and broker are used unless given; without a broker the
    dead-letter rule is skipped (its alerts are then neither raised nor resolved).
    ``notify`` defaults to the configured webhook.
    """
    if isinstance(target, Runtime):
        store, settings, broker = target.store, settings or target.settings, broker or target.broker
    else:
        store = target
    if settings is None:
        raise TypeError("evaluate_alerts needs settings when given a Store")
    jobs = {j["_id"]: j for j in store.jobs.recent(limit=recent_jobs)}
    jobs.update({j["_id"]: j for j in store.jobs.find_unfinished()})
    queues = all_queues(settings.renditions.values())
    depths = dead_letter_depths(broker, queues) if broker is not None else None
    evaluation = evaluate_rules(
        settings.ops,
        clock(),
        jobs=jobs.values(),
        folders=store.folders.all(),
        dead_letter_depths=depths,
    )
    notify = notify if notify is not None else default_notifier(settings.ops)
    return apply_evaluation(store.alerts.with_clock(clock), evaluation, notify)


def on_job_finished(
    store: Store,
    job: Mapping[str, Any],
    settings: Settings,
    *,
    notify: Notify | None = None,
    clock: Clock = utcnow,
) -> AlertPass | None:
    """The job-completion hook: the failure-ratio (and stalled) rules for this one job.

    Never raises into the pipeline: an error is logged and the scheduled pass catches up.
    """
    try:
        evaluation = evaluate_rules(settings.ops, clock(), jobs=[job])
        notify = notify if notify is not None else default_notifier(settings.ops)
        return apply_evaluation(store.alerts.with_clock(clock), evaluation, notify)
    except Exception:  # alerts are best effort; the pipeline must go on
        log.exception("alert evaluation for finished job %s failed", job.get("_id"))
        return None


def completion_hook(store: Store, settings: Settings) -> Callable[[dict[str, Any]], None]:
    """The job-completion hook a composition root gives the pipeline (``Runtime``)."""

    def finished(job: dict[str, Any]) -> None:
        on_job_finished(store, job, settings)

    return finished


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
