"""The renderers the end-to-end benchmark sets beside ``thumbcache run`` (issue 14).

Each renders both renditions of every task (an image file or a page of a CBZ) and writes
them as files, with no tracking:

- ``engine``: :func:`thumbcache.imaging.render_many`, both renditions from one read and one
  decode, as a worker serving both renditions renders them, in a pool of worker processes
  (the ceiling of ``thumbcache run``);
- ``pyvips``: ``pyvips.Image.thumbnail`` (``thumbnail_buffer`` for a CBZ page) then
  ``jpegsave`` with the engine's quality, chroma and Huffman settings, in the same kind of pool;
- ``sharp``: the Node.js library through ``sharp_peer.js`` (one Node process, N tasks in
  flight, one libvips thread per operation), installed by ``npm`` into a scratch folder.

Pools use the ``spawn`` start method, one libvips/OpenCV thread per process, and are warmed
(imports done, one task rendered) before they are timed. Every renderer's process runs with the
allocator tuned as render processes run (:mod:`thumbcache.imaging.allocator`): freed image
buffers are reused rather than faulted in again, for the peers as for the engine.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import shutil
import subprocess
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thumbcache.imaging.allocator import ENVIRONMENT as ALLOCATOR_ENVIRONMENT
from thumbcache.imaging.allocator import keep_image_buffers
from thumbcache.renditions import CACHE, THUMBNAIL

RENDITIONS = {"thumbnail": THUMBNAIL, "cache": CACHE}
SHARP_SCRIPT = Path(__file__).with_name("sharp_peer.js")


@dataclass(frozen=True)
class Task:
    """One image to render: a file, or an entry of a ZIP/CBZ archive."""

    stem: str  # output file names: {stem}_{rendition}.jpg
    path: str
    entry: str | None = None


def output_path(out: Path, task: Task, rendition: str) -> Path:
    """Where a renderer writes one rendition of a task."""
    return out / f"{task.stem}_{rendition}.jpg"


# --- pool workers (module level: pickled by name into spawned processes) ---

_WORKER: dict[str, Any] = {}


def _init_worker(method: str, out: str, cpus: Sequence[int] | None) -> None:
    os.environ["VIPS_CONCURRENCY"] = "1"  # before libvips loads
    keep_image_buffers()  # as render processes do; the peers alike, so the race stays fair
    if cpus is not None:
        os.sched_setaffinity(0, set(cpus))
    _WORKER.update(method=method, out=Path(out), zips={})
    if method == "engine":
        from thumbcache.imaging import RenderSpec, set_threads
        from thumbcache.settings import LimitSettings

        set_threads(1)
        _WORKER["specs"] = {n: RenderSpec.from_settings(r) for n, r in RENDITIONS.items()}
        _WORKER["limits"] = LimitSettings()
    else:
        import pyvips

        pyvips.cache_set_max(0)  # no operation cache: every call really decodes


def source_bytes(task: Task) -> bytes:
    """The bytes of a task's image: its file, or its entry of an archive."""
    if task.entry is None:
        return Path(task.path).read_bytes()
    with zipfile.ZipFile(task.path) as zf:
        return zf.read(task.entry)


def _read(task: Task) -> bytes:
    if task.entry is None:
        return Path(task.path).read_bytes()
    zips: dict[str, zipfile.ZipFile] = _WORKER["zips"]
    zf = zips.get(task.path)
    if zf is None:
        zf = zips[task.path] = zipfile.ZipFile(task.path)
    return zf.read(task.entry)


def _render_task(task: Task) -> int:
    out: Path = _WORKER["out"]
    if _WORKER["method"] == "engine":
        from thumbcache.imaging import render_many
        from thumbcache.storage.atomic import write_atomically

        specs: dict[str, Any] = _WORKER["specs"]
        every = list(specs.values())
        outputs = render_many(_read(task), every, _WORKER["limits"], every)
        for name, rendered in zip(specs, outputs, strict=True):
            write_atomically(str(output_path(out, task, name)), rendered.data)
        return 1
    import pyvips

    entry = None if task.entry is None else _read(task)
    for name, r in RENDITIONS.items():
        if entry is None:
            im = pyvips.Image.thumbnail(task.path, r.width, height=r.height, size="down")
        else:
            im = pyvips.Image.thumbnail_buffer(entry, r.width, height=r.height, size="down")
        full_chroma = bool(r.chroma_444_from_quality) and r.quality >= r.chroma_444_from_quality
        im.jpegsave(
            str(output_path(out, task, name)),
            Q=r.quality,
            subsample_mode="off" if full_chroma else "on",
            optimize_coding=r.optimize_coding,
            keep=0,
        )
    return 1


