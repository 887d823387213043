"""``thumbcache folders [--json]`` and ``thumbcache folders set-capacity PATH BYTES``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from thumbcache.errors import ConfigError
from thumbcache.settings import Settings
from thumbcache.state.folders import accepts_collections, high_water_bytes

from thumbcache_control.commands.common import add_common

UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def register(subparsers: Any) -> None:
    """Add the ``folders`` parser and its ``set-capacity`` subcommand."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "folders", help="list cache folders: size, capacity, high-water mark"
    )
    _common(parser)
    parser.set_defaults(handler=run_list)
    sub = parser.add_subparsers(dest="folders_command")
    capacity = sub.add_parser("set-capacity", help="set a folder's capacity and high-water mark")
    capacity.add_argument("path", help="the cache folder")
    capacity.add_argument("bytes", help="capacity: 500G, 2T, 1048576; 0 or none to clear")
    capacity.add_argument("--high-water", type=float, default=0.9, help="fraction (0, 1]")
    _common(capacity)
    capacity.set_defaults(handler=run_set_capacity)


def _common(parser: argparse.ArgumentParser) -> None:
    add_common(parser)


def parse_bytes(text: str) -> int | None:
    """``500G`` -> bytes (binary units); ``0`` or ``none`` -> None (no capacity)."""
    value = text.strip().upper().removesuffix("B").removesuffix("I")
    if value in ("0", "NONE", ""):
        return None
    unit = value[-1] if value[-1] in UNITS else ""
    number = value[: len(value) - len(unit)]
    try:
        amount = float(number)
    except ValueError:
        raise ConfigError(f"capacity {text!r} is not a size like 500G") from None
    if amount <= 0:
        raise ConfigError(f"capacity {text!r} must be positive")
    return int(amount * UNITS[unit])


def folder_line(folder: dict[str, Any]) -> dict[str, Any]:
    """One folder as the listing shows it."""
    return {
        "folder_id": folder["_id"],
        "path": folder["path"],
        "capacity_bytes": folder.get("capacity_bytes"),
        "high_water": folder.get("high_water", 0.9),
        "high_water_bytes": high_water_bytes(folder),
        "current_size_bytes": folder.get("current_size_bytes", 0),
        "total_files": folder.get("total_files", 0),
        "collections": folder.get("collections", 0),
        "accepting": accepts_collections(folder),
    }


def run_list(args: argparse.Namespace, settings: Settings) -> int:
    """List every cache folder (configured ones are registered first)."""
    from thumbcache.database import open_store

    with open_store(settings) as store:
        store.folders.register(settings.effective_cache_folders())
        lines = [folder_line(f) for f in store.folders.all()]
    if args.json:
        print(json.dumps({"folders": lines}))
        return 0
    for line in lines:
        capacity = line["capacity_bytes"]
        used = f"{line['current_size_bytes']} B"
        if capacity:
            used += f" of {capacity} B ({100 * line['current_size_bytes'] / capacity:.1f}%,"
            used += f" mark {100 * line['high_water']:.0f}%)"
        state = "accepting" if line["accepting"] else "full: takes no new collections"
        print(
            f"{line['path']}  {used}  {line['total_files']} files  "
            f"{line['collections']} collections  {state}"
        )
    return 0


def run_set_capacity(args: argparse.Namespace, settings: Settings) -> int:
    """Set one folder's capacity and high-water mark."""
    from thumbcache.database import open_store

    capacity = parse_bytes(args.bytes)
    if not 0 < args.high_water <= 1:
        raise ConfigError("--high-water must be a fraction in (0, 1]")
    path = str(Path(args.path).expanduser().resolve())
    with open_store(settings) as store:
        store.folders.register(settings.effective_cache_folders())
        folder = store.folders.by_path(path)
        if folder is None or not store.folders.set_capacity(
            str(folder["_id"]), capacity, args.high_water
        ):
            print(f"thumbcache: {path} is not a cache folder", file=sys.stderr)
            return 1
        updated = store.folders.get(str(folder["_id"]))
    assert updated is not None
    line = folder_line(updated)
    print(json.dumps(line) if args.json else f"{path}: capacity {capacity}, mark {args.high_water}")
    return 0
