"""End to end (issue 14): ``thumbcache run`` beside the engine ceiling, pyvips and sharp.

``python -m thumbcache.bench.endtoend [--parts startup,throughput,onecore,curve,quality]
[--rounds 3] [--scale 1] [--out DIR] [--collections photo12,photo24,cbz,fhd,uxga]
[--peers engine,pyvips,sharp] [--curve-sizes 100,1000,3000] [--work DIR]``

Images per second, both renditions of each image (thumbnail: fit 300x300; cache image: fit
1920x1080), on generated photo-like JPEGs (:mod:`.e2ecorpus`), medians of ``--rounds``:

- ``startup``: ``thumbcache run`` on an empty folder and on a one-image folder, fresh data dir;
- ``throughput``: per collection, ``thumbcache run`` exactly as a user starts it (the console
  script in a subprocess, fresh data dir, start-up included) with its process tree's CPU
  seconds and utilisation (CPU / wall / cores), against the engine ceiling
  (:func:`thumbcache.imaging.render` of both renditions in 2 worker processes, files written,
  no tracking), pyvips (2 processes) and sharp (concurrency 2): :mod:`.peers`; the methods
  take turns going first, and each starts with the collection read into the page cache;
- ``onecore``: everything pinned to one CPU, the marginal cost of a 2 MP image (timed on N and
  2N images, so start-up cancels) of the engine and of ``thumbcache run``, and their ratio;
- ``curve``: 800x450 images at growing job sizes: ``run`` wall time, the marginal cost per
  image between sizes, the rerun of the unchanged collection (everything skipped), a PNG plot;
- ``quality``: SSIM of the engine's, pyvips' and sharp's outputs against a reference (Pillow:
  full decode, EXIF orientation, Lanczos to the output's own size), luma, 11x11 Gaussian window.

Writes ``endtoend.json`` and ``endtoend.md`` into ``--out`` after every part (and every
collection), so a partial run keeps what it measured. Needs ``thumbcache[bench]`` (pyvips,
matplotlib); sharp is installed with ``npm install sharp`` into ``WORK/node`` when Node is
present, and left out (said so in the table) when it cannot be.
"""

from __future__ import annotations

import argparse
import compileall
import datetime as dt
import importlib.util
import io
import itertools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from thumbcache.bench import e2ecorpus
from thumbcache.bench.e2ecorpus import Collection
from thumbcache.bench.peers import (
    RENDITIONS,
    Task,
    ensure_sharp,
    output_path,
    pool_run,
    pool_seconds,
    pyvips_version,
    sharp_seconds,
    source_bytes,
)
from thumbcache.bench.proctree import RunResult, become_subreaper, run_thumbcache

