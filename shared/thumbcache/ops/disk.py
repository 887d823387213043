"""What is on disk in a cache folder's rendition trees (I/O only: walking, hashing, deleting).

Only ``{folder}/thumbnails/`` and ``{folder}/cache/`` are walked; symbolic links are neither
followed nor reported, so nothing outside a cache folder root is ever read or deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from thumbcache.storage.layout import is_temp_name


@dataclass(frozen=True)
class DiskFile:
    """A regular file under a rendition tree: where, whose collection, how big, how old."""

    path: str
    collection_id: str | None  # None for a file lying directly in a stage directory
    size: int
    mtime: float
    temp: bool


def walk_renditions(folder: str) -> Iterator[DiskFile]:
    """Every regular file in the folder's rendition trees (``thumbnails/``, ``cache/``, and
    those of renditions configured once and gone since), never following a link.

    A cache folder belongs to thumbcache: each directory at its top holds one rendition.
    """
    for top_entry in _scandir(folder):
        if not top_entry.is_dir(follow_symlinks=False):
            continue
        for entry in _scandir(top_entry.path):
            if entry.is_dir(follow_symlinks=False):
                yield from _walk_tree(entry.path, entry.name)
            elif entry.is_file(follow_symlinks=False):
                yield _disk_file(entry, None)


def _walk_tree(directory: str, collection_id: str) -> Iterator[DiskFile]:
    for entry in _scandir(directory):
        if entry.is_dir(follow_symlinks=False):
            yield from _walk_tree(entry.path, collection_id)
        elif entry.is_file(follow_symlinks=False):
            yield _disk_file(entry, collection_id)


def _scandir(directory: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as entries:
            return sorted(entries, key=lambda e: e.name)
    except FileNotFoundError:
        return []


def _disk_file(entry: os.DirEntry[str], collection_id: str | None) -> DiskFile:
    st = entry.stat(follow_symlinks=False)
    return DiskFile(entry.path, collection_id, st.st_size, st.st_mtime, is_temp_name(entry.name))


def file_size(path: str) -> int | None:
    """The size of a regular file (not through a symlink), or None if there is none."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def sha256_of(path: str) -> str:
    """The SHA-256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_inside(path: str, root: str) -> bool:
    """True when ``path`` lies under ``root`` once both are resolved (symlinks included)."""
    real_root = os.path.realpath(root)
    return os.path.commonpath([os.path.realpath(path), real_root]) == real_root


def remove_file(path: str, root: str) -> bool:
    """Delete one regular file under ``root`` (never a link, never outside); True if it went."""
    if not is_inside(os.path.dirname(path), root) or file_size(path) is None:
        return False
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
        return True
    return False
