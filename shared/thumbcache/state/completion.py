"""Ending a stage of a job item, and everything that moves with it, in one transaction.

A stage's end moves the item (guarded: only an open stage ends, so exactly one caller wins),
the image's rendition record (written against the record it replaces, read inside the
transaction), the cache folders' statistics (the difference between the two records), the
job's stage counters, and, when it was the image's last open stage, the image's outcome and the
job's image counters. All of it commits together or not at all: a slow winner, a SIGKILL
between two writes, two jobs rendering one image, nothing can leave a counter short or counted
twice (issue 11). Two transactions touching the same documents conflict and one is retried by
the driver, after which it reads what the other committed.

Transactions need MongoDB as a replica set (one node is enough) or the embedded
MongoDB-protocol server; see :func:`in_transaction` for a standalone server.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from pymongo import UpdateOne
from pymongo.client_session import ClientSession

from thumbcache.faults import fault_point
from thumbcache.ids import job_item_id
from thumbcache.state.clock import Clock, utcnow
from thumbcache.state.model import (
    FAILED,
    JOB_FAILED,
    JOB_RUNNING,
    OPEN_STATES,
    PENDING,
    RUNNING,
    awaits_base,
    folder_deltas,
    image_outcome,
    outcome_counter,
    record_summary,
    stage_counter_for,
    waiting_on,
)
from thumbcache.state.store import Store

T = TypeVar("T")
Session = ClientSession | None  # None: a standalone server, one write after another


@dataclass(frozen=True)
class StageEnd:
    """How one stage of one item ends: its state, and what it leaves behind."""

    job_id: str
    image_id: str
    stage: str
    state: str  # done, skipped or failed
    record: Mapping[str, Any] | None = None  # a new rendition record (``replaced`` is added)
    error: Mapping[str, str] | None = None
    details: Mapping[str, Any] = field(default_factory=dict)  # bytes, quality, render_ms
    counts_toward_quarantine: bool = True  # a failed image counts one more failed job


@dataclass(frozen=True)
class Ended:
    """What the winning call changed: the record it replaced, and the outcome it settled."""

    replaced: Mapping[str, Any] | None
    settled: str | None
    released: tuple[str, ...] = ()  # stages derived from this one, waiting for it to end


def end_stage(store: Store, end: StageEnd, clock: Clock = utcnow) -> Ended | None:
    """End the stage and move everything that moves with it; None if it had already ended."""
    return end_stages(store, [end], clock)[0]


def end_stages(store: Store, ends: Sequence[StageEnd], clock: Clock = utcnow) -> list[Ended | None]:
    """End many stages in one transaction (a worker's group commit): for each, what it changed,
    or None if that stage had already ended (a duplicate). Without transactions (a standalone
    server) each ends on its own, one after the other."""
    if len(ends) > 1 and not store.supports_transactions():
        return [end_stage(store, end, clock) for end in ends]
    return in_transaction(store, lambda session: _end_stages(store, ends, clock(), session))


@dataclass(frozen=True)
class Claim:
    """A render about to start: the stage to mark running for a worker."""

    job_id: str
    image_id: str
    stage: str
    worker: str
    max_attempts: int
    pending_only: bool = False  # a companion stage: never taken from a worker running it


def claim_stages(
    store: Store, claims: Sequence[Claim], clock: Clock = utcnow
) -> list[dict[str, Any] | None]:
    """Mark stages running (a heartbeat, the worker, one more attempt), many in one round of
    writes; for each claim the image document it renders (for its skip re-check), or None when
    the stage is no longer open (a duplicate) or out of attempts (poison)."""
    if len(claims) > 1 and not store.supports_transactions():
        return [claim_stages(store, [claim], clock)[0] for claim in claims]
    return in_transaction(store, lambda session: _claim_stages(store, claims, clock(), session))


def settle(
    store: Store, job_id: str, image_id: str, *, counts_toward_quarantine: bool = True
) -> str | None:
    """Settle an item whose stages have all ended but whose outcome was never set (work of an
    older version); the outcome it set, or None."""
    return in_transaction(
        store,
        lambda session: _settle(store, job_id, image_id, counts_toward_quarantine, session),
    )


def reopen_failed(store: Store, job_id: str, image_id: str, stages: list[str]) -> bool:
    """Put failed stages of a failed image back to pending and take back their counts (a
    retry), in one transaction; True for the one call that did."""

    def body(session: Session) -> bool:
        item_id = job_item_id(job_id, image_id)
        reopened = store.db["job_items"].update_one(
            {"_id": item_id, "outcome": FAILED, **{f"stages.{s}.state": FAILED for s in stages}},
            {
                "$set": {
                    "outcome": None,
                    **{f"stages.{s}.state": PENDING for s in stages},
                    **{f"stages.{s}.attempts": 0 for s in stages},
                },
                "$unset": {f"stages.{s}.error": "" for s in stages},
                "$inc": {"retries": 1},
            },
            session=session,
        )
        if reopened.modified_count != 1:
            return False
        take_back = {"failed": -1, **{f"stages.{s}.failed": -1 for s in stages}}
        jobs = store.db["jobs"]
        running = jobs.update_one(
            {"_id": job_id, "status": {"$ne": JOB_FAILED}},
            {"$inc": take_back, "$set": {"status": JOB_RUNNING, "finished_at": None}},
            session=session,
        )
        if running.matched_count == 0:  # a failed job only gets its counts back
            jobs.update_one({"_id": job_id}, {"$inc": take_back}, session=session)
        return True

    return in_transaction(store, body)


def in_transaction(store: Store, body: Callable[[Session], T]) -> T:
    """Run ``body`` in a transaction (retried whole on a conflict) and return its result.

    A standalone MongoDB has no transactions: there ``body`` runs its writes one after the
    other, in the order that keeps a race harmless (the guarded transition first; counters
    never reopen a job), and only a crash between two of them can leave statistics short until
    ``thumbcache reconcile`` (docs/DEPLOYMENT.md recommends a one-node replica set).
    """
    if not store.supports_transactions():
        return body(None)
    if store.local:  # writers are serialized by SQLite: no conflicts, no dead owners
        with store.db.client.start_session() as session:
            return session.with_transaction(body)
    owners = store.transaction_owners
    first_try = time.monotonic()

    def attempt(session: Session) -> T:
        owners.conflicted(first_try)  # a retry stuck behind a dead process's transaction
        return body(session)

    with store.db.client.start_session() as session:
        owners.register(session.session_id)
        return session.with_transaction(attempt)


def _claim_stages(
    store: Store, claims: Sequence[Claim], now: Any, session: Session
) -> list[dict[str, Any] | None]:
    db = store.db
    ids = list(dict.fromkeys(job_item_id(c.job_id, c.image_id) for c in claims))
    items = {d["_id"]: d for d in db["job_items"].find({"_id": {"$in": ids}}, session=session)}
    won: list[Claim | None] = []
    writes = []
    for claim in claims:
        item_id = job_item_id(claim.job_id, claim.image_id)
        stages = (items.get(item_id) or {}).get("stages") or {}
        sub = stages.get(claim.stage) or {}
        attempts = int(sub.get("attempts", 0))
        claimable = (PENDING,) if claim.pending_only else OPEN_STATES
        early = not claim.pending_only and awaits_base(stages, claim.stage)  # a stray message
        if sub.get("state") not in claimable or attempts >= claim.max_attempts or early:
            won.append(None)
            continue
        prefix = f"stages.{claim.stage}"
        sub.update(state=RUNNING, attempts=attempts + 1)  # a second claim in this batch loses
        writes.append(
            UpdateOne(
                {
                    "_id": item_id,
                    f"{prefix}.state": {"$in": list(claimable)},
                    f"{prefix}.attempts": attempts,
                },
                {
                    "$set": {
                        f"{prefix}.state": RUNNING,
                        f"{prefix}.worker": claim.worker,
                        f"{prefix}.heartbeat_at": now,
                    },
                    "$inc": {f"{prefix}.attempts": 1},
                },
            )
        )
        won.append(claim)
    if not writes:
        return [None] * len(claims)
    result = db["job_items"].bulk_write(writes, ordered=True, session=session)
    if session is None and result.modified_count != len(writes):
        return [None] * len(claims)  # (standalone, one claim) another worker claimed it first
    image_ids = list(dict.fromkeys(c.image_id for c in won if c is not None))
    images = {d["_id"]: d for d in db["images"].find({"_id": {"$in": image_ids}}, session=session)}
    return [None if c is None else images.get(c.image_id, {}) for c in won]


def _end_stages(
    store: Store, ends: Sequence[StageEnd], now: Any, session: Session
) -> list[Ended | None]:
    """Read every item and image of the batch, decide each end in memory (two ends of one
    image settle it once), then write items, images, then the shared folder and job documents
    (so that a client killed mid-transaction holds the hot documents for the shortest time)."""
    db = store.db
    item_ids = list(dict.fromkeys(job_item_id(e.job_id, e.image_id) for e in ends))
    image_ids = list(dict.fromkeys(e.image_id for e in ends))
    batch = _EndBatch(
        items={
            d["_id"]: d for d in db["job_items"].find({"_id": {"$in": item_ids}}, session=session)
        },
        images={
            d["_id"]: d
            for d in db["images"].find(
                {"_id": {"$in": image_ids}}, {"renditions": 1}, session=session
            )
        },
    )
    results = [batch.decide(end, now) for end in ends]
    results = [
        None if ended is None else replace(ended, released=batch.released_by(end))
        for end, ended in zip(ends, results, strict=True)
    ]
    if not batch.item_sets:
        return results
    fault_point("before_counts", ends[0].image_id)  # a winner slow between transition and counts
    if not batch.write(store, now, session):
        return [None] * len(ends)  # (standalone, one end) another call ended it first
    return results


@dataclass
class _EndBatch:
    """The documents a batch of ends reads, and the writes it decides, merged per document."""

    items: dict[str, dict[str, Any]]
    images: dict[str, dict[str, Any]]
    item_sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    guards: dict[str, dict[str, Any]] = field(default_factory=dict)
    image_updates: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    folder_moves: dict[str, list[int]] = field(default_factory=dict)
    job_increments: dict[str, dict[str, int]] = field(default_factory=dict)

    def decide(self, end: StageEnd, now: Any) -> Ended | None:
        """Apply one end to the documents in memory; None if its stage has ended already."""
        item_id = job_item_id(end.job_id, end.image_id)
        item = self.items.get(item_id)
        stages = (item or {}).get("stages") or {}
        sub = stages.get(end.stage) or {}
        if item is None or sub.get("state") not in OPEN_STATES:
            return None  # a duplicate: the stage has ended already
        guard = self.guards.setdefault(item_id, {"_id": item_id, "outcome": item.get("outcome")})
        guard[f"stages.{end.stage}.state"] = sub.get("state")
        sub["state"] = end.state
        settled = None
        if item.get("outcome") is None:
            settled = image_outcome({s: v.get("state") for s, v in stages.items()})
        prefix = f"stages.{end.stage}"
        fields = self.item_sets.setdefault(item_id, {})
        fields.update({f"{prefix}.state": end.state, f"{prefix}.finished_at": now})
        if end.error is not None:
            fields[f"{prefix}.error"] = dict(end.error)
        fields.update({f"{prefix}.{k}": v for k, v in end.details.items()})
        if settled is not None:
            fields["outcome"] = item["outcome"] = settled
        replaced = self._update_image(end, settled)
        counts = self.job_increments.setdefault(end.job_id, {})
        for key, n in _increments(end, settled).items():
            counts[key] = counts.get(key, 0) + n
        return Ended(replaced, settled)

    def released_by(self, end: StageEnd) -> tuple[str, ...]:
        """The stages of ``end``'s item waiting on its stage (once every end of the batch is
        decided: a companion ended with it is not waiting)."""
        item = self.items.get(job_item_id(end.job_id, end.image_id)) or {}
        return waiting_on(item.get("stages") or {}, end.stage)

    def _update_image(self, end: StageEnd, settled: str | None) -> Mapping[str, Any] | None:
        update = self.image_updates.setdefault(end.image_id, {})
        replaced = None
        if end.record is not None:
            record, replaced = _over_previous(self.images.setdefault(end.image_id, {}), end)
            update.setdefault("$set", {})[f"renditions.{end.stage}"] = record
            update.setdefault("$unset", {})[f"stage_errors.{end.stage}"] = ""
            for folder_id, (files, size) in folder_deltas(replaced, record).items():
                move = self.folder_moves.setdefault(folder_id, [0, 0])
                move[0] += files
                move[1] += size
        elif end.error is not None:
            update.setdefault("$set", {})[f"stage_errors.{end.stage}"] = dict(end.error)
        if settled == FAILED and end.counts_toward_quarantine:
            inc = update.setdefault("$inc", {})
            inc["failure_count"] = inc.get("failure_count", 0) + 1
        return replaced

    def write(self, store: Store, now: Any, session: Session) -> bool:
        """Items, images, folders, then jobs; False if (standalone) an item's guard lost."""
        db = store.db
        written = db["job_items"].bulk_write(
            [UpdateOne(self.guards[i], {"$set": f}) for i, f in self.item_sets.items()],
            ordered=True,
            session=session,
        )
        if session is None and written.modified_count != len(self.item_sets):
            return False
        image_writes = [UpdateOne({"_id": i}, u) for i, u in self.image_updates.items() if u]
        if image_writes:
            db["images"].bulk_write(image_writes, ordered=True, session=session)
        _move_folders(db, self.folder_moves, session)
        for job_id, increments in self.job_increments.items():
            db["jobs"].update_one(
                {"_id": job_id},
                {"$inc": increments, "$set": {"last_progress_at": now}},
                session=session,
            )
        return True


