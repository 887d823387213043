"""Walking a collection: order, resume, links, special files, archives and their limits."""

import os
import zipfile
import zlib

from thumbcache.settings import LimitSettings
from thumbcache.sources import archives
from thumbcache.sources.refs import parse_ref
from thumbcache.sources.walk import walk

from tests.imagegen import jpeg_bytes, make_collection
from tests.zipgen import DEFLATE64, ENCRYPTED, patch_entry, rename_entry_bytes, write_zip

LIMITS = LimitSettings()


def sources(root, after=(), limits=LIMITS):
    return [str(c.ref) for c in walk(str(root), limits, after)]


def test_walk_finds_images_by_extension_or_magic_and_ignores_the_rest(tmp_path):
    expected = make_collection(tmp_path / "c")
    found = {str(c.ref): c for c in walk(str(tmp_path / "c"), LIMITS)}
    assert set(found) == set(expected)
    assert found["book.cbz#../escape.jpg"].error.error_class == "UnsafeSource"
    assert found["book.cbz#pages/000.jpg"].fingerprint.crc is not None


def test_walk_order_is_the_key_order_and_resumes_strictly_after_any_key(tmp_path):
    make_collection(tmp_path / "c")
    refs = [c.ref for c in walk(str(tmp_path / "c"), LIMITS)]
    assert [r.key for r in refs] == sorted(r.key for r in refs)
    for cut in range(len(refs)):
        assert sources(tmp_path / "c", refs[cut].key) == [str(r) for r in refs[cut + 1 :]]


def test_links_leaving_the_root_loops_and_fifos_are_skipped(tmp_path):
    root = tmp_path / "c"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(jpeg_bytes(20, 20))
    (root / "a.jpg").write_bytes(jpeg_bytes(20, 20))
    os.symlink(outside, root / "out_dir")
    os.symlink(outside / "secret.jpg", root / "out.jpg")
    os.symlink(root, root / "loop")
    os.symlink(root / "a.jpg", root / "inside_link.jpg")
    os.mkfifo(root / "fifo.jpg")
    assert sources(root) == ["a.jpg", "inside_link.jpg"]


def test_archive_over_the_entry_limit_fails_as_a_whole(tmp_path):
    root = tmp_path / "c"
    root.mkdir()
    with zipfile.ZipFile(root / "many.zip", "w") as zf:
        for i in range(20):
            zf.writestr(f"{i}.jpg", b"x")
    (candidate,) = walk(str(root), LimitSettings(archive_max_entries=10))
    assert str(candidate.ref) == "many.zip"
    assert candidate.error.error_class == "ArchiveLimitExceeded"
    assert "20 entries" in str(candidate.error)


