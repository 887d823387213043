"""Walking a collection: order, resume, links, special files, archives and their limits."""

import os
import zipfile

from thumbcache.settings import LimitSettings
from thumbcache.sources.walk import walk

from tests.imagegen import jpeg_bytes, make_collection

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
