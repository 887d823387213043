"""Source references (``dir/a.jpg``, ``dir/book.cbz#pages/001.jpg``) and their safety rules.

A reference is always relative to its collection root, uses ``/`` separators, and names an
archive entry after ``#``. Everything here is pure: no filesystem access.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from thumbcache.errors import UnsafeSource

ARCHIVE_EXTENSIONS = (".zip", ".cbz")
ENTRY_SEPARATOR = "#"


@dataclass(frozen=True)
class SourceRef:
    """A parsed reference: a relative file path and, inside an archive, an entry name."""

    path: str
    entry: str | None = None

    def __str__(self) -> str:
        return self.path if self.entry is None else f"{self.path}{ENTRY_SEPARATOR}{self.entry}"

    @property
    def key(self) -> tuple[str, ...]:
        """The ordering key: path parts then entry parts; the walker yields in this order."""
        parts = tuple(self.path.split("/"))
        return parts if self.entry is None else parts + tuple(self.entry.split("/"))


def is_archive_name(name: str) -> bool:
    """True when a file name says ZIP or CBZ archive."""
    return name.lower().endswith(ARCHIVE_EXTENSIONS)


def parse_ref(text: str) -> SourceRef:
    """Parse a reference, checking both parts; raise UnsafeSource for anything suspicious."""
    lowered = text.lower()
    split_at = -1
    for ext in ARCHIVE_EXTENSIONS:
        index = lowered.find(ext + ENTRY_SEPARATOR)
        if index != -1 and (split_at == -1 or index < split_at):
            split_at = index + len(ext)
    if split_at == -1:
        return SourceRef(check_relative_path(text))
    return SourceRef(check_relative_path(text[:split_at]), check_entry_name(text[split_at + 1 :]))


def check_relative_path(path: str) -> str:
    """Return ``path`` if it is a clean relative path inside a root, else raise UnsafeSource."""
    _check_common(path, "path")
    if path.startswith("/") or "\\" in path:
        raise UnsafeSource(f"path {path!r} is absolute or uses backslashes")
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
