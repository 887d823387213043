"""Source references (``dir/a.jpg``, ``dir/book.cbz#pages/001.jpg``) and their safety rules.

A reference is always relative to its collection root, uses ``/`` separators, and names an
archive entry after the first ``.zip#`` or ``.cbz#`` (any case). Everything here is pure: no
filesystem access.

Every name a disk or an archive holds gets exactly one reference. It is valid UTF-8 (so it can
be stored and hashed into an id) and reads back as the very same name. A character is escaped,
as ``%XX`` (its byte in upper-case hex), only where it cannot be written or would otherwise be
read as syntax:

- a byte that is not part of valid UTF-8 (os gives it as a surrogate escape), and NUL;
- ``%`` followed by two hex digits (it would read as an escape): ``%25``;
- in the path, ``#`` right after ``.zip`` or ``.cbz`` (it would read as the entry separator);
- in the entry, ``#`` followed by nothing but digits (it would read as an occurrence number).

An archive may hold several entries of one name: the first is ``book.cbz#p.jpg``, the n-th
``book.cbz#p.jpg#n``. Names without these characters (nearly all) keep the reference, and so
the image id, they always had. References that change: names with ``%`` before two hex digits,
files or folders whose name holds ``.zip#``/``.cbz#`` (older versions misread them as archive
entries), entry names ending in ``#`` and digits, and names that are not valid UTF-8 (older
versions could not record them at all).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from thumbcache.errors import UnsafeSource

ARCHIVE_EXTENSIONS = (".zip", ".cbz")
ENTRY_SEPARATOR = "#"

_HEX2 = "[0-9A-Fa-f]{2}"
_UNWRITABLE = "[\x00\udc80-\udcff]"  # NUL and the surrogate escapes of undecodable bytes
_PATH_SPECIAL = re.compile(rf"%(?={_HEX2})|(?<=\.zip)#|(?<=\.cbz)#|{_UNWRITABLE}", re.IGNORECASE)
_ENTRY_SPECIAL = re.compile(rf"%(?={_HEX2})|#(?=[0-9]+\Z)|{_UNWRITABLE}")
_ESCAPE = re.compile(rf"%({_HEX2})")
_SEPARATOR = re.compile(r"\.(?:zip|cbz)#", re.IGNORECASE)
_OCCURRENCE = re.compile(r"#([0-9]+)\Z")
_SURROGATE_ESCAPES = 0xDC00  # os.fsdecode turns an undecodable byte b into chr(0xDC00 + b)


@dataclass(frozen=True)
class SourceRef:
    """A source: a relative file path and, inside an archive, an entry name.

    Names are held as the filesystem and zipfile give them (a path may hold surrogate escapes
    of bytes that are not UTF-8); ``str()`` is the escaped reference. ``occurrence`` numbers
    entries that share their name, in the archive's directory order (1 for the first).
    """

    path: str
    entry: str | None = None
    occurrence: int = 1

    def __post_init__(self) -> None:
        if self.occurrence < 1 or (self.entry is None and self.occurrence != 1):
            raise ValueError(f"occurrence {self.occurrence} of {self.path}#{self.entry}")

    def __str__(self) -> str:
        path = escape_path(self.path)
        return path if self.entry is None else f"{path}{ENTRY_SEPARATOR}{self._entry_text()}"

    @property
    def key(self) -> tuple[str, ...]:
        """The ordering key: path parts then entry parts, as written in the reference; the
        walker yields in this order (and records it as its resumable cursor)."""
        parts = tuple(escape_path(self.path).split("/"))
        return parts if self.entry is None else parts + tuple(self._entry_text().split("/"))

    def _entry_text(self) -> str:
        assert self.entry is not None
        text = escape_entry(self.entry)
        return text if self.occurrence == 1 else f"{text}{ENTRY_SEPARATOR}{self.occurrence}"


def escape_path(path: str) -> str:
    """A file path as written in a reference (see the module docstring)."""
    return _PATH_SPECIAL.sub(_escape_char, path)


def escape_entry(name: str) -> str:
    """An archive entry name as written in a reference (see the module docstring)."""
    return _ENTRY_SPECIAL.sub(_escape_char, name)


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"%{code - _SURROGATE_ESCAPES if code > _SURROGATE_ESCAPES else code:02X}"


def _unescape(text: str) -> str:
    if "%" not in text:
        return text
    raw = _ESCAPE.sub(_unescape_byte, text)
    # Escaped bytes that form valid UTF-8 become the characters os would give for them, so
    # that ``caf%C3%A9.jpg`` is seen as another spelling of ``café.jpg`` and refused.
    return raw.encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")


def _unescape_byte(match: re.Match[str]) -> str:
    byte = int(match.group(1), 16)
    return chr(byte) if byte < 0x80 else chr(_SURROGATE_ESCAPES + byte)


def is_archive_name(name: str) -> bool:
    """True when a file name says ZIP or CBZ archive."""
    return name.lower().endswith(ARCHIVE_EXTENSIONS)


def parse_ref(text: str) -> SourceRef:
    """Parse a reference, checking both parts; raise UnsafeSource for anything suspicious,
    including a reference not written exactly as :class:`SourceRef` writes it (so that one
    source never has two references, nor two ids)."""
    separator = _SEPARATOR.search(text)
    if separator is None:
        ref = SourceRef(check_relative_path(_unescape(text)))
    else:
        entry_text, occurrence = text[separator.end() :], 1
        numbered = _OCCURRENCE.search(entry_text)
        if numbered is not None:
            entry_text, occurrence = entry_text[: numbered.start()], int(numbered.group(1))
            if occurrence < 2:
                raise UnsafeSource(f"reference {text!r} numbers the first entry of its name")
        ref = SourceRef(
            check_relative_path(_unescape(text[: separator.end() - 1])),
            check_entry_name(_unescape(entry_text)),
            occurrence,
        )
    if str(ref) != text:
        raise UnsafeSource(f"reference {text!r} is not in its one written form ({ref})")
    return ref


def check_relative_path(path: str) -> str:
    """Return ``path`` if it is a clean relative path inside a root, else raise UnsafeSource."""
    _check_common(path, "path")
    if path.startswith("/"):  # a backslash is an ordinary character of a POSIX file name
        raise UnsafeSource(f"path {path!r} is absolute")
    return path


def check_entry_name(name: str) -> str:
    """Return an archive entry name if it is safe to address, else raise UnsafeSource.

    Entry names are never used as filesystem paths; still, absolute names, ``..`` parts,
    backslashes and drive letters mark a hostile archive and fail that entry.
    """
    _check_common(name, "archive entry")
    if name.startswith("/") or "\\" in name or (len(name) > 1 and name[1] == ":"):
        raise UnsafeSource(f"archive entry {name!r} has an absolute or Windows path")
    return name


def _check_common(text: str, what: str) -> None:
    if not text:
        raise UnsafeSource(f"{what} is empty")
    if "\x00" in text:
        raise UnsafeSource(f"{what} {text!r} contains a NUL byte")
    parts = text.split("/")
    if any(p in ("", ".", "..") for p in parts) or posixpath.normpath(text) != text:
        raise UnsafeSource(f"{what} {text!r} is not a normalised relative path")
