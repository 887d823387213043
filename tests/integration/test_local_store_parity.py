"""The local store answers like the MongoDB-protocol server: the same calls on both, compared.

Every read and write the state layer makes, and the MongoDB rules behind them (null matches
missing, arrays match by element, type brackets in comparisons and sorts, dotted paths, upserts
seeded from the filter, modified counts of no-op updates, bulk errors), run on a real
MongoDB-protocol server over a socket and on the in-process SQLite store; then random documents
and filters (hypothesis) compared the same way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo import DESCENDING, InsertOne, MongoClient, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure
from thumbcache.state.docstore import LocalClient

UTC = dt.UTC
T0 = dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
OID = ObjectId("65a1b2c3d4e5f60718293a4b")

DOCS: list[dict[str, Any]] = [
    {"_id": "a", "n": 1, "s": "x", "t": T0, "tags": ["red", "blue"], "sub": {"k": 1, "v": "p"}},
    {"_id": "b", "n": 2.5, "s": "y", "t": T0 + dt.timedelta(days=1), "tags": [], "sub": {"k": 2}},
    {"_id": "c", "n": None, "s": "x", "flag": True, "sub": {"k": None}},
    {"_id": "d", "s": 3, "flag": False, "tags": ["red"], "list": [{"k": 1}, {"k": 5}]},
    {"_id": "e", "n": -4, "s": "", "t": None, "ref": OID, "sub": {"k": 1, "deep": {"z": 1}}},
    {"_id": "f", "n": 10, "s": "xyz", "tags": ["blue", "green"], "flag": 1},
    {"_id": "g", "n": True, "s": None, "list": [1, 2, 3]},
]

FILTERS: list[dict[str, Any]] = [
    {},
    {"_id": "c"},
    {"_id": {"$in": ["a", "e", "zz"]}},
    {"_id": {"$gt": "b", "$lt": "f"}},
    {"_id": {"$in": ["a", "b", "f"]}, "n": {"$gt": 1}},  # the key narrows, the rest is checked
    {"_id": "a", "n": 2.5},
    {"n": 1},
    {"n": 2.5},
    {"n": None},
    {"n": {"$ne": None}},
    {"n": {"$exists": False}},
    {"n": {"$gt": 0}},
    {"n": {"$gte": -4, "$lt": 3}},
    {"n": {"$in": [None, 10]}},
    {"n": {"$nin": [1, 10]}},
    {"n": True},
    {"flag": 1},
    {"flag": True},
    {"s": {"$gt": "x"}},
    {"s": {"$lt": "y"}},
    {"s": {"$gte": ""}},
    {"t": {"$gt": T0}},
    {"t": {"$lte": T0 + dt.timedelta(days=2)}},
    {"t": None},
    {"tags": "red"},
    {"tags": ["red"]},
    {"tags": {"$in": ["green", "none"]}},
    {"tags": {"$size": 0}},
    {"tags": {"$all": ["red", "blue"]}},
    {"sub.k": 1},
    {"sub.k": None},
    {"sub.deep.z": {"$exists": True}},
    {"sub": {"k": 2}},
    {"list.k": 5},
    {"list": 2},
    {"list.1": 2},
    {"ref": OID},
    {"$or": [{"n": 1}, {"s": None}]},
    {"$and": [{"s": "x"}, {"n": {"$ne": None}}]},
    {"$nor": [{"s": "x"}, {"tags": "blue"}]},
    {"n": {"$not": {"$gt": 1}}},
    {"s": "x", "sub.k": {"$in": [1, 2]}},
]


@pytest.fixture
def dbs(mongo_url: str, db_name: str, tmp_path: Path) -> Any:
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_url, tz_aware=True, retryWrites=False)
    local = LocalClient(str(tmp_path / "state.sqlite3"))
    yield client[db_name], local[db_name]
    client.drop_database(db_name)
    client.close()
    local.close()


def on_both(dbs: Any, call: Callable[[Any], Any]) -> tuple[Any, Any]:
    """``call`` on the server's database and on the local one: each result, or its error's
    class (the message may differ)."""
    results = []
    for db in dbs:
        try:
            results.append(call(db))
        except (OperationFailure, BulkWriteError, DuplicateKeyError) as exc:
            results.append(type(exc).__name__)
    return results[0], results[1]


def ids(cursor: Any) -> list[Any]:
    return [d["_id"] for d in cursor]


@pytest.mark.parametrize("query", FILTERS, ids=[repr(f)[:60] for f in FILTERS])
def test_filters_select_the_same_documents(dbs: Any, query: dict[str, Any]) -> None:
    for db in dbs:
        db["c"].insert_many([dict(d) for d in DOCS])
    server, local = on_both(dbs, lambda db: sorted(map(str, ids(db["c"].find(query)))))
    assert local == server
    server, local = on_both(dbs, lambda db: db["c"].count_documents(query))
    assert local == server


@pytest.mark.parametrize(
    "query",
    [
        {"_id": 7.0},  # numbers equal across int and float, in SQL as in the server
        {"_id": {"$in": [7.0, "7", True, OID]}},
        {"_id": {"$in": [1, OID]}, "n": 2},
        {"_id": {"$gt": 0}},  # a range on the key stays within its type
        {"_id": {"$in": [None, {"k": 1}]}},
    ],
)
def test_keys_of_every_type_select_alike(dbs: Any, query: dict[str, Any]) -> None:
    """An ``_id`` equality the SQL applies exactly (no second check) answers as the server."""
    keyed = [{"_id": 7, "n": 1}, {"_id": "7", "n": 2}, {"_id": True}, {"_id": OID, "n": 2},
             {"_id": 1.5}, {"_id": {"k": 1}}, {"_id": dt.datetime(2026, 1, 1)}]  # fmt: skip
    for db in dbs:
        db["k"].insert_many([dict(d) for d in keyed])
    server, local = on_both(dbs, lambda db: sorted(map(str, ids(db["k"].find(query)))))
    assert local == server


@pytest.mark.parametrize(
    ("sort", "skip", "limit"),
    [
        ([("n", 1)], 0, 0),
        ([("n", -1)], 1, 3),
        ([("s", 1), ("_id", -1)], 0, 0),
        ([("t", -1)], 0, 4),
        ([("tags", 1)], 0, 0),
        ([("_id", -1)], 2, 2),
    ],
)
def test_sorts_order_mixed_types_as_the_server(
    dbs: Any, sort: list[tuple[str, int]], skip: int, limit: int
) -> None:
    for db in dbs:
        db["c"].insert_many([dict(d) for d in DOCS])
    server, local = on_both(dbs, lambda db: ids(db["c"].find().sort(sort).skip(skip).limit(limit)))
    assert local == server


@pytest.mark.parametrize(
    "projection",
    [{"n": 1}, {"sub.k": 1}, {"_id": 0, "s": 1}, {"tags": 0, "sub.k": 0}, {"_id": 1}, ["s", "n"]],
)
def test_projections_keep_the_same_fields(dbs: Any, projection: Any) -> None:
    for db in dbs:
        db["c"].insert_many([dict(d) for d in DOCS])
    server, local = on_both(dbs, lambda db: list(db["c"].find({}, projection).sort("_id", 1)))
    assert local == server


UPDATES: list[tuple[dict[str, Any], dict[str, Any], bool]] = [
    ({"_id": "a"}, {"$set": {"s": "q", "sub.new.deep": 1}}, False),
    ({"_id": "a"}, {"$set": {"s": "x"}}, False),  # no change: modified 0
    ({"_id": "a", "n": 2}, {"$set": {"s": "q"}}, False),  # guard fails: matched 0
    ({"_id": "b"}, {"$inc": {"n": 1, "missing.count": 2}}, False),
    ({"_id": "b"}, {"$unset": {"sub.k": "", "nothing": ""}}, False),
    ({"_id": "d"}, {"$addToSet": {"tags": {"$each": ["red", "gold", "gold"]}}}, False),
    ({"_id": "d"}, {"$push": {"tags": "red"}}, False),
    ({"_id": "f"}, {"$max": {"n": 11}, "$min": {"flag": 0}}, False),
    ({"_id": "new"}, {"$set": {"a": 1}, "$setOnInsert": {"b": 2}, "$inc": {"c": 1}}, True),
    ({"_id": "new2", "k": "seed", "g": {"$gt": 1}}, {"$set": {"a": 1}}, True),
    ({"s": "x"}, {"$setOnInsert": {"ignored": 1}, "$set": {"seen": True}}, True),
    ({"s": "nobody"}, {"$set": {"seen": True}}, True),  # an upsert with a generated _id
    ({"_id": "c"}, {"$inc": {"s": 1}}, False),  # not a number: an error on both
    ({"_id": "c", "sub.k": None}, {"$set": {"sub.k.x": 1}}, False),  # into null: an error
]


@pytest.mark.parametrize(
    ("query", "update", "upsert"), UPDATES, ids=[repr(u[1])[:50] for u in UPDATES]
)
def test_updates_change_documents_and_count_alike(
    dbs: Any, query: dict[str, Any], update: dict[str, Any], upsert: bool
) -> None:
    for db in dbs:
        db["c"].insert_many([dict(d) for d in DOCS])

    def call(db: Any) -> Any:
        result = db["c"].update_one(query, update, upsert=upsert)
        upserted = result.upserted_id
        return (
            result.matched_count,
            result.modified_count,
            upserted if isinstance(upserted, str) else type(upserted).__name__,
            [
                {k: v for k, v in d.items() if k != "_id" or isinstance(v, str)}
                for d in db["c"].find().sort("_id", 1)
            ],
        )

    server, local = on_both(dbs, call)
    assert local == server


def test_replace_delete_and_many(dbs: Any) -> None:
    def call(db: Any) -> Any:
        coll = db["c"]
        coll.insert_many([dict(d) for d in DOCS])
        replaced = coll.replace_one({"_id": "a"}, {"only": 1})
        upserted = coll.replace_one({"_id": "r"}, {"x": 1}, upsert=True)
        many = coll.update_many({"s": "x"}, {"$set": {"m": 1}})
        deleted = coll.delete_one({"n": {"$gt": 1}})
        deleted_many = coll.delete_many({"flag": {"$exists": True}})
        return (
            replaced.modified_count,
            upserted.upserted_id,
            (many.matched_count, many.modified_count),
            deleted.deleted_count,
            deleted_many.deleted_count,
            list(coll.find().sort("_id", 1)),
        )

    server, local = on_both(dbs, call)
    assert local == server


def test_duplicate_keys_fail_alike_in_bulk_and_alone(dbs: Any) -> None:
    def call(db: Any) -> Any:
        coll = db["c"]
        coll.insert_one({"_id": "a", "v": 1})
        out: list[Any] = []
        try:
            coll.insert_one({"_id": "a"})
        except DuplicateKeyError as exc:
            out.append(exc.code)
        for ordered in (True, False):
            try:
                coll.insert_many(
                    [{"_id": "b"}, {"_id": "a"}, {"_id": f"c{ordered}"}], ordered=ordered
                )
            except BulkWriteError as exc:
                out.append([(e["index"], e["code"]) for e in exc.details["writeErrors"]])
        result = coll.bulk_write(
            [
                UpdateOne({"_id": "a"}, {"$inc": {"v": 1}}),
                UpdateOne({"_id": "z"}, {"$set": {"v": 0}}, upsert=True),
                InsertOne({"_id": "y"}),
            ],
            ordered=False,
        )
        out.append(
            (
                result.matched_count,
                result.modified_count,
                result.upserted_count,
                result.inserted_count,
                result.upserted_ids,
            )
        )
        out.append(list(coll.find().sort("_id", DESCENDING)))
        return out

    server, local = on_both(dbs, call)
    assert local == server


def test_an_index_narrows_without_changing_answers(dbs: Any) -> None:
    """Pages of an indexed (collection_id, source) query, as the images repository reads them,
    including values an index column cannot hold (then it is no longer used)."""

    def call(db: Any) -> Any:
        coll = db["images"]
        coll.create_index([("collection_id", 1), ("source", 1)])
        coll.insert_many(
            [
                {"_id": f"i{i:03}", "collection_id": f"c{i % 3}", "source": f"s{(i * 7) % 50:03}"}
                for i in range(50)
            ]
        )
        pages = [
            ids(
                coll.find({"collection_id": "c1", "source": {"$gt": "s010"}})
                .sort("source", 1)
                .limit(5)
            )
        ]
        coll.insert_one({"_id": "odd", "collection_id": ["c1", "c2"], "source": "s000"})
        pages.append(ids(coll.find({"collection_id": "c1"}).sort("source", 1).limit(3)))
        pages.append(coll.count_documents({"collection_id": "c2"}))
        return pages

    server, local = on_both(dbs, call)
    assert local == server


def test_a_transaction_commits_or_leaves_nothing(tmp_path: Path) -> None:
    """(Local only: the server's transactions are its own.) An error inside rolls every write
    of the transaction back; another client of the file sees only committed state."""
    first = LocalClient(str(tmp_path / "s.sqlite3"))["d"]["c"]
    first.insert_one({"_id": "k", "v": 0})

    def body(session: Any) -> None:
        first.update_one({"_id": "k"}, {"$inc": {"v": 1}}, session=session)
        first.insert_one({"_id": "other"}, session=session)
        raise RuntimeError("after two writes")

    with first.database.client.start_session() as session, pytest.raises(RuntimeError):
        session.with_transaction(body)
    assert first.find_one({"_id": "k"}) == {"_id": "k", "v": 0}
    assert first.find_one({"_id": "other"}) is None


# -- random documents and filters --------------------------------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([0.5, -1.5, 2.0]),
    st.sampled_from(["", "a", "b", "ab", "é"]),
    st.sampled_from([T0, T0 + dt.timedelta(hours=1)]),
)
_values = st.one_of(
    _scalars,
    st.lists(_scalars, max_size=3),
    st.fixed_dictionaries({"k": _scalars}),
    st.lists(st.fixed_dictionaries({}, optional={"k": _scalars}), max_size=2),
)
_fields = st.sampled_from(["x", "y", "z.k"])
_docs = st.lists(
    st.fixed_dictionaries({}, optional={"x": _values, "y": _values, "z": _values}),
    min_size=1,
    max_size=8,
)
_conditions = st.one_of(
    _values,
    st.builds(
        lambda op, v: {op: v},
        st.sampled_from(["$gt", "$gte", "$lt", "$lte", "$ne", "$eq"]),
        _scalars,
    ),
    st.builds(
        lambda op, vs: {op: vs}, st.sampled_from(["$in", "$nin"]), st.lists(_scalars, max_size=3)
    ),
    st.builds(lambda b: {"$exists": b}, st.booleans()),
)
_filters = st.dictionaries(_fields, _conditions, max_size=2)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(docs=_docs, query=_filters, sort_field=_fields, direction=st.sampled_from([1, -1]))
def test_random_filters_and_sorts_agree(
    dbs: Any, docs: list[dict[str, Any]], query: dict[str, Any], sort_field: str, direction: int
) -> None:
    def call(db: Any) -> Any:
        db["r"].drop()
        db["r"].insert_many([{"_id": i, **d} for i, d in enumerate(docs)])
        chosen = sorted(ids(db["r"].find(query)))
        ordered = ids(db["r"].find().sort([(sort_field, direction), ("_id", 1)]))
        return chosen, ordered

    server, local = on_both(dbs, call)
    assert local == server, (docs, query)
