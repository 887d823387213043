"""Source references and their safety rules."""

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from thumbcache.errors import UnsafeSource
from thumbcache.sources.refs import SourceRef, check_entry_name, parse_ref


def test_plain_and_archive_references_round_trip():
    assert parse_ref("a/b.jpg") == SourceRef("a/b.jpg")
    ref = parse_ref("comics/book.cbz#pages/001.jpg")
    assert ref == SourceRef("comics/book.cbz", "pages/001.jpg")
    assert str(ref) == "comics/book.cbz#pages/001.jpg"


def test_hash_in_a_folder_name_is_not_an_entry_separator():
    assert parse_ref("issue #3/a.jpg") == SourceRef("issue #3/a.jpg")
    assert parse_ref("a#b/book.ZIP#x.png") == SourceRef("a#b/book.ZIP", "x.png")


def test_keys_order_entries_after_their_archive_and_before_the_next_sibling():
    keys = sorted(
        [SourceRef("b.jpg").key, SourceRef("a.cbz", "p/1.jpg").key, SourceRef("a.cbz", "0.jpg").key]
    )
    assert keys == [("a.cbz", "0.jpg"), ("a.cbz", "p", "1.jpg"), ("b.jpg",)]


@pytest.mark.parametrize(
    "text",
    [
        "/etc/passwd",
        "../x.jpg",
        "a/../../x.jpg",
        "a//b.jpg",
        "./a.jpg",
        "a\x00.jpg",
        "",
    ],
)
def test_paths_that_could_leave_the_root_are_refused(text):
    with pytest.raises(UnsafeSource):
        parse_ref(text)


@pytest.mark.parametrize(
    "name", ["../evil.jpg", "/abs.jpg", "C:\\win.jpg", "c:/x.jpg", "a/../../b.jpg"]
)
def test_hostile_entry_names_are_refused(name):
    # (in an archive a backslash is a Windows separator; in a file name it is a character:
    # test_a_backslash_in_a_file_name_is_an_ordinary_character)
    with pytest.raises(UnsafeSource):
        check_entry_name(name)


# --------------------------------------------------------------------------------------------
# Escaping: every name on a real disk gets one reference that can be stored, parsed and opened


@pytest.mark.parametrize(
    "text",
    [
        "a/b.jpg",
        "issue #3/a.jpg",
        "100%.jpg",
        "50% off/a%b.jpg",
        "comics/book.cbz#pages/001.jpg",
        "book.cbz#Chapter #2/p#1.jpg",
        "book.cbz#100%/a.jpg",
        "café/été.jpg",
    ],
)
def test_ordinary_names_keep_their_references(text):
    # existing databases keep their image ids: only names that would be misread change
    assert str(parse_ref(text)) == text


def test_a_name_that_is_not_utf8_gets_a_reversible_escape():
    raw = os.fsdecode(b"caf\xe9/\xff.jpg")  # what os.scandir gives for Latin-1 names
    ref = SourceRef(raw)
    assert str(ref) == "caf%E9/%FF.jpg"
    assert parse_ref(str(ref)) == ref
    assert os.fsencode(parse_ref(str(ref)).path) == b"caf\xe9/\xff.jpg"  # the real bytes


def test_a_file_named_like_an_archive_entry_is_not_that_entry():
    file_ref, entry_ref = SourceRef("photo.zip#1.jpg"), SourceRef("photo.zip", "1.jpg")
    assert str(entry_ref) == "photo.zip#1.jpg"  # unchanged
    assert str(file_ref) == "photo.zip%231.jpg"
    assert parse_ref(str(file_ref)) == file_ref
    assert parse_ref(str(entry_ref)) == entry_ref
    assert file_ref.key != entry_ref.key
    nested = SourceRef("old.ZIP#x/book.cbz", "p.jpg")  # a folder named like an entry
    assert str(nested) == "old.ZIP%23x/book.cbz#p.jpg"
    assert parse_ref(str(nested)) == nested


def test_a_percent_is_escaped_only_where_it_would_read_as_an_escape():
    assert str(SourceRef("a%20b.jpg")) == "a%2520b.jpg"
    assert str(SourceRef("a%zz.jpg")) == "a%zz.jpg"
    assert str(SourceRef("b.cbz", "%41.jpg")) == "b.cbz#%2541.jpg"
    for ref in (SourceRef("a%20b.jpg"), SourceRef("b.cbz", "%41.jpg"), SourceRef("%%4")):
        assert parse_ref(str(ref)) == ref


