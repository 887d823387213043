"""The reference decoder: what Pillow (plus whatever plugins are installed) makes of each file.

Each file is opened (``Image.open``: the format is recognised) and loaded (``im.load()``: the
first frame decodes fully), in child processes with a memory ceiling, so a file that hangs or
crashes the reference is recorded as such instead of stopping the classification. Results are
cached beside the corpus, keyed by the corpus and the decoder versions.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import resource
import subprocess
import sys
import threading
import warnings
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import IO

# Plugins a collection's formats may need; a reference built without one cannot open them.
PLUGINS = ("pi-heif", "pillow-heif", "pillow-jxl-plugin", "pillow-avif-plugin", "rawpy")
# Extensions of formats Pillow does not read without a plugin, still images a collection holds.
PLUGIN_EXTENSIONS = frozenset(
    {".heic", ".heif", ".hif", ".avif", ".avifs", ".jxl"}
    | {".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".orf"}
    | {".rw2", ".raf", ".pef", ".srw", ".x3f", ".3fr", ".erf", ".kdc", ".mrw", ".iiq"}
)
# Pillow's MPEG plugin only identifies video streams: not an image of a collection.
NOT_IMAGE_FORMATS = frozenset({"MPEG"})
MEMORY_CEILING = 3 * 1024**3  # a reference decode past this counts as a failed load
PER_FILE_SECONDS = 60.0  # hang detection only; real files load in well under a second
SHARDS = 2
SCHEMA = 2  # part of the cache key: bump when Reference or classify_one changes


@dataclass(frozen=True)
class Reference:
    """What the reference decoder did with one file."""

    path: str
    opens: bool  # Image.open recognised the format
    loads: bool  # the first frame decoded fully
    format: str | None = None
    width: int | None = None
    height: int | None = None
    error: str | None = None  # why it did not open or load
    shown_width: int | None = None  # the size as a viewer shows it (EXIF/XMP orientation)
    shown_height: int | None = None


def known_image_extensions() -> frozenset[str]:
    """Extensions of formats Pillow opens, plus those of the plugin formats (HEIF, RAW...)."""
    from PIL import Image

    Image.init()
    pillow = {
        ext
        for ext, fmt in Image.registered_extensions().items()
        if fmt in Image.OPEN and fmt not in NOT_IMAGE_FORMATS
    }
    return frozenset(pillow) | PLUGIN_EXTENSIONS


def decoder_versions() -> dict[str, str]:
    """Pillow's version and those of the installed plugins (what the reference can read)."""
    versions = {"pillow": metadata.version("pillow")}
    for name in PLUGINS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def register_plugins() -> None:
    """Register every installed plugin's opener with Pillow."""
    for module in ("pi_heif", "pillow_heif"):
        try:
            __import__(module).register_heif_opener()
        except (ImportError, AttributeError):
            continue
    for module in ("pillow_jxl", "pillow_avif"):
        try:
            __import__(module)  # registers on import
        except ImportError:
            continue


def classify_one(root: Path, relative: str) -> Reference:
    """Open and load one file with the reference decoder (run in a child process)."""
    from PIL import Image, ImageOps

    path = root / relative
    try:
        im = Image.open(path)
    except Exception as exc:
        return Reference(relative, False, False, error=_described(exc, root))
    with im:
        fmt, (width, height) = im.format, im.size
        try:
            im.load()
        except (Exception, MemoryError) as exc:
            return Reference(relative, True, False, fmt, width, height, _described(exc, root))
        try:
            shown = ImageOps.exif_transpose(im).size
        except Exception:  # damaged orientation metadata: a viewer shows it as stored
            shown = im.size
    return Reference(relative, True, True, fmt, width, height, None, *shown)


def _described(exc: BaseException, root: Path) -> str:
    return f"{type(exc).__name__}: {exc}".replace(f"{root}{os.sep}", "")


def _child_main(root: str) -> None:
    """Classify the paths read from stdin, one JSON line each, flushed as soon as known."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CEILING, MEMORY_CEILING))
    warnings.simplefilter("ignore")  # damaged metadata warnings: the load result is what counts
    register_plugins()
    for line in sys.stdin:
        relative = line.rstrip("\n")
        print(json.dumps(asdict(classify_one(Path(root), relative))), flush=True)


def _pump(stream: IO[str], lines: queue.Queue[str]) -> None:
    """Move a child's output lines into ``lines``; an empty string marks its end."""
    for line in stream:
        lines.put(line)
    lines.put("")


def _classify_shard(root: Path, paths: list[str]) -> list[Reference]:
    """Classify ``paths`` in a child; a file that hangs or kills it is recorded, then resumed."""
    done: list[Reference] = []
    pending = list(paths)
    while pending:
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.realworld.reference", str(root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert child.stdin is not None and child.stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=_pump, args=(child.stdout, lines))
        reader.start()
        child.stdin.write("".join(p + "\n" for p in pending))
        child.stdin.close()
        while pending:
            try:
                line = lines.get(timeout=PER_FILE_SECONDS)
            except queue.Empty:
                line = ""
            if not line.strip():  # hung, or died (EOF): blame the file it was on, go on
                child.kill()
                done.append(Reference(pending.pop(0), True, False, error="reference hung or died"))
                break
            done.append(Reference(**json.loads(line)))
            pending.pop(0)
        child.kill()
        child.wait()
        reader.join()
    return done


def classify(root: Path, paths: list[str], cache: Path | None = None) -> dict[str, Reference]:
    """The reference's verdict on every path (cached in ``cache`` when given)."""
    key = hashlib.sha256(
        json.dumps([SCHEMA, str(root), paths, decoder_versions()]).encode()
    ).hexdigest()[:16]
    cached = cache / f"reference-{key}.json" if cache is not None else None
    if cached is not None and cached.is_file():
        return {r["path"]: Reference(**r) for r in json.loads(cached.read_text())}
    shards = [paths[i::SHARDS] for i in range(SHARDS)]
    results: list[list[Reference]] = [[] for _ in shards]
    threads = [
        threading.Thread(target=lambda i=i: results[i].extend(_classify_shard(root, shards[i])))
        for i in range(len(shards))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    verdicts = {r.path: r for shard in results for r in shard}
    if cached is not None:
        tmp = cached.with_suffix(".tmp")
        tmp.write_text(json.dumps([asdict(verdicts[p]) for p in paths]))
        os.replace(tmp, cached)
    return verdicts


if __name__ == "__main__":
    _child_main(sys.argv[1])
