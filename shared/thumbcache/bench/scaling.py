"""Whole-system benchmark: images/s against render workers, and scan memory against size.

``python -m thumbcache.bench.scaling [--images 48] [--workers 1,2,4]
[--scan-sizes 10000,50000,200000,1000000] [--out docs]``

Needs RabbitMQ on 127.0.0.1:5672 (a private vhost per run is created with ``rabbitmqctl``)
and starts its own MongoDB-protocol server. Measures, on this machine:

- distributed mode: ``thumbcache worker`` processes exactly as the containers run them (one
  scanner, N thumbnail and N cache workers of one thread each), images per second of a job
  from its creation to its end (workers already up), on photo-like JPEGs;
- the embedded default: ``thumbcache run`` with default settings on the same images, timed
  the same way (its job's creation to its end, so start-up is left out);
- the engine alone (one core, both renditions written) and so the pipeline overhead: the
  engine-only ceiling of this machine (cores / engine seconds per image) over the measured;
- the scanner's peak RSS and publishing rate at several listing sizes (1x1 PNGs, no render
  workers, queues drained at the high-water mark: ``thumbcache.bench.distributed``).

Prints Markdown tables and writes ``scaling-throughput.png`` and ``scan-memory.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from thumbcache.bench.distributed import (
    ScanRun,
    Worker,
    measure_scan,
    private_vhost,
    submit_scan,
    wait_until,
)
from thumbcache.bench.pipeline import engine_seconds, make_corpus, run_seconds
from thumbcache.database import open_store, process_store
from thumbcache.embedded import EmbeddedMongo
from thumbcache.settings import load_settings
from thumbcache.state.model import JOB_DONE

MB = 1024 * 1024


@dataclass(frozen=True)
class Layout:
    """Render workers per stage, and whether thumbnails derive from cache images."""

    thumbnails: int
    caches: int
    derive: bool = True
    threads: int = 1  # per render worker (the Deployments run 4)
    local: bool = False  # state in one data dir's SQLite file shared by the workers (one host)

    @property
    def label(self) -> str:
        """How a table row names it."""
        how = "thumbnails from cache images" if self.derive else "thumbnails from sources"
        each = f"{self.threads} threads each" if self.threads > 1 else "one thread each"
        where = ", local store" if self.local else ""
        return f"{self.thumbnails} thumbnail + {self.caches} cache worker(s) ({each}), {how}{where}"


@dataclass(frozen=True)
class Throughput:
    """One distributed job: images per second with a layout of render workers."""

    layout: Layout
    images: int
    seconds: float

    @property
    def workers(self) -> int:
        """Render workers in all."""
        return self.layout.thumbnails + self.layout.caches

    @property
    def rate(self) -> float:
        """Images per second (both renditions of each)."""
        return self.images / self.seconds


def distributed_rate(
    work: Path, env: dict[str, str], mongo_url: str, source: Path, layout: Layout
) -> Throughput:
    """Run one job on 1 scanner + the layout's render workers; time it."""
    database = f"bench{uuid.uuid4().hex[:8]}"
    run_dir = work / (
        f"t{layout.thumbnails}c{layout.caches}x{layout.threads}{'d' if layout.derive else 's'}"
        f"{'l' if layout.local else 'm'}"
    )
    run_dir.mkdir()
    with private_vhost() as amqp_url:
        cluster_env = {
            **env,
            "THUMBCACHE_BROKER_URL": amqp_url,
            "THUMBCACHE_MONGO_URL": "" if layout.local else mongo_url,
            "THUMBCACHE_DATA_DIR": str(run_dir / "data"),
            "THUMBCACHE_EMBEDDED_STORE": "sqlite",
            "THUMBCACHE_DATABASE": database,
            "THUMBCACHE_CACHE_FOLDERS": str(run_dir / "cache"),
            "THUMBCACHE_RENDITIONS__THUMBNAIL__DERIVE_FROM": "cache" if layout.derive else "",
        }
        procs = [Worker("scanner", cluster_env, run_dir / "scanner.log")]
        for stage, count in (("thumbnail", layout.thumbnails), ("cache", layout.caches)):
            procs += [
                Worker(stage, cluster_env, run_dir / f"{stage}-{i}.log", layout.threads)
                for i in range(count)
            ]
        try:
            for proc in procs:
                proc.child_pid()  # every worker is up before the job starts
            time.sleep(2.0)  # imports done, consumers attached
            store = process_store(load_settings(files=[], env=cluster_env))  # as the workers do
            job_id = submit_scan(cluster_env, source)

            def done() -> bool:
                job = store.jobs.get(job_id)
                return job is not None and job["status"] == JOB_DONE

            wait_until("the job to finish", done, timeout=1800, interval=0.2)
            job = store.jobs.get(job_id)
            assert job is not None
            if job["completed"] != job["total"]:
                raise RuntimeError(f"job {job_id} did not complete every image: {job}")
            seconds = _seconds(job["created_at"], job["finished_at"])
            store.close()
        finally:
            codes = [proc.stop() for proc in procs]
    if any(codes):
        raise RuntimeError(f"a worker exited badly: {codes}")
    return Throughput(layout, int(job["total"]), seconds)


