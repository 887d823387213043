"""Walk a collection root in a fixed order, resumably, yielding image candidates.

The order is the sort order of :attr:`SourceRef.key`, so a walk can resume strictly after any
key (the scanner's checkpoint) without listing what came before. One directory listing is held
at a time, never the whole collection. Links are followed only while they stay inside the root;
hidden names, non-regular files (FIFOs, sockets, devices) and non-images are skipped.
"""

from __future__ import annotations

import os
import stat
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass

from thumbcache.errors import (
    ArchiveLimitExceeded,
    CorruptArchive,
    PermanentError,
    UnsafeSource,
)
from thumbcache.imaging import IMAGE_EXTENSIONS, sniff
from thumbcache.settings import LimitSettings
from thumbcache.sources.refs import SourceRef, check_entry_name, is_archive_name

SNIFF_BYTES = 16


@dataclass(frozen=True)
class Fingerprint:
    """What identifies a source's content cheaply: size, mtime (files) or CRC (entries)."""

    size: int
    mtime_ns: int = 0
    crc: int | None = None

    def to_doc(self) -> dict[str, int | None]:
        """The form stored in MongoDB."""
        return {"size": self.size, "mtime_ns": self.mtime_ns, "crc": self.crc}


@dataclass(frozen=True)
class Candidate:
    """A file or archive entry that may be an image; ``error`` is set when it is already lost."""

    ref: SourceRef
    fingerprint: Fingerprint
    error: PermanentError | None = None


def walk(root: str, limits: LimitSettings, after: tuple[str, ...] = ()) -> Iterator[Candidate]:
    """Yield candidates under ``root`` in key order, strictly after the key ``after``."""
    real_root = os.path.realpath(root)
    yield from _walk_dir(real_root, real_root, (), after, limits, {_dir_identity(real_root)})


def _walk_dir(
    real_root: str,
    directory: str,
    prefix: tuple[str, ...],
    after: tuple[str, ...],
    limits: LimitSettings,
    ancestors: set[tuple[int, int]],
) -> Iterator[Candidate]:
    depth = len(prefix)
    bound = after[depth] if len(after) > depth and after[:depth] == prefix else None
    try:
        with os.scandir(directory) as it:
            names = sorted(e.name for e in it if not e.name.startswith("."))
    except OSError:
        return  # unreadable directory: nothing to yield, the rest of the walk goes on
    for name in names:
        if bound is not None and name < bound:
            continue
        key = (*prefix, name)
        child_after = after if bound is not None and name == bound else ()
        path = os.path.join(directory, name)
        kind, st = _classify(real_root, path)
        if kind == "dir":
            identity = (st.st_dev, st.st_ino)
            if identity in ancestors:
                continue  # a link loop
            yield from _walk_dir(real_root, path, key, child_after, limits, ancestors | {identity})
        elif kind == "file":
            if is_archive_name(name):
                yield from _walk_archive(path, key, child_after, st, limits)
            elif not child_after and _looks_like_image(path, name):  # cursor file: done already
                ref = SourceRef("/".join(key))
                yield Candidate(ref, Fingerprint(st.st_size, st.st_mtime_ns))


def _walk_archive(
    path: str,
    key: tuple[str, ...],
    after: tuple[str, ...],
    st: os.stat_result,
    limits: LimitSettings,
) -> Iterator[Candidate]:
    archive_path = "/".join(key)
    entry_after = after[len(key) :]
    whole = Fingerprint(st.st_size, st.st_mtime_ns)
    try:
        _check_central_directory(path, limits)
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            _check_archive_limits(infos, limits)
            keyed = sorted((tuple(i.filename.split("/")), i) for i in infos)
            for entry_key, info in keyed:
                if entry_after and entry_key <= entry_after:
                    continue
                if any(part.startswith(".") for part in entry_key if part not in ("..", ".")):
                    continue
                candidate = _archive_candidate(zf, archive_path, info, limits)
                if candidate is not None:
                    yield candidate
    except ArchiveLimitExceeded as exc:
        if not after:
            yield Candidate(SourceRef(archive_path), whole, exc)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        if not after:
            yield Candidate(SourceRef(archive_path), whole, CorruptArchive(f"bad archive: {exc}"))


def _archive_candidate(
    zf: zipfile.ZipFile, archive_path: str, info: zipfile.ZipInfo, limits: LimitSettings
) -> Candidate | None:
    name = info.filename
    fingerprint = Fingerprint(info.file_size, 0, info.CRC)
    suffix = os.path.splitext(name)[1].lower()
    try:
        check_entry_name(name)
    except UnsafeSource as exc:
        if suffix in IMAGE_EXTENSIONS:
            return Candidate(SourceRef(archive_path, _printable(name)), fingerprint, exc)
        return None
    ref = SourceRef(archive_path, name)
    if suffix not in IMAGE_EXTENSIONS:
        if info.file_size == 0 or info.compress_size == 0:
            return None
        try:
            with zf.open(info) as fh:
                if sniff(fh.read(SNIFF_BYTES)) is None:
                    return None
        except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError):
            return None
    ratio = info.file_size / max(1, info.compress_size)
    if ratio > limits.archive_max_ratio:
        error = ArchiveLimitExceeded(
            f"entry expands {ratio:.0f}x, over the compression-ratio limit of "
            f"{limits.archive_max_ratio:.0f}x"
        )
        return Candidate(ref, fingerprint, error)
    return Candidate(ref, fingerprint)


# A central-directory record is 46 bytes plus its name, extra field and comment; names past
# 1 KiB are not addressable by any filesystem here, so more bytes per entry means lying counts.
MAX_DIRECTORY_BYTES_PER_ENTRY = 46 + 1024


def _check_central_directory(path: str, limits: LimitSettings) -> None:
    """Refuse an archive from its end record alone, before its directory is parsed: the
    entry count, and the directory's size (which caught a record that lies about the count).
    Memory then stays bounded by the limit, not by the archive."""
    with open(path, "rb") as fh:
        end = zipfile._EndRecData(fh)  # type: ignore[attr-defined]  # stable since Python 2
    if end is None:
        return  # not a ZIP: ZipFile reports it as a corrupt archive
    entries = int(end[zipfile._ECD_ENTRIES_TOTAL])  # type: ignore[attr-defined]
    directory_bytes = int(end[zipfile._ECD_SIZE])  # type: ignore[attr-defined]
    if entries > limits.archive_max_entries:
        raise ArchiveLimitExceeded(
            f"{entries} entries, over the limit of {limits.archive_max_entries}"
        )
    if directory_bytes > limits.archive_max_entries * MAX_DIRECTORY_BYTES_PER_ENTRY:
        raise ArchiveLimitExceeded(
            f"a central directory of {directory_bytes} bytes, over what "
            f"{limits.archive_max_entries} entries can need"
        )


def _check_archive_limits(infos: list[zipfile.ZipInfo], limits: LimitSettings) -> None:
    if len(infos) > limits.archive_max_entries:
        raise ArchiveLimitExceeded(
            f"{len(infos)} entries, over the limit of {limits.archive_max_entries}"
        )
    total = sum(i.file_size for i in infos)
    if total > limits.archive_max_total_bytes:
        raise ArchiveLimitExceeded(
            f"{total} uncompressed bytes, over the limit of {limits.archive_max_total_bytes}"
        )


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


def _printable(name: str) -> str:
    return name.replace("\x00", "\\0")


def _dir_identity(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino)
