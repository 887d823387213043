"""Build ZIP/CBZ files entry by entry, then break them the ways real and hostile archives are.

``zipfile`` writes a sound archive; each entry's record is then patched in both places a reader
looks (local header and central directory): the encrypted flag, a compression method nobody
implements, a size that lies, corrupt compressed bytes, or a legacy (cp437, no UTF-8 flag)
name. Duplicate names, nested folders, ``..`` and absolute names come from the names given.
"""

from __future__ import annotations

import io
import struct
import warnings
import zipfile
from dataclasses import dataclass

LOCAL = b"PK\x03\x04"
CENTRAL = b"PK\x01\x02"
END = b"PK\x05\x06"
FIXED_TIME = (2020, 1, 2, 3, 4, 6)
UTF8_FLAG = 0x800


@dataclass(frozen=True)
class Entry:
    """One entry and how it is broken (all ``None``/``False``: a sound entry)."""

    name: str
    data: bytes
    deflate: bool = True
    encrypted: bool = False
    method: int | None = None  # patched compression method (e.g. 99 AES, 97 WavPack)
    lying_size: int | None = None  # patched uncompressed size
    corrupt: bool = False  # compressed bytes damaged
    legacy_name: bytes | None = None  # same-length cp437 bytes written over the name

    @property
    def sound(self) -> bool:
        """Nothing about the entry's record or data is broken."""
        return not (self.encrypted or self.method or self.lying_size is not None or self.corrupt)


def build_zip(entries: list[Entry]) -> bytes:
    """The archive holding ``entries`` in order, each broken as it says."""
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of duplicate names: wanted here
        with zipfile.ZipFile(out, "w") as zf:
            for entry in entries:
                info = zipfile.ZipInfo(entry.name, FIXED_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED if entry.deflate else zipfile.ZIP_STORED
                zf.writestr(info, entry.data)
    data = bytearray(out.getvalue())
    for entry, (local, central) in zip(entries, _records(data), strict=True):
        _patch(data, entry, local, central)
    return bytes(data)


def _records(data: bytearray) -> list[tuple[int, int]]:
    """(local header offset, central record offset) of each entry, in order."""
    end = data.rfind(END)
    count, _size, start = struct.unpack_from("<HII", data, end + 10)
    out = []
    at = start
    for _ in range(count):
        assert data[at : at + 4] == CENTRAL
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, at + 28)
        (local,) = struct.unpack_from("<I", data, at + 42)
        out.append((local, at))
        at += 46 + name_len + extra_len + comment_len
    return out


def _patch(data: bytearray, entry: Entry, local: int, central: int) -> None:
    # field offsets: local header flags +6, method +8, size +22, name +30;
    # central record flags +8, method +10, size +24, name +46
    if entry.encrypted:
        for at in (local + 6, central + 8):
            (flags,) = struct.unpack_from("<H", data, at)
            struct.pack_into("<H", data, at, flags | 0x1)
    if entry.method is not None:
        struct.pack_into("<H", data, local + 8, entry.method)
        struct.pack_into("<H", data, central + 10, entry.method)
    if entry.lying_size is not None:
        struct.pack_into("<I", data, local + 22, entry.lying_size)
        struct.pack_into("<I", data, central + 24, entry.lying_size)
    if entry.legacy_name is not None:
        name_len = len(entry.name.encode("utf-8"))
        assert len(entry.legacy_name) == name_len, "legacy names keep the byte length"
        for flags_at, name_at in ((local + 6, local + 30), (central + 8, central + 46)):
            (flags,) = struct.unpack_from("<H", data, flags_at)
            struct.pack_into("<H", data, flags_at, flags & ~UTF8_FLAG)
            data[name_at : name_at + name_len] = entry.legacy_name
    if entry.corrupt:
        name_len, extra_len = struct.unpack_from("<HH", data, local + 26)
        payload = local + 30 + name_len + extra_len
        (size,) = struct.unpack_from("<I", data, central + 20)  # compressed size
        data[payload] = 0xFF  # a deflate block of type 3, which does not exist
        for i in range(payload + size // 3, payload + max(size // 3 + 1, size * 2 // 3), 7):
            data[i] ^= 0x5A
