"""The corpus verdicts: how each file is judged from the reference and what was recorded."""

from __future__ import annotations

from typing import Any

from tests.realworld.expectations import Expectation, expectation_for, unused
from tests.realworld.reference import Reference
from tests.realworld.verdict import (
    DROPPED,
    EXPECTED_FAILURE,
    FAILED,
    IGNORED,
    NO_OUTCOME,
    NOT_A_CANDIDATE,
    RENDERED,
    WRONGLY_FAILED,
    figures,
    has_reason,
    judge,
    misoriented,
)

KNOWN = frozenset({".png", ".tga", ".heic"})
RENDITION = {"path": "/x", "width": 300, "height": 200, "bytes": 1}
DONE = {"error": None, "thumbnail": RENDITION, "cache": RENDITION}
BY_DESIGN = (Expectation("big/*", ("ImageTooLarge",), "over the pixel limit by design"),)


def decodable(path: str, shown: tuple[int, int] = (30, 20)) -> Reference:
    return Reference(path, True, True, "PNG", *shown, None, *shown)


def unreadable(path: str, opens: bool = False) -> Reference:
    return Reference(path, opens, False, error="cannot identify image file")


def failed(error: str) -> dict[str, Any]:
    return {"error": error, "thumbnail": None, "cache": None}


def test_a_decodable_file_missing_from_the_collection_is_dropped():
    assert judge(decodable("a.tga"), None, KNOWN, ()).verdict == DROPPED


def test_a_file_with_an_image_extension_must_appear_even_if_the_reference_cannot_open_it():
    assert judge(unreadable("a.heic"), None, KNOWN, ()).verdict == DROPPED


def test_a_file_the_reference_opens_may_be_absent_only_when_an_expectation_says_why():
    why = Expectation("odd/*.bin", (), "no image extension, no signature")
    judged = judge(decodable("odd/a.bin"), None, KNOWN, (why,))
    assert (judged.verdict, judged.expectation) == (NOT_A_CANDIDATE, why)
    assert judge(decodable("other/a.bin"), None, KNOWN, (why,)).verdict == DROPPED


def test_a_file_nobody_reads_as_an_image_may_be_left_out():
    assert judge(unreadable("notes.txt"), None, KNOWN, ()).verdict == IGNORED


def test_a_decodable_file_that_failed_is_wrong_unless_an_expectation_explains_it():
    error = "ImageTooLarge: 20000x20000 is over the limit"
    assert judge(decodable("a.png"), failed(error), KNOWN, BY_DESIGN).verdict == WRONGLY_FAILED
    by_design = judge(decodable("big/a.png"), failed(error), KNOWN, BY_DESIGN)
    assert by_design.verdict == EXPECTED_FAILURE
    assert by_design.expectation is BY_DESIGN[0]


def test_an_expectation_covers_only_its_failure_classes():
    other = failed("CorruptImage: cannot decode")
    assert judge(decodable("big/a.png"), other, KNOWN, BY_DESIGN).verdict == WRONGLY_FAILED


def test_a_file_the_reference_cannot_decode_may_fail():
    line = failed("CorruptImage: truncated")
    assert judge(unreadable("a.png", opens=True), line, KNOWN, ()).verdict == FAILED


def test_recorded_without_renditions_or_error_has_no_outcome():
    line = {"error": None, "thumbnail": RENDITION, "cache": None}
    assert judge(decodable("a.png"), line, KNOWN, ()).verdict == NO_OUTCOME
    assert judge(decodable("a.png"), DONE, KNOWN, ()).verdict == RENDERED


def test_a_failure_needs_a_class_and_a_message():
    assert has_reason("CorruptImage: truncated")
    assert not has_reason("CorruptImage:")
    assert not has_reason("something went wrong")
    assert not has_reason(": no class")


def test_portrait_rendered_from_a_landscape_view_is_misoriented_square_ones_are_not_judged():
    portrait = {**DONE, "cache": {**RENDITION, "width": 200, "height": 300}}
    assert misoriented(decodable("a.png", (300, 200)), portrait)
    assert not misoriented(decodable("a.png", (200, 300)), portrait)
    assert not misoriented(decodable("a.png", (300, 290)), portrait)


def test_figures_count_each_verdict_and_failures_by_class():
    references = {
        "a.png": decodable("a.png"),
        "b.tga": decodable("b.tga"),
        "c.png": unreadable("c.png", opens=True),
        "d.txt": unreadable("d.txt"),
    }
    images = {"a.png": DONE, "c.png": failed("CorruptImage: truncated"), "zz.png": DONE}

    f = figures(references, images, KNOWN, ())

    assert (f.files, f.reference_opens, f.reference_decodable, f.must_appear) == (4, 3, 2, 3)
    assert f.recorded == 2 and f.unknown_sources == ["zz.png"]
    assert [j.path for j in f.having(DROPPED)] == ["b.tga"]
    assert f.count(RENDERED) == 1 and f.count(FAILED) == 1 and f.count(IGNORED) == 1
    assert dict(f.failures_by_class) == {"CorruptImage": 1}


def test_expectations_match_by_pattern_and_stale_ones_are_reported():
    assert expectation_for("big/x/y.png", BY_DESIGN) is BY_DESIGN[0]
    assert expectation_for("small/y.png", BY_DESIGN) is None
    assert unused(BY_DESIGN, ["small/y.png"]) == list(BY_DESIGN)
    assert unused(BY_DESIGN, ["big/y.png"]) == []
