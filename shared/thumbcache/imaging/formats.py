"""Which files are images: renderable formats, formats seen but not renderable, magic bytes.

Pure data and byte tests (no Pillow import), shared by the walk (is this file a candidate?)
and the header reader (which Pillow plugins may open it, and why one that cannot is refused).
A file that looks like an image is always a candidate: one this install cannot render fails
with :class:`~thumbcache.errors.UnsupportedFormat` saying why, it is never left out.
"""

from __future__ import annotations

import zlib

# Pillow format name -> the format id thumbcache records. Every raster format Pillow reads,
# except EPS (its plugin runs Ghostscript: never on untrusted input), WMF/EMF (vector, and a
# stub outside Windows), BUFR/GRIB/HDF5 (stubs: scientific data without a decoder), MPEG (no
# decoder) and IPTC (metadata). HEIF and JXL come from optional plugins (see plugins.py).
PIL_FORMATS: dict[str, str] = {
    "JPEG": "jpeg",
    "MPO": "jpeg",
    "PNG": "png",
    "WEBP": "webp",
    "GIF": "gif",
    "BMP": "bmp",
    "DIB": "bmp",
    "TIFF": "tiff",
    "AVIF": "avif",
    "HEIF": "heif",
    "JXL": "jxl",
    "JPEG2000": "jpeg2000",
    "TGA": "tga",
    "PPM": "ppm",
    "PSD": "psd",
    "DDS": "dds",
    "ICO": "ico",
    "CUR": "ico",
    "ICNS": "icns",
    "SGI": "sgi",
    "BLP": "blp",
    "QOI": "qoi",
    "PCX": "pcx",
    "DCX": "pcx",
    "XBM": "xbm",
    "XPM": "xpm",
    "IM": "im",
    "MSP": "msp",
    "SUN": "sun",
    "FITS": "fits",
    "FLI": "fli",
    "FTEX": "ftex",
    "GBR": "gbr",
    "PCD": "pcd",
    "PIXAR": "pixar",
    "SPIDER": "spider",
    "MCIDAS": "mcidas",
    "IMT": "imt",
    "XVTHUMB": "xvthumb",
}

# Pillow formats that may open a file whose signature sniff() recognised: only those, so a
# damaged file is reported as what it is, not claimed by a plugin without a signature (TGA).
PIL_FORMATS_OF: dict[str, tuple[str, ...]] = {
    "jpeg": ("JPEG",),
    "png": ("PNG",),
    "gif": ("GIF",),
    "bmp": ("BMP",),
    "tiff": ("TIFF",),
    "webp": ("WEBP",),
    "avif": ("AVIF",),
    "heif": ("HEIF",),
    "jxl": ("JXL",),
    "jpeg2000": ("JPEG2000",),
    "ppm": ("PPM",),
    "psd": ("PSD",),
    "dds": ("DDS",),
    "icns": ("ICNS",),
    "qoi": ("QOI",),
    "blp": ("BLP",),
    "sgi": ("SGI",),
    "sun": ("SUN",),
    "fits": ("FITS",),
}

# Extensions of formats rendered when their reader is installed (Pillow's, or an extra's).
RENDERABLE_EXTENSIONS = frozenset(
    {
        ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".webp", ".gif", ".bmp", ".dib",
        ".tif", ".tiff", ".avif", ".avifs", ".jp2", ".j2k", ".jpc", ".jpf", ".jpx", ".j2c",
        ".tga", ".icb", ".vda", ".vst", ".pbm", ".pgm", ".ppm", ".pnm", ".pfm", ".psd", ".dds",
        ".ico", ".cur", ".icns", ".sgi", ".rgb", ".rgba", ".bw", ".blp", ".qoi", ".pcx", ".dcx",
        ".xbm", ".xpm", ".im", ".msp", ".ras", ".fit", ".fits", ".fli", ".flc", ".ftc", ".ftu",
        ".gbr", ".pcd", ".pxr",
    }
)  # fmt: skip
# Formats of an optional extra: the extension, and the extra that renders it.
HEIF_EXTENSIONS = frozenset({".heic", ".heif", ".heics", ".heifs", ".hif"})
JXL_EXTENSIONS = frozenset({".jxl"})
RAW_EXTENSIONS = frozenset(
    {
        ".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".orf", ".rw2",
        ".raf", ".pef", ".srw", ".x3f", ".3fr", ".fff", ".iiq", ".mrw", ".mos", ".erf", ".kdc",
        ".dcr", ".rwl",
    }
)  # fmt: skip
# Image formats never rendered here, with the reason a failure states.
NEVER_RENDERED: dict[str, str] = {
    ".svg": "SVG is a vector format; thumbcache renders raster images only",
    ".svgz": "SVG is a vector format; thumbcache renders raster images only",
    ".eps": "EPS needs Ghostscript, which thumbcache never runs on untrusted input",
    ".epsf": "EPS needs Ghostscript, which thumbcache never runs on untrusted input",
    ".epsi": "EPS needs Ghostscript, which thumbcache never runs on untrusted input",
    ".wmf": "WMF is a vector format; thumbcache renders raster images only",
    ".emf": "EMF is a vector format; thumbcache renders raster images only",
    ".psb": "PSB (large Photoshop document) has no reader here",
    ".exr": "OpenEXR has no reader here",
    ".hdr": "Radiance HDR has no reader here",
}

