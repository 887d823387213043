"""Generated test images and collections (never committed binaries)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """A photo-like RGB image: smooth gradients plus texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [
            128 + 100 * np.sin(x / (37 + seed) + y / 53),
            128 + 100 * np.cos(y / (29 + seed)),
            128 + 80 * np.sin((x + y) / 71),
        ],
        axis=-1,
    )
    noise = rng.normal(0, 12, size=(height, width, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def jpeg_bytes(
    width: int, height: int, quality: int = 90, orientation: int = 1, seed: int = 0
) -> bytes:
    """A JPEG of a photo-like image, optionally with an EXIF orientation."""
    out = io.BytesIO()
    kwargs = {}
    if orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif
    photo(width, height, seed).save(out, "JPEG", quality=quality, **kwargs)
    return out.getvalue()


def png_bytes(width: int, height: int, mode: str = "RGBA") -> bytes:
    """A PNG with transparency."""
    out = io.BytesIO()
    Image.new(mode, (width, height), (200, 30, 30, 120) if mode == "RGBA" else (200, 30, 30)).save(
        out, "PNG"
    )
    return out.getvalue()


def make_collection(root: Path, *, good: int = 4, seed: int = 0) -> dict[str, str]:
    """A mixed collection; returns {source: expected kind} with kind 'ok' or 'failed'."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "sub").mkdir(exist_ok=True)
    expected: dict[str, str] = {}
    for i in range(good):
        name = f"photo{i:02d}.jpg"
        (root / name).write_bytes(
            jpeg_bytes(1600 + 40 * i, 1200, seed=seed + i, orientation=6 if i == 1 else 1)
        )
        expected[name] = "ok"
    (root / "sub" / "alpha.png").write_bytes(png_bytes(640, 480))
    expected["sub/alpha.png"] = "ok"
    webp = io.BytesIO()
    photo(800, 600, seed).save(webp, "WEBP", quality=70)
    (root / "sub" / "pic.webp").write_bytes(webp.getvalue())
    expected["sub/pic.webp"] = "ok"
    (root / "noext").write_bytes(jpeg_bytes(400, 300, seed=seed + 9))  # sniffed by magic bytes
    expected["noext"] = "ok"
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 40)
    expected["broken.jpg"] = "failed"
    (root / "empty.png").write_bytes(b"")
    expected["empty.png"] = "failed"
    full = jpeg_bytes(800, 600, seed=seed + 5)
    (root / "truncated.jpg").write_bytes(full[: len(full) // 3])
    expected["truncated.jpg"] = "failed"
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden.jpg").write_bytes(jpeg_bytes(50, 50))
    with zipfile.ZipFile(root / "book.cbz", "w") as zf:
        for page in range(3):
            zf.writestr(
                f"pages/{page:03d}.jpg", jpeg_bytes(1000, 1500, quality=75, seed=seed + 20 + page)
            )
            expected[f"book.cbz#pages/{page:03d}.jpg"] = "ok"
        zf.writestr("pages/readme.txt", "x")
        zf.writestr("../escape.jpg", jpeg_bytes(10, 10))
        expected["book.cbz#../escape.jpg"] = "failed"
    return expected


def psd_bytes(im: Image.Image) -> bytes:
    """A minimal Photoshop document (RGB, 8-bit, raw planes, no layers) of ``im``.

    Pillow reads PSD but cannot write it; the format is simple enough to write here.
    """
    rgb = im.convert("RGB")
    width, height = rgb.size
    header = b"8BPS" + (1).to_bytes(2, "big") + bytes(6)
    header += (3).to_bytes(2, "big") + height.to_bytes(4, "big") + width.to_bytes(4, "big")
    header += (8).to_bytes(2, "big") + (3).to_bytes(2, "big")  # depth 8, mode RGB
    sections = bytes(4) * 3  # colour-mode data, image resources, layers: all empty
    planes = b"".join(band.tobytes() for band in rgb.split())
    return header + sections + (0).to_bytes(2, "big") + planes


def progressive_jpeg_with_scans(im: Image.Image, scans: int, quality: int = 80) -> bytes:
    """A progressive JPEG of ``im`` whose smallest scan is repeated until it has ``scans`` scans.

    Each repeat is a "bogus progression" that libjpeg only warns about and decodes again over
    the whole image: a small file that costs seconds, the CPU bomb the scan limit refuses.
    """
    out = io.BytesIO()
    im.convert("RGB").save(out, "JPEG", quality=quality, progressive=True)
    data = out.getvalue()
    first, eoi = data.find(b"\xff\xda"), data.rfind(b"\xff\xd9")
    starts = [i for i in range(first, eoi) if data[i : i + 2] == b"\xff\xda"]
    if scans < len(starts):
        raise ValueError(f"Pillow's progressive JPEG already has {len(starts)} scans")
    bounds = list(zip(starts, [*starts[1:], eoi], strict=True))
    # A scan runs to the next marker that is not a restart or a stuffed byte; DHT segments
    # between scans belong to the next scan's table set, so keep each scan up to the next SOS.
    start, end = min(bounds, key=lambda b: b[1] - b[0])
    return data[:eoi] + data[start:end] * (scans - len(starts)) + data[eoi:]


def dng_bytes(preview_jpeg: bytes, preview_size: tuple[int, int], orientation: int = 1) -> bytes:
    """A minimal DNG: IFD0 holds a JPEG preview, a sub-IFD a tiny 16-bit CFA raw image.

    No camera is needed: LibRaw reads this structure and extracts the preview as it would
    from a camera's DNG. ``orientation`` is the TIFF Orientation tag of IFD0.
    """
    import struct

    raw_w, raw_h = 64, 64  # LibRaw takes nothing under 22 pixels a side for a raw image
    cfa = bytes(raw_w * raw_h * 2)
    short, long_, byte, ascii_ = 3, 4, 1, 2

    def ifd(entries: list[tuple[int, int, object]], at: int, blobs_at: int) -> tuple[bytes, bytes]:
        body, blobs = b"", b""
        for tag, kind, value in sorted(entries, key=lambda e: e[0]):
            if kind == ascii_:
                raw = value if isinstance(value, bytes) else b""
                count = len(raw)
            elif kind == byte:
                raw = bytes(value)  # type: ignore[arg-type]
                count = len(raw)
            else:
                vals = value if isinstance(value, tuple) else (value,)
                fmt = "H" if kind == short else "I"
                raw = struct.pack("<" + fmt * len(vals), *vals)
                count = len(vals)
            if len(raw) <= 4:
                field = raw.ljust(4, b"\x00")
            else:
                field = struct.pack("<I", blobs_at + len(blobs))
                blobs += raw + (b"\x00" if len(raw) % 2 else b"")
            body += struct.pack("<HHI", tag, kind, count) + field
        return struct.pack("<H", len(entries)) + body + struct.pack("<I", 0), blobs

    width, height = preview_size

    # Layout: header (8) | IFD0 | IFD0 blobs | sub-IFD | sub-IFD blobs | preview | raw data
    def layout(ifd0_len: int, blobs0_len: int, sub_len: int, blobs1_len: int) -> bytes:
        ifd0_at = 8
        blobs0_at = ifd0_at + ifd0_len
        sub_at = blobs0_at + blobs0_len
        blobs1_at = sub_at + sub_len
        preview_at = blobs1_at + blobs1_len
        raw_at = preview_at + len(preview_jpeg)
        ifd0_entries: list[tuple[int, int, object]] = [
            (254, long_, 1),
            (256, long_, width),
            (257, long_, height),
            (258, short, (8, 8, 8)),
            (259, short, 7),
            (262, short, 6),
            (271, ascii_, b"Thumbcache\x00"),
            (272, ascii_, b"Generated DNG\x00"),
            (273, long_, preview_at),
            (274, short, orientation),
            (277, short, 3),
            (278, long_, height),
            (279, long_, len(preview_jpeg)),
            (330, long_, sub_at),
            (50706, byte, (1, 4, 0, 0)),
            (50708, ascii_, b"Thumbcache Generated DNG\x00"),
        ]
        sub_entries: list[tuple[int, int, object]] = [
            (254, long_, 0),
            (256, long_, raw_w),
            (257, long_, raw_h),
            (258, short, 16),
            (259, short, 1),
            (262, short, 32803),
            (273, long_, raw_at),
            (277, short, 1),
            (278, long_, raw_h),
            (279, long_, len(cfa)),
            (33421, short, (2, 2)),
            (33422, byte, (0, 1, 1, 2)),
        ]
        ifd0, blobs0 = ifd(ifd0_entries, ifd0_at, blobs0_at)
        sub, blobs1 = ifd(sub_entries, sub_at, blobs1_at)
        if (len(ifd0), len(blobs0), len(sub), len(blobs1)) != (
            ifd0_len,
            blobs0_len,
            sub_len,
            blobs1_len,
        ):
            return layout(len(ifd0), len(blobs0), len(sub), len(blobs1))
        header = b"II*\x00" + struct.pack("<I", ifd0_at)
        return header + ifd0 + blobs0 + sub + blobs1 + preview_jpeg + cfa

    return layout(0, 0, 0, 0)


def tiff_bytes(
    width: int, height: int, tags: dict[int, tuple[int, tuple[int, ...]]], strip: bytes
) -> bytes:
    """A one-strip little-endian TIFF with ``tags`` ({tag: (type, values)}) and pixel ``strip``.

    For layouts Pillow cannot write (12-bit packed samples, signed 16-bit grey); the
    geometry and strip tags are added here.
    """
    import struct

    entries = {
        256: (4, (width,)),
        257: (4, (height,)),
        259: (3, (1,)),
        262: (3, (1,)),
        278: (4, (height,)),
        279: (4, (len(strip),)),
        **tags,
    }
    entries[273] = (4, (0,))  # placeholder, fixed below
    ifd_at = 8
    ifd_len = 2 + 12 * len(entries) + 4
    blobs = b""
    blob_at = ifd_at + ifd_len
    body = b""
    packed = {3: "H", 4: "I"}
    strip_at = blob_at + sum(
        len(struct.pack("<" + packed[k] * len(v), *v))
        for k, v in entries.values()
        if len(struct.pack("<" + packed[k] * len(v), *v)) > 4
    )
    entries[273] = (4, (strip_at,))
    for tag in sorted(entries):
        kind, values = entries[tag]
        raw = struct.pack("<" + packed[kind] * len(values), *values)
        if len(raw) <= 4:
            field = raw.ljust(4, b"\x00")
        else:
            field = struct.pack("<I", blob_at + len(blobs))
            blobs += raw
        body += struct.pack("<HHI", tag, kind, len(values)) + field
    ifd = struct.pack("<H", len(entries)) + body + struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", ifd_at) + ifd + blobs + strip


def png16_bytes(values: np.ndarray) -> bytes:
    """A 16-bit PNG of an (H, W) grey or (H, W, 3) RGB uint16 array (Pillow writes neither
    16-bit RGB nor, for every mode, 16-bit grey)."""
    import struct
    import zlib

    height, width = values.shape[:2]
    colour_type = 2 if values.ndim == 3 else 0
    rows = values.astype(">u2").reshape(height, -1).tobytes()
    stride = len(rows) // height
    raw = b"".join(b"\x00" + rows[i * stride : (i + 1) * stride] for i in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
