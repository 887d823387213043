"""Render processes with glibc's defaults against buffers kept (ADR 0009), on one core.

``python -m thumbcache.bench.allocator FOLDER [FOLDER ...] [--images 40]``: for each folder of
JPEGs, both renditions of each image by ``render_many`` in a loop, in a fresh process per
setting, pinned to one CPU: wall and system milliseconds per image, minor page faults per image,
and the data segment (``VmData``, what a render process's ceiling counts) kept after the loop.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path


def measure(folder: str, images: int, tuned: bool) -> dict[str, float]:
    """One setting on one folder, in this process (run it in a fresh one)."""
    from thumbcache.imaging import RenderSpec, render_many, set_threads
    from thumbcache.imaging.allocator import keep_image_buffers
    from thumbcache.settings import LimitSettings, Settings

    if tuned:
        keep_image_buffers()
    set_threads(1)
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    settings = Settings()
    specs = [RenderSpec.from_settings(r) for r in settings.renditions.values()]
    files = sorted(Path(folder).glob("*.jpg"))[: images + 1]
    render_many(files[0].read_bytes(), specs, LimitSettings(), specs)  # imports, first faults
    before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for path in files[1:]:
        render_many(path.read_bytes(), specs, LimitSettings(), specs)
    after, n = resource.getrusage(resource.RUSAGE_SELF), max(1, len(files) - 1)
    status = Path("/proc/self/status").read_text()
    match = re.search(r"VmData:\s+(\d+)", status)
    vm_data = int(match.group(1)) if match else 0
    return {
        "wall_ms": round((time.perf_counter() - started) / n * 1000, 1),
        "system_ms": round((after.ru_stime - before.ru_stime) / n * 1000, 1),
        "faults": round((after.ru_minflt - before.ru_minflt) / n),
        "vm_data_mb": vm_data >> 10,
    }


def main(argv: list[str] | None = None) -> int:
    """Print one Markdown row per folder and setting (figures per image, VmData at the end)."""
    parser = argparse.ArgumentParser(prog="python -m thumbcache.bench.allocator")
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--child", choices=["defaults", "kept"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.folders[0], args.images, args.child == "kept")))
        return 0
    print(
        "| folder | allocator | wall ms/image | system ms/image | page faults/image | VmData MB |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for folder in args.folders:
        for setting in ("defaults", "kept"):
            cmd = [sys.executable, "-m", "thumbcache.bench.allocator", folder,
                   "--images", str(args.images), "--child", setting]  # fmt: skip
            row = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
            print(f"| {folder} | {setting} | {row['wall_ms']} | {row['system_ms']} | "
                  f"{row['faults']} | {row['vm_data_mb']} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
