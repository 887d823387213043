"""Issue 10: a real-world corpus through ``thumbcache run``, as a user runs it.

About 1,150 files that real decoders test themselves with (Pillow's ``Tests/images`` with its
fuzzer crash and timeout files, pi-heif's HEIF/AVIF samples, PngSuite), every 8th of them again
inside a CBZ, fetched from PyPI at test time (README.md here: versions, sha256, licences).
Given that corpus, when ``thumbcache run CORPUS --json`` runs as a child process, then: the job
ends; no file that the reference decoder opens, or whose extension names an image format, is
missing from the collection; every failure has a class and a reason; nothing the reference
decodes fully fails outside ``expectations.py``; and the renditions decode, fit their boxes and
show the picture the reference shows. ``python -m tests.realworld.report`` prints the figures.
"""

from __future__ import annotations

import pytest

from tests.realworld.survey import Survey, survey
from tests.realworld.verdict import DROPPED, NO_OUTCOME, WRONGLY_FAILED, Judged

pytestmark = pytest.mark.integration
SHOWN = 40  # offending files listed in a failure message (the report lists them all)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Survey:
    """One run over the corpus, shared by the checks below."""
    return survey(tmp_path_factory.mktemp("corpus-run") / "data")


def _listing(judged: list[Judged]) -> str:
    lines = [f"{j.path} [{j.reference.format or '-'}] {j.error or ''}" for j in judged[:SHOWN]]
    more = f"\n... and {len(judged) - SHOWN} more" if len(judged) > SHOWN else ""
    return "\n".join(lines) + more


def test_the_job_ends_and_counts_every_recorded_image(corpus: Survey) -> None:
    run = corpus.run
    assert run.ended, f"thumbcache run did not end within {run.seconds:.0f} s (stopped)"
    assert run.summary is not None, "no --json summary line"
    assert run.job is not None and run.job["status"] == "done", run.job
    settled = run.job["completed"] + run.job["skipped"] + run.job["failed"]
    assert run.job["total"] == settled == len(run.images), run.job


def test_the_exit_code_says_whether_images_failed(corpus: Survey) -> None:
    """A script must tell a clean run from one with failures (issue 10: 0 only when all is
    well; the non-zero code is documented by the CLI)."""
    run = corpus.run
    assert run.ended and run.job is not None
    if run.job["failed"]:
        assert run.returncode != 0, f"{run.job['failed']} images failed, yet exit 0"
    else:
        assert run.returncode == 0


def test_decoder_noise_goes_to_the_log_not_raw_to_the_terminal(corpus: Survey) -> None:
    raw = corpus.run.raw_stderr
    assert not raw, f"{len(raw)} raw lines on standard error, e.g. {sorted(set(raw))[:SHOWN]}"


def test_no_file_is_dropped(corpus: Survey) -> None:
    dropped = corpus.figures.having(DROPPED)
    assert not dropped, (
        f"{len(dropped)} files the reference opens or whose extension names an image format "
        f"are missing from the collection:\n{_listing(dropped)}"
    )


def test_every_image_has_an_outcome_and_every_failure_a_class_and_reason(
    corpus: Survey,
) -> None:
    f = corpus.figures
    assert not f.having(NO_OUTCOME), _listing(f.having(NO_OUTCOME))
    assert not f.unreasoned, f.unreasoned[:SHOWN]
    assert not f.unknown_sources, f.unknown_sources[:SHOWN]


def test_nothing_the_reference_decodes_fails_outside_the_expectations(corpus: Survey) -> None:
    wrong = corpus.figures.having(WRONGLY_FAILED)
    assert not wrong, (
        f"{len(wrong)} files decode fully in the reference but failed, and no entry of "
        f"expectations.py explains it:\n{_listing(wrong)}"
    )


def test_renditions_decode_and_fit_their_boxes(corpus: Survey) -> None:
    assert corpus.figures.count("rendered") > 0
    assert not corpus.rendition_problems, corpus.rendition_problems[:SHOWN]


def test_renditions_show_the_picture_the_reference_shows(corpus: Survey) -> None:
    assert not corpus.figures.misoriented, corpus.figures.misoriented[:SHOWN]
    assert not corpus.looks_different, corpus.looks_different[:SHOWN]
