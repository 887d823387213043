"""Reading one source by reference: odd names, duplicated entries, entries that cannot be read."""

import os

import pytest
from thumbcache.errors import (
    CorruptArchive,
    SourceMissing,
    UnsafeSource,
    UnsupportedArchiveEntry,
)
from thumbcache.settings import LimitSettings
from thumbcache.sources import reader
from thumbcache.sources.reader import read_source
from thumbcache.sources.refs import SourceRef, parse_ref
from thumbcache.sources.walk import walk

from tests.imagegen import jpeg_bytes
from tests.zipgen import rename_entry_bytes, unreadable_entries_zip, write_zip

LIMITS = LimitSettings()


def test_a_source_whose_name_is_not_utf8_is_read_from_its_real_bytes(tmp_path):
    data = jpeg_bytes(20, 20)
    with open(os.path.join(os.fsencode(tmp_path), b"caf\xe9.jpg"), "wb") as fh:
        fh.write(data)
    assert read_source(str(tmp_path), parse_ref("caf%E9.jpg"), LIMITS)[0] == data


def test_each_entry_of_a_duplicated_name_is_read_by_its_number(tmp_path):
    write_zip(tmp_path / "d.cbz", [("p.jpg", b"first"), ("p.jpg", b"second"), ("q", b"q")])
    assert read_source(str(tmp_path), parse_ref("d.cbz#p.jpg"), LIMITS)[0] == b"first"
    assert read_source(str(tmp_path), parse_ref("d.cbz#p.jpg#2"), LIMITS)[0] == b"second"
    with pytest.raises(SourceMissing):
        read_source(str(tmp_path), parse_ref("d.cbz#p.jpg#3"), LIMITS)


def test_entries_that_cannot_be_read_fail_with_a_class_that_says_why(tmp_path):
    page = jpeg_bytes(64, 64)
    unreadable_entries_zip(tmp_path / "odd.cbz", page)
    with pytest.raises(UnsupportedArchiveEntry, match="encrypted"):
        read_source(str(tmp_path), SourceRef("odd.cbz", "enc.jpg"), LIMITS)
    with pytest.raises(UnsupportedArchiveEntry, match="compression method 9 not supported"):
        read_source(str(tmp_path), SourceRef("odd.cbz", "m9.jpg"), LIMITS)
    with pytest.raises(CorruptArchive, match=r"damaged data in odd\.cbz#broken\.jpg"):
        read_source(str(tmp_path), SourceRef("odd.cbz", "broken.jpg"), LIMITS)
    assert read_source(str(tmp_path), SourceRef("odd.cbz", "ok.jpg"), LIMITS)[0] == page


def test_a_chunk_reader_opens_an_archive_once_for_its_consecutive_entries(tmp_path, monkeypatch):
    # Given two archives and a plain file, read in walk order by one chunk reader
    for name in ("a.cbz", "b.cbz"):
        write_zip(tmp_path / name, [(f"{i}.jpg", f"{name}{i}".encode()) for i in range(3)])
    (tmp_path / "c.jpg").write_bytes(b"plain")
    opened = []
    real_open = reader.open_regular_file

    def counting_open(path, beneath=None):
        opened.append(os.path.basename(path))
        return real_open(path, beneath)

    monkeypatch.setattr(reader, "open_regular_file", counting_open)
    refs = [SourceRef(a, f"{i}.jpg") for a in ("a.cbz", "b.cbz") for i in range(3)]
    refs += [SourceRef("c.jpg"), SourceRef("a.cbz", "0.jpg")]

    # When each source is read
    with reader.ChunkReader(str(tmp_path), LIMITS) as chunk:
        got = []
        for ref in refs:
            with chunk.open(ref) as (fh, _fingerprint):
                got.append(fh.read())

    # Then each read its own bytes, and an archive was opened again only when the walk left it
    expected = [f"{a}{i}".encode() for a in ("a.cbz", "b.cbz") for i in range(3)]
    assert got == [*expected, b"plain", b"a.cbz0"]
    assert opened == ["a.cbz", "b.cbz", "c.jpg", "a.cbz"]


def test_a_chunk_reader_does_not_follow_an_archive_swapped_for_a_link_out(tmp_path):
    # Given an archive being read by a chunk reader, swapped for a link out of the root
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    write_zip(root / "a.cbz", [("1.jpg", b"inside 1"), ("2.jpg", b"inside 2")])
    write_zip(outside / "evil.cbz", [("1.jpg", b"outside 1"), ("2.jpg", b"outside 2")])
    with reader.ChunkReader(str(root), LIMITS) as chunk:
        with chunk.open(SourceRef("a.cbz", "1.jpg")) as (fh, _):
            assert fh.read() == b"inside 1"
        os.unlink(root / "a.cbz")
        os.symlink(outside / "evil.cbz", root / "a.cbz")
        # When the next entry is read
        with chunk.open(SourceRef("a.cbz", "2.jpg")) as (fh, _):
            # Then it comes from the archive that was checked, not from outside
            assert fh.read() == b"inside 2"
    # And a reader of a new chunk refuses the link
    with (
        reader.ChunkReader(str(root), LIMITS) as chunk,
        pytest.raises(UnsafeSource),
        chunk.open(SourceRef("a.cbz", "2.jpg")),
    ):
        pass


def test_an_entry_name_in_a_legacy_code_page_is_walked_and_read_under_one_reference(tmp_path):
    # Given an entry whose name is Latin-1 bytes without the UTF-8 flag (zipfile reads cp437)
    page = jpeg_bytes(20, 20)
    write_zip(tmp_path / "old.zip", [("cafe.jpg", page)])
    rename_entry_bytes(tmp_path / "old.zip", 0, b"caf\xe9.jpg", utf8_flag=False)
    # When it is walked, then read by the reference the walk gave
    (candidate,) = walk(str(tmp_path), LIMITS)
    text = str(candidate.ref)
    # Then the reference is the cp437 reading, storable, and reads the entry's bytes
    assert text == "old.zip#caf\u0398.jpg"  # 0xE9 is Θ in cp437
    text.encode("utf-8")
    assert read_source(str(tmp_path), parse_ref(text), LIMITS)[0] == page
