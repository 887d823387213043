"""ZIP archives read in linear time: each directory parsed once, entries opened from it.

Parsing a central directory costs time in proportion to its entries (0.4 s at 100,000), so
parsing it again for every entry made scanning or rendering a large archive quadratic. Here a
directory is parsed once and kept in a small per-process cache keyed by the archive file's
identity (device, inode, size, mtime): an archive changed or replaced in place is parsed again.
The cache is an LRU of a few archives and a bounded number of entries (about 0.5 KB each), and
is shared by threads; each process (a worker, a render child) has its own.
"""

from __future__ import annotations

import os
import struct
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import BinaryIO, cast

from thumbcache.errors import ArchiveLimitExceeded, CorruptArchive, UnsupportedArchiveEntry
from thumbcache.settings import LimitSettings

ArchiveKey = tuple[int, int, int, int]

# A central-directory record is 46 bytes plus its name, extra field and comment; names past
# 1 KiB are not addressable by any filesystem here, so more bytes per entry means lying counts.
MAX_DIRECTORY_BYTES_PER_ENTRY = 46 + 1024
CACHED_ARCHIVES = 8
CACHED_ENTRIES = 100_000  # ~50 MB; one archive larger than this is still kept, alone

READABLE_METHODS = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)
FLAG_ENCRYPTED = 0x1
FLAG_PATCHED_DATA = 0x20
FLAG_UTF8_NAME = 0x800
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # zipfile's structFileHeader, 30 bytes
_LOCAL_SIGNATURE = b"PK\x03\x04"
# What zipfile raises on a directory it cannot make sense of (names flagged UTF-8 that are
# not, offsets past the end, records cut short).
_DIRECTORY_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, struct.error)


@dataclass(frozen=True)
class ArchiveDirectory:
    """The files of one archive (folders left out) in directory order, and by name."""

    entries: tuple[zipfile.ZipInfo, ...]
    by_name: Mapping[str, tuple[zipfile.ZipInfo, ...]]
    total_bytes: int

    @classmethod
    def of(cls, infos: list[zipfile.ZipInfo]) -> ArchiveDirectory:
        """Index the infos that are files."""
        entries = tuple(i for i in infos if not i.is_dir())
        by_name: dict[str, list[zipfile.ZipInfo]] = {}
        for info in entries:
            by_name.setdefault(info.filename, []).append(info)
        return cls(
            entries,
            {name: tuple(same) for name, same in by_name.items()},
            sum(i.file_size for i in entries),
        )

    def numbered(self) -> Iterator[tuple[zipfile.ZipInfo, int]]:
        """Each entry with its occurrence: 1 for the first of its name, n for the n-th."""
        seen: dict[str, int] = {}
        for info in self.entries:
            seen[info.filename] = seen.get(info.filename, 0) + 1
            yield info, seen[info.filename]

    def find(self, name: str, occurrence: int = 1) -> zipfile.ZipInfo | None:
        """The ``occurrence``-th entry named ``name``, or None."""
        same = self.by_name.get(name, ())
        return same[occurrence - 1] if 0 < occurrence <= len(same) else None


