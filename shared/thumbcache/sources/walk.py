"""Walk a collection root in a fixed order, resumably, yielding image candidates.

The order is the sort order of :attr:`SourceRef.key`, so a walk can resume strictly after any
key (the scanner's checkpoint) without listing what came before. One directory listing is held
at a time, never the whole collection. Links are followed only while they stay inside the root;
hidden names, non-regular files (FIFOs, sockets, devices), non-images and the folders in
``skip`` (the project's own data and cache folders) are left out.

Nothing one source holds stops the walk: an archive or entry that cannot be read becomes a
candidate carrying its error, an exception nobody foresaw included (logged with its traceback).
"""

from __future__ import annotations

import contextlib
import logging
import lzma
import os
import stat
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from thumbcache.errors import ArchiveLimitExceeded, PermanentError, UnexpectedSourceError
from thumbcache.imaging import IMAGE_EXTENSIONS, sniff
from thumbcache.settings import LimitSettings
from thumbcache.sources.archives import (
    DIRECTORIES,
    check_archive_limits,
    check_readable,
    open_entry,
)
from thumbcache.sources.fingerprint import Fingerprint
from thumbcache.sources.reader import open_regular_file
from thumbcache.sources.refs import SourceRef, check_entry_name, escape_path, is_archive_name

__all__ = ["SNIFF_BYTES", "Candidate", "DirIdentity", "Fingerprint", "dir_identity", "walk"]

log = logging.getLogger(__name__)
SNIFF_BYTES = 16
DirIdentity = tuple[int, int]  # (st_dev, st_ino): a folder, however a link names it
# Reading a few bytes of an entry to sniff it may meet damaged data: then it is not an image.
_SNIFF_ERRORS = (PermanentError, zipfile.BadZipFile, OSError, EOFError, zlib.error, lzma.LZMAError)


@dataclass(frozen=True)
class Candidate:
    """A file or archive entry that may be an image; ``error`` is set when it is already lost."""

    ref: SourceRef
    fingerprint: Fingerprint
    error: PermanentError | None = None


def walk(
    root: str,
    limits: LimitSettings,
    after: tuple[str, ...] = (),
    skip: frozenset[DirIdentity] = frozenset(),
    stop: Callable[[], bool] | None = None,
) -> Iterator[Candidate]:
    """Yield candidates under ``root`` in key order, strictly after the key ``after``, never
    entering a folder whose identity is in ``skip``; end early once ``stop()`` is true (asked
    at every entry, so a tree without images cannot hold the caller past it)."""
    real_root = os.path.realpath(root)
    identity = dir_identity(real_root)
    if identity in skip:
        return
    yield from _walk_dir(real_root, real_root, (), after, limits, {identity}, skip, stop)


def dir_identity(path: str) -> DirIdentity:
    """The identity of a folder (links followed), as ``skip`` holds it."""
    st = os.stat(path)
    return (st.st_dev, st.st_ino)


def _walk_dir(
    real_root: str,
    directory: str,
    prefix: tuple[str, ...],
    after: tuple[str, ...],
    limits: LimitSettings,
    ancestors: set[DirIdentity],
    skip: frozenset[DirIdentity],
    stop: Callable[[], bool] | None = None,
) -> Iterator[Candidate]:
    depth = len(prefix)
    bound = after[depth] if len(after) > depth and after[:depth] == prefix else None
    try:
        with os.scandir(directory) as it:
            names = sorted((escape_path(e.name), e.name) for e in it if not e.name.startswith("."))
    except OSError:
        return  # unreadable directory: nothing to yield, the rest of the walk goes on
    for written, name in names:
        if stop is not None and stop():
            return
        if bound is not None and written < bound:
            continue
        key = (*prefix, written)
        child_after = after if bound is not None and written == bound else ()
        path = os.path.join(directory, name)
        kind, st = _classify(real_root, path)
        if kind == "dir":
            identity = (st.st_dev, st.st_ino)
            if identity in ancestors or identity in skip:
                continue  # a link loop, or the project's own folder
            yield from _walk_dir(
                real_root, path, key, child_after, limits, ancestors | {identity}, skip, stop
            )
        elif kind == "file":
            relative = path[len(real_root) + 1 :]
            if is_archive_name(name):
                yield from _walk_archive(path, relative, key, child_after, st, limits)
            elif not child_after:  # the cursor's own file was yielded already
                candidate = _file_candidate(path, relative, st)
                if candidate is not None:
                    yield candidate


