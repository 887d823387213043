"""The ``leases`` collection: named, expiring locks, so one replica of many does a task."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from thumbcache.state.clock import Clock, utcnow


class LeaseRepository:
    """Acquire a lease by name for a holder until it expires; exactly one holder at a time."""

    def __init__(self, db: Database[Any], clock: Clock = utcnow) -> None:
        self._coll = db["leases"]
        self._clock = clock

    def acquire(self, name: str, holder: str, seconds: float) -> bool:
        """True if ``holder`` now holds ``name``: it was free, expired, or already its own."""
        now = self._clock()
        until = now + dt.timedelta(seconds=seconds)
        try:
            self._coll.insert_one({"_id": name, "holder": holder, "expires_at": until})
            return True
        except DuplicateKeyError:
            pass
        taken = self._coll.update_one(
            {"_id": name, "expires_at": {"$lt": now}},
            {"$set": {"holder": holder, "expires_at": until}},
        )
        if taken.modified_count == 1:
            return True
        renewed = self._coll.update_one(
            {"_id": name, "holder": holder}, {"$set": {"expires_at": until}}
        )
        return renewed.matched_count == 1

    def release(self, name: str, holder: str) -> None:
        """Give the lease up early (only its holder can)."""
        self._coll.delete_one({"_id": name, "holder": holder})

    def get(self, name: str) -> dict[str, Any] | None:
        """The lease document, or None."""
        return self._coll.find_one({"_id": name})
