"""What tracking one image costs in the state store, and what it would cost in-process.

``python -m thumbcache.bench.state_floor [--images 1000]``: one core, per image, the two
transactions a render makes with both renditions ending together (a claim: read the item, one
guarded update, read the image; an end: read item and image, write item, image, folder and job),
timed twice in the same run:

- through the real functions (:func:`thumbcache.state.completion.claim_stages` and
  :func:`~thumbcache.state.completion.end_stages`) against the embedded MongoDB-protocol server,
  the server's CPU counted with the client's (they share the cores);
- through the same functions against the local store (:mod:`thumbcache.state.docstore`, the
  embedded default since ADR 0008: the same documents, in SQLite, in-process);
- as the same reads and writes of JSON documents in SQLite, hand-written (WAL): the floor an
  in-process backend could reach, with nothing general in between.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from thumbcache.embedded import EmbeddedMongo
from thumbcache.state.completion import Claim, StageEnd, claim_stages, end_stages
from thumbcache.state.store import Store, connect, open_local

STAGES = ("cache", "thumbnail")


def _item(i: int) -> dict[str, Any]:
    stages = {s: {"state": "pending", "attempts": 0} for s in STAGES}
    return {"_id": f"job:{i}", "job_id": "job", "image_id": str(i), "stages": stages,
            "outcome": None}  # fmt: skip


def _record(i: int, stage: str) -> dict[str, Any]:
    return {"path": f"/cache/{stage}/{i}.jpg", "folder_id": "f", "bytes": 50_000, "width": 300,
            "height": 200, "recipe": "r", "fingerprint": {"size": 1, "mtime": 2},
            "job_id": "job"}  # fmt: skip


def _server_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _server_pid(data_dir: Path) -> int:
    """The embedded database server serving ``data_dir`` (started by its supervisor)."""
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"secantus" in b" ".join(argv) and any(str(data_dir).encode() in a for a in argv):
            return int(entry.name)
    raise RuntimeError(f"no database server for {data_dir}")


def mongo_protocol_ms(images: int, work: Path) -> float:
    """Milliseconds of client plus server CPU per image through the real state functions."""
    server = EmbeddedMongo(str(work / "mongo"))
    store = connect(server.start(), "floor")
    try:
        pid = _server_pid(work / "mongo")
        return _state_functions_ms(store, images, lambda: _server_cpu(pid))
    finally:
        store.close()
        server.stop()


def local_store_ms(images: int, work: Path) -> float:
    """Milliseconds of CPU per image through the real state functions on the local store."""
    store = open_local(str(work / "local.sqlite3"), "floor")
    try:
        return _state_functions_ms(store, images, lambda: 0.0)
    finally:
        store.close()


def _state_functions_ms(store: Store, images: int, server_cpu: Callable[[], float]) -> float:
    db = store.db
    db["jobs"].insert_one({"_id": "job", "status": "running", "total": images})
    db["cache_folders"].insert_one({"_id": "f", "total_files": 0, "current_size_bytes": 0})
    db["job_items"].insert_many([_item(i) for i in range(images)])
    db["images"].insert_many(
        [{"_id": str(i), "fingerprint": {"size": 1, "mtime": 2}} for i in range(images)]
    )
    server_before = server_cpu()
    client_before = resource.getrusage(resource.RUSAGE_SELF)
    for i in range(images):
        image = str(i)
        claims = [Claim("job", image, "cache", "w", 3),
                  Claim("job", image, "thumbnail", "w+", 3, pending_only=True)]  # fmt: skip
        assert all(claim_stages(store, claims))
        ends = [StageEnd("job", image, s, "done", record=_record(i, s)) for s in STAGES]
        assert all(end_stages(store, ends))
    client = resource.getrusage(resource.RUSAGE_SELF)
    cpu = client.ru_utime + client.ru_stime - client_before.ru_utime - client_before.ru_stime
    cpu += server_cpu() - server_before
    return cpu / images * 1000


def sqlite_ms(images: int, work: Path) -> float:
    """Milliseconds per image for the same reads and writes in SQLite in-process."""
    db = sqlite3.connect(str(work / "state.db"), isolation_level=None)
    db.execute("pragma journal_mode=wal")
    db.execute("pragma synchronous=normal")
    for table in ("items", "images", "folders", "jobs"):
        db.execute(f"create table {table} (id text primary key, doc text)")
    db.execute("begin")
    for i in range(images):
        db.execute("insert into items values (?, ?)", (f"job:{i}", json.dumps(_item(i))))
        db.execute("insert into images values (?, ?)", (str(i), json.dumps({"renditions": {}})))
    db.execute("insert into folders values ('f', ?)", (json.dumps({"files": 0, "bytes": 0}),))
    db.execute("insert into jobs values ('job', ?)", (json.dumps({"completed": 0}),))
    db.execute("commit")

    def get(table: str, key: str) -> Any:
        return json.loads(db.execute(f"select doc from {table} where id = ?", (key,)).fetchone()[0])

    def put(table: str, key: str, doc: Any) -> None:
        db.execute(f"update {table} set doc = ? where id = ?", (json.dumps(doc), key))

    start = time.process_time()
    for i in range(images):
        key = f"job:{i}"
        db.execute("begin immediate")  # the claim
        item = get("items", key)
        for stage in STAGES:
            item["stages"][stage].update(state="running", attempts=1)
        put("items", key, item)
        get("images", str(i))
        db.execute("commit")
        db.execute("begin immediate")  # the end
        item, image = get("items", key), get("images", str(i))
        for stage in STAGES:
            item["stages"][stage]["state"] = "done"
            image["renditions"][stage] = _record(i, stage)
        item["outcome"] = "completed"
        put("items", key, item)
        put("images", str(i), image)
        folder = get("folders", "f")
        folder["files"] += len(STAGES)
        put("folders", "f", folder)
        job = get("jobs", "job")
        job["completed"] += 1
        put("jobs", "job", job)
        db.execute("commit")
    db.close()
    return (time.process_time() - start) / images * 1000


def main(argv: list[str] | None = None) -> int:
    """Measure both and print the comparison."""
    parser = argparse.ArgumentParser(prog="python -m thumbcache.bench.state_floor")
    parser.add_argument("--images", type=int, default=1000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="thumbcache-state-floor-") as tmp:
        work = Path(tmp)
        mongo = mongo_protocol_ms(args.images, work)
        local = local_store_ms(args.images, work)
        floor = sqlite_ms(args.images, work)
    print(f"| state per image, both renditions ({args.images} images) | CPU ms | / floor |")
    print("|---|---:|---:|")
    print(f"| embedded MongoDB-protocol server (client + server) | {mongo:.2f} | "
          f"{mongo / floor:.0f}x |")  # fmt: skip
    print(f"| local store (SQLite in-process, the real functions) | {local:.2f} | "
          f"{local / floor:.1f}x |")  # fmt: skip
    print(f"| SQLite by hand (JSON documents, WAL): the floor | {floor:.3f} | 1x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