def test_zip_bomb_entries_fail_on_their_ratio(tmp_path):
    root = tmp_path / "c"
    root.mkdir()
    with zipfile.ZipFile(root / "bomb.zip", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.jpg", b"\xff\xd8\xff" + b"\x00" * 5_000_000)
    (candidate,) = walk(str(root), LIMITS)
    assert candidate.error.error_class == "ArchiveLimitExceeded"
    assert "ratio" in str(candidate.error)


def test_a_corrupt_archive_is_one_failure(tmp_path):
    root = tmp_path / "c"
    root.mkdir()
    (root / "bad.cbz").write_bytes(b"PK\x03\x04 not really")
    (candidate,) = walk(str(root), LIMITS)
    assert candidate.error.error_class == "CorruptArchive"


# --------------------------------------------------------------------------------------------
# Whatever a real disk holds: each source gets a reference, one failure stays one failure


def _assert_resumes_after_every_key(root, refs, **kwargs):
    assert [r.key for r in refs] == sorted(r.key for r in refs)
    for cut in range(len(refs)):
        rest = [str(c.ref) for c in walk(str(root), LIMITS, refs[cut].key, **kwargs)]
        assert rest == [str(r) for r in refs[cut + 1 :]], refs[cut]


def test_names_that_are_not_utf8_get_references_that_can_be_stored_and_opened(tmp_path):
    root = tmp_path / "c"
    root.mkdir()
    raw_root = os.fsencode(root)
    os.mkdir(os.path.join(raw_root, b"d\xff"))
    for name in (b"caf\xe9.jpg", b"d\xff/a.jpg", b"caf%41.jpg", b"plain.jpg"):
        with open(os.path.join(raw_root, name), "wb") as fh:
            fh.write(jpeg_bytes(20, 20))
    refs = [c.ref for c in walk(str(root), LIMITS)]
    assert sorted(map(str, refs)) == ["caf%2541.jpg", "caf%E9.jpg", "d%FF/a.jpg", "plain.jpg"]
    for ref in refs:
        str(ref).encode("utf-8")  # storable
        assert os.path.isfile(os.path.join(root, parse_ref(str(ref)).path))
    _assert_resumes_after_every_key(root, refs)


def test_a_file_named_like_an_entry_of_the_archive_beside_it_is_its_own_source(tmp_path):
    root = tmp_path / "c"
    root.mkdir()
    write_zip(root / "photo.zip", [("1.jpg", jpeg_bytes(30, 20))])
    (root / "photo.zip#1.jpg").write_bytes(jpeg_bytes(20, 30))
    found = {str(c.ref): c for c in walk(str(root), LIMITS)}
    assert set(found) == {"photo.zip#1.jpg", "photo.zip%231.jpg"}
    assert found["photo.zip#1.jpg"].fingerprint.crc is not None
    assert found["photo.zip%231.jpg"].fingerprint.crc is None  # the plain file
    _assert_resumes_after_every_key(root, [c.ref for c in walk(str(root), LIMITS)])


def test_every_entry_of_a_duplicated_name_is_walked_under_its_own_reference(tmp_path):
    root = tmp_path / "c"
    root.mkdir()
    pages = [jpeg_bytes(20, 20, seed=i) for i in range(4)]
    write_zip(
        root / "dup.cbz",
        [("p.jpg", pages[0]), ("q.jpg", pages[1]), ("p.jpg", pages[2]), ("p.jpg", pages[3])],
    )
    found = {str(c.ref): c for c in walk(str(root), LIMITS)}
    assert {k: c.fingerprint.crc for k, c in found.items()} == {
        "dup.cbz#p.jpg": zlib.crc32(pages[0]),
        "dup.cbz#q.jpg": zlib.crc32(pages[1]),
        "dup.cbz#p.jpg#2": zlib.crc32(pages[2]),
        "dup.cbz#p.jpg#3": zlib.crc32(pages[3]),
    }
    _assert_resumes_after_every_key(root, [c.ref for c in walk(str(root), LIMITS)])


def test_entries_that_cannot_be_read_fail_alone_with_a_clear_class(tmp_path):
    root = tmp_path / "c"
    root.mkdir()
    page = jpeg_bytes(20, 20)
    entries = [("enc.jpg", page), ("good.jpg", page), ("m9.jpg", page), ("notes", page)]
    write_zip(root / "odd.cbz", entries, zipfile.ZIP_DEFLATED)
    patch_entry(root / "odd.cbz", 0, add_flags=ENCRYPTED)
    patch_entry(root / "odd.cbz", 2, method=DEFLATE64)
    patch_entry(root / "odd.cbz", 3, add_flags=ENCRYPTED)  # cannot be sniffed: not an image
    found = {str(c.ref): c.error for c in walk(str(root), LIMITS)}
    assert set(found) == {"odd.cbz#enc.jpg", "odd.cbz#good.jpg", "odd.cbz#m9.jpg"}
    assert found["odd.cbz#good.jpg"] is None
    assert found["odd.cbz#enc.jpg"].error_class == "UnsupportedArchiveEntry"
    assert "encrypted" in str(found["odd.cbz#enc.jpg"])
    assert found["odd.cbz#m9.jpg"].error_class == "UnsupportedArchiveEntry"
    assert "compression method 9 not supported" in str(found["odd.cbz#m9.jpg"])


def test_an_archive_that_zipfile_cannot_even_list_fails_alone(tmp_path):
    root = tmp_path / "c"
    root.mkdir()
    write_zip(root / "bad.cbz", [("x.jpg", jpeg_bytes(20, 20))])
    rename_entry_bytes(root / "bad.cbz", 0, b"\xff.jpg", utf8_flag=True)  # flagged UTF-8, is not
    (root / "z.jpg").write_bytes(jpeg_bytes(20, 20))
    found = {str(c.ref): c.error for c in walk(str(root), LIMITS)}
    assert set(found) == {"bad.cbz", "z.jpg"}
    assert found["bad.cbz"].error_class == "CorruptArchive"
    assert found["z.jpg"] is None


def test_an_unforeseen_error_in_one_archive_fails_that_archive_with_its_class(
    tmp_path, monkeypatch
):
    root = tmp_path / "c"
    root.mkdir()
    for name in ("a.cbz", "b.cbz"):
        write_zip(root / name, [("1.jpg", jpeg_bytes(20, 20))])
    parse = archives.parse_directory
    faulty = os.stat(root / "a.cbz").st_ino

    def parse_with_a_bug(fh, limits):
        if os.fstat(fh.fileno()).st_ino == faulty:
            raise ValueError("something nobody foresaw")
        return parse(fh, limits)

    monkeypatch.setattr(archives, "parse_directory", parse_with_a_bug)
    archives.DIRECTORIES.clear()
    found = {str(c.ref): c.error for c in walk(str(root), LIMITS)}
    assert set(found) == {"a.cbz", "b.cbz#1.jpg"}
    assert found["a.cbz"].error_class == "ValueError"
    assert "something nobody foresaw" in str(found["a.cbz"])
    assert found["b.cbz#1.jpg"] is None


def _identity(path):
    st = os.stat(path)
    return (st.st_dev, st.st_ino)


def test_the_project_s_own_folders_are_never_walked_not_even_through_a_link(tmp_path):
    root = tmp_path / "c"
    for folder in ("data/store", "cache/thumbnails", "photos"):
        (root / folder).mkdir(parents=True)
    (root / "data" / "store" / "a.jpg").write_bytes(jpeg_bytes(20, 20))
    (root / "cache" / "thumbnails" / "t.jpg").write_bytes(jpeg_bytes(20, 20))
    (root / "photos" / "p.jpg").write_bytes(jpeg_bytes(20, 20))
    os.symlink(root / "cache", root / "alias")
    skip = frozenset({_identity(root / "data"), _identity(root / "cache")})
    assert sources(root) == [
        "alias/thumbnails/t.jpg",
        "cache/thumbnails/t.jpg",
        "data/store/a.jpg",
        "photos/p.jpg",
    ]
    assert [str(c.ref) for c in walk(str(root), LIMITS, skip=skip)] == ["photos/p.jpg"]
