"""Archives read in linear time: one directory parse per archive, shared by threads, bounded."""

import os
import threading
import zipfile

import pytest
from thumbcache.settings import LimitSettings
from thumbcache.sources import archives
from thumbcache.sources.archives import DirectoryCache, open_entry
from thumbcache.sources.reader import open_regular_file, read_source
from thumbcache.sources.refs import SourceRef

from tests.imagegen import jpeg_bytes
from tests.zipgen import write_zip

LIMITS = LimitSettings()


@pytest.fixture(autouse=True)
def fresh_cache():
    archives.DIRECTORIES.clear()
    yield
    archives.DIRECTORIES.clear()


def parses_during(action):
    before = archives.DIRECTORIES.parses
    action()
    return archives.DIRECTORIES.parses - before


@pytest.mark.parametrize(
    "method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]
)
def test_an_entry_opened_from_the_parsed_directory_reads_what_zipfile_reads(tmp_path, method):
    pages = [("a.jpg", jpeg_bytes(40, 30, seed=1)), ("b/c.jpg", jpeg_bytes(30, 40, seed=2))]
    write_zip(tmp_path / "x.zip", pages, method)
    with open_regular_file(str(tmp_path / "x.zip")) as (fh, st):
        directory = DirectoryCache().get(fh, st, LIMITS)
        for name, data in pages:
            with open_entry(fh, directory.find(name)) as stream:
                assert stream.read() == data


def test_reading_every_entry_of_an_archive_parses_its_directory_once(tmp_path):
    # Given an archive of 300 pages
    pages = [(f"p{i:03d}.jpg", b"\xff\xd8\xff" + bytes([i % 256]) * 50) for i in range(300)]
    write_zip(tmp_path / "book.cbz", pages)
    got = {}

    # When every page is read as a render reads it
    def read_all():
        for name, _data in pages:
            got[name] = read_source(str(tmp_path), SourceRef("book.cbz", name), LIMITS)[0]

    # Then the directory was parsed once, and every page has its own bytes
    assert parses_during(read_all) == 1
    assert got == dict(pages)


def test_an_archive_changed_in_place_is_parsed_again(tmp_path):
    path = tmp_path / "book.cbz"
    write_zip(path, [("p.jpg", b"\xff\xd8\xffold")])
    ref = SourceRef("book.cbz", "p.jpg")
    assert read_source(str(tmp_path), ref, LIMITS)[0] == b"\xff\xd8\xffold"
    inode = os.stat(path).st_ino
    with open(path, "r+b") as fh:  # same inode, new content and size
        fh.truncate(0)
        with zipfile.ZipFile(fh, "w") as zf:
            zf.writestr("p.jpg", b"\xff\xd8\xffnew content")
    assert os.stat(path).st_ino == inode
    assert parses_during(lambda: read_source(str(tmp_path), ref, LIMITS)) == 1
    assert read_source(str(tmp_path), ref, LIMITS)[0] == b"\xff\xd8\xffnew content"


def _get(cache, path):
    with open_regular_file(str(path)) as (fh, st):
        return cache.get(fh, st, LIMITS)


def test_the_cache_keeps_a_few_archives_and_a_bounded_number_of_entries(tmp_path):
    cache = DirectoryCache(max_archives=2, max_entries=50)
    for name, count in (("a", 20), ("b", 20), ("c", 20), ("big", 80), ("d", 10)):
        write_zip(tmp_path / f"{name}.zip", [(f"{i}.jpg", b"x") for i in range(count)])
    for name in ("a", "b", "c"):
        _get(cache, tmp_path / f"{name}.zip")
    assert len(cache) == 2  # "a" went first
    _get(cache, tmp_path / "b.zip")  # a hit
    assert cache.parses == 3
    _get(cache, tmp_path / "big.zip")  # over the entry budget alone: kept alone
    assert len(cache) == 1
    _get(cache, tmp_path / "big.zip")
    assert cache.parses == 4
    _get(cache, tmp_path / "d.zip")  # 80 + 10 over 50: the big one goes
    assert len(cache) == 1
    _get(cache, tmp_path / "b.zip")
    assert cache.parses == 6 and len(cache) == 2


def test_threads_asking_for_one_archive_at_once_parse_it_once(tmp_path):
    pages = [(f"p{i:04d}.jpg", b"\xff\xd8\xff" + str(i).encode()) for i in range(5000)]
    write_zip(tmp_path / "book.cbz", pages)
    start = threading.Barrier(8)
    results: dict[int, bytes] = {}
    errors: list[BaseException] = []

    def reader(n: int) -> None:
        try:
            start.wait()
            name, _ = pages[n * 600]
            results[n] = read_source(str(tmp_path), SourceRef("book.cbz", name), LIMITS)[0]
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(8)]

    def read_at_once():
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)

    assert parses_during(read_at_once) == 1
    assert not errors
    assert results == {n: pages[n * 600][1] for n in range(8)}
