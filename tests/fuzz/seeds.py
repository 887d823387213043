"""Sound, small source images the fuzzers start from, generated (never committed)."""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image

from tests.fuzz.mutate import png_chunk, segments
from tests.imagegen import photo


@dataclass(frozen=True)
class SeedImage:
    """A generated image: its name, sniffed format, extension and bytes."""

    name: str
    format: str
    extension: str
    data: bytes


def _save(im: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    im.save(out, fmt, **params)
    return out.getvalue()


@cache
def seed_images() -> tuple[SeedImage, ...]:
    """One of each kind a decoder treats differently: baseline and progressive JPEG, 8- and
    16-bit PNG, palette PNG with transparency, animated GIF, LZW and plain TIFF, WebP."""
    rgb = photo(96, 64, seed=3)
    rgba = rgb.convert("RGBA")
    rgba.putalpha(128)
    frames = [photo(48, 32, seed=s).convert("P") for s in (1, 2)]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    grey16 = Image.fromarray(np.asarray(rgb.convert("L")).astype(np.uint16) * 257)
    return (
        SeedImage("baseline", "jpeg", ".jpg", _save(rgb, "JPEG", quality=85)),
        SeedImage("progressive", "jpeg", ".jpg", _save(rgb, "JPEG", quality=85, progressive=True)),
        SeedImage("rgba", "png", ".png", _save(rgba, "PNG")),
        SeedImage("grey16", "png", ".png", _save(grey16, "PNG")),
        SeedImage("palette", "png", ".png", _save(rgb.convert("P"), "PNG", transparency=0)),
        SeedImage("animated", "gif", ".gif", gif.getvalue()),
        SeedImage("lzw", "tiff", ".tif", _save(rgb, "TIFF", compression="tiff_lzw")),
        SeedImage("raw", "tiff", ".tiff", _save(rgb.convert("L"), "TIFF")),
        SeedImage("lossy", "webp", ".webp", _save(rgb, "WEBP", quality=70)),
        SeedImage("lossless", "webp", ".webp", _save(rgba, "WEBP", lossless=True)),
    )


def png_memory_bomb(width: int = 10_000, height: int = 10_000) -> bytes:
    """A sound RGBA PNG at the pixel limit (100 MP) that compresses to ~400 KB."""
    row = b"\x00" + bytes((200, 30, 30, 120)) * width
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def jpeg_scan_bomb(side: int = 8000, repeats: int = 40_000) -> bytes:
    """A progressive JPEG of side x side (64 MP) whose smallest scan is repeated: ~1.8 MB, and
    each repeat is decoded again over the whole image."""
    tile = np.random.default_rng(7).integers(0, 255, (100, 100, 3), dtype=np.uint8)
    big = Image.fromarray(tile).resize((side, side), Image.Resampling.NEAREST)
    data = _save(big, "JPEG", quality=60, progressive=True)
    start, end = min(segments(data, b"\xff\xda"), key=lambda span: span[1] - span[0])
    return data[:end] + data[start:end] * repeats + data[end:]


@cache
def decode_bombs() -> tuple[SeedImage, ...]:
    """Sound files inside every limit whose decode costs far more than their size says."""
    return (
        SeedImage("memory-bomb", "png", ".png", png_memory_bomb()),
        SeedImage("scan-bomb", "jpeg", ".jpg", jpeg_scan_bomb()),
    )
