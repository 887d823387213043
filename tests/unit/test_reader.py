"""Reading one source by reference: odd names, duplicated entries, entries that cannot be read."""

import os
import zipfile

import pytest
from thumbcache.errors import CorruptArchive, SourceMissing, UnsupportedArchiveEntry
from thumbcache.settings import LimitSettings
from thumbcache.sources.reader import read_source
from thumbcache.sources.refs import SourceRef, parse_ref

from tests.imagegen import jpeg_bytes
from tests.zipgen import DEFLATE64, ENCRYPTED, break_deflate_stream, patch_entry, write_zip

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
    write_zip(
        tmp_path / "odd.cbz",
        [("enc.jpg", page), ("m9.jpg", page), ("broken.jpg", page), ("ok.jpg", page)],
        zipfile.ZIP_DEFLATED,
    )
    patch_entry(tmp_path / "odd.cbz", 0, add_flags=ENCRYPTED)
    patch_entry(tmp_path / "odd.cbz", 1, method=DEFLATE64)
    break_deflate_stream(tmp_path / "odd.cbz", 2)
    with pytest.raises(UnsupportedArchiveEntry, match="encrypted"):
        read_source(str(tmp_path), SourceRef("odd.cbz", "enc.jpg"), LIMITS)
    with pytest.raises(UnsupportedArchiveEntry, match="compression method 9 not supported"):
        read_source(str(tmp_path), SourceRef("odd.cbz", "m9.jpg"), LIMITS)
    with pytest.raises(CorruptArchive, match=r"damaged data in odd\.cbz#broken\.jpg"):
        read_source(str(tmp_path), SourceRef("odd.cbz", "broken.jpg"), LIMITS)
    assert read_source(str(tmp_path), SourceRef("odd.cbz", "ok.jpg"), LIMITS)[0] == page
