"""Scanning and reading a large CBZ: the old per-entry directory parse against the cache.

``python -m thumbcache.bench.archives [--entries 100000] [--sample 20] [--keep DIR]``

Builds one CBZ of ``--entries`` small valid PNG pages, then measures in the same run, on the
same file (warm page cache):

- **scan, new**: the walk (one directory parse) and a header probe of every entry through
  ``open_source``, exactly the scanner's source work per entry (no database, no broker);
- **scan, old**: what the scanner did per entry before issue 10: open the archive, parse its
  whole central directory, open the entry, probe. Timed on ``--sample`` entries spread over
  the archive (each costs a full parse: the whole archive would take hours), plus the old
  walk's one parse and sort;
- **render read, old and new**: ``read_source`` of the same sample of entries, re-parsing
  per entry (old) and through the per-process directory cache (new).

Prints entries per second and the ratio new/old of each, and the projected time of the whole
archive on the old path. ``--with-store`` also times a real job's whole scan of the archive on
the new path (walk, probes, image and item documents in an embedded MongoDB-protocol server,
render messages on the in-process broker).
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
import statistics
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import BinaryIO

from PIL import Image

from thumbcache.imaging.probe import probe
from thumbcache.settings import LimitSettings, ScanSettings
from thumbcache.sources import archives
from thumbcache.sources.reader import ChunkReader, open_regular_file, read_source
from thumbcache.sources.refs import SourceRef
from thumbcache.sources.walk import walk

LIMITS = LimitSettings()
ARCHIVE = "book.cbz"


def build_archive(path: Path, entries: int) -> list[str]:
    """A CBZ of ``entries`` tiny PNG pages (stored, like most comic archives); their names."""
    pages = []
    for shade in range(16):
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (shade * 16, 64, 128)).save(buf, "PNG")
        pages.append(buf.getvalue())
    names = [f"pages/{i // 1000:03d}/p{i:06d}.png" for i in range(entries)]
    with zipfile.ZipFile(path, "w") as zf:
        for i, name in enumerate(names):
            zf.writestr(name, pages[i % len(pages)])
    return names


def scan_new(root: str, chunk_size: int = ScanSettings().chunk_size) -> int:
    """The scanner's source work today: walk, then probe each entry of a chunk through one
    open archive (``ChunkReader``) and the cached directory."""
    archives.DIRECTORIES.clear()
    count = 0
    candidates = walk(root, LIMITS)
    while chunk := list(itertools.islice(candidates, chunk_size)):
        with ChunkReader(root, LIMITS) as reader:
            for candidate in chunk:
                assert candidate.error is None, candidate
                with reader.open(candidate.ref) as (fh, _fingerprint):
                    probe(fh, LIMITS)
                count += 1
    return count


def walk_old(root: str) -> list[str]:
    """The old walk: one parse of the directory and a sort of its names (cheap, linear)."""
    with zipfile.ZipFile(os.path.join(root, ARCHIVE)) as zf:
        return sorted(i.filename for i in zf.infolist() if not i.is_dir())


@contextmanager
def entry_old(root: str, name: str) -> Iterator[BinaryIO]:
    """What the old reader did per entry: open the archive, parse its whole directory, open
    the entry."""
    path = os.path.join(root, ARCHIVE)
    with (
        open_regular_file(path, beneath=root) as (fh, _st),
        zipfile.ZipFile(fh) as zf,
        zf.open(zf.getinfo(name)) as entry,
    ):
        yield entry  # type: ignore[misc]


def probe_old(root: str, name: str) -> None:
    """The old scanner's header probe of one entry."""
    with entry_old(root, name) as entry:
        probe(entry, LIMITS)


def read_old(root: str, name: str) -> bytes:
    """The old render read of one entry."""
    with entry_old(root, name) as entry:
        return entry.read()