def _seconds(start: dt.datetime, end: dt.datetime) -> float:
    return (end - start).total_seconds()


def embedded_rate(work: Path, source: Path) -> Throughput:
    """``thumbcache run SOURCE`` with default settings (both cores), timed like a distributed
    job: from the job's creation to its end, read back from the run's own database."""
    data_dir = work / "embedded"
    run_seconds(source, data_dir, one_core=False, threads=None)
    with open_store(
        load_settings(files=[], env={}, overrides={"data_dir": str(data_dir)})
    ) as store:
        (job,) = store.jobs.recent(limit=1)
        if job["status"] != JOB_DONE or job["completed"] != job["total"]:
            raise RuntimeError(f"the embedded run did not complete every image: {job}")
        seconds = _seconds(job["created_at"], job["finished_at"])
        return Throughput(Layout(0, 0), int(job["total"]), seconds)


def plot_throughput(
    path: Path, runs: Sequence[Throughput], embedded: float, ceiling: float, title: str
) -> None:
    """Images/s against render workers per stage, with the embedded default and the ceiling."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    xs = sorted({r.workers for r in runs})
    for derive in (True, False):
        mine = sorted((r for r in runs if r.layout.derive is derive), key=lambda r: r.workers)
        how = "thumbnails from cache images" if derive else "thumbnails from sources"
        if mine:
            ax.plot([r.workers for r in mine], [r.rate for r in mine], "o-",
                    label=f"distributed, {how}")  # fmt: skip
        for r in mine:
            ax.annotate(f"{r.rate:.1f}", (r.workers, r.rate), textcoords="offset points",
                        xytext=(0, 7), ha="center")  # fmt: skip
    ax.axhline(embedded, color="tab:green", linestyle="--", label="embedded `thumbcache run`")
    ax.axhline(ceiling, color="tab:red", linestyle=":", label="engine alone, all cores")
    ax.set_xticks(xs)
    ax.set_xlabel("render workers, both stages (one thread each)")
    ax.set_ylabel("images per second (both renditions)")
    ax.set_ylim(0, max(ceiling, embedded, *(r.rate for r in runs)) * 1.2)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_scan_memory(path: Path, runs: Sequence[ScanRun]) -> None:
    """Scanner peak RSS (and publishing rate) against listing size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    xs = [r.entries for r in runs]
    ax.plot(xs, [r.peak_rss_bytes / MB for r in runs], "o-", label="scanner peak RSS (MB)")
    ax.axhline(300, color="tab:red", linestyle=":", label="limit, 300 MB")
    ax.set_xscale("log")
    ax.set_xlabel("entries in the collection")
    ax.set_ylabel("peak RSS of the scanner worker (MB)")
    ax.set_ylim(0, 330)
    rate_ax = ax.twinx()
    rate_ax.plot(xs, [r.rate for r in runs], "s--", color="tab:orange", label="messages/s")
    rate_ax.set_ylabel("render messages published per second")
    rate_ax.set_ylim(0, max(r.rate for r in runs) * 1.4)
    lines = ax.get_legend_handles_labels()[0] + rate_ax.get_legend_handles_labels()[0]
    labels = ax.get_legend_handles_labels()[1] + rate_ax.get_legend_handles_labels()[1]
    ax.legend(lines, labels, fontsize=8, loc="center right")
    ax.set_title("Scan of a synthetic listing: memory and publishing rate", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _layouts(text: str) -> list[Layout]:
    """``1,2`` (that many per stage) or ``1:2,2:2`` (thumbnail:cache) as layouts."""
    layouts = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        thumbnails, _, caches = part.partition(":")
        layouts.append(Layout(int(thumbnails), int(caches or thumbnails)))
    return layouts


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


@dataclass(frozen=True)
class Figures:
    """Everything one run measured."""

    runs: list[Throughput]
    embedded: float = 0.0  # images/s
    engine_s: float = 0.0  # seconds per image, one core
    ceiling: float = 0.0  # images/s of the engine alone on every core
    scans: tuple[ScanRun, ...] = ()


def measure_throughput(
    work: Path, env: dict[str, str], mongo_url: str, args: argparse.Namespace
) -> Figures:
    """Distributed jobs at each worker count, the embedded default and the engine alone."""
    small = work / "n"
    paths = make_corpus(small, args.images, args.megapixels)
    runs = []
    for layout in args.workers:
        runs.append(distributed_rate(work, env, mongo_url, small, layout))
        print(f"distributed, {layout.label}: {runs[-1].rate:.2f} images/s", file=sys.stderr)
    embedded = embedded_rate(work, small).rate
    engine_out = work / "engine-out"
    engine_out.mkdir()
    cores = os.cpu_count() or 1
    os.sched_setaffinity(0, {0})
    engine_s = engine_seconds(paths, engine_out) / args.images
    os.sched_setaffinity(0, set(range(cores)))
    return Figures(runs, embedded, engine_s, cores / engine_s)


def measure_scans(
    work: Path, env: dict[str, str], mongo_url: str, sizes: Sequence[int], high_water: int
) -> tuple[ScanRun, ...]:
    """The scanner at each listing size."""
    scans = []
    for entries in sizes:
        folder = work / f"scan{entries:08d}"
        database = f"scan{uuid.uuid4().hex[:8]}"
        scans.append(measure_scan(folder, env, mongo_url, database, entries, high_water=high_water))
        shutil.rmtree(folder, ignore_errors=True)
        print(f"scan of {entries}: {scans[-1].rate:.0f} messages/s", file=sys.stderr)
    return tuple(scans)


def print_report(figures: Figures, args: argparse.Namespace) -> None:
    """Markdown tables of the figures; the plots next to them."""
    cores = os.cpu_count() or 1
    if figures.runs:
        ceiling = figures.ceiling
        print(
            f"| {args.megapixels:g} MP JPEG, both renditions | images/s | engine ceiling / this |"
        )
        print("|---|---:|---:|")
        print(f"| engine alone, one core ({figures.engine_s * 1000:.1f} ms/image) x {cores} cores "
              f"(ceiling) | {ceiling:.2f} | 1.00 |")  # fmt: skip
        print(f"| embedded `thumbcache run`, default settings | "
              f"{figures.embedded:.2f} | {ceiling / figures.embedded:.2f} |")  # fmt: skip
        for r in figures.runs:
            print(f"| distributed, {r.layout.label} | {r.rate:.2f} | {ceiling / r.rate:.2f} "
                  f"(embedded / this: {figures.embedded / r.rate:.2f}) |")  # fmt: skip
        title = f"{args.images} photo-like {args.megapixels:g} MP JPEGs per job, {cores} cores"
        plot_throughput(
            args.out / "scaling-throughput.png", figures.runs, figures.embedded, ceiling, title
        )
        print()
    if figures.scans:
        print("| entries | messages/s | scanner peak RSS | deepest queue (mark) | job document |")
        print("|---:|---:|---:|---:|---:|")
        for s in figures.scans:
            print(f"| {s.entries:,} | {s.rate:,.0f} | {s.peak_rss_bytes / MB:.1f} MB | "
                  f"{s.max_depth:,} ({args.high_water:,}) | "
                  f"{', '.join(map(str, s.job_doc_sizes))} B |")  # fmt: skip
        plot_scan_memory(args.out / "scan-memory.png", figures.scans)


def main(argv: list[str] | None = None) -> int:
    """Measure, print the tables, write the plots."""
    parser = argparse.ArgumentParser(prog="python -m thumbcache.bench.scaling")
    parser.add_argument("--images", type=int, default=48, help="images per distributed job")
    parser.add_argument("--megapixels", type=float, default=12.0)
    parser.add_argument(
        "--workers",
        type=_layouts,
        default=_layouts("1,2,4"),
        help="render worker layouts: N (N per stage) or T:C (thumbnail:cache), comma-separated",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="threads per render worker (Deployments: 4)"
    )
    parser.add_argument(
        "--derive",
        default="on,off",
        help="thumbnails from cache images (on), from sources (off), or both: on,off",
    )
    parser.add_argument(
        "--stores",
        default="server",
        help="the workers' state: server (MongoDB protocol), local (one SQLite file on this "
        "host), or both: server,local",
    )
    parser.add_argument("--scan-sizes", type=_ints, default=[10_000, 50_000, 200_000, 1_000_000])
    parser.add_argument("--high-water", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args(argv)
    modes = [m.strip() == "on" for m in args.derive.split(",") if m.strip()]
    stores = [s.strip() == "local" for s in args.stores.split(",") if s.strip()]
    args.workers = [
        dataclasses.replace(w, derive=d, threads=args.threads, local=local)
        for local in stores
        for d in modes
        for w in args.workers
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("THUMBCACHE_")}
    env["THUMBCACHE_LOG_LEVEL"] = "WARNING"
    work = Path(tempfile.mkdtemp(prefix="thumbcache-scaling-"))
    server = EmbeddedMongo(str(work / "mongo-server"))
    mongo_url = server.start()
    try:
        figures = Figures([])
        if args.workers:
            figures = measure_throughput(work, env, mongo_url, args)
        if args.scan_sizes:
            scans = measure_scans(work, env, mongo_url, args.scan_sizes, args.high_water)
            figures = dataclasses.replace(figures, scans=scans)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    print_report(figures, args)
    print(f"\nload average (1 min) at the end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
