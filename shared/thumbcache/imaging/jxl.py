"""A JPEG XL image's size from its codestream header, without decoding.

pillow-jxl-plugin decodes every pixel when it opens a file, so the pixel limit and the
memory budget must be checked before Pillow sees it: this reads the SizeHeader (ISO/IEC
18181-1, a few bits after the 0xFF0A signature), from a bare codestream or from the
``jxlc``/``jxlp`` box of the container.
"""

from __future__ import annotations

from thumbcache.errors import CorruptImage, ImageTooLarge
from thumbcache.settings import LimitSettings

# Peak bytes per pixel of a render through pillow-jxl-plugin (measured 7.1 thumbnail, 10.8
# cache at 12 MP: its decoded buffer and Pillow's image are both alive, at full size).
DECODE_BYTES_PER_PIXEL = 12

_CODESTREAM = b"\xff\x0a"
_CONTAINER = b"\x00\x00\x00\x0cJXL \r\n\x87\n"
# The aspect ratios SizeHeader.ratio 1-7 stands for (width = height * num // den).
_RATIOS = {1: (1, 1), 2: (12, 10), 3: (4, 3), 4: (3, 2), 5: (16, 9), 6: (5, 4), 7: (2, 1)}
_U32_BITS = (9, 13, 18, 30)


class _Bits:
    """Least-significant-bit-first reader, as JPEG XL packs its headers."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def read(self, count: int) -> int:
        value = 0
        for i in range(count):
            byte = self.data[(self.pos + i) >> 3] if (self.pos + i) >> 3 < len(self.data) else 0
            value |= ((byte >> ((self.pos + i) & 7)) & 1) << i
        self.pos += count
        return value


def jxl_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) of the JPEG XL file starting with ``head``, or None if not found."""
    stream = _codestream(head)
    if stream is None or len(stream) < 2 + 8:
        return None
    bits = _Bits(stream[2:])
    small = bits.read(1)
    height = (bits.read(5) + 1) * 8 if small else 1 + bits.read(_U32_BITS[bits.read(2)])
    ratio = bits.read(3)
    if ratio:
        num, den = _RATIOS[ratio]
        return height * num // den, height
    width = (bits.read(5) + 1) * 8 if small else 1 + bits.read(_U32_BITS[bits.read(2)])
    return width, height


def check_jxl(head: bytes, limits: LimitSettings) -> None:
    """Refuse, from its size header, a JPEG XL over the pixel limit or the memory budget."""
    size = jxl_size(head)
    if size is None:
        raise CorruptImage("jxl size header is damaged or missing")
    width, height = size
    pixels = width * height
    if pixels > limits.max_pixels:
        raise ImageTooLarge(
            f"{width}x{height} is {pixels} pixels, over the limit of {limits.max_pixels}"
        )
    estimate = pixels * DECODE_BYTES_PER_PIXEL
    if estimate > limits.max_decode_mb * 1024 * 1024:
        raise ImageTooLarge(
            f"decoding {width}x{height} jxl would take about {estimate / 1048576:.0f} MB, over "
            f"the decode memory budget of {limits.max_decode_mb} MB (limits.max_decode_mb)"
        )


def _codestream(head: bytes) -> bytes | None:
    if head.startswith(_CODESTREAM):
        return head
    if not head.startswith(_CONTAINER):
        return None
    pos = len(_CONTAINER)
    while pos + 8 <= len(head):
        size = int.from_bytes(head[pos : pos + 4], "big")
        kind = head[pos + 4 : pos + 8]
        start = pos + 8
        if size == 1:  # a 64-bit size follows the type
            size = int.from_bytes(head[start : start + 8], "big")
            start += 8
        if kind == b"jxlc":
            return head[start:]
        if kind == b"jxlp":
            return head[start + 4 :]  # after the part's index
        if size < 8:
            return None  # "to the end of the file", or damaged: no codestream box seen
        pos += size
    return None
