"""Generated ZIP archives with the oddities real archives hold (never committed binaries).

zipfile cannot write encrypted entries, unknown compression methods or broken deflate data, so
these helpers write an ordinary archive and then patch its bytes the way such archives look.
"""

from __future__ import annotations

import struct
import warnings
import zipfile
from pathlib import Path

LOCAL_FLAGS, LOCAL_METHOD = 6, 8  # offsets in a local file header
CENTRAL_FLAGS, CENTRAL_METHOD = 8, 10  # offsets in a central directory record
CENTRAL_SIGNATURE = b"PK\x01\x02"
ENCRYPTED = 0x1
UTF8_NAME = 0x800
DEFLATE64 = 9  # a real method that zipfile cannot read


def write_zip(
    path: Path,
    entries: list[tuple[str, bytes]],
    compression: int = zipfile.ZIP_STORED,
) -> None:
    """An archive of ``entries`` in this order; the same name may come more than once."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about duplicate names
        with zipfile.ZipFile(path, "w", compression=compression) as zf:
            for name, data in entries:
                zf.writestr(name, data)


def _entry_offsets(data: bytes, path: Path, index: int) -> tuple[int, int]:
    """(local header offset, central record offset) of the ``index``-th entry."""
    with zipfile.ZipFile(path) as zf:
        local = zf.infolist()[index].header_offset
        pos = zf.start_dir  # type: ignore[attr-defined]
    for _ in range(index):
        names, extra, comment = struct.unpack_from("<HHH", data, pos + 28)
        pos += 46 + names + extra + comment
    assert data[pos : pos + 4] == CENTRAL_SIGNATURE
    return local, pos


def patch_entry(path: Path, index: int, *, add_flags: int = 0, method: int | None = None) -> None:
    """Set flag bits or the compression method of one entry, in both of its headers."""
    data = bytearray(path.read_bytes())
    local, central = _entry_offsets(data, path, index)
    for flags_at, method_at in (
        (local + LOCAL_FLAGS, local + LOCAL_METHOD),
        (central + CENTRAL_FLAGS, central + CENTRAL_METHOD),
    ):
        (flags,) = struct.unpack_from("<H", data, flags_at)
        struct.pack_into("<H", data, flags_at, flags | add_flags)
        if method is not None:
            struct.pack_into("<H", data, method_at, method)
    path.write_bytes(bytes(data))


def rename_entry_bytes(path: Path, index: int, raw_name: bytes, *, utf8_flag: bool) -> None:
    """Give one entry a raw name of the same length (e.g. not valid UTF-8), in both headers."""
    data = bytearray(path.read_bytes())
    local, central = _entry_offsets(data, path, index)
    for name_at, flags_at in (
        (local + 30, local + LOCAL_FLAGS),
        (central + 46, central + CENTRAL_FLAGS),
    ):
        data[name_at : name_at + len(raw_name)] = raw_name
        (flags,) = struct.unpack_from("<H", data, flags_at)
        flags = flags | UTF8_NAME if utf8_flag else flags & ~UTF8_NAME
        struct.pack_into("<H", data, flags_at, flags)
    path.write_bytes(bytes(data))


def break_deflate_stream(path: Path, index: int) -> None:
    """Make one deflated entry's first block invalid (block type 3: reserved)."""
    data = bytearray(path.read_bytes())
    local, _central = _entry_offsets(data, path, index)
    names, extra = struct.unpack_from("<HH", data, local + 26)
    data[local + 30 + names + extra] = 0xFF
    path.write_bytes(bytes(data))


def unreadable_entries_zip(path: Path, page: bytes) -> dict[str, str]:
    """An archive of four copies of ``page``: encrypted, an unknown compression method, a
    broken deflate stream, and one that reads; returns {entry: expected error class or ""}."""
    write_zip(
        path,
        [("enc.jpg", page), ("m9.jpg", page), ("broken.jpg", page), ("ok.jpg", page)],
        zipfile.ZIP_DEFLATED,
    )
    patch_entry(path, 0, add_flags=ENCRYPTED)
    patch_entry(path, 1, method=DEFLATE64)
    break_deflate_stream(path, 2)
    return {
        "enc.jpg": "UnsupportedArchiveEntry",
        "m9.jpg": "UnsupportedArchiveEntry",
        "broken.jpg": "CorruptArchive",
        "ok.jpg": "",
    }