def archive_key(st: os.stat_result) -> ArchiveKey:
    """The identity of an archive file's content as the cache sees it."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def parse_directory(fh: BinaryIO, limits: LimitSettings) -> ArchiveDirectory:
    """Check the end record against the limits, then parse the central directory.

    Raises ArchiveLimitExceeded before parsing (memory stays bounded by the limit, not by the
    archive) and CorruptArchive when zipfile cannot read the directory.
    """
    check_end_record(fh, limits)
    try:
        with zipfile.ZipFile(fh) as zf:  # a ZipFile given a file object leaves it open
            return ArchiveDirectory.of(zf.infolist())
    except _DIRECTORY_ERRORS as exc:
        raise CorruptArchive(f"bad archive: {exc}") from None


def check_end_record(fh: BinaryIO, limits: LimitSettings) -> None:
    """Refuse an archive from its end record alone: the entry count, and the directory's size
    (which catches a record that lies about the count)."""
    end = zipfile._EndRecData(fh)  # type: ignore[attr-defined]  # stable since Python 2
    if end is None:
        return  # not a ZIP: parsing reports it as a corrupt archive
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


def check_archive_limits(directory: ArchiveDirectory, limits: LimitSettings) -> None:
    """Refuse an archive over the entry-count or total-size limit (ArchiveLimitExceeded)."""
    if len(directory.entries) > limits.archive_max_entries:
        raise ArchiveLimitExceeded(
            f"{len(directory.entries)} entries, over the limit of {limits.archive_max_entries}"
        )
    if directory.total_bytes > limits.archive_max_total_bytes:
        raise ArchiveLimitExceeded(
            f"{directory.total_bytes} uncompressed bytes, over the limit of "
            f"{limits.archive_max_total_bytes}"
        )


def check_readable(info: zipfile.ZipInfo) -> None:
    """Raise UnsupportedArchiveEntry for an entry no reader here can decode."""
    if info.flag_bits & FLAG_ENCRYPTED:
        raise UnsupportedArchiveEntry("the entry is encrypted (passwords are not supported)")
    if info.flag_bits & FLAG_PATCHED_DATA:
        raise UnsupportedArchiveEntry("the entry holds compressed patched data")
    if info.compress_type not in READABLE_METHODS:
        name = zipfile.compressor_names.get(info.compress_type)  # type: ignore[attr-defined]
        raise UnsupportedArchiveEntry(
            f"compression method {info.compress_type} not supported"
            + (f" ({name})" if name else "")
        )


def open_entry(fh: BinaryIO, info: zipfile.ZipInfo) -> BinaryIO:
    """A stream of one entry's bytes, read from ``fh`` without parsing the directory again.

    Does what ``ZipFile.open`` does after its name lookup: checks the entry can be read and
    that its local header matches the directory, then hands the data to zipfile's own reader.
    Closing the stream leaves ``fh`` open.
    """
    check_readable(info)
    fh.seek(info.header_offset)
    header = fh.read(_LOCAL_HEADER.size)
    if len(header) != _LOCAL_HEADER.size:
        raise CorruptArchive(f"the local header of {info.filename!r} is cut short")
    fields = _LOCAL_HEADER.unpack(header)
    signature, flags, name_length, extra_length = fields[0], fields[3], fields[10], fields[11]
    if signature != _LOCAL_SIGNATURE:
        raise CorruptArchive(f"the local header of {info.filename!r} is not where it should be")
    raw_name = fh.read(name_length)
    name = raw_name.decode("utf-8" if flags & FLAG_UTF8_NAME else "cp437", "replace")
    if name != info.orig_filename:
        raise CorruptArchive(f"entry {info.filename!r} is named {name[:200]!r} in its header")
    fh.seek(extra_length, os.SEEK_CUR)
    return cast(BinaryIO, zipfile.ZipExtFile(fh, "r", info, None, False))


class DirectoryCache:
    """Parsed directories by archive identity: thread-safe, least recently used out first.

    Holds at most ``max_archives`` directories and ``max_entries`` entries in all, except that
    the one used last is always kept. Concurrent requests for one archive parse it once.
    """

    def __init__(
        self, max_archives: int = CACHED_ARCHIVES, max_entries: int = CACHED_ENTRIES
    ) -> None:
        self.max_archives = max_archives
        self.max_entries = max_entries
        self.parses = 0  # directories parsed since the cache was made (for tests and benches)
        self._lock = threading.Lock()
        self._directories: OrderedDict[ArchiveKey, ArchiveDirectory] = OrderedDict()
        self._loading: dict[ArchiveKey, threading.Lock] = {}
        self._entries = 0

    def __len__(self) -> int:
        return len(self._directories)

    def get(self, fh: BinaryIO, st: os.stat_result, limits: LimitSettings) -> ArchiveDirectory:
        """The directory of the archive open as ``fh`` (``st`` is its fstat)."""
        key = archive_key(st)
        with self._lock:
            found = self._hit(key)
            if found is not None:
                return found
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:  # one parse per archive; the others wait for it
            with self._lock:
                found = self._hit(key)
                if found is not None:
                    return found
            try:
                directory = parse_directory(fh, limits)
            except BaseException:
                with self._lock:
                    self._loading.pop(key, None)
                raise
            with self._lock:  # kept before the gate goes: a later caller finds it cached
                self.parses += 1
                self._keep(key, directory)
                self._loading.pop(key, None)
            return directory

    def clear(self) -> None:
        """Forget every directory."""
        with self._lock:
            self._directories.clear()
            self._entries = 0

    def _hit(self, key: ArchiveKey) -> ArchiveDirectory | None:
        found = self._directories.get(key)
        if found is not None:
            self._directories.move_to_end(key)
        return found

    def _keep(self, key: ArchiveKey, directory: ArchiveDirectory) -> None:
        replaced = self._directories.pop(key, None)
        if replaced is not None:
            self._entries -= len(replaced.entries)
        self._directories[key] = directory
        self._entries += len(directory.entries)
        while len(self._directories) > 1 and (
            len(self._directories) > self.max_archives or self._entries > self.max_entries
        ):
            _old, dropped = self._directories.popitem(last=False)
            self._entries -= len(dropped.entries)


DIRECTORIES = DirectoryCache()  # this process's cache, used by the walk and the reader
