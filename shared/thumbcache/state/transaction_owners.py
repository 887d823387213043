"""Transactions a dead process left open: found by the sessions it registered, and ended.

A process killed inside a transaction leaves it open on the server until the server's
transaction lifetime ends it (60 s on MongoDB and on the embedded server, measured: issue 11's
randomized test). Until then every write to a document it touched conflicts, and the job and
folder documents are touched by every stage end, so the whole job stalls for a minute per kill.

So each process records the session ids it runs transactions on (one document per store,
refreshed while it lives), and a transaction that keeps conflicting ends the sessions of owners
that are gone: on this host, a PID that no longer runs the process that registered; elsewhere,
a record not refreshed for :data:`DEAD_AFTER_SECONDS`. Ending a live owner's session by mistake
(a process paused past that age) only aborts its transaction, which it then retries whole.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from bson import Binary
from pymongo.database import Database
from pymongo.errors import InvalidOperation, PyMongoError

from thumbcache.state.clock import Clock, utcnow

log = logging.getLogger(__name__)

COLLECTION = "transaction_owners"
REFRESH_SECONDS = 5.0  # how often a live owner says so
DEAD_AFTER_SECONDS = 30.0  # an owner on another host not heard from this long is gone
REAP_AFTER_SECONDS = 1.0  # a transaction retrying this long looks for dead owners
REAP_INTERVAL_SECONDS = 1.0  # at most one look per store per interval


def process_start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot, /proc), to tell a reused PID apart;
    None where there is no /proc or no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return int(fields[19])  # field 22 of stat(5), counted after the command name


def owner_is_gone(owner: dict[str, Any], host: str, now: Any) -> bool:
    """True when the process that registered ``owner`` no longer runs (pure but for /proc)."""
    if owner.get("host") == host and owner.get("started") is not None:
        return bool(process_start_ticks(int(owner.get("pid", -1))) != owner["started"])
    seen = owner.get("seen_at")
    return bool(seen is None or seen < now - timedelta(seconds=DEAD_AFTER_SECONDS))


@dataclass
class TransactionOwners:
    """This store's registration, and the reaper of the registrations of dead processes."""

    db: Database[Any]
    clock: Clock = utcnow
    host: str = field(default_factory=socket.gethostname)
    _id: str = field(default_factory=lambda: uuid.uuid4().hex, init=False)
    _known: set[bytes] = field(default_factory=set, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _last_reap: float = field(default=0.0, init=False)
    _refresher: threading.Thread | None = field(default=None, init=False)
    _pid: int = field(default_factory=os.getpid, init=False)

    def register(self, session_id: Mapping[str, Any]) -> None:
        """Record a session id before its first transaction (a write only for a new one)."""
        raw = bytes(session_id["id"])
        if self._pid != os.getpid():  # a forked child: its sessions are its own
            self._id, self._pid, self._known = uuid.uuid4().hex, os.getpid(), set()
            self._lock, self._refresher = threading.Lock(), None
        if raw in self._known:
            return
        with self._lock:
            if raw in self._known:
                return
            self._known.add(raw)
            try:
                self._write()
            except BaseException:
                self._known.discard(raw)
                raise
            if self._refresher is None:
                self._refresher = threading.Thread(
                    target=self._refresh, name="transaction-owner", daemon=True
                )
                self._refresher.start()

    def conflicted(self, retrying_since: float) -> None:
        """Called on each retry of a transaction: once it has retried for a while, end the
        sessions of dead owners (at most once per interval per store)."""
        now = time.monotonic()
        if now - retrying_since < REAP_AFTER_SECONDS:
            return
        with self._lock:
            if now - self._last_reap < REAP_INTERVAL_SECONDS:
                return
            self._last_reap = now
        with contextlib.suppress(PyMongoError):
            self.reap()

    def reap(self) -> int:
        """End every session of owners that are gone and forget them; how many owners."""
        owners = self.db[COLLECTION]
        now, ended = self.clock(), 0
        for owner in owners.find({"_id": {"$ne": self._id}}):
            if not owner_is_gone(owner, self.host, now):
                continue
            lsids = [{"id": lsid} for lsid in owner.get("lsids", [])]
            if lsids:
                self.db.client.admin.command("killSessions", lsids)
            owners.delete_one({"_id": owner["_id"]})
            ended += 1
            log.warning(
                "ended %d database session(s) of a gone process (%s pid %s): its open "
                "transactions no longer block others",
                len(lsids), owner.get("host"), owner.get("pid"),
            )  # fmt: skip
        return ended

    def _write(self) -> None:
        """Upsert the whole record (it comes back if a reaper took it for dead)."""
        pid = os.getpid()
        lsids = [Binary(raw, 4) for raw in self._known]
        self.db[COLLECTION].update_one(
            {"_id": self._id},
            {
                "$set": {
                    "host": self.host,
                    "pid": pid,
                    "started": process_start_ticks(pid),
                    "seen_at": self.clock(),
                },
                "$addToSet": {"lsids": {"$each": lsids}},
            },
            upsert=True,
        )

    def _refresh(self) -> None:
        while True:
            time.sleep(REFRESH_SECONDS)
            try:
                with self._lock:
                    self._write()
            except InvalidOperation:  # the client was closed: this store is done
                return
            except PyMongoError:
                log.debug("could not refresh the transaction owner record", exc_info=True)