PARTS = ("startup", "throughput", "onecore", "curve", "quality")
PEERS = ("engine", "pyvips", "sharp")
PEER_LABELS = {
    "run": "`thumbcache run`",
    "engine": "engine, 2 processes (ceiling)",
    "pyvips": "pyvips, 2 processes",
    "sharp": "sharp, concurrency 2",
}
CURVE_SIZE = (800, 450)
PLOT_NAME = "endtoend-jobsize.png"


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _csv(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


class Bench:
    """One benchmark run: options, the work folder, the results written as they come."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(args.work).resolve()
        self.out = Path(args.out).resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)
        self.collections = [
            e2ecorpus.scaled(e2ecorpus.BY_KEY[k], args.scale, args.pixel_scale)
            for k in _csv(args.collections)
        ]
        self.peers = [p for p in _csv(args.peers) if p in PEERS]
        self.results: dict[str, Any] = {"meta": self._meta(), "parts_done": []}
        previous = self.out / "endtoend.json"
        if args.merge and previous.exists():  # keep the parts not run again, and their notes
            kept = json.loads(previous.read_text())
            rerun = set(_csv(args.parts))
            for name in kept.get("parts_done", []):
                if name not in rerun and name in kept:
                    self.results[name] = kept[name]
                    self.results["parts_done"].append(name)
                    for note in ("load", "part_seconds", "part_rounds", "part_scale"):
                        if name in kept["meta"].get(note, {}):
                            self.results["meta"].setdefault(note, {})[name] = kept["meta"][note][
                                name
                            ]
            self.results["meta"]["merged_from"] = kept["meta"].get("started")
            self.results["meta"]["kept_parts"] = list(self.results["parts_done"])
            self.results["meta"]["sharp_kept"] = kept["meta"].get("sharp")
        self.sharp_dir = self.work / "node"

    def _meta(self) -> dict[str, Any]:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
            capture_output=True, text=True, check=False,
        ).stdout.strip()  # fmt: skip
        return {
            "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "affinity": sorted(os.sched_getaffinity(0)),
            "commit": commit,
            "pyvips": pyvips_version(),
            "argv": sys.argv[1:],
            "scale": self.args.scale,
            "pixel_scale": self.args.pixel_scale,
            "rounds": self.args.rounds,
            "load": {},
        }

    # --- output ---

    def save(self) -> None:
        """Write the JSON and the Markdown of everything measured so far."""
        self.results["meta"]["saved"] = dt.datetime.now().astimezone().isoformat(timespec="seconds")
        (self.out / "endtoend.json").write_text(json.dumps(self.results, indent=1) + "\n")
        (self.out / "endtoend.md").write_text(markdown(self.results) + "\n")

    def part(self, name: str, action: Callable[[], None]) -> None:
        """Run one part, with the load average before and after it; save."""
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        before = os.getloadavg()[0]
        action()
        self.results["meta"]["load"][name] = [round(before, 2), round(os.getloadavg()[0], 2)]
        self.results["meta"].setdefault("part_seconds", {})[name] = round(
            time.perf_counter() - started, 1
        )
        self.results["meta"].setdefault("part_rounds", {})[name] = self.args.rounds
        self.results["meta"].setdefault("part_scale", {})[name] = self.args.scale
        self.results["parts_done"].append(name)
        self.save()

    # --- helpers ---

    def sharp_available(self) -> bool:
        """sharp installed (npm) and runnable; its version recorded."""
        if "sharp" not in self.peers:
            return False
        if "sharp" not in self.results["meta"]:
            self.results["meta"]["sharp"] = ensure_sharp(self.sharp_dir, not self.args.no_npm)
            if self.results["meta"]["sharp"] is None:
                print("sharp unavailable (node/npm missing or npm install failed): skipped")
        return self.results["meta"]["sharp"] is not None

    def peer_seconds(self, peer: str, tasks: Sequence[Task], out: Path) -> float:
        """Seconds for one peer to render ``tasks`` (outputs replaced)."""
        shutil.rmtree(out, ignore_errors=True)
        if peer == "sharp":
            return sharp_seconds(self.sharp_dir, tasks, out, concurrency=2)[0]
        return pool_seconds(peer, tasks, out, processes=2)

    def run(self, source: Path, data_dir: Path, **kwargs: Any) -> RunResult:
        """One ``thumbcache run`` (checked: every image accounted for, none failed)."""
        result = run_thumbcache(source, data_dir, **kwargs)
        s = result.summary
        if s.get("status") != "done" or s.get("failed"):
            raise RuntimeError(f"thumbcache run did not finish cleanly: {s}")
        return result

    # --- parts ---

    def startup(self) -> None:
        """``run`` on an empty folder and on a one-image folder, fresh data dir."""
        empty = self.work / "startup-empty"
        shutil.rmtree(empty, ignore_errors=True)
        empty.mkdir()
        one = self.work / "startup-one"
        e2ecorpus.small_jpegs(one, 1, 1920, 1080)
        rows: dict[str, Any] = {}
        for label, folder in (("empty", empty), ("one 2 MP image", one)):
            runs = [self.run(folder, self.work / "data") for _ in range(self.args.rounds)]
            rows[label] = _run_record(runs)
        self.results["startup"] = rows

    def throughput(self) -> None:
        """Images per second per collection: run, the ceiling and the peers, interleaved."""
        table: dict[str, Any] = self.results.setdefault("throughput", {})
        peers = [p for p in self.peers if p != "sharp" or self.sharp_available()]
        built: dict[str, tuple[Collection, list[Task], Path]] = {}
        for c in self.collections:
            folder = self.work / "collections" / c.key
            print(f"building {describe_row(c)}", flush=True)
            built[c.key] = (c, e2ecorpus.build(c, folder), folder)
        methods = ["run", *peers]
        for r in range(self.args.rounds):
            for c, tasks, folder in built.values():
                row = table.setdefault(
                    c.key, {"label": describe_row(c), "images": c.images, "seconds": {}}
                )
                order = methods[r % len(methods) :] + methods[: r % len(methods)]
                for method in order:
                    read_through(folder)  # each starts on a warm page cache, not only the second
                    if method == "run":
                        res = self.run(folder, self.work / "data")
                        if res.summary.get("total") != c.images:
                            raise RuntimeError(f"run counted {res.summary} for {c.images} images")
                        row.setdefault("run", []).append(_run_dict(res))
                        seconds = res.wall
                    else:
                        seconds = self.peer_seconds(method, tasks, self.work / "out" / method)
                    row["seconds"].setdefault(method, []).append(round(seconds, 3))
                    print(f"  round {r + 1} {c.key} {method}: {seconds:.2f} s", flush=True)
                self.save()

    def onecore(self) -> None:
        """One CPU: marginal cost per 2 MP image, engine against ``run``."""
        n: int = max(1, round(self.args.onecore_images * self.args.scale))
        c = e2ecorpus.scaled(e2ecorpus.BY_KEY["fhd"], 1.0, self.args.pixel_scale)
        c = Collection(c.key, c.label, 2 * n, c.width, c.height, c.quality)
        folder = self.work / "collections" / "onecore"
        tasks = e2ecorpus.build(c, folder)
        paths = [Path(t.path) for t in tasks]
        small = e2ecorpus.linked_subset(paths[:n], self.work / "onecore-n")
        large = e2ecorpus.linked_subset(paths, self.work / "onecore-2n")
        cpu = sorted(os.sched_getaffinity(0))[0]
        times: dict[str, list[float]] = {
            k: [] for k in ("engine_n", "engine_2n", "run_n", "run_2n")
        }
        cpu_s: dict[str, list[float]] = {k: [] for k in (*times, "run_db_n", "run_db_2n")}
        out = self.work / "out" / "onecore"
        for _ in range(self.args.rounds):
            for key, subset in (("n", tasks[:n]), ("2n", tasks)):
                wall, used = pool_run("engine", subset, out, 1, cpus=[cpu])
                times[f"engine_{key}"].append(wall)
                cpu_s[f"engine_{key}"].append(used)
            for key, folder in (("n", small), ("2n", large)):
                res = self.run(folder, self.work / "data", cpus=[cpu])
                times[f"run_{key}"].append(res.wall)
                cpu_s[f"run_{key}"].append(res.cpu)
                cpu_s[f"run_db_{key}"].append(res.cpu_db)
            print(f"  onecore {json.dumps({k: round(v[-1], 2) for k, v in times.items()})}")

        def marginal(values: dict[str, list[float]], what: str) -> float:
            return float(_median(values[f"{what}_2n"]) - _median(values[f"{what}_n"])) / n * 1000

        engine, run = marginal(times, "engine"), marginal(times, "run")
        engine_cpu, run_cpu = marginal(cpu_s, "engine"), marginal(cpu_s, "run")
        self.results["onecore"] = {
            "images": [n, 2 * n],
            "size": [c.width, c.height],
            "cpu": cpu,
            "seconds": {k: [round(x, 3) for x in v] for k, v in times.items()},
            "cpu_seconds": {k: [round(x, 3) for x in v] for k, v in cpu_s.items()},
            "engine_ms": round(engine, 2),
            "run_ms": round(run, 2),
            "ratio": round(run / engine, 3) if engine > 0 else None,
            "engine_cpu_ms": round(engine_cpu, 2),
            "run_cpu_ms": round(run_cpu, 2),
            "run_db_cpu_ms": round(marginal(cpu_s, "run_db"), 2),
            "cpu_ratio": round(run_cpu / engine_cpu, 3) if engine_cpu > 0 else None,
        }

    def curve(self) -> None:
        """``run`` wall time against job size (800x450), and the rerun of each collection."""
        sizes = sorted(
            {max(1, round(s * self.args.scale)) for s in map(int, _csv(self.args.curve_sizes))}
        )
        w, h = (max(16, round(v * self.args.pixel_scale)) for v in CURVE_SIZE)
        paths = e2ecorpus.small_jpegs(self.work / "collections" / "small", sizes[-1], w, h)
        rows = []
        for size in sizes:
            folder = e2ecorpus.linked_subset(paths[:size], self.work / f"curve-{size}")
            fresh: list[RunResult] = []
            rerun: list[RunResult] = []
            for _ in range(self.args.curve_rounds):
                data = self.work / "data"
                fresh.append(self.run(folder, data))
                again = self.run(folder, data, fresh=False)
                if again.summary.get("skipped") != size:
                    raise RuntimeError(f"rerun did not skip every image: {again.summary}")
                rerun.append(again)
            rows.append({"images": size, "run": _run_record(fresh), "rerun": _run_record(rerun)})
            print(f"  curve {size}: {rows[-1]['run']['wall']:.2f} s, rerun "
                  f"{rows[-1]['rerun']['wall']:.2f} s", flush=True)  # fmt: skip
            self.results["curve"] = {"size": [w, h], "rows": rows}
            self.save()
        ceiling_n = min(sizes[-1], 1000)
        tasks = [Task(p.stem, str(p)) for p in paths[:ceiling_n]]
        secs = [
            pool_seconds("engine", tasks, self.work / "out" / "curve-engine", 2)
            for _ in range(self.args.curve_rounds)
        ]
        self.results["curve"]["engine"] = {"images": ceiling_n, "seconds": _median(secs)}
        try:
            plot_curve(self.results["curve"], self.out / PLOT_NAME)
            self.results["curve"]["plot"] = PLOT_NAME
        except ImportError:
            print("matplotlib not installed (the bench extra): no plot")

    def quality(self) -> None:
        """SSIM of each renderer's outputs against a full-decode Lanczos reference."""
        per = self.args.quality_images
        peers = [p for p in self.peers if p != "sharp" or self.sharp_available()]
        rows: dict[str, Any] = {}
        for c in self.collections:
            folder = self.work / "collections" / c.key
            tasks = e2ecorpus.build(c, folder)
            step = max(1, len(tasks) // per)
            if c.pages:  # one page per archive, spread over the pages
                step = c.pages + 1 if c.count > 1 else max(1, c.pages // per)
            sample = tasks[::step][:per]
            outs = {}
            for peer in peers:
                outs[peer] = self.work / "quality" / c.key / peer
                self.peer_seconds(peer, sample, outs[peer])
            rows[c.key] = {"label": describe_row(c), "images": len(sample)}
            rows[c.key]["scores"] = score(sample, outs)
            self.results["quality"] = rows
            self.save()


def read_through(folder: Path) -> int:
    """Read every file under ``folder`` once (into the page cache); the bytes read.

    Measured here: files left unread for about a minute are paged out (this VM reclaims idle
    memory), and reading the 12 MP collection back from disk took 1.2 s against 0.16 s from
    the cache. Without this, the method that came first in a round read a cold collection and
    the one after it a warm one.
    """
    total = 0
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with path.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    total += len(chunk)
    return total


def _run_dict(r: RunResult) -> dict[str, Any]:
    return {
        "wall": round(r.wall, 3),
        "cpu": round(r.cpu, 2),
        "cpu_db": round(r.cpu_db, 2),
        "cores": r.cores,
        "utilisation": round(r.utilisation, 3),
        "teardown": round(r.teardown, 2),
    }


def _run_record(runs: Sequence[RunResult]) -> dict[str, Any]:
    return {
        "wall": round(_median([r.wall for r in runs]), 3),
        "walls": [round(r.wall, 3) for r in runs],
        "cpu": round(_median([r.cpu for r in runs]), 2),
        "cpu_db": round(_median([r.cpu_db for r in runs]), 2),
        "utilisation": round(_median([r.utilisation for r in runs]), 3),
    }


def describe_row(c: Collection) -> str:
    """The label of a collection as measured (scaled ones say their own counts)."""
    full = e2ecorpus.BY_KEY[c.key]
    return c.label if c == full else e2ecorpus.describe(c)


# --- quality ---


def reference(source: bytes, size: tuple[int, int]) -> Any:
    """The reference pixels: Pillow full decode, EXIF orientation, Lanczos to ``size``."""
    import numpy as np
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(source)) as im:
        full = ImageOps.exif_transpose(im).convert("RGB")
    return np.asarray(full.resize(size, Image.Resampling.LANCZOS))


def score(sample: Sequence[Task], outs: dict[str, Path]) -> dict[str, Any]:
    """Mean and minimum SSIM and mean kB per (rendition, renderer)."""
    import numpy as np
    from PIL import Image

    from thumbcache.bench.metrics import ssim

    found: dict[str, dict[str, list[tuple[float, int]]]] = {}
    for task in sample:
        source = source_bytes(task)
        refs: dict[tuple[int, int], Any] = {}
        for rendition in RENDITIONS:
            for peer, out in outs.items():
                path = output_path(out, task, rendition)
                with Image.open(path) as im:
                    got = np.asarray(im.convert("RGB"))
                size = (got.shape[1], got.shape[0])
                if size not in refs:
                    refs[size] = reference(source, size)
                value = ssim(got, refs[size])
                found.setdefault(rendition, {}).setdefault(peer, []).append(
                    (value, path.stat().st_size)
                )
    return {
        rendition: {
            peer: {
                "mean": round(statistics.mean(v for v, _ in values), 4),
                "min": round(min(v for v, _ in values), 4),
                "kb": round(statistics.mean(b for _, b in values) / 1024, 1),
            }
            for peer, values in by_peer.items()
        }
        for rendition, by_peer in found.items()
    }


# --- plot ---


def plot_curve(curve: dict[str, Any], path: Path) -> None:
    """Wall time of ``run`` and of its rerun against job size; marginal ms per image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = curve["rows"]
    xs = [r["images"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    left.plot(xs, [r["run"]["wall"] for r in rows], "o-", label="`thumbcache run`, fresh data dir")
    left.plot(xs, [r["rerun"]["wall"] for r in rows], "s-", label="rerun, unchanged (all skipped)")
    engine = curve.get("engine")
    if engine:
        per = engine["seconds"] / engine["images"]
        left.plot(xs, [x * per for x in xs], "--", color="grey", label="engine ceiling (2 proc.)")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("images in the job")
    left.set_ylabel("wall seconds")
    left.legend(fontsize=8)
    left.grid(True, which="both", alpha=0.3)
    marg = marginals(rows)
    if marg:
        labels = [f"{a}-{b}" for a, b, _, _ in marg]
        right.bar(labels, [m for _, _, m, _ in marg], label="fresh run")
        right.plot(labels, [m for _, _, _, m in marg], "s-", color="tab:orange", label="rerun")
        if engine:
            right.axhline(1000 * per, color="grey", linestyle="--", label="engine ceiling")
        right.set_xlabel("between job sizes")
        right.set_ylabel("marginal ms per image (wall)")
        right.legend(fontsize=8)
    w, h = curve["size"]
    fig.suptitle(f"thumbcache run: job size, {w}x{h} JPEGs, both renditions")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def marginals(rows: Sequence[dict[str, Any]]) -> list[tuple[int, int, float, float]]:
    """(from, to, fresh ms/image, rerun ms/image) between consecutive job sizes."""
    out = []
    for a, b in itertools.pairwise(rows):
        d = b["images"] - a["images"]
        fresh = (b["run"]["wall"] - a["run"]["wall"]) / d * 1000
        rerun = (b["rerun"]["wall"] - a["rerun"]["wall"]) / d * 1000
        out.append((a["images"], b["images"], fresh, rerun))
    return out


# --- Markdown ---


def _rounds(meta: dict[str, Any]) -> str:
    """How many rounds (and at what scale) each part was measured, when parts differ."""
    rounds, scales = meta.get("part_rounds") or {}, meta.get("part_scale") or {}
    if len(set(rounds.values())) <= 1 and len(set(scales.values())) <= 1:
        return f"median of {meta['rounds']} rounds"
    return "median of " + ", ".join(
        f"{rounds[p]} rounds for {p} (scale {scales.get(p, 1)})" for p in rounds
    )


def markdown(results: dict[str, Any]) -> str:  # noqa: PLR0912, PLR0915 - one table per part
    """The Markdown tables of everything in ``results``."""
    meta = results["meta"]
    lines = [
        f"Measured {meta['started']} (commit {meta.get('commit') or '?'}), Python "
        f"{meta['python']}, {meta['machine']}, {meta['cpus']} CPUs, {_rounds(meta)}; "
        f"{meta.get('pyvips') or 'pyvips not installed'}; sharp "
        f"{meta.get('sharp') or meta.get('sharp_kept') or 'not installed'}. "
        "Load average (1 min) before/after each part: "
        + ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in meta["load"].items())
        + ".",
        "",
    ]
    if meta.get("kept_parts"):
        lines[0] += (
            f" Parts {', '.join(meta['kept_parts'])} are kept from the run started "
            f"{meta.get('merged_from')} (its commit and versions may differ)."
        )
    if "startup" in results:
        lines += ["**Start-up** of `thumbcache run` (fresh data dir, median wall seconds): "
                  + "; ".join(f"{k}: {v['wall']:.2f} s" for k, v in results["startup"].items())
                  + ".", ""]  # fmt: skip
    if "throughput" in results:
        rows = results["throughput"]
        methods = ["run", *PEERS]
        lines += [
            "Images per second, both renditions of each (in brackets: against the ceiling "
            "measured in the same run; the methods take turns going first, each on the "
            "collection read into the page cache just before):",
            "",
            "| collection | " + " | ".join(PEER_LABELS[m] for m in methods) + " |",
            "| --- | " + " | ".join("---:" for _ in methods) + " |",
        ]
        for row in rows.values():
            rate = {
                m: row["images"] / _median(row["seconds"][m])
                for m in methods
                if row["seconds"].get(m)
            }
            ceiling = rate.get("engine")
            cells = []
            for m in methods:
                if m not in rate:
                    cells.append("n/a")
                elif ceiling and m != "engine":
                    cells.append(f"{rate[m]:.1f} ({rate[m] / ceiling:.2f}x)")
                else:
                    cells.append(f"{rate[m]:.1f}")
            lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
        start = results.get("startup", {}).get("empty", {}).get("wall")
        lines += [
            "",
            "`thumbcache run` per collection: wall (start-up included), CPU seconds of its "
            "process tree (of which the database server), utilisation = CPU / wall / cores"
            + (", and images/s with the empty-folder start-up subtracted" if start else "")
            + ":",
            "",
            "| collection | wall s | CPU s | of which DB server | utilisation |"
            + (" images/s without start-up |" if start else ""),
            "| --- | ---: | ---: | ---: | ---: |" + (" ---: |" if start else ""),
        ]
        for row in rows.values():
            runs = row.get("run", [])
            if not runs:
                continue
            wall = _median([r["wall"] for r in runs])
            extra = f" {row['images'] / (wall - start):.1f} |" if start and wall > start else ""
            if start and not extra:
                extra = " n/a |"
            lines.append(
                f"| {row['label']} | {wall:.2f} | {_median([r['cpu'] for r in runs]):.1f} | "
                f"{_median([r['cpu_db'] for r in runs]):.1f} | "
                f"{_median([r['utilisation'] for r in runs]) * 100:.0f}% |" + extra
            )
        lines.append("")
    if "onecore" in results:
        o = results["onecore"]
        n, n2 = o["images"]
        w, h = o["size"]
        lines += [
            f"One core (CPU {o['cpu']}, everything pinned), marginal cost per {w}x{h} image "
            f"(both renditions; from {n} and {n2} images): engine {o['engine_ms']:.1f} ms, "
            f"`thumbcache run` {o['run_ms']:.1f} ms: **{o['ratio']:.2f}x** (target <= 1.1x).",
        ]
        if o.get("cpu_ratio") is not None:
            lines.append(
                f"In CPU seconds (the process trees', less sensitive to other load than wall "
                f"time): engine {o['engine_cpu_ms']:.1f} ms, `thumbcache run` "
                f"{o['run_cpu_ms']:.1f} ms, of which the database server "
                f"{o['run_db_cpu_ms']:.1f} ms: {o['cpu_ratio']:.2f}x."
            )
        lines.append("")
    if "curve" in results:
        cv = results["curve"]
        w, h = cv["size"]
        lines += [
            f"Job size, {w}x{h} JPEGs, `thumbcache run` (fresh data dir) and its rerun on the "
            "unchanged collection (same data dir, everything skipped):",
            "",
            "| images | run wall s | images/s | CPU s (DB server) | rerun wall s |",
            "| ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in cv["rows"]:
            lines.append(
                f"| {r['images']:,} | {r['run']['wall']:.2f} | "
                f"{r['images'] / r['run']['wall']:.1f} | {r['run']['cpu']:.1f} "
                f"({r['run']['cpu_db']:.1f}) | {r['rerun']['wall']:.2f} |"
            )
        lines.append("")
        for a, b, fresh, rerun in marginals(cv["rows"]):
            lines.append(
                f"- marginal {a:,} -> {b:,}: {fresh:.1f} ms per image, rerun {rerun:.2f} ms"
            )
        if cv.get("engine"):
            e = cv["engine"]
            lines.append(
                f"- engine ceiling (2 processes, {e['images']:,} images): "
                f"{e['seconds'] / e['images'] * 1000:.1f} ms per image, "
                f"{e['images'] / e['seconds']:.0f} images/s"
            )
        if cv.get("plot"):
            lines += ["", f"![run wall time against job size]({cv['plot']})"]
        lines.append("")
    if "quality" in results:
        q = results["quality"]
        peers = sorted(
            {p for row in q.values() for r in row["scores"].values() for p in r},
            key=PEERS.index,
        )
        lines += [
            "SSIM against a reference (Pillow full decode, EXIF orientation, Lanczos straight "
            "to the output's size; luma, 11x11 Gaussian window): mean (min), and mean kB:",
            "",
            "| collection | rendition | " + " | ".join(peers) + " |",
            "| --- | --- | " + " | ".join("---:" for _ in peers) + " |",
        ]
        for row in q.values():
            for rendition, by_peer in row["scores"].items():
                cells = [
                    f"{by_peer[p]['mean']:.4f} ({by_peer[p]['min']:.4f}), {by_peer[p]['kb']:.0f} kB"
                    if p in by_peer
                    else "n/a"
                    for p in peers
                ]
                lines.append(
                    f"| {row['label']} ({row['images']} sampled) | {rendition} | "
                    + " | ".join(cells)
                    + " |"
                )
        lines.append("")
    return "\n".join(lines).rstrip()


def compile_bytecode() -> None:
    """Compile thumbcache's modules, as installing a package does: an editable install under
    ``PYTHONDONTWRITEBYTECODE`` (set on some machines) would otherwise compile them again in
    every process a run starts, and start-up would count it (0.12 s measured here)."""
    for name in ("thumbcache", "thumbcache_control"):  # the command's package: found, not imported
        spec = importlib.util.find_spec(name)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            compileall.compile_dir(folder, quiet=1)


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run the parts, write the results."""
    parser = argparse.ArgumentParser(
        prog="python -m thumbcache.bench.endtoend", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--parts", default=",".join(PARTS), help="comma-separated: " + ",".join(PARTS)
    )
    parser.add_argument("--rounds", type=int, default=3, help="repetitions (median)")
    parser.add_argument("--scale", type=float, default=1.0, help="image counts factor")
    parser.add_argument("--pixel-scale", type=float, default=1.0, help="image sides factor")
    parser.add_argument("--out", default="bench-results", help="where JSON, Markdown, plot go")
    work = os.path.join(os.environ.get("TMPDIR", "/tmp"), "thumbcache-endtoend")
    parser.add_argument("--work", default=work, help="collections, data dirs, outputs, node")
    parser.add_argument("--collections", default=",".join(e2ecorpus.BY_KEY))
    parser.add_argument("--peers", default=",".join(PEERS))
    parser.add_argument(
        "--merge", action="store_true", help="keep parts of OUT/endtoend.json not run again"
    )
    parser.add_argument("--no-npm", action="store_true", help="never run npm install sharp")
    parser.add_argument("--onecore-images", type=int, default=100, help="N (2N timed too)")
    parser.add_argument("--curve-sizes", default="100,1000,3000")
    parser.add_argument("--curve-rounds", type=int, default=1)
    parser.add_argument("--quality-images", type=int, default=3, help="sampled per collection")
    args = parser.parse_args(argv)
    parts = _csv(args.parts)
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    if "engine" not in _csv(args.peers) and "throughput" in parts:
        print("note: without the engine peer the table has no ceiling ratios")
    become_subreaper()  # the run's database supervisor stays ours to reap and count
    compile_bytecode()
    bench = Bench(args)
    started = time.perf_counter()
    for name in PARTS:
        if name in parts:
            bench.part(name, getattr(bench, name))
    bench.results["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    bench.save()
    print((bench.out / "endtoend.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
