"""The local store's I/O: collections as SQLite tables of BSON documents, in one file.

One connection per process and file, shared by the process's threads under one lock; a write
(or a transaction, however many writes it holds) runs inside ``BEGIN IMMEDIATE``, so writers
are serialized, in this process by the lock and across processes by SQLite's own file lock
(WAL mode: readers never wait for a writer). A process killed mid-transaction leaves nothing
behind: SQLite rolls the transaction back on the next open, and holds no lock for the dead.

A table per collection: ``_id`` (the primary key, encoded by :func:`plan.id_key`), ``doc`` (the
BSON document) and one column per indexed field, kept by every write and read by the planner.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import bson
from bson import ObjectId
from bson.binary import Binary
from bson.codec_options import CodecOptions
from pymongo import InsertOne
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure
from pymongo.results import (
    BulkWriteResult,
    DeleteResult,
    InsertManyResult,
    InsertOneResult,
    UpdateResult,
)

from thumbcache.state.docstore import plan as planner
from thumbcache.state.docstore.query import (
    Filter,
    SortSpec,
    lookup,
    matches,
    normalize_sort,
    project,
    sort_documents,
)
from thumbcache.state.docstore.update import (
    apply_update,
    is_update_document,
    replace_document,
    upsert_seed,
)

_CODEC: CodecOptions[dict[str, Any]] = CodecOptions(tz_aware=True)
_DUPLICATE_KEY = 11000
_BUSY_TIMEOUT_S = 60.0  # a writer waits this long for another process's transaction
_IN_CHUNK = 500  # ids per SQL ``IN`` list


class _Engine:
    """One SQLite file as used by this process: its connection, lock and table layout."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.RLock()
        self.users = 0
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._depth = 0
        self._schema = -1
        self._layout: dict[str, dict[str, tuple[str, bool]]] = {}  # table: field: (col, usable)
        self._tables: set[str] = set()

    def connection(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():  # a forked child opens its own
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=_BUSY_TIMEOUT_S
            )
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS _indexes (tbl TEXT, field TEXT, col TEXT, "
                "usable INTEGER NOT NULL DEFAULT 1, PRIMARY KEY (tbl, field)) WITHOUT ROWID"
            )
            self._conn, self._pid, self._depth, self._schema = conn, os.getpid(), 0, -1
        return self._conn

    @contextlib.contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        with self.lock, _sql_errors():
            conn = self.connection()
            if self._depth == 0:  # inside a transaction the layout was read at its start
                self._refresh_layout(conn)
            yield conn

    @contextlib.contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, or a part of the one this thread already holds."""
        with self.lock, _sql_errors():
            conn = self.connection()
            outer = self._depth == 0
            if outer:
                conn.execute("BEGIN IMMEDIATE")
                self._refresh_layout(conn)
            self._depth += 1
            try:
                yield conn
            except BaseException:
                self._depth -= 1
                if outer:
                    with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back
                        conn.execute("ROLLBACK")
                    self._schema = -1  # a rolled-back schema change: read the layout again
                raise
            self._depth -= 1
            if outer:
                conn.execute("COMMIT")

    def columns(self, table: str) -> dict[str, str]:
        """Indexed field -> column of a table, only those usable for queries."""
        return {f: c for f, (c, usable) in self._layout.get(table, {}).items() if usable}

    def all_columns(self, table: str) -> dict[str, str]:
        """Every index column of a table, usable or not (writes keep them all)."""
        return {f: c for f, (c, _) in self._layout.get(table, {}).items()}

    def has_table(self, table: str) -> bool:
        return table in self._tables

    def _refresh_layout(self, conn: sqlite3.Connection) -> None:
        """Reload tables and index columns when any connection changed the schema."""
        version = conn.execute("PRAGMA schema_version").fetchone()[0]
        if version != self._schema:
            self.reload(conn)

    def reload(self, conn: sqlite3.Connection) -> None:
        """Read the tables and index columns there are now."""
        layout: dict[str, dict[str, tuple[str, bool]]] = {}
        for table, name, column, usable in conn.execute("SELECT * FROM _indexes"):
            layout.setdefault(table, {})[name] = (column, bool(usable))
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        self._tables = {r[0] for r in rows}
        self._layout = layout
        self._schema = conn.execute("PRAGMA schema_version").fetchone()[0]

    def close(self) -> None:
        with self.lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None


_ENGINES: dict[str, _Engine] = {}
_ENGINES_LOCK = threading.Lock()


@contextlib.contextmanager
def _sql_errors() -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:
        raise OperationFailure(f"local store: {exc}") from exc


class LocalClient:
    """The part of ``pymongo.MongoClient`` the state layer uses, over one SQLite file."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        with _ENGINES_LOCK:
            self._engine = _ENGINES.setdefault(self.path, _Engine(self.path))
            self._engine.users += 1
        self._closed = False
        self.admin = _Admin(self)

    def __getitem__(self, name: str) -> LocalDatabase:
        return LocalDatabase(self, name)

    def get_database(self, name: str) -> LocalDatabase:
        return LocalDatabase(self, name)

    def start_session(self, **_options: Any) -> LocalSession:
        return LocalSession(self)

    def close(self) -> None:
        """Let go of the file (the connection closes with its last client in this process)."""
        if self._closed:
            return
        self._closed = True
        with _ENGINES_LOCK:
            self._engine.users -= 1
            if self._engine.users == 0:
                self._engine.close()
                _ENGINES.pop(self.path, None)

    @property
    def engine(self) -> _Engine:
        return self._engine