def _file_candidate(path: str, relative: str, st: os.stat_result) -> Candidate | None:
    ref = SourceRef(relative)
    fingerprint = Fingerprint(st.st_size, st.st_mtime_ns)
    try:
        return Candidate(ref, fingerprint) if _looks_like_image(path, relative) else None
    except Exception as exc:
        return Candidate(ref, fingerprint, _unexpected(exc, ref))


def _walk_archive(
    path: str,
    relative: str,
    key: tuple[str, ...],
    after: tuple[str, ...],
    st: os.stat_result,
    limits: LimitSettings,
) -> Iterator[Candidate]:
    archive = SourceRef(relative)
    entry_after = after[len(key) :]
    with contextlib.ExitStack() as stack:
        failure: PermanentError | None = None
        try:
            fh, archive_st = stack.enter_context(open_regular_file(path))
            directory = DIRECTORIES.get(fh, archive_st, limits)
            check_archive_limits(directory, limits)
            entries = sorted(
                ((SourceRef(relative, info.filename, n), info) for info, n in directory.numbered()),
                key=lambda pair: pair[0].key,
            )
        except PermanentError as exc:
            failure = exc
        except Exception as exc:
            failure = _unexpected(exc, archive)
        if failure is not None:
            if not after:  # else the archive itself was the cursor: yielded already
                yield Candidate(archive, Fingerprint(st.st_size, st.st_mtime_ns), failure)
            return
        for ref, info in entries:
            if entry_after and ref.key[len(key) :] <= entry_after:
                continue
            if any(
                part.startswith(".") for part in info.filename.split("/") if part not in ("..", ".")
            ):
                continue
            fingerprint = Fingerprint(info.file_size, 0, info.CRC)
            try:
                candidate = _archive_candidate(fh, ref, info, fingerprint, limits)
            except Exception as exc:
                candidate = Candidate(ref, fingerprint, _unexpected(exc, ref))
            if candidate is not None:
                yield candidate


def _archive_candidate(
    fh: BinaryIO,
    ref: SourceRef,
    info: zipfile.ZipInfo,
    fingerprint: Fingerprint,
    limits: LimitSettings,
) -> Candidate | None:
    named_as_image = os.path.splitext(info.filename)[1].lower() in IMAGE_EXTENSIONS
    try:
        check_entry_name(info.filename)
        check_readable(info)
    except PermanentError as exc:  # an unsafe name, or data no reader here decodes
        return Candidate(ref, fingerprint, exc) if named_as_image else None
    if not named_as_image:
        if info.file_size == 0 or info.compress_size == 0:
            return None
        try:
            with open_entry(fh, info) as stream:
                if sniff(stream.read(SNIFF_BYTES)) is None:
                    return None
        except _SNIFF_ERRORS:
            return None
    ratio = info.file_size / max(1, info.compress_size)
    if ratio > limits.archive_max_ratio:
        error = ArchiveLimitExceeded(
            f"entry expands {ratio:.0f}x, over the compression-ratio limit of "
            f"{limits.archive_max_ratio:.0f}x"
        )
        return Candidate(ref, fingerprint, error)
    return Candidate(ref, fingerprint)


def _unexpected(exc: Exception, ref: SourceRef) -> UnexpectedSourceError:
    log.error("%s: unexpected %s while walking", ref, type(exc).__name__, exc_info=exc)
    return UnexpectedSourceError(exc)


def _classify(real_root: str, path: str) -> tuple[str, os.stat_result]:
    """'dir', 'file' or 'skip' for a path; links are followed only inside the root."""
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            target = os.path.realpath(path)
            if target != real_root and not target.startswith(real_root + os.sep):
                return "skip", st
            st = os.stat(path)
    except OSError:
        return "skip", os.stat_result((0,) * 10)
    if stat.S_ISDIR(st.st_mode):
        return "dir", st
    if stat.S_ISREG(st.st_mode):
        return "file", st
    return "skip", st


def _looks_like_image(path: str, name: str) -> bool:
    if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
        return True
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            return sniff(os.read(fd, SNIFF_BYTES)) is not None
        finally:
            os.close(fd)
    except OSError:
        return False