def _move_folders(db: Any, moves: Mapping[str, list[int]], session: Session) -> None:
    """Move the cache folders' statistics by the batch's record differences."""
    for folder_id, (files, size) in moves.items():
        if files or size:
            db["cache_folders"].update_one(
                {"_id": folder_id},
                {"$inc": {"total_files": files, "current_size_bytes": size}},
                session=session,
            )


def _increments(end: StageEnd, settled: str | None) -> dict[str, int]:
    """What one stage's end adds to its job's counters."""
    increments = {f"stages.{end.stage}.{stage_counter_for(end.state)}": 1}
    if settled is not None:
        increments[outcome_counter(settled)] = 1
    render_ms = end.details.get("render_ms")
    if render_ms is not None:  # measured averages for `thumbcache plan`
        increments[f"timing.{end.stage}.ms"] = int(render_ms)
        increments[f"timing.{end.stage}.n"] = 1
        increments[f"timing.{end.stage}.bytes"] = int(end.details.get("bytes", 0))
    return increments


def _over_previous(
    image: dict[str, Any], end: StageEnd
) -> tuple[dict[str, Any], Mapping[str, Any] | None]:
    """The record to write over the one the image holds now (kept current in ``image`` for a
    later end of the same batch), and the summary of what it replaces."""
    assert end.record is not None
    renditions = image.setdefault("renditions", {})
    previous = renditions.get(end.stage)
    replaced: Mapping[str, Any] | None
    if previous is not None and previous.get("job_id") == end.job_id:
        # this job's own record, never applied (older versions wrote it before the transition)
        replaced = previous.get("replaced")
    else:
        replaced = record_summary(previous)
    record = {**end.record, "replaced": replaced}
    renditions[end.stage] = record
    return record, replaced


def _settle(
    store: Store,
    job_id: str,
    image_id: str,
    counts_toward_quarantine: bool,
    session: Session,
) -> str | None:
    db, item_id = store.db, job_item_id(job_id, image_id)
    item = db["job_items"].find_one({"_id": item_id}, session=session)
    if item is None or item.get("outcome") is not None:
        return None
    outcome = image_outcome({s: v["state"] for s, v in (item.get("stages") or {}).items()})
    if outcome is None:
        return None
    db["job_items"].update_one(
        {"_id": item_id, "outcome": None}, {"$set": {"outcome": outcome}}, session=session
    )
    if outcome == FAILED and counts_toward_quarantine:
        db["images"].update_one({"_id": image_id}, {"$inc": {"failure_count": 1}}, session=session)
    db["jobs"].update_one({"_id": job_id}, {"$inc": {outcome_counter(outcome): 1}}, session=session)
    return outcome
