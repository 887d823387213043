"""The rendering benchmark: our engine against pyvips, naive Pillow and the decode floors.

One core (the process is pinned and OpenCV and libvips run one thread), every method and stage
interleaved over the same in-memory corpus in one run, medians of ``--rounds`` repetitions.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import random
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("VIPS_CONCURRENCY", "1")  # before libvips loads

import cv2
import numpy as np
from PIL import Image, ImageOps

from thumbcache.bench.corpus import Sample, build_corpus
from thumbcache.imaging import RenderSpec, render, render_many, set_threads
from thumbcache.imaging.allocator import keep_image_buffers
from thumbcache.imaging.geometry import (
    decode_denominator,
    displayed_size,
    fit_within,
    stored_size,
)
from thumbcache.imaging.header import open_image, read_header
from thumbcache.renditions import CACHE, THUMBNAIL
from thumbcache.settings import LimitSettings

STAGES = {
    "thumbnail": RenderSpec.from_settings(THUMBNAIL),
    "cache": RenderSpec.from_settings(CACHE),
}
_CV_FLAGS = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}
LIMITS = LimitSettings()
Method = Callable[[bytes, RenderSpec], object]


def end_to_end_hook(corpus_dir: Path) -> dict[str, float] | None:
    """Pipeline hook: ms/image of ``thumbcache run`` over ``corpus_dir``, both stages.

    Not implemented here (the pipeline is built elsewhere): return None and the benchmark
    prints the end-to-end row as skipped. To fill in: run the pipeline on one core over the
    written corpus and return {"thumbnail": ms, "cache": ms, "both": ms} per image.
    """
    del corpus_dir
    return None


def engine(data: bytes, spec: RenderSpec) -> object:
    """Our engine, as the render stages call it."""
    return render(data, spec, LIMITS)


def pyvips_thumbnail(data: bytes, spec: RenderSpec) -> object:
    """pyvips ``thumbnail`` per rendition (shrink-on-load, auto-rotate), saved like ours."""
    import pyvips

    im = pyvips.Image.thumbnail_buffer(data, spec.width, height=spec.height, size="down")
    if spec.format == "webp":
        return im.webpsave_buffer(Q=spec.quality, effort=spec.webp_method, keep=0)
    full_chroma = spec.chroma_444_at_or_above is not None and (
        spec.quality >= spec.chroma_444_at_or_above
    )
    return im.jpegsave_buffer(
        Q=spec.quality,
        subsample_mode="off" if full_chroma else "on",
        optimize_coding=spec.optimize_coding,
        keep=0,
    )


def pillow_naive(data: bytes, spec: RenderSpec) -> object:
    """Naive Pillow: full decode, orientation, Lanczos, save."""
    with Image.open(io.BytesIO(data)) as im:
        full = ImageOps.exif_transpose(im).convert("RGB")
    size = fit_within(full.width, full.height, spec.width, spec.height)
    out = io.BytesIO()
    full.resize(size, Image.Resampling.LANCZOS).save(out, "JPEG", quality=spec.quality)
    return out.getvalue()


def _stage_denominator(data: bytes, spec: RenderSpec) -> int:
    with open_image(io.BytesIO(data)) as im:
        h = read_header(im)
    shown = displayed_size(h.width, h.height, h.orientation)
    target = stored_size(*fit_within(*shown, spec.width, spec.height), h.orientation)
    return decode_denominator(h.width, h.height, *target) if h.format == "jpeg" else 1


def _bare_decode(data: bytes, denominator: int) -> object:
    """The cheapest decode at 1/denominator: OpenCV for JPEG and WebP, Pillow otherwise."""
    if data[:3] == b"\xff\xd8\xff" or data[8:12] == b"WEBP":
        flag = _CV_FLAGS[denominator] if data[:3] == b"\xff\xd8\xff" else cv2.IMREAD_UNCHANGED
        return cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return im.size


def floor_eighth(data: bytes, spec: RenderSpec) -> object:
    """The 1/8-scale decode (full decode where the format has no DCT scaling)."""
    del spec
    return _bare_decode(data, 8)


def make_floor_stage(denominators: dict[tuple[int, str], int]) -> Method:
    """The decode at the scale this stage needs (the engine's choice), nothing else."""

    def floor_stage(data: bytes, spec: RenderSpec) -> object:
        return _bare_decode(data, denominators[(id(data), spec_key(spec))])

    return floor_stage


def spec_key(spec: RenderSpec) -> str:
    """The stage name of a spec."""
    return "thumbnail" if spec.width == 300 else "cache"


def measure(corpus: list[Sample], methods: dict[str, Method], rounds: int) -> dict[Any, float]:
    """Median ms per (kind, stage, method), all interleaved, method order shuffled per round."""
    times: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    order = [(s, stage, m) for s in corpus for stage in STAGES for m in methods]
    rng = random.Random(1)
    for r in range(rounds + 1):  # round 0 warms caches and is discarded
        rng.shuffle(order)
        for sample, stage, name in order:
            t0 = time.perf_counter()
            methods[name](sample.data, STAGES[stage])
            elapsed = (time.perf_counter() - t0) * 1000.0
            if r:
                times[(sample.name, stage, name)].append(elapsed)
    per_kind: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for (name, stage, method), values in times.items():
        kind = next(s.kind for s in corpus if s.name == name)
        per_kind[(kind, stage, method)].append(statistics.median(values))
    return {key: statistics.mean(values) for key, values in per_kind.items()}


def measure_one_decode(
    corpus: list[Sample], rounds: int, peer: Method | None
) -> dict[tuple[str, str], float]:
    """Both renditions per image, ms: the engine as two renders, the engine from one decode
    (``render_many``, what a worker serving both renditions runs), and ``peer`` as two calls;
    interleaved and shuffled per round like :func:`measure`, averaged per kind."""
    specs = list(STAGES.values())
    ways: dict[str, Callable[[bytes], object]] = {
        "engine_two_renders": lambda data: [render(data, s, LIMITS) for s in specs],
        "engine_one_decode": lambda data: render_many(data, specs, LIMITS),
    }
    if peer is not None:
        ways["pyvips_two_calls"] = lambda data: [peer(data, s) for s in specs]
    times: dict[tuple[str, str], list[float]] = defaultdict(list)
    order = [(sample, way) for sample in corpus for way in ways]
    rng = random.Random(2)
    for r in range(rounds + 1):
        rng.shuffle(order)
        for sample, way in order:
            t0 = time.perf_counter()
            ways[way](sample.data)
            if r:
                times[(sample.name, way)].append((time.perf_counter() - t0) * 1000.0)
    per_kind: dict[tuple[str, str], list[float]] = defaultdict(list)
    for (name, way), values in times.items():
        kind = next(s.kind for s in corpus if s.name == name)
        per_kind[(kind, way)].append(statistics.median(values))
    return {key: statistics.mean(values) for key, values in per_kind.items()}


def one_decode_report(corpus: list[Sample], ms: dict[tuple[str, str], float]) -> str:
    """The Markdown table of :func:`measure_one_decode`, with the ratios."""
    present = {way for _, way in ms}
    order = ("engine_two_renders", "engine_one_decode", "pyvips_two_calls")
    ways = [w for w in order if w in present]
    lines = [
        "| source | " + " | ".join(ways) + " | one decode vs two renders | vs pyvips |",
        "| --- | " + " | ".join("---:" for _ in ways) + " | ---: | ---: |",
    ]
    for kind in dict.fromkeys(s.kind for s in corpus):
        one, two = ms[(kind, "engine_one_decode")], ms[(kind, "engine_two_renders")]
        peer = ms.get((kind, "pyvips_two_calls"))
        versus = f"{one / peer:.2f}x" if peer else "-"
        cells = " | ".join(f"{ms[(kind, w)]:.1f}" for w in ways)
        lines.append(f"| {kind} | {cells} | {one / two:.2f}x | {versus} |")
    return "\n".join(lines)


def webp_effort_table(repeats: int = 5) -> list[tuple[str, float, int]]:
    """Encode cost and size of one 1440x1080 photo as JPEG q85 and WebP q85 per method."""
    from thumbcache.bench.corpus import photo_like

    rgb = photo_like(1440, 1080, seed=50, grain=3.0)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    from thumbcache.imaging.encode import encode_jpeg, encode_webp

    cases: list[tuple[str, Callable[[], bytes]]] = [
        ("jpeg q85 4:2:0", lambda: encode_jpeg(bgr, 85, "4:2:0"))
    ]
    for method in (0, 2, 4, 6):
        cases.append((f"webp q85 method {method}", partial(encode_webp, bgr, 85, method)))
    rows = []
    for label, fn in cases:
        size = len(fn())
        best = min(_timed(fn) for _ in range(repeats))
        rows.append((label, best, size))
    return rows


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000.0


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the tables (Markdown)."""
    parser = argparse.ArgumentParser(prog="python -m thumbcache.bench")
    parser.add_argument("--rounds", type=int, default=7, help="timed repetitions (median)")
    parser.add_argument("--scale", type=float, default=1.0, help="corpus size factor (test)")
    parser.add_argument("--no-pyvips", action="store_true", help="skip the pyvips peer")
    args = parser.parse_args(argv)

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    set_threads(1)
    keep_image_buffers()  # as render processes run (both methods share this process)
    methods: dict[str, Method] = {"engine": engine}
    if not args.no_pyvips:
        try:
            import pyvips

            pyvips.cache_set_max(0)  # no operation cache: every call really decodes
            methods["pyvips"] = pyvips_thumbnail
        except ImportError:
            print("pyvips not installed (pip install thumbcache[bench]): peer skipped")
    methods["pillow"] = pillow_naive
    methods["floor_1/8"] = floor_eighth

    t0 = time.perf_counter()
    corpus = build_corpus(args.scale)
    denominators = {
        (id(s.data), stage): _stage_denominator(s.data, spec)
        for s in corpus
        for stage, spec in STAGES.items()
    }
    methods["floor_stage"] = make_floor_stage(denominators)
    print(f"corpus: {len(corpus)} images built in {time.perf_counter() - t0:.1f} s")
    ms = measure(corpus, methods, args.rounds)
    print(report(corpus, ms, list(methods), denominators, args.rounds))
    print()
    print("Both renditions of an image, ms (one core, median of the same rounds):")
    print()
    shared = measure_one_decode(corpus, args.rounds, methods.get("pyvips"))
    print(one_decode_report(corpus, shared))
    print()
    print("| encode of a 1440x1080 photo | ms | bytes |")
    print("| --- | ---: | ---: |")
    for label, cost, size in webp_effort_table():
        print(f"| {label} | {cost:.1f} | {size} |")
    e2e = end_to_end_hook(Path("."))
    print()
    print(
        "end-to-end (thumbcache run vs engine alone):",
        "skipped, hook not implemented" if e2e is None else e2e,
    )
    return 0


def report(
    corpus: list[Sample],
    ms: dict[Any, float],
    methods: list[str],
    denominators: dict[tuple[int, str], int],
    rounds: int,
) -> str:
    """The Markdown tables: ms/image per method, then the engine's ratios."""
    kinds = list(dict.fromkeys(s.kind for s in corpus))
    lines = [
        f"Python {platform.python_version()}, {platform.machine()}, one core, "
        f"median of {rounds} interleaved rounds, ms per image",
        "",
        "| source | stage | scale | " + " | ".join(methods) + " |",
        "| --- | --- | ---: | " + " | ".join("---:" for _ in methods) + " |",
    ]
    for kind in kinds:
        sample = next(s for s in corpus if s.kind == kind)
        for stage in (*STAGES, "both"):
            if stage == "both":
                row = [sum(ms[(kind, st, m)] for st in STAGES) for m in methods]
                scale = ""
            else:
                row = [ms[(kind, stage, m)] for m in methods]
                scale = f"1/{denominators[(id(sample.data), stage)]}"
            cells = " | ".join(f"{v:.1f}" for v in row)
            lines.append(f"| {kind} | {stage} | {scale} | {cells} |")
    lines += ["", "Engine time as a ratio of each peer and floor (lower is better):", ""]
    peers = [m for m in methods if m != "engine"]
    lines.append("| source | stage | " + " | ".join(f"vs {p}" for p in peers) + " |")
    lines.append("| --- | --- | " + " | ".join("---:" for _ in peers) + " |")
    for kind in kinds:
        for stage in (*STAGES, "both"):
            stages = tuple(STAGES) if stage == "both" else (stage,)
            ours = sum(ms[(kind, st, "engine")] for st in stages)
            ratios: list[str] = []
            for p in peers:
                theirs = sum(ms[(kind, st, p)] for st in stages)
                ratios.append(f"{ours / theirs:.2f}x")
            lines.append(f"| {kind} | {stage} | " + " | ".join(ratios) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