def test_later_entries_of_a_duplicated_name_are_numbered():
    first, second = SourceRef("b.cbz", "p.jpg"), SourceRef("b.cbz", "p.jpg", 2)
    assert (str(first), str(second)) == ("b.cbz#p.jpg", "b.cbz#p.jpg#2")
    assert parse_ref("b.cbz#p.jpg#2") == second
    real = SourceRef("b.cbz", "p.jpg#2")  # an entry really named so
    assert str(real) == "b.cbz#p.jpg%232"
    assert parse_ref(str(real)) == real
    keys = {first.key, second.key, real.key, SourceRef("b.cbz", "p.jpg/#2").key}
    assert len(keys) == 4


@pytest.mark.parametrize(
    "text",
    [
        "a%41.jpg",  # an escape of a character that is never escaped
        "caf%C3%A9.jpg",  # valid UTF-8 written as escapes: the same file as "café.jpg"
        "x%e9.jpg",  # escapes are upper case
        "a%2Fb.jpg",  # a slash smuggled in
        "b.cbz#p.jpg#1",  # the first entry of a name has no number
        "b.cbz#p.jpg#02",
        "a%00.jpg",  # NUL
        "a/%2E%2E/b.jpg",
    ],
)
def test_references_not_in_their_one_written_form_are_refused(text):
    with pytest.raises(UnsafeSource):
        parse_ref(text)


# Names built from the pieces the escape rules care about, plus arbitrary bytes and text
FS_PIECES = [b"%", b"#", b"4", b"1", b"a", b".zip", b".CBZ", b"\xe9", b"\xc3\xa9", b"\xff"]
ENTRY_PIECES = ["%", "#", "4", "1", "a", ".zip", ".cbz", "\xe9", "\u20ac"]
FS_PIECE = st.sampled_from(FS_PIECES) | st.binary(min_size=1, max_size=3)
FS_NAME = (
    st.lists(FS_PIECE, min_size=1, max_size=6)
    .map(b"".join)
    .filter(lambda b: not set(b"/\x00") & set(b) and b not in (b".", b".."))  # unsafe: out
)
ENTRY_PIECE = st.sampled_from(ENTRY_PIECES) | st.text(min_size=1, max_size=3)
ENTRY_NAME = (
    st.lists(ENTRY_PIECE, min_size=1, max_size=6)
    .map("".join)
    .filter(lambda s: not set("/\\\x00") & set(s) and s not in (".", "..") and s[1:2] != ":")
)


@settings(max_examples=400, deadline=None)
@given(
    path=st.lists(FS_NAME, min_size=1, max_size=3),
    entry=st.none() | st.lists(ENTRY_NAME, min_size=1, max_size=3),
    occurrence=st.integers(1, 12),
)
def test_any_name_round_trips_through_its_reference(path, entry, occurrence):
    # Given any file name bytes (as os gives them) and any archive entry name
    raw_path = "/".join(os.fsdecode(part) for part in path)
    if entry is not None and not raw_path.lower().endswith((".zip", ".cbz")):
        raw_path += ".cbz"
    ref = SourceRef(
        raw_path, None if entry is None else "/".join(entry), occurrence if entry is not None else 1
    )
    # When it is written as a reference
    text = str(ref)
    # Then the reference can be stored (valid UTF-8), is read back as the same source, and
    # its key has one part per path and entry part
    text.encode("utf-8")
    assert parse_ref(text) == ref
    assert os.fsencode(parse_ref(text).path).startswith(b"/".join(path))  # the real bytes
    assert len(ref.key) == len(path) + (0 if entry is None else len(entry))


def test_a_backslash_in_a_file_name_is_an_ordinary_character():
    # Given a POSIX file name holding a backslash (it separates nothing there)
    ref = parse_ref("a\\b.jpg")
    # Then it is one file at the root, its reference unchanged
    assert (ref.path, ref.entry, str(ref)) == ("a\\b.jpg", None, "a\\b.jpg")