class _Admin:
    """``client.admin.command``: the answers the state layer asks for."""

    def __init__(self, client: LocalClient) -> None:
        self._client = client

    def command(self, name: str, *_args: Any, **_kwargs: Any) -> dict[str, Any]:
        if name == "ping":
            with self._client.engine.reading() as conn:
                conn.execute("SELECT 1")
            return {"ok": 1.0}
        if name == "killSessions":  # a dead process holds no SQLite lock
            return {"ok": 1.0}
        raise OperationFailure(f"the local store does not run the command {name!r}")


class LocalSession:
    """A session whose transactions are SQLite transactions of the calling thread."""

    def __init__(self, client: LocalClient) -> None:
        self.client = client
        self.session_id = {"id": Binary(uuid.uuid4().bytes, 4)}

    def __enter__(self) -> LocalSession:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.end_session()

    def end_session(self) -> None:
        """Nothing to give back."""

    def with_transaction(self, callback: Any, *_args: Any, **_kwargs: Any) -> Any:
        """Run ``callback(session)`` in one transaction (writers are serialized: no conflicts,
        so no retries)."""
        with self.client.engine.writing():
            return callback(self)


class LocalDatabase:
    """A database: a name prefix for the collections' tables."""

    def __init__(self, client: LocalClient, name: str) -> None:
        self.client = client
        self.name = name

    def __getitem__(self, name: str) -> LocalCollection:
        return LocalCollection(self, name)

    def get_collection(self, name: str) -> LocalCollection:
        return LocalCollection(self, name)

    def list_collection_names(self) -> list[str]:
        prefix = f"{self.name}."
        with self.client.engine.reading() as conn:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        return sorted(r[0][len(prefix) :] for r in rows if r[0].startswith(prefix))

    def drop_collection(self, name: str) -> None:
        self[name].drop()

    def command(self, name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.client.admin.command(name, *args, **kwargs)


class LocalCollection:
    """The part of ``pymongo.collection.Collection`` the state layer uses."""

    def __init__(self, database: LocalDatabase, name: str) -> None:
        self.database = database
        self.name = name
        self.full_name = f"{database.name}.{name}"
        self._engine = database.client.engine
        self._table = self.full_name

    # -- reads ---------------------------------------------------------------------------------

    def find(
        self, filter: Filter | None = None, projection: Any = None, **kwargs: Any
    ) -> LocalCursor:
        return LocalCursor(self, dict(filter or {}), projection, **kwargs)

    def find_one(
        self, filter: Filter | Any = None, projection: Any = None, **kwargs: Any
    ) -> dict[str, Any] | None:
        if filter is not None and not isinstance(filter, Mapping):
            filter = {"_id": filter}
        if projection is None and filter is not None and len(filter) == 1:
            key = filter.get("_id")
            if type(key) is str:  # by its key alone (the hot path): no filter to plan or match
                return self._by_id(key)
        for doc in self.find(filter, projection, **kwargs).limit(1):
            return doc
        return None

    def _by_id(self, key: str) -> dict[str, Any] | None:
        with self._engine.reading() as conn:
            if not self._engine.has_table(self._table):
                return None
            sql = f'SELECT doc FROM "{self._table}" WHERE _id = ?'
            row = conn.execute(sql, (planner.id_key(key),)).fetchone()
        return None if row is None else _decode(row[0])

    def count_documents(self, filter: Filter, **kwargs: Any) -> int:
        return sum(1 for _ in self._matching(dict(filter), [], kwargs.get("limit") or 0))

    def estimated_document_count(self, **_kwargs: Any) -> int:
        with self._engine.reading() as conn:
            if not self._engine.has_table(self._table):
                return 0
            return int(conn.execute(f'SELECT COUNT(*) FROM "{self._table}"').fetchone()[0])

    def _matching(
        self, query: dict[str, Any], sort: SortSpec, limit: int, skip: int = 0
    ) -> list[dict[str, Any]]:
        """The documents matching ``query``, sorted, after ``skip``, at most ``limit``."""
        query = _normalized(query)
        with self._engine.reading() as conn:
            return self._select(conn, query, sort, limit, skip)

    def _select(
        self,
        conn: sqlite3.Connection,
        query: dict[str, Any],
        sort: SortSpec,
        limit: int,
        skip: int = 0,
    ) -> list[dict[str, Any]]:
        if not self._engine.has_table(self._table):
            return []
        ids = query.get("_id")
        if isinstance(ids, Mapping) and set(ids) == {"$in"} and len(ids["$in"]) > _IN_CHUNK:
            found = self._select_many_ids(conn, query, list(ids["$in"]))
            return _window(sort_documents(found, sort), limit, skip)
        columns = {"_id": "_id", **self._engine.columns(self._table)}
        chosen = planner.plan(query, sort, columns)
        sql = f'SELECT doc FROM "{self._table}" WHERE {chosen.where} {chosen.order}'
        found = []
        wanted = limit + skip if chosen.ordered and limit else 0
        rest = {k: v for k, v in query.items() if k not in chosen.checked}
        for (raw,) in conn.execute(sql, chosen.params):
            doc = _decode(raw)
            if not rest or matches(doc, rest):
                found.append(doc)
                if wanted and len(found) >= wanted:
                    break
        if not chosen.ordered:
            sort_documents(found, sort)
        return _window(found, limit, skip)

    def _select_many_ids(
        self, conn: sqlite3.Connection, query: dict[str, Any], ids: list[Any]
    ) -> list[dict[str, Any]]:
        found = []
        for start in range(0, len(ids), _IN_CHUNK):
            part = {**query, "_id": {"$in": ids[start : start + _IN_CHUNK]}}
            found += self._select(conn, part, [], 0)
        return found

    # -- writes --------------------------------------------------------------------------------

    def insert_one(self, document: dict[str, Any], **_kwargs: Any) -> InsertOneResult:
        with self._engine.writing() as conn:
            self._create(conn)
            self._insert(conn, document)
        return InsertOneResult(document["_id"], True)

    def insert_many(
        self, documents: Iterable[dict[str, Any]], ordered: bool = True, **_kwargs: Any
    ) -> InsertManyResult:
        docs = list(documents)
        self.bulk_write([InsertOne(d) for d in docs], ordered=ordered)  # gives each its _id
        return InsertManyResult([d["_id"] for d in docs], True)

    def update_one(
        self, filter: Filter, update: Mapping[str, Any], upsert: bool = False, **_kwargs: Any
    ) -> UpdateResult:
        return self._update(dict(filter), _operators(update), upsert=upsert, many=False)

    def update_many(
        self, filter: Filter, update: Mapping[str, Any], upsert: bool = False, **_kwargs: Any
    ) -> UpdateResult:
        return self._update(dict(filter), _operators(update), upsert=upsert, many=True)

    def replace_one(
        self,
        filter: Filter,
        replacement: Mapping[str, Any],
        upsert: bool = False,
        **_kwargs: Any,
    ) -> UpdateResult:
        if is_update_document(replacement):
            raise ValueError("replace_one needs a document, not update operators")
        return self._update(dict(filter), replacement, upsert=upsert, many=False)

    def delete_one(self, filter: Filter, **_kwargs: Any) -> DeleteResult:
        return self._delete(dict(filter), many=False)

    def delete_many(self, filter: Filter, **_kwargs: Any) -> DeleteResult:
        return self._delete(dict(filter), many=True)

    def bulk_write(
        self, requests: Iterable[Any], ordered: bool = True, **_kwargs: Any
    ) -> BulkWriteResult:
        counts: dict[str, Any] = dict.fromkeys(
            ("nInserted", "nMatched", "nModified", "nRemoved", "nUpserted"), 0
        )
        counts["upserted"] = []
        errors: list[dict[str, Any]] = []
        with self._engine.writing() as conn:
            self._create(conn)
            for index, request in enumerate(requests):
                try:
                    self._apply_request(request, index, counts)
                except DuplicateKeyError as exc:
                    errors.append(_write_error(index, exc))
                    if ordered:
                        break
        if errors:
            raise BulkWriteError({**counts, "writeErrors": errors})
        return BulkWriteResult(counts, True)

    def _apply_request(self, request: Any, index: int, counts: dict[str, Any]) -> None:
        """One request of a bulk, its outcome added to the bulk's ``counts``."""
        kind = type(request).__name__
        if kind == "InsertOne":
            self.insert_one(request._doc)
            counts["nInserted"] += 1
        elif kind in ("UpdateOne", "UpdateMany", "ReplaceOne"):
            query, update = dict(request._filter), request._doc
            if kind != "ReplaceOne":
                _operators(update)
            done = self._update(
                query, update, upsert=bool(request._upsert), many=kind == "UpdateMany"
            )
            counts["nMatched"] += done.matched_count
            counts["nModified"] += done.modified_count
            if done.upserted_id is not None:
                counts["nUpserted"] += 1
                counts["upserted"].append({"index": index, "_id": done.upserted_id})
        elif kind in ("DeleteOne", "DeleteMany"):
            removed = self._delete(dict(request._filter), many=kind == "DeleteMany")
            counts["nRemoved"] += removed.deleted_count
        else:
            raise OperationFailure(f"the local store does not run {kind} in bulk_write")

    def _update(
        self, query: dict[str, Any], update: Mapping[str, Any], *, upsert: bool, many: bool
    ) -> UpdateResult:
        query = _normalized(query)
        operators = is_update_document(update)
        with self._engine.writing() as conn:
            self._create(conn)
            targets = self._select(conn, query, [], 0 if many else 1)
            modified = 0
            for old in targets:
                raw_old, key = bson.encode(old), planner.id_key(old["_id"])
                new = apply_update(old, update) if operators else replace_document(old, update)
                if "_id" not in new or planner.id_key(new["_id"]) != key:
                    raise OperationFailure("an update cannot change _id")
                raw_new = bson.encode(new)
                if raw_new != raw_old:
                    self._write(conn, new, raw_new, replace=True)
                    modified += 1
            if targets or not upsert:
                return UpdateResult({"n": len(targets), "nModified": modified}, True)
            seed = upsert_seed(query)
            doc = (
                apply_update(seed, update, inserting=True)
                if operators
                else {
                    **({"_id": seed["_id"]} if "_id" in seed else {}),
                    **update,
                }
            )
            self._insert(conn, doc)
            return UpdateResult({"n": 1, "nModified": 0, "upserted": doc["_id"]}, True)

    def _delete(self, query: dict[str, Any], *, many: bool) -> DeleteResult:
        query = _normalized(query)
        with self._engine.writing() as conn:
            if not self._engine.has_table(self._table):
                return DeleteResult({"n": 0}, True)
            targets = self._select(conn, query, [], 0 if many else 1)
            for doc in targets:
                conn.execute(
                    f'DELETE FROM "{self._table}" WHERE _id = ?', (planner.id_key(doc["_id"]),)
                )
            return DeleteResult({"n": len(targets)}, True)

    def _insert(self, conn: sqlite3.Connection, document: dict[str, Any]) -> None:
        if "_id" not in document:
            document["_id"] = ObjectId()  # as pymongo does: the caller's dict gets its id
        self._write(conn, document, bson.encode(document), replace=False)

    def _write(
        self, conn: sqlite3.Connection, doc: Mapping[str, Any], raw: bytes, *, replace: bool
    ) -> None:
        """Insert (or, ``replace``, overwrite) one row: the document and its index columns."""
        names, values = ["doc"], [raw]
        for name, column in self._engine.all_columns(self._table).items():
            names.append(column)
            values.append(self._index_value(conn, doc, name))
        key = planner.id_key(doc["_id"])
        if replace:
            assignments = ", ".join(f'"{n}" = ?' for n in names)
            conn.execute(f'UPDATE "{self._table}" SET {assignments} WHERE _id = ?', [*values, key])
            return
        quoted = ", ".join(f'"{n}"' for n in ["_id", *names])
        marks = ", ".join("?" * (len(names) + 1))
        try:
            conn.execute(f'INSERT INTO "{self._table}" ({quoted}) VALUES ({marks})', [key, *values])
        except sqlite3.IntegrityError as exc:
            raise DuplicateKeyError(
                f"E11000 duplicate key error collection: {self.full_name} "
                f"dup key: {{ _id: {doc['_id']!r} }}",
                _DUPLICATE_KEY,
            ) from exc

    def _index_value(self, conn: sqlite3.Connection, doc: Mapping[str, Any], name: str) -> Any:
        values = lookup(doc, name)
        if not values:
            return None
        if len(values) == 1 and planner.indexable(values[0]):
            return planner.column_value(values[0])
        # An array or a sub-document: the column can no longer order or narrow this field.
        self._disable_index(conn, name)
        return None

    def _disable_index(self, conn: sqlite3.Connection, name: str) -> None:
        done = conn.execute(
            "UPDATE _indexes SET usable = 0 WHERE tbl = ? AND field = ? AND usable = 1",
            (self._table, name),
        )
        if done.rowcount:  # a schema change, so every process reloads the layout
            conn.execute(f'DROP INDEX IF EXISTS "{self._table}:{name}"')
            self._engine.reload(conn)

    # -- collections and indexes ---------------------------------------------------------------

    def _create(self, conn: sqlite3.Connection) -> None:
        if self._engine.has_table(self._table):
            return
        conn.execute(
            f'CREATE TABLE IF NOT EXISTS "{self._table}" '
            "(_id PRIMARY KEY NOT NULL, doc BLOB NOT NULL) WITHOUT ROWID"
        )
        self._engine.reload(conn)

    def create_index(self, keys: Any, **kwargs: Any) -> str:
        """An SQL index on columns that hold the fields (filled for the documents there)."""
        spec = normalize_sort(keys)
        unsupported = set(kwargs) - {"name", "background", "unique"}
        if unsupported:
            raise OperationFailure(f"the local store does not support index options {unsupported}")
        name = kwargs.get("name") or "_".join(f"{f}_{d}" for f, d in spec)
        with self._engine.writing() as conn:
            self._create(conn)
            for field_name, _ in spec:
                if field_name != "_id" and field_name not in self._engine.all_columns(self._table):
                    self._add_column(conn, field_name)
            known = self._engine.all_columns(self._table)
            cols = ", ".join(
                f'"{"_id" if f == "_id" else known[f]}" {"DESC" if d < 0 else "ASC"}'
                for f, d in spec
            )
            unique = "UNIQUE " if kwargs.get("unique") else ""
            conn.execute(
                f'CREATE {unique}INDEX IF NOT EXISTS "{self._table}:{name}" '
                f'ON "{self._table}" ({cols})'
            )
            self._engine.reload(conn)
        return str(name)

    def _add_column(self, conn: sqlite3.Connection, name: str) -> None:
        column = "ix_" + re.sub(r"[^A-Za-z0-9_]", "_", name)
        conn.execute(f'ALTER TABLE "{self._table}" ADD COLUMN "{column}"')
        conn.execute(
            "INSERT INTO _indexes (tbl, field, col) VALUES (?, ?, ?)", (self._table, name, column)
        )
        self._engine.reload(conn)
        rows = conn.execute(f'SELECT _id, doc FROM "{self._table}"').fetchall()
        for key, raw in rows:
            value = self._index_value(conn, _decode(raw), name)
            conn.execute(f'UPDATE "{self._table}" SET "{column}" = ? WHERE _id = ?', (value, key))

    def drop(self) -> None:
        with self._engine.writing() as conn:
            conn.execute(f'DROP TABLE IF EXISTS "{self._table}"')
            conn.execute("DELETE FROM _indexes WHERE tbl = ?", (self._table,))
            self._engine.reload(conn)


class LocalCursor:
    """``find``'s result: ``sort``, ``skip`` and ``limit`` chain; it runs when iterated."""

    def __init__(
        self, collection: LocalCollection, query: dict[str, Any], projection: Any, **kwargs: Any
    ) -> None:
        self._collection = collection
        self._query = query
        self._projection = (
            {k: 1 for k in projection} if isinstance(projection, list | tuple) else projection
        )
        self._sort: SortSpec = normalize_sort(kwargs["sort"]) if kwargs.get("sort") else []
        self._limit = int(kwargs.get("limit") or 0)
        self._skip = int(kwargs.get("skip") or 0)
        self._results: Iterator[dict[str, Any]] | None = None

    def sort(self, key_or_list: Any, direction: int | None = None) -> LocalCursor:
        self._sort = normalize_sort(key_or_list, direction)
        return self

    def limit(self, limit: int) -> LocalCursor:
        self._limit = int(limit)
        return self

    def skip(self, skip: int) -> LocalCursor:
        self._skip = int(skip)
        return self

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self

    def __next__(self) -> dict[str, Any]:
        if self._results is None:
            docs = self._collection._matching(self._query, self._sort, self._limit, self._skip)
            self._results = iter([project(d, self._projection) for d in docs])
        return next(self._results)

    def close(self) -> None:
        self._results = iter(())

    def __enter__(self) -> LocalCursor:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _operators(update: Mapping[str, Any]) -> Mapping[str, Any]:
    """``update`` if it is update operators (``update_one``, ``update_many``, their bulk forms)."""
    if not is_update_document(update):
        raise ValueError("an update needs update operators (a whole document: replace_one)")
    return update


def _window(docs: list[dict[str, Any]], limit: int, skip: int) -> list[dict[str, Any]]:
    docs = docs[skip:] if skip else docs
    return docs[:limit] if limit else docs


def _normalized(query: dict[str, Any]) -> dict[str, Any]:
    """The filter as the server would see it: through BSON (dates to the millisecond)."""
    try:
        return _decode(bson.encode(query))
    except bson.errors.InvalidDocument as exc:
        raise OperationFailure(f"local store: a filter BSON cannot hold: {exc}") from exc


def _write_error(index: int, exc: DuplicateKeyError) -> dict[str, Any]:
    return {"index": index, "code": _DUPLICATE_KEY, "errmsg": str(exc)}


def _decode(raw: bytes) -> dict[str, Any]:
    return bson.decode(raw, _CODEC)
