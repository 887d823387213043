"""Open a source by reference, safely: inside the root, a regular file, within the limits."""

from __future__ import annotations

import contextlib
import errno
import io
import lzma
import os
import stat
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from thumbcache.errors import (
    ArchiveLimitExceeded,
    CorruptArchive,
    ImageTooLarge,
    SourceMissing,
    UnsafeSource,
)
from thumbcache.faults import fault_point
from thumbcache.settings import LimitSettings
from thumbcache.sources.archives import DIRECTORIES, open_entry
from thumbcache.sources.fingerprint import Fingerprint
from thumbcache.sources.refs import SourceRef

# What reading an entry's data raises when the data is damaged (a bad deflate or LZMA stream,
# a CRC that does not match, data cut short).
ENTRY_DATA_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, lzma.LZMAError)


def resolve_inside(root: str, relative: str) -> str:
    """The real path of ``relative`` under ``root``; raise UnsafeSource if it leaves the root."""
    real_root = os.path.realpath(root)
    target = os.path.realpath(os.path.join(real_root, relative))
    if not target.startswith(real_root + os.sep):
        raise UnsafeSource(f"{relative!r} resolves outside the collection root")
    return target


@contextmanager
def open_regular_file(
    path: str, beneath: str | None = None
) -> Iterator[tuple[BinaryIO, os.stat_result]]:
    """Open ``path`` for reading only if it is a regular file (never blocks on a FIFO).

    With ``beneath`` (a real path that ``path`` lies under, as :func:`resolve_inside` returns
    it), every component below it is opened without following links: a link swapped in after
    the check fails as UnsafeSource instead of being followed out of the root.
    """
    try:
        fd = _open_beneath(beneath, path) if beneath else os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        raise SourceMissing(f"{path} no longer exists") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeSource(f"{path} was replaced by a link after it was checked") from None
        raise SourceMissing(f"cannot open {path}: {exc.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise SourceMissing(f"{path} is not a regular file")
    with os.fdopen(fd, "rb") as fh:
        yield fh, st


@contextmanager
def open_source(
    root: str, ref: SourceRef, limits: LimitSettings
) -> Iterator[tuple[BinaryIO, Fingerprint]]:
    """Open a source for streaming reads (header probing) with its current fingerprint."""
    path = resolve_inside(root, ref.path)
    fault_point("after_path_check", str(ref))  # tests widen the check-to-open window here
    with open_regular_file(path, beneath=os.path.realpath(root)) as (fh, st):
        if ref.entry is None:
            if st.st_size > limits.max_file_bytes:
                raise ImageTooLarge(
                    f"{st.st_size} bytes, over the limit of {limits.max_file_bytes}"
                )
            yield fh, Fingerprint(st.st_size, st.st_mtime_ns)
            return
        with _open_entry(fh, st, ref, limits) as opened:
            yield opened


@contextmanager
def _open_entry(
    fh: BinaryIO, st: os.stat_result, ref: SourceRef, limits: LimitSettings
) -> Iterator[tuple[BinaryIO, Fingerprint]]:
    """An entry of the archive open as ``fh``; damaged data fails as CorruptArchive."""
    directory = DIRECTORIES.get(fh, st, limits)  # parsed once per archive, not per entry
    info = _entry_info(directory.find(str(ref.entry), ref.occurrence), ref, limits)
    try:
        with open_entry(fh, info) as entry:
            yield entry, Fingerprint(info.file_size, 0, info.CRC)
    except ENTRY_DATA_ERRORS as exc:
        raise CorruptArchive(f"damaged data in {ref}: {exc}") from None


class ChunkReader:
    """Opens the sources of one scan chunk, keeping the last archive open: consecutive entries
    of one archive (the walk yields them together) cost one open and one path check in all.

    The archive stays open on the file it was when first opened inside the root, so a swap
    afterwards is not followed. Close it (or use it as a context manager) after the chunk.
    """

    def __init__(self, root: str, limits: LimitSettings) -> None:
        self._root = root
        self._limits = limits
        self._archive: tuple[str, contextlib.ExitStack, BinaryIO, os.stat_result] | None = None

    def __enter__(self) -> ChunkReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def open(self, ref: SourceRef) -> Iterator[tuple[BinaryIO, Fingerprint]]:
        """Like :func:`open_source`, for one source of the chunk."""
        if ref.entry is None:
            with open_source(self._root, ref, self._limits) as opened:
                yield opened
            return
        if self._archive is None or self._archive[0] != ref.path:
            self.close()
            stack = contextlib.ExitStack()
            path = resolve_inside(self._root, ref.path)
            real_root = os.path.realpath(self._root)
            fh, st = stack.enter_context(open_regular_file(path, beneath=real_root))
            self._archive = (ref.path, stack, fh, st)
        _path, _stack, fh, st = self._archive
        with _open_entry(fh, st, ref, self._limits) as opened:
            yield opened

    def close(self) -> None:
        """Close the archive kept open, if any."""
        if self._archive is not None:
            self._archive[1].close()
            self._archive = None


_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_beneath(real_root: str, path: str) -> int:
    """Open ``path`` one component at a time from ``real_root``, following no link (ELOOP)."""
    parts = os.path.relpath(path, real_root).split(os.sep)
    dir_fd = os.open(real_root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            try:
                next_fd = os.open(part, _DIR_FLAGS, dir_fd=dir_fd)
            except NotADirectoryError:
                st = os.stat(part, dir_fd=dir_fd, follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):  # O_DIRECTORY reports a link as "not a directory"
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), part) from None
                raise
            os.close(dir_fd)
            dir_fd = next_fd
        return os.open(parts[-1], _READ_FLAGS | os.O_NOFOLLOW, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


def read_source(root: str, ref: SourceRef, limits: LimitSettings) -> tuple[bytes, Fingerprint]:
    """Read a whole source into memory (bounded by the byte limit) with its fingerprint."""
    with open_source(root, ref, limits) as (fh, fingerprint):
        data = read_bounded(fh, limits.max_file_bytes + 1)
    if len(data) > limits.max_file_bytes:
        raise ImageTooLarge(f"over the limit of {limits.max_file_bytes} bytes")
    return data, fingerprint


READ_CHUNK_BYTES = 1 << 20


def read_bounded(fh: BinaryIO, limit: int) -> bytes:
    """Up to ``limit`` bytes, read in chunks: ``read(limit)`` would reserve ``limit`` bytes up
    front (512 MB of address space for every image, which a render process's ceiling counts)."""
    chunks: list[bytes] = []
    remaining = limit
    while remaining > 0:
        chunk = fh.read(min(remaining, READ_CHUNK_BYTES))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _entry_info(
    info: zipfile.ZipInfo | None, ref: SourceRef, limits: LimitSettings
) -> zipfile.ZipInfo:
    if info is None:
        raise SourceMissing(f"archive entry {ref} no longer exists")
    if info.file_size > limits.max_file_bytes:
        raise ImageTooLarge(f"entry of {info.file_size} bytes, over {limits.max_file_bytes}")
    ratio = info.file_size / max(1, info.compress_size)
    if ratio > limits.archive_max_ratio:
        raise ArchiveLimitExceeded(f"entry expands {ratio:.0f}x, over the ratio limit")
    return info


def as_stream(data: bytes) -> BinaryIO:
    """A seekable stream over bytes already read."""
    return io.BytesIO(data)
