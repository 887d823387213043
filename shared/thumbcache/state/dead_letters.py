"""The ``dead_letters`` collection: every dead letter seen, by message id."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo import DESCENDING
from pymongo.database import Database

from thumbcache.state.clock import Clock, utcnow

DEAD_LETTERS = "dead_letters"


class DeadLetterRepository:
    """Dead letters: where each died, what it carried, whether it went back to its queue."""

    def __init__(self, db: Database[Any], clock: Clock = utcnow) -> None:
        self._db = db
        self._coll = db[DEAD_LETTERS]
        self._clock = clock

    def with_clock(self, clock: Clock) -> DeadLetterRepository:
        """The same records, timestamped by ``clock``."""
        return DeadLetterRepository(self._db, clock)

    def seen(self, message_id: str, fields: Mapping[str, Any]) -> None:
        """Record a dead letter (first sighting kept; status back to dead if it died again)."""
        now = self._clock()
        self._coll.update_one(
            {"_id": message_id},
            {
                "$setOnInsert": {"first_seen": now, "requeues": 0},
                "$set": {**fields, "status": "dead", "last_seen": now},
            },
            upsert=True,
        )

    def requeued(self, message_id: str) -> None:
        """Record that a dead letter went back to its queue."""
        self._coll.update_one(
            {"_id": message_id},
            {"$set": {"status": "requeued", "requeued_at": self._clock()}, "$inc": {"requeues": 1}},
        )

    def get(self, message_id: str) -> dict[str, Any] | None:
        """One record, or None."""
        return self._coll.find_one({"_id": message_id})

    def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        """Records most recently seen first."""
        return list(self._coll.find().sort("last_seen", DESCENDING).limit(limit))
