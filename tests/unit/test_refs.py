"""Source references and their safety rules."""

import pytest
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
        "a\\b.jpg",
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
    with pytest.raises(UnsafeSource):
        check_entry_name(name)
