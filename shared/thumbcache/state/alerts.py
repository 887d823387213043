"""The ``alerts`` collection: one document per (subject, kind), raised once while it holds.

``_id`` is ``"{subject}:{kind}"`` (a string, so the status API can page on it). A document is
*active* while its condition holds and *resolved* (``active: false``) once an evaluation finds
it cleared; the same condition coming back re-raises the same document. ``acknowledged`` is the
operator's word and is reset when the alert is raised again. Every write is by ``_id``; the
caller that wins the insert or the guarded re-raise is the only one that notifies.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from pymongo import DESCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from thumbcache.state.clock import Clock, utcnow

ALERTS = "alerts"


class AlertRepository:
    """Alerts: subject, kind, message, raised/resolved/acknowledged times, occurrences."""

    def __init__(self, db: Database[Any], clock: Clock = utcnow) -> None:
        self._db = db
        self._coll = db[ALERTS]
        self._clock = clock

    def with_clock(self, clock: Clock) -> AlertRepository:
        """The same alerts, timestamped by ``clock`` (evaluations at a chosen time)."""
        return AlertRepository(self._db, clock)

    def raise_alert(
        self,
        alert_id: str,
        fields: Mapping[str, Any],
        *,
        known_active: bool = False,
    ) -> dict[str, Any] | None:
        """Raise (or keep) an alert; return its document only when this call newly raised it.

        ``fields`` are the descriptive ones (subject, kind, job_id, message, details). An alert
        already active is only refreshed (message, details, ``last_seen_at``), never raised twice.
        ``known_active`` skips the insert attempt when the caller has just read it as active.
        """
        now = self._clock()
        described = {**fields, "last_seen_at": now}
        if not known_active:
            doc = {
                "_id": alert_id,
                **described,
                "active": True,
                "acknowledged": False,
                "acknowledged_at": None,
                "raised_at": now,
                "resolved_at": None,
                "occurrences": 1,
            }
            try:
                self._coll.insert_one(doc)
            except DuplicateKeyError:
                pass
            else:
                return doc
            again = self._coll.update_one(
                {"_id": alert_id, "active": False},
                {
                    "$set": {
                        **described,
                        "active": True,
                        "acknowledged": False,
                        "acknowledged_at": None,
                        "raised_at": now,
                        "resolved_at": None,
                    },
                    "$inc": {"occurrences": 1},
                },
            )
            if again.modified_count == 1:
                return self.get(alert_id)
        self._coll.update_one({"_id": alert_id}, {"$set": described})
        return None

    def resolve(self, alert_id: str) -> bool:
        """Mark an active alert resolved (its condition cleared); True if this call did it."""
        result = self._coll.update_one(
            {"_id": alert_id, "active": True},
            {"$set": {"active": False, "resolved_at": self._clock()}},
        )
        return result.modified_count == 1

    def acknowledge(self, alert_id: str) -> bool:
        """Record that an operator has seen the alert; False if there is no such alert."""
        result = self._coll.update_one(
            {"_id": alert_id},
            {"$set": {"acknowledged": True, "acknowledged_at": self._clock()}},
        )
        return result.matched_count == 1

    def get(self, alert_id: str) -> dict[str, Any] | None:
        """One alert, or None."""
        return self._coll.find_one({"_id": alert_id})

    def active_ids(self) -> set[str]:
        """The ids of every active alert (a small set: one per broken thing)."""
        return {str(d["_id"]) for d in self._coll.find({"active": True}, {"_id": 1})}

    def listing(self, *, include_settled: bool = False, limit: int = 200) -> list[dict[str, Any]]:
        """Alerts needing attention (active or not acknowledged), most recently raised first.

        ``include_settled`` adds those both resolved and acknowledged.
        """
        docs = self._coll.find().sort("raised_at", DESCENDING)
        wanted = (
            d for d in docs if include_settled or d.get("active") or not d.get("acknowledged")
        )
        return list(itertools.islice(wanted, limit))

    def page(self, limit: int, after: str | None) -> list[dict[str, Any]]:
        """Up to ``limit`` alerts by id, descending, after the id ``after`` (string ids)."""
        query: dict[str, Any] = {} if after is None else {"_id": {"$lt": after}}
        docs = list(self._coll.find(query).sort("_id", -1).limit(limit))
        for doc in docs:
            doc["_id"] = str(doc["_id"])
        return docs

    def count_open(self) -> int:
        """Alerts whose condition still holds and that nobody acknowledged."""
        return self._coll.count_documents({"active": {"$ne": False}, "acknowledged": {"$ne": True}})
