"""Files the reference decoder reads fully that thumbcache fails **on purpose**, each explained.

A decodable file that fails is a bug unless it is listed here with the failure class it is
expected to have and one line saying why that is the right outcome. An entry with no classes
names a file the reference opens that is not an image candidate by design (docs/FORMATS.md:
candidates have an image extension or a recognised signature), so it may be absent. Patterns
are shell-style, matched against the file's path in the corpus (``pillow/...``, ``pi-heif/...``,
``pngsuite/...``). Keep this table short and honest: a failure listed here is never reported.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Expectation:
    """A pattern of corpus paths, the failure classes that are right for it, and why."""

    pattern: str
    classes: tuple[str, ...]
    why: str


EXPECTATIONS: tuple[Expectation, ...] = (
    # A design decision for the lead to confirm: the reference "decodes" EPS only where
    # Ghostscript is installed (it is on this machine), by running the file as a PostScript
    # program. Refusing that for untrusted collections is the safe default.
    Expectation(
        "*.eps",
        ("UnsupportedFormat",),
        "EPS is a PostScript program: rendering it runs Ghostscript on untrusted input",
    ),
)


_NO_SIGNATURE = "no image extension, and its format has no signature thumbcache can sniff"
_STUB = "Pillow opens only the header of this scientific format (a stub plugin); no one renders it"
NOT_CANDIDATES: tuple[Expectation, ...] = tuple(
    Expectation(pattern, (), why)
    for pattern, why in (
        ("*pillow/fli_overrun.bin", "a fuzzer's FLI animation named .bin: " + _NO_SIGNATURE),
        ("*pillow/fli_overrun2.bin", "a fuzzer's FLI animation named .bin: " + _NO_SIGNATURE),
        ("*pillow/pcx_overrun.bin", "a fuzzer's PCX named .bin: " + _NO_SIGNATURE),
        ("*pillow/pcx_overrun2.bin", "a fuzzer's PCX named .bin: " + _NO_SIGNATURE),
        ("*pillow/raw_negative_stride.bin", "McIdas area data named .bin: " + _NO_SIGNATURE),
        ("*pillow/cmx3g8_wv_1998.260_0745_mcidas.ara", "McIdas area data: " + _NO_SIGNATURE),
        ("*pillow/bw_gradient.imt", "IM Tools data: " + _NO_SIGNATURE),
        ("*pillow/dilation4.lut", "a morphology table that happens to parse as TGA"),
        ("*pillow/hopper.p7", "an XV thumbnail cache file: " + _NO_SIGNATURE),
        ("*pillow/hopper.spider", "SPIDER (electron microscopy) data: " + _NO_SIGNATURE),
        ("*pillow/hdf5.h5", _STUB),
        ("*pillow/WAlaska.wind.7days.grb", _STUB),
        ("*pillow/gfs.t06z.rassda.tm00.bufr_d", _STUB),
    )
)


def expectation_for(path: str, expectations: Iterable[Expectation]) -> Expectation | None:
    """The first expectation whose pattern matches ``path``, if any."""
    for expectation in expectations:
        if fnmatch.fnmatchcase(path, expectation.pattern):
            return expectation
    return None


def unused(expectations: Iterable[Expectation], paths: Iterable[str]) -> list[Expectation]:
    """Expectations that match no failed path: stale entries to remove."""
    failed = list(paths)
    return [e for e in expectations if not any(fnmatch.fnmatchcase(p, e.pattern) for p in failed)]
