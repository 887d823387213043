"""The local store's own guarantees (no server needed): an index never changes an answer,
sort keys keep MongoDB's order of types, and several processes share one file safely."""

from __future__ import annotations

import datetime as dt
import multiprocessing
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymongo.errors import OperationFailure, WriteError
from thumbcache.state.docstore import LocalClient
from thumbcache.state.docstore.plan import column_value, indexable
from thumbcache.state.docstore.query import sort_key

UTC = dt.UTC
T0 = dt.datetime(2026, 3, 1, tzinfo=UTC)

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(-5, 5, allow_nan=False),
    st.text("abé", max_size=3),
    st.sampled_from([T0, T0 + dt.timedelta(seconds=1), T0 - dt.timedelta(days=1)]),
    st.sampled_from([ObjectId("0" * 24), ObjectId("f" * 24)]),
)
_values = st.one_of(_scalars, st.lists(_scalars, max_size=2))
_docs = st.lists(st.fixed_dictionaries({}, optional={"a": _values, "b": _scalars}), max_size=12)
_ops = st.sampled_from(["$gt", "$gte", "$lt", "$lte", "$eq", "$ne"])
_conditions = st.one_of(
    _scalars,
    st.builds(lambda op, v: {op: v}, _ops, _scalars),
    st.builds(lambda vs: {"$in": vs}, st.lists(_scalars, max_size=3)),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    docs=_docs,
    query=st.dictionaries(st.sampled_from(["a", "b"]), _conditions, max_size=2),
    sort=st.sampled_from([[("a", 1)], [("b", -1)], [("a", 1), ("b", 1)]]),
    limit=st.integers(0, 4),
)
def test_an_index_never_changes_an_answer(
    tmp_path: Path, docs: list[dict[str, Any]], query: dict[str, Any], sort: Any, limit: int
) -> None:
    client = LocalClient(str(tmp_path / "index.sqlite3"))
    try:
        plain, indexed = client["d"]["plain"], client["d"]["indexed"]
        plain.drop()
        indexed.drop()
        indexed.create_index([("a", 1), ("b", 1)])
        indexed.create_index([("b", -1)])
        for coll in (plain, indexed):
            coll.insert_many([{"_id": i, **d} for i, d in enumerate(docs)] or [{"_id": -1}])
        order = [*sort, ("_id", 1)]
        answers = [list(c.find(query).sort(order).limit(limit)) for c in (plain, indexed)]
        assert answers[0] == answers[1]
    finally:
        client.close()


def test_sql_keys_order_values_as_mongodb_does() -> None:
    values = [-2, 0.5, 3, "", "a", "b", ObjectId("0" * 24), False, True, T0, T0 + dt.timedelta(1)]
    assert sorted(values, key=sort_key) == values
    keys = [column_value(v) for v in values]
    # SQLite's order: numbers < text < blobs (blobs compared bytewise)
    ranked = [
        (0 if isinstance(k, int | float) else 1 if isinstance(k, str) else 2, k) for k in keys
    ]
    assert sorted(ranked) == ranked
    assert not indexable([1]) and not indexable({"k": 1}) and not indexable(float("nan"))


def test_updates_the_store_cannot_apply_are_refused_not_guessed(tmp_path: Path) -> None:
    coll = LocalClient(str(tmp_path / "s.sqlite3"))["d"]["c"]
    coll.insert_one({"_id": 1, "v": "text"})
    with pytest.raises(WriteError):
        coll.update_one({"_id": 1}, {"$inc": {"v": 1}})
    with pytest.raises(WriteError):
        coll.update_one({"_id": 1}, {"$rename": {"v": "w"}})
    with pytest.raises(OperationFailure):
        list(coll.find({"v": {"$regex": "t"}}))
    assert coll.find_one({"_id": 1}) == {"_id": 1, "v": "text"}


def _add_many(path: str, worker: int, count: int) -> None:
    coll = LocalClient(path)["d"]["c"]
    for i in range(count):
        coll.update_one({"_id": "counter"}, {"$inc": {"n": 1}}, upsert=True)
        coll.insert_one({"_id": f"w{worker}-{i}"})


def test_processes_sharing_the_file_lose_no_write(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite3")
    LocalClient(path)["d"]["c"].insert_one({"_id": "start"})
    spawn = multiprocessing.get_context("spawn")
    workers = [spawn.Process(target=_add_many, args=(path, w, 150)) for w in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    coll = LocalClient(path)["d"]["c"]
    assert coll.find_one({"_id": "counter"}) == {"_id": "counter", "n": 450}
    assert coll.count_documents({}) == 2 + 450


def _killed_inside_a_transaction(path: str) -> None:
    import os
    import signal

    coll = LocalClient(path)["d"]["c"]

    def body(session: Any) -> None:
        coll.update_one({"_id": "k"}, {"$inc": {"v": 1}}, session=session)
        coll.insert_one({"_id": "half"}, session=session)
        os.kill(os.getpid(), signal.SIGKILL)

    with coll.database.client.start_session() as session:
        session.with_transaction(body)


def test_a_process_killed_inside_a_transaction_leaves_nothing_and_no_lock(tmp_path: Path) -> None:
    path = str(tmp_path / "killed.sqlite3")
    LocalClient(path)["d"]["c"].insert_one({"_id": "k", "v": 0})
    child = multiprocessing.get_context("spawn").Process(
        target=_killed_inside_a_transaction, args=(path,)
    )
    child.start()
    child.join(60)
    assert child.exitcode == -9
    coll = LocalClient(path)["d"]["c"]
    assert coll.find_one({"_id": "k"}) == {"_id": "k", "v": 0}
    assert coll.find_one({"_id": "half"}) is None
    assert coll.update_one({"_id": "k"}, {"$inc": {"v": 1}}).modified_count == 1  # not locked