def _noop(_: int) -> int:
    return os.getpid()


def pool_seconds(
    method: str,
    tasks: Sequence[Task],
    out: Path,
    processes: int = 2,
    cpus: Sequence[int] | None = None,
) -> float:
    """Seconds for ``processes`` warm workers to render every task (both renditions)."""
    return pool_run(method, tasks, out, processes, cpus)[0]


def pool_run(
    method: str,
    tasks: Sequence[Task],
    out: Path,
    processes: int = 2,
    cpus: Sequence[int] | None = None,
) -> tuple[float, float]:
    """Wall seconds of the timed tasks, and CPU seconds of the pool's workers over their whole
    life (start-up and warm-up included: a constant that cancels between two job sizes)."""
    before = _children_cpu()
    out.mkdir(parents=True, exist_ok=True)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes, initializer=_init_worker, initargs=(method, str(out), cpus)) as pool:
        pool.map(_noop, range(processes * 4), chunksize=1)  # every worker up
        if tasks:  # warm every worker's imports and code paths on one task
            warm = [Task(f"warmup{i}", tasks[0].path, tasks[0].entry) for i in range(processes)]
            pool.map(_render_task, warm, chunksize=1)
        started = time.perf_counter()
        done = sum(pool.imap_unordered(_render_task, tasks, chunksize=1))
        elapsed = time.perf_counter() - started
        pool.close()
        pool.join()
    assert done == len(tasks)
    return elapsed, _children_cpu() - before


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def pyvips_version() -> str | None:
    """``pyvips x (libvips y)``, or None when pyvips cannot be imported."""
    try:
        import pyvips
    except (ImportError, OSError):
        return None
    lib = ".".join(str(pyvips.version(i)) for i in range(3))
    return f"pyvips {pyvips.__version__} (libvips {lib})"


# --- sharp ---


def ensure_sharp(folder: Path, install: bool = True) -> str | None:
    """The sharp install under ``folder`` (``npm install sharp`` there if missing and
    ``install``); its version, or None when Node, npm or the package is unavailable."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None:
        return None
    if not (folder / "node_modules" / "sharp").is_dir():
        if not install or npm is None:
            return None
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "package.json").exists():
            (folder / "package.json").write_text('{"private": true}\n')
        result = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--silent", "sharp"],
            cwd=folder, capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            return None
    probe = subprocess.run(
        [node, "-e", "process.stdout.write(require('sharp').versions.sharp)"],
        cwd=folder, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return probe.stdout.strip() or None if probe.returncode == 0 else None


def sharp_seconds(
    folder: Path, tasks: Sequence[Task], out: Path, concurrency: int = 2
) -> tuple[float, dict[str, Any]]:
    """Seconds for sharp to render every task (timed inside Node, after a warm-up task)."""
    out.mkdir(parents=True, exist_ok=True)
    renditions = []
    for name, r in RENDITIONS.items():
        full_chroma = bool(r.chroma_444_from_quality) and r.quality >= r.chroma_444_from_quality
        renditions.append({
            "name": name, "width": r.width, "height": r.height, "quality": r.quality,
            "chroma": "4:4:4" if full_chroma else "4:2:0", "optimize": r.optimize_coding,
        })  # fmt: skip
    manifest = {
        "out": str(out),
        "concurrency": concurrency,
        "warmup": True,
        "renditions": renditions,
        "tasks": [
            {"stem": t.stem, "src": t.path}
            if t.entry is None
            else {"stem": t.stem, "zip": t.path, "entry": t.entry}
            for t in tasks
        ],
    }
    manifest_path = out / "sharp-manifest.json"
    manifest_path.write_text(json.dumps(manifest))
    node = shutil.which("node") or "node"
    env = {**os.environ, **ALLOCATOR_ENVIRONMENT, "NODE_PATH": str(folder / "node_modules")}
    result = subprocess.run(
        [node, str(SHARP_SCRIPT), str(manifest_path)],
        cwd=folder, env=env, capture_output=True, text=True, timeout=3600, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"sharp peer failed: {result.stderr[-2000:]}")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    if report["images"] != len(tasks):
        raise RuntimeError(f"sharp rendered {report['images']} of {len(tasks)}")
    return float(report["seconds"]), report
