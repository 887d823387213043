"""Issue 10: generated file names (bytes) through the real scan and render steps.

Given a folder of sound images under generated names (invalid UTF-8, Latin-1, ``#``, ``%``,
spaces, backslashes, control characters, archive look-alikes, 255-byte parts), in nested
folders with generated names too, when the collection is scanned and rendered, then no step
raises, every file is one item of its own (no two share an id) and is rendered, except a
name that says ZIP/CBZ (it is opened as an archive and fails with a reason). Plain names are
their own reference. Examples are derandomized: the same names every run.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.harness import Run, error_of, fresh_root, outcome_problems, run_collection
from tests.fuzz.names import IMAGE_SUFFIXES, file_names, is_plain
from tests.fuzz.seeds import seed_images
from tests.pipeline_helpers import make_runtime

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,  # hang detection is the harness's bound, never a flaky per-example clock
    max_examples=100,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
JPEG = seed_images()[0].data
PNG = seed_images()[2].data
ARCHIVE_SUFFIXES = (b".zip", b".cbz")

layouts = st.lists(
    st.tuples(
        st.one_of(st.none(), file_names(suffixes=(b"",))),  # an optional folder
        file_names(suffixes=(*IMAGE_SUFFIXES, b"")),
    ),
    min_size=1,
    max_size=4,
    unique_by=lambda pair: (pair[0], pair[1].lower()),
)


def write_layout(root: Path, layout: list[tuple[bytes | None, bytes]]) -> list[bytes]:
    """Write each (folder, name) as a sound image; returns the relative paths (bytes)."""
    written = []
    for folder, name in layout:
        directory = os.path.join(os.fsencode(root), folder) if folder else os.fsencode(root)
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, name)
        if os.path.isdir(path):
            continue  # the name of a folder drawn for another file
        with open(path, "wb") as fh:
            fh.write(PNG if name.lower().endswith(b".png") else JPEG)
        written.append(os.path.relpath(path, os.fsencode(root)))
    return written


def check(run: Run, written: list[bytes]) -> list[str]:
    """The invariants of one example."""
    problems = run.findings + outcome_problems(run)
    items = run.by_source()
    if len(items) != len(written):
        problems.append(f"{len(written)} files {written!r} became {len(items)} items {[*items]!r}")
    for relative in written:
        if is_plain(relative):
            source = relative.decode()
            if source not in items:
                problems.append(f"{source!r} is not recorded under its own name")
    for item in items.values():
        looks_archived = any(
            part.lower().endswith(ARCHIVE_SUFFIXES)
            for part in os.fsencode(item["source"]).split(b"/")
        )
        if item["outcome"] != "completed" and not looks_archived:
            problems.append(f"{item['source']!r} ended {item['outcome']}: {error_of(item)}")
    return problems


@pytest.fixture
def runtime(tmp_path, mongo_url, db_name):
    return make_runtime(tmp_path, mongo_url, db_name)


# Names seen on real disks, each its own case so that each trigger is reported on its own.
AWKWARD = {
    "latin-1 file name": [(None, b"caf\xe9.jpg")],
    "latin-1 folder name": [(b"r\xe9sum\xe9", b"p.png")],
    "invalid utf-8 (encoded surrogate)": [(None, b"\xed\xa0\x80.jpg")],
    "hash and percent": [(None, b"photo #2 100%.jpg")],
    "backslash": [(None, b"a\\b.jpg")],
    "control characters": [(None, b"tab\there\nnewline.jpg")],
    "right-to-left override": [(None, b"\xe2\x80\xaegpj.png")],
    "255-byte name": [(None, b"L" * 251 + b".jpg")],
}


@pytest.mark.parametrize("layout", AWKWARD.values(), ids=AWKWARD.keys())
def test_awkward_names_from_real_disks(runtime, tmp_path, layout):
    root = fresh_root(tmp_path / "collections", "awkward")
    written = write_layout(root, layout)

    run = run_collection(runtime, root)

    problems = check(run, written)
    assert not problems, "\n".join(problems)


def test_a_file_named_like_an_archive_entry_is_not_that_entry(runtime, tmp_path):
    """``photo.zip#1.jpg`` on disk beside ``photo.zip`` holding ``1.jpg``: two images."""
    root = fresh_root(tmp_path / "collections", "lookalike")
    written = write_layout(root, [(None, b"photo.zip#1.jpg")])
    with zipfile.ZipFile(root / "photo.zip", "w") as zf:
        zf.writestr("1.jpg", PNG)  # other pixels than the file's: a mix-up would show
    written.append(b"photo.zip#1.jpg (entry)")

    run = run_collection(runtime, root)

    problems = check(run, written)
    assert not problems, "\n".join(problems)


@FUZZ
@given(layout=layouts)
def test_every_generated_file_name_is_its_own_item_and_rendered(runtime, tmp_path, layout):
    root = fresh_root(tmp_path / "collections", "names")
    written = write_layout(root, layout)

    run = run_collection(runtime, root)

    problems = check(run, written)
    assert not problems, "\n".join(problems)