# Every extension that makes a file a candidate (what the walk records).
IMAGE_EXTENSIONS = (
    RENDERABLE_EXTENSIONS
    | HEIF_EXTENSIONS
    | JXL_EXTENSIONS
    | RAW_EXTENSIONS
    | frozenset(NEVER_RENDERED)
)

# ISO-BMFF (HEIF family) brands at bytes 8-12, after the "ftyp" box type at 4-8.
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_PREFIX_MAGIC = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"BM", "bmp"),
    (b"II*\x00\x10\x00\x00\x00CR", "raw"),  # Canon CR2: a TIFF, so before the TIFF magic
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),  # BigTIFF
    (b"MM\x00+", "tiff"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "jpeg2000"),
    (b"\xff\x4f\xff\x51", "jpeg2000"),  # a bare codestream
    (b"8BPS\x00\x01", "psd"),
    (b"8BPS\x00\x02", "psb"),
    (b"DDS ", "dds"),
    (b"icns", "icns"),
    (b"qoif", "qoi"),
    (b"BLP1", "blp"),
    (b"BLP2", "blp"),
    (b"\x59\xa6\x6a\x95", "sun"),
    (b"SIMPLE  =", "fits"),
    (b"\xff\x0a", "jxl"),  # a bare JPEG XL codestream
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "jxl"),
    (b"FUJIFILMCCD-RAW", "raw"),
    (b"IIRO", "raw"),  # Olympus ORF
    (b"IIRS", "raw"),
    (b"MMOR", "raw"),
    (b"IIU\x00", "raw"),  # Panasonic RW2
    (b"\xc5\xd0\xd3\xc6", "eps"),  # DOS EPS binary header
    (b"<svg", "svg"),
)
_PNM = frozenset(b"123456fF")
_SPACE = frozenset(b" \t\r\n")


def sniff(head: bytes) -> str | None:
    """The image format that ``head`` (the first 16 bytes or more of a file) announces, or None.

    Formats without a signature of their own (TGA, XBM, PCX...) are found by extension only.
    """
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp":
        return _bmff_kind(head)
    if len(head) >= 3 and head[0] == ord("P") and head[1] in _PNM and head[2] in _SPACE:
        return "ppm"
    if (
        head[:2] == b"\x01\xda"
        and head[2:3] in (b"\x00", b"\x01")
        and head[3:4] in (b"\x01", b"\x02")
    ):
        return "sgi"  # magic, RLE flag, bytes per channel: four fixed bytes, not two
    for magic, fmt in _PREFIX_MAGIC:
        if head.startswith(magic):
            return fmt
    return None


def _bmff_kind(head: bytes) -> str | None:
    """AVIF, HEIF or CR3 from an ISO-BMFF ``ftyp`` box (compatible brands too, when present)."""
    size = int.from_bytes(head[:4], "big")
    brands = {head[8:12]} | {head[i : i + 4] for i in range(16, min(size, len(head)) - 3, 4)}
    if brands & _AVIF_BRANDS:
        return "avif"
    if brands & _HEIF_BRANDS:
        return "heif"
    if b"crx " in brands:
        return "raw"  # Canon CR3
    return None  # other ISO-BMFF files are videos


def sniff_text(head: bytes) -> str | None:
    """``svg`` or ``eps`` when a longer head (a few KB, gzip or not) is one, else None."""
    first_line = head[:128].split(b"\n", 1)[0]
    if first_line.startswith(b"%!PS-Adobe-") and b"EPSF" in first_line:
        return "eps"
    if head[:2] == b"\x1f\x8b":  # .svgz
        try:
            head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 4096)
        except zlib.error:
            return None
    text = head[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith((b"<?xml", b"<!DOCTYPE svg", b"<svg", b"<!--")) and b"<svg" in text:
        return "svg"
    return None


def never_rendered_reason(fmt: str) -> str | None:
    """Why format ``fmt`` (a sniffed id or an extension) is never rendered here, or None."""
    return NEVER_RENDERED.get(fmt if fmt.startswith(".") else "." + fmt)
