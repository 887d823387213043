"""A process killed inside a transaction no longer stalls everyone writing the same documents
for the server's transaction lifetime (60 s, measured): its sessions are ended once a writer
keeps conflicting with it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from thumbcache.state.completion import in_transaction
from thumbcache.state.store import connect
from thumbcache.state.transaction_owners import COLLECTION, owner_is_gone, process_start_ticks

# A process that opens a transaction through the product's code path, writes the job document
# inside it, says so, and waits to be killed with the transaction open.
HOLDER = """
import sys, time
from thumbcache.state.completion import in_transaction
from thumbcache.state.store import connect
store = connect(sys.argv[1], sys.argv[2], create_indexes=False)
def body(session):
    store.db.jobs.update_one({"_id": "j"}, {"$inc": {"n": 1}}, session=session)
    print("inside", flush=True)
    time.sleep(600)
in_transaction(store, body)
"""


def test_a_writer_gets_through_seconds_after_the_holder_of_its_document_is_killed(
    mongo_url, db_name
):
    # Given a job document, and a process killed while its transaction holds that document
    store = connect(mongo_url, db_name, create_indexes=False)
    store.db.jobs.insert_one({"_id": "j", "n": 0})
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, mongo_url, db_name], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "inside"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    # When another process's transaction writes the same document
    started = time.monotonic()
    in_transaction(
        store,
        lambda s: store.db.jobs.update_one({"_id": "j"}, {"$inc": {"n": 1}}, session=s),
    )
    waited = time.monotonic() - started
    # Then it went through long before the server's 60 s lifetime, the dead write never landed,
    # and the dead process's record is gone
    assert waited < 15, f"waited {waited:.1f}s behind a dead process's transaction"
    assert store.db.jobs.find_one({"_id": "j"})["n"] == 1
    assert store.db[COLLECTION].count_documents({"pid": holder.pid}) == 0


def test_a_live_owner_is_never_taken_for_gone(mongo_url, db_name):
    store = connect(mongo_url, db_name, create_indexes=False)
    in_transaction(store, lambda s: store.db.jobs.insert_one({"_id": "x"}, session=s))
    (record,) = store.db[COLLECTION].find()
    now = store.transaction_owners.clock()
    assert not owner_is_gone(record, store.transaction_owners.host, now)
    assert store.transaction_owners.reap() == 0  # it never ends its own sessions


def test_an_owner_is_gone_when_its_pid_runs_another_process_or_it_fell_silent():
    me = process_start_ticks(__import__("os").getpid())
    assert me is not None
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    here = {"host": "h", "pid": __import__("os").getpid(), "started": me, "seen_at": now}
    assert not owner_is_gone(here, "h", now)
    assert owner_is_gone({**here, "started": me + 1}, "h", now)  # the PID was reused
    assert owner_is_gone({**here, "pid": 2**22 + 7}, "h", now)  # no such process
    elsewhere = {**here, "host": "other"}
    assert not owner_is_gone(elsewhere, "h", now + timedelta(seconds=10))
    assert owner_is_gone(elsewhere, "h", now + timedelta(seconds=31))
