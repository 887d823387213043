"""Issue 10: generated and broken ZIP/CBZ structures through the real scan and render steps.

Given a CBZ of generated entries (duplicate names, nested folders, ``..`` and absolute names,
``#`` and ``%``, legacy cp437 names, hidden and non-image entries) some of them broken
(encrypted flag, unknown compression method, corrupt deflate data, a size that lies), beside a
sound photo, when the collection is scanned and rendered, then no step raises, every entry
with an image name is an item with an outcome (or the whole archive fails with a reason when
its directory cannot be read), every failure has a class and a reason, the sound entries and
the photo beside the archive are rendered. Examples are derandomized.
"""

from __future__ import annotations

import io
import posixpath
import zipfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.harness import Run, error_of, fresh_root, outcome_problems, run_collection
from tests.fuzz.seeds import seed_images
from tests.fuzz.zips import Entry, build_zip
from tests.pipeline_helpers import make_runtime

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,  # hang detection is the harness's bound, never a flaky per-example clock
    max_examples=100,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
JPEG, PNG = seed_images()[0].data, seed_images()[2].data
ARCHIVE = "book.cbz"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

SAFE_NAMES = (
    "001.jpg", "002.png", "pages/003.jpg", "pages/004.jpg", "a/b/c/005.png",
    "#6.jpg", "100%.jpg", "ch 1/page 7.jpg", "caf\u00e9.jpg", "\U0001f4f7.png",
)  # fmt: skip
UNSAFE_NAMES = ("../escape.jpg", "/abs.jpg", "C:\\win.jpg", "a\\b.jpg", "a/../b.jpg", "./c.jpg")
OTHER_NAMES = (".hidden.jpg", "pages/.thumbs/x.jpg", "readme.txt", "ComicInfo.xml", "noext")
LEGACY = (b"caf\x82.jpg", b"\x8e\x99\x9a.png", b"ma\xa4ana.jpg")  # cp437: é, ÄÖÜ, ñ

contents = st.sampled_from((JPEG, PNG, JPEG, PNG, b"", b"\x00garbage" * 9))
breakage = st.one_of(
    st.just({}),
    st.just({}),
    st.just({"encrypted": True}),
    st.sampled_from((99, 97, 6, 20)).map(lambda m: {"method": m}),
    st.sampled_from((0, 1, 2**31)).map(lambda n: {"lying_size": n}),
    st.just({"corrupt": True}),
)


@st.composite
def entries(draw: st.DrawFn) -> Entry:
    """One entry: a name (safe, unsafe, other, or legacy bytes), content and breakage."""
    kind = draw(st.sampled_from(("safe", "safe", "safe", "unsafe", "other", "legacy")))
    legacy = None
    if kind == "legacy":
        legacy = draw(st.sampled_from(LEGACY))
        name = "x" * (len(legacy) - 4) + legacy[-4:].decode()
    else:
        name = draw(
            st.sampled_from({"safe": SAFE_NAMES, "unsafe": UNSAFE_NAMES}.get(kind, OTHER_NAMES))
        )
    return Entry(
        name=name,
        data=draw(contents),
        deflate=draw(st.booleans()),
        legacy_name=legacy,
        **draw(breakage),
    )


archives = st.lists(entries(), min_size=1, max_size=6)


def _image_named(name: str) -> bool:
    parts = name.split("/")
    hidden = any(p.startswith(".") and p not in (".", "..") for p in parts)
    return not hidden and posixpath.splitext(name)[1].lower() in IMAGE_SUFFIXES


def _readable(data: bytes) -> bool:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            zf.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return False
    return True


def check(run: Run, built: list[Entry], data: bytes) -> list[str]:
    """The invariants of one example."""
    problems = [*run.findings, *outcome_problems(run)]
    items = run.by_source()
    control = items.get("photo.jpg")
    if control is None or control["outcome"] != "completed":
        problems.append(f"the photo beside the archive was not rendered: {control}")
    ours = [i for s, i in items.items() if s.startswith(ARCHIVE)]
    if not _readable(data):
        if not any(i["outcome"] == "failed" for i in ours):
            problems.append("an unreadable archive left no failed item with a reason")
        return problems
    names = {e.name if e.legacy_name is None else e.legacy_name.decode("cp437") for e in built}
    wanted = {n for n in names if _image_named(n)}
    if len(ours) < len(wanted):
        problems.append(
            f"{len(wanted)} image entries {sorted(wanted)} became {len(ours)} items "
            f"{sorted(i['source'] for i in ours)}"
        )
    counts = {n: sum(1 for e in built if e.name == n) for n in names}
    for entry in built:
        if not (entry.sound and entry.name in SAFE_NAMES and entry.data in (JPEG, PNG)):
            continue
        if counts[entry.name] > 1 or entry.legacy_name is not None:
            continue  # which of two same-named entries is rendered is a design choice
        item = items.get(f"{ARCHIVE}#{entry.name}")
        if item is None:
            problems.append(f"sound entry {entry.name!r} is not recorded under its own name")
        elif item["outcome"] != "completed":
            problems.append(f"sound entry {entry.name!r} ended {item['outcome']}: {error_of(item)}")
    return problems


@pytest.fixture
def runtime(tmp_path, mongo_url, db_name):
    return make_runtime(tmp_path, mongo_url, db_name)


def _run(runtime, tmp_path, built: list[Entry]) -> list[str]:
    root = fresh_root(tmp_path / "collections", "zips")
    data = build_zip(built)
    (root / ARCHIVE).write_bytes(data)
    (root / "photo.jpg").write_bytes(JPEG)
    return check(run_collection(runtime, root), built, data)


# Structures real and hostile archives have, each its own case (each trigger reported alone).
BROKEN = {
    "duplicate names": [Entry("001.jpg", JPEG), Entry("001.jpg", PNG), Entry("002.jpg", JPEG)],
    "encrypted entry": [Entry("001.jpg", JPEG, encrypted=True), Entry("002.jpg", JPEG)],
    "unknown method": [Entry("001.jpg", JPEG, method=99), Entry("002.jpg", JPEG)],
    "corrupt deflate": [Entry("001.jpg", JPEG, corrupt=True), Entry("002.jpg", JPEG)],
    "lying size": [Entry("001.jpg", JPEG, lying_size=1), Entry("002.jpg", JPEG)],
    "legacy cp437 name": [Entry("xxxx.jpg", JPEG, legacy_name=b"caf\x82.jpg")],
    "unsafe names": [Entry(n, JPEG) for n in UNSAFE_NAMES] + [Entry("002.jpg", JPEG)],
}


@pytest.mark.parametrize("built", BROKEN.values(), ids=BROKEN.keys())
def test_broken_archive_structures(runtime, tmp_path, built):
    problems = _run(runtime, tmp_path, built)
    assert not problems, "\n".join(problems)


@FUZZ
@given(built=archives)
def test_generated_archives_each_entry_ends_with_an_outcome(runtime, tmp_path, built):
    problems = _run(runtime, tmp_path, built)
    assert not problems, "\n".join(problems)