def seconds(action: Callable[[], object]) -> float:
    """Wall time of one call."""
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def scan_job_seconds(root: str) -> tuple[float, int]:
    """Seconds for a real job's whole scan (walk, probes, image and item documents, render
    messages) on an embedded MongoDB-protocol server and the in-process broker; its total."""
    from thumbcache.broker import make_broker
    from thumbcache.contracts import ScanRequest, all_queues
    from thumbcache.embedded import EmbeddedMongo
    from thumbcache.pipeline.runtime import Runtime
    from thumbcache.pipeline.scan import scan_step, start_scan
    from thumbcache.settings import load_settings
    from thumbcache.state.store import connect

    with tempfile.TemporaryDirectory(prefix="bench-archives-data-") as data:
        server = EmbeddedMongo(data)
        url = server.start()
        try:
            settings = load_settings(
                files=[],
                env={},
                overrides={
                    "data_dir": data,
                    "mongo_url": url,
                    "broker_url": "memory://",
                    "scan": {"queue_high_water": 10**9},  # no render workers drain the queues
                },
            )
            rt = Runtime(settings, connect(url, settings.database), make_broker(settings))
            for queue in all_queues(rt.settings.renditions.values()):
                rt.broker.declare_queue(queue)
            started = time.perf_counter()
            job = start_scan(rt, root)
            request = ScanRequest(job["_id"], job["collection_id"])
            while not scan_step(rt, request):
                pass
            elapsed = time.perf_counter() - started
            total = int((rt.store.jobs.get(job["_id"]) or {}).get("total", 0))
        finally:
            server.stop()
    return elapsed, total


def _duration(secs: float) -> str:
    return f"{secs / 3600:.1f} h" if secs >= 3600 else f"{secs:.1f} s"


def main(argv: list[str] | None = None) -> int:
    """Build the archive, measure both paths, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=20, help="entries timed on old paths")
    parser.add_argument("--keep", help="build the archive in this folder (kept)")
    parser.add_argument(
        "--with-store", action="store_true", help="also time a real job's scan (new path only)"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-archives-") as tmp:
        root = os.path.realpath(args.keep or tmp)
        os.makedirs(root, exist_ok=True)
        built = seconds(lambda: build_archive(Path(root) / ARCHIVE, args.entries))
        names = walk_old(root)
        sample = names[:: max(1, len(names) // args.sample)][: max(2, args.sample)]
        size_mb = os.path.getsize(os.path.join(root, ARCHIVE)) / 2**20
        print(f"{args.entries} entries, {size_mb:.1f} MB (built in {built:.1f} s)")
        print(f"old paths timed on {len(sample)} entries spread over the archive")

        new_scan = seconds(lambda: scan_new(root))
        old_walk = seconds(lambda: walk_old(root))
        old_per_entry = statistics.mean(seconds(partial(probe_old, root, n)) for n in sample)
        old_scan = old_walk + old_per_entry * args.entries  # projected: a parse per entry
        archives.DIRECTORIES.clear()
        new_reads = [
            seconds(partial(read_source, root, SourceRef(ARCHIVE, n), LIMITS)) for n in sample
        ]
        old_read = statistics.mean(seconds(partial(read_old, root, n)) for n in sample)
        new_read = statistics.mean(new_reads[1:])  # the first parses the directory

        rate = args.entries / new_scan
        print(f"scan, new (walk + probe of every entry): {new_scan:.2f} s, {rate:,.0f} entries/s")
        print(
            f"scan, old (a directory parse per entry): {old_per_entry * 1000:.1f} ms/entry; "
            f"the whole archive {_duration(old_scan)} (projected)"
        )
        print(f"scan speed-up, new/old: {old_scan / new_scan:,.0f}x")
        print(
            f"render read of one entry: old {old_read * 1000:.1f} ms, new "
            f"{new_read * 1000:.3f} ms (first read of the process, parsing the directory: "
            f"{new_reads[0] * 1000:.1f} ms); speed-up {old_read / new_read:,.0f}x"
        )
        if args.with_store:
            job_scan, total = scan_job_seconds(root)
            print(
                f"a job's whole scan (new path, embedded store, in-process broker): "
                f"{job_scan:.1f} s for {total} entries, {total / job_scan:,.0f} entries/s"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
