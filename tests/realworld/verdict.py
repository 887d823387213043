"""Judge each corpus file against the reference decoder and the expectations (pure logic).

A file **must appear** in the collection when the reference opens it or its extension names an
image format. It is **dropped** when it must appear and does not, unless an expectation with no
failure classes says it is not a candidate by design; **wrongly failed** when the reference
decodes it fully and it failed without a matching expectation.
"""

from __future__ import annotations

import posixpath
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.realworld.expectations import Expectation, expectation_for
from tests.realworld.reference import Reference

RENDERED = "rendered"
FAILED = "failed"  # failed, and the reference cannot decode it either
EXPECTED_FAILURE = "expected failure"
WRONGLY_FAILED = "wrongly failed"
DROPPED = "dropped"
NO_OUTCOME = "no outcome"  # recorded, but neither rendered nor failed
IGNORED = "ignored"  # not an image by any account, and not recorded: right
NOT_A_CANDIDATE = "not a candidate"  # the reference opens it, an expectation says why not us


@dataclass(frozen=True)
class Judged:
    """One corpus file's verdict."""

    path: str
    verdict: str
    reference: Reference
    error: str | None = None  # the failure as recorded: "Class: message"
    expectation: Expectation | None = None


@dataclass
class Figures:
    """The corpus figures the report prints and the test asserts on."""

    files: int = 0
    reference_opens: int = 0
    reference_decodable: int = 0
    must_appear: int = 0
    recorded: int = 0
    judged: list[Judged] = field(default_factory=list)
    failures_by_class: Counter[str] = field(default_factory=Counter)
    unreasoned: list[str] = field(default_factory=list)  # failed without a class or message
    unknown_sources: list[str] = field(default_factory=list)  # recorded, not a corpus file
    misoriented: list[str] = field(default_factory=list)  # turned unlike the reference shows it

    def having(self, verdict: str) -> list[Judged]:
        """The files with one verdict."""
        return [j for j in self.judged if j.verdict == verdict]

    def count(self, verdict: str) -> int:
        """How many files have one verdict."""
        return sum(1 for j in self.judged if j.verdict == verdict)


def error_class(error: str) -> str:
    """The class part of a recorded ``"Class: message"`` failure."""
    return error.split(":", 1)[0].strip()


def has_reason(error: str) -> bool:
    """A failure names its class and says why, both non-empty."""
    klass, _, message = error.partition(":")
    return bool(klass.strip()) and klass.strip().isidentifier() and bool(message.strip())


def must_appear(reference: Reference, known_extensions: frozenset[str]) -> bool:
    """The reference opens it, or its extension names an image format."""
    extension = posixpath.splitext(reference.path)[1].lower()
    return reference.opens or extension in known_extensions


def judge(
    reference: Reference,
    line: Mapping[str, Any] | None,
    known_extensions: frozenset[str],
    expectations: Iterable[Expectation],
) -> Judged:
    """The verdict on one file, from the reference and the image line recorded for it."""
    path = reference.path
    if line is None:
        if not must_appear(reference, known_extensions):
            return Judged(path, IGNORED, reference)
        expectation = expectation_for(path, expectations)
        if expectation is not None and not expectation.classes:
            return Judged(path, NOT_A_CANDIDATE, reference, expectation=expectation)
        return Judged(path, DROPPED, reference)
    error = line.get("error")
    if error is None:
        rendered = line.get("thumbnail") is not None and line.get("cache") is not None
        return Judged(path, RENDERED if rendered else NO_OUTCOME, reference)
    expectation = expectation_for(path, expectations)
    if expectation is not None and error_class(error) in expectation.classes:
        return Judged(path, EXPECTED_FAILURE, reference, error, expectation)
    verdict = WRONGLY_FAILED if reference.loads else FAILED
    return Judged(path, verdict, reference, error)


def figures(
    references: Mapping[str, Reference],
    images: Mapping[str, Mapping[str, Any]],
    known_extensions: frozenset[str],
    expectations: Iterable[Expectation],
) -> Figures:
    """Judge every corpus file; count what the report shows."""
    expectations = tuple(expectations)
    out = Figures(files=len(references))
    for path, reference in sorted(references.items()):
        out.reference_opens += reference.opens
        out.reference_decodable += reference.loads
        out.must_appear += must_appear(reference, known_extensions)
        out.judged.append(judge(reference, images.get(path), known_extensions, expectations))
        line = images.get(path)
        if line is not None and misoriented(reference, line):
            out.misoriented.append(f"{path}: shown {_shown(reference)}, rendered {_cache(line)}")
    out.recorded = sum(1 for source in images if source in references)
    out.unknown_sources = sorted(source for source in images if source not in references)
    for source, line in sorted(images.items()):
        error = line.get("error")
        if error is None:
            continue
        out.failures_by_class[error_class(error)] += 1
        if not has_reason(error):
            out.unreasoned.append(f"{source}: {error!r}")
    return out


# Portrait or landscape is compared only past this aspect ratio, clear of rounding and of
# formats whose chosen frame or size may differ slightly from the reference's.
CLEARLY_NOT_SQUARE = 1.1


def misoriented(reference: Reference, line: Mapping[str, Any]) -> bool:
    """Rendered portrait where the reference shows landscape, or the other way round."""
    cache = line.get("cache")
    w, h = reference.shown_width, reference.shown_height
    if cache is None or not reference.loads or not w or not h:
        return False
    if max(w, h) < CLEARLY_NOT_SQUARE * min(w, h):
        return False
    return (w > h) != bool(cache["width"] > cache["height"])


def _shown(reference: Reference) -> str:
    return f"{reference.shown_width}x{reference.shown_height}"


def _cache(line: Mapping[str, Any]) -> str:
    return f"{line['cache']['width']}x{line['cache']['height']}"


def by_kind(judged: Iterable[Judged]) -> Counter[str]:
    """How many of ``judged`` per format (the reference's name, else the extension)."""
    return Counter(
        j.reference.format or (posixpath.splitext(j.path)[1].lower() or "(none)") for j in judged
    )
