"""Files the reference decoder reads fully that thumbcache fails **on purpose**, each explained.

A decodable file that fails is a bug unless it is listed here with the failure class it is
expected to have and one line saying why that is the right outcome. Patterns are shell-style,
matched against the file's path in the corpus (``pillow/...``, ``pi-heif/...``,
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
