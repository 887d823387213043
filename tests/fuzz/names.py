"""Hypothesis strategies for file and entry names as real disks and old archives hold them.

Names are bytes (a POSIX file name is bytes, not text): invalid UTF-8 and Latin-1, ``#`` and
``%``, spaces, backslashes, control characters, names that look like archives or archive
references (``photo.zip#1.jpg``), and parts up to the 255-byte limit.
"""

from __future__ import annotations

import string

from hypothesis import strategies as st

PIECES = (
    b"#", b"%", b"%20", b" ", b"  ", b"\\", b":", b"?", b"*", b"~", b"'", b'"', b"\t", b"\n",
    b"..", b"#1", b".zip#", b".cbz#", b".zip", b".CBZ", b"caf\xe9", b"\xff\xfe", b"\x80",
    b"\xc3\xa9", b"\xe2\x80\xae", b"\xed\xa0\x80", b"\xf0\x9f\x93\xb7", b"\x1b[31m",
)  # fmt: skip
PLAIN = string.ascii_letters + string.digits + "_-"
MAX_NAME_BYTES = 255
IMAGE_SUFFIXES = (b".jpg", b".JPG", b".jpeg", b".png", b".PNG")


def _clean(raw: bytes) -> bytes:
    return raw.replace(b"/", b"_").replace(b"\x00", b"_")


piece = st.one_of(
    st.sampled_from(PIECES),
    st.text(PLAIN, min_size=1, max_size=8).map(str.encode),
    st.binary(min_size=1, max_size=6).map(_clean),
    st.text(min_size=1, max_size=4).map(lambda t: _clean(t.encode("utf-8", "surrogatepass"))),
)


@st.composite
def file_names(draw: st.DrawFn, suffixes: tuple[bytes, ...] = IMAGE_SUFFIXES) -> bytes:
    """A file name (bytes) ending in one of ``suffixes``; never hidden, ``.`` or ``..``."""
    suffix = draw(st.sampled_from(suffixes))
    if draw(st.integers(0, 9)) == 0:  # a very long part
        stem = b"L" * draw(st.integers(150, MAX_NAME_BYTES - len(suffix)))
    else:
        stem = b"".join(draw(st.lists(piece, min_size=1, max_size=5)))
    stem = stem[: MAX_NAME_BYTES - len(suffix)]
    if stem.startswith(b"."):  # hidden names are skipped by design; not what is tested here
        stem = b"x" + stem[: MAX_NAME_BYTES - len(suffix) - 1]
    return stem + suffix


def is_plain(name: bytes) -> bool:
    """ASCII letters, digits, ``._-`` only: its reference must be the name itself."""
    return all(chr(c) in PLAIN + "." for c in name)
