"""What identifies a source's content cheaply, without reading it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fingerprint:
    """What identifies a source's content cheaply: size, mtime (files) or CRC (entries)."""

    size: int
    mtime_ns: int = 0
    crc: int | None = None

    def to_doc(self) -> dict[str, int | None]:
        """The form stored in MongoDB."""
        return {"size": self.size, "mtime_ns": self.mtime_ns, "crc": self.crc}
