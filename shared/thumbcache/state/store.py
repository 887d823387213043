"""One handle on every repository, built from a pymongo database."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, cast

from bson.errors import BSONError
from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import ConnectionFailure, PyMongoError

from thumbcache.state.alerts import AlertRepository
from thumbcache.state.clock import Clock, utcnow
from thumbcache.state.collections import CollectionRepository
from thumbcache.state.dead_letters import DeadLetterRepository
from thumbcache.state.docstore import LocalClient, LocalDatabase
from thumbcache.state.folders import FolderRepository
from thumbcache.state.images import ImageRepository
from thumbcache.state.items import ItemRepository
from thumbcache.state.jobs import JobRepository
from thumbcache.state.leases import LeaseRepository
from thumbcache.state.transaction_owners import TransactionOwners

log = logging.getLogger(__name__)

# What the job-state layer raises when the database fails or cannot be reached: the edges
# (HTTP error mapping, CLI messages) catch these, and never import the driver themselves.
DatabaseError = PyMongoError
DatabaseUnreachable = ConnectionFailure
DocumentRefused = BSONError  # a document the database cannot store: the same one fails again


@dataclass
class Store:
    """The job state: collections, images, jobs, job items and cache folders.

    ``db`` is a pymongo database, or the local store's (:mod:`thumbcache.state.docstore`), which
    answers the same calls."""

    db: Database[Any]
    collections: CollectionRepository
    images: ImageRepository
    jobs: JobRepository
    items: ItemRepository
    folders: FolderRepository
    leases: LeaseRepository
    alerts: AlertRepository
    dead_letters: DeadLetterRepository
    _transactions: bool | None = field(default=None, init=False, repr=False)
    _owners: TransactionOwners | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_database(
        cls,
        db: Database[Any] | LocalDatabase,
        clock: Clock = utcnow,
        *,
        create_indexes: bool = True,
    ) -> Store:
        """Repositories over ``db``; indexes are created here unless the caller only reads."""
        db = cast("Database[Any]", db)  # the local store answers the same subset of calls
        store = cls(
            db=db,
            collections=CollectionRepository(db, clock),
            images=ImageRepository(db, clock),
            jobs=JobRepository(db, clock),
            items=ItemRepository(db, clock),
            folders=FolderRepository(db),
            leases=LeaseRepository(db, clock),
            alerts=AlertRepository(db, clock),
            dead_letters=DeadLetterRepository(db, clock),
        )
        if create_indexes:
            store.images.ensure_indexes()
            store.jobs.ensure_indexes()
        return store

    def supports_transactions(self) -> bool:
        """True when the store runs transactions (the local store; a MongoDB replica set member,
        a router, or the embedded server); the server is asked once per store."""
        if self.local:
            return True
        if self._transactions is None:
            hello = self.db.client.admin.command("hello")
            self._transactions = "setName" in hello or hello.get("msg") == "isdbgrid"
            if not self._transactions:
                log.warning(
                    "MongoDB is a standalone server: no transactions, so a crash between two "
                    "writes can leave statistics short until `thumbcache reconcile`; run it as "
                    "a replica set (one node is enough) for exact counters"
                )
        return self._transactions

    @property
    def local(self) -> bool:
        """True on the in-process store (its transactions hold file locks, which die with
        their process: no sessions of dead owners to end)."""
        return isinstance(self.db, LocalDatabase)

    @property
    def transaction_owners(self) -> TransactionOwners:
        """This store's record of its transaction sessions (see ``transaction_owners``)."""
        if self._owners is None:
            self._owners = TransactionOwners(self.db)
        return self._owners

    def close(self) -> None:
        """Close the client's connections."""
        self.db.client.close()

    def ping(self) -> bool:
        """True when the database answers."""
        try:
            self.db.client.admin.command("ping")
        except Exception:
            return False
        return True


def connect(
    url: str, database: str, *, create_indexes: bool = True, **client_options: Any
) -> Store:
    """A store on the MongoDB (or MongoDB-protocol) server at ``url``."""
    client_options.setdefault("serverSelectionTimeoutMS", 10_000)
    client_options.setdefault("tz_aware", True)
    # Every state change is a guarded, idempotent write, retried by the pipeline itself; the
    # driver's retryable writes add a record per write that the embedded server scans on every
    # write (58 s vs 27 s for 1,000 renders, measured: issue 14).
    client_options.setdefault("retryWrites", False)
    client: MongoClient[Any] = MongoClient(url, **client_options)
    return Store.from_database(client[database], create_indexes=create_indexes)


def open_local(path: str, database: str, *, create_indexes: bool = True) -> Store:
    """A store in the SQLite file at ``path`` (created if missing): the embedded default."""
    return Store.from_database(LocalClient(path)[database], create_indexes=create_indexes)
