"""The fuzzers make what they claim: broken archives read as broken, mutants differ, seeds repeat.

Without these, a fuzz test could pass because its generator quietly made only sound files.
"""

from __future__ import annotations

import io
import random
import struct
import zipfile
import zlib

import pytest
from PIL import Image

from tests.fuzz import mutate
from tests.fuzz.seeds import png_memory_bomb, seed_images
from tests.fuzz.test_images import write_mutants
from tests.fuzz.zips import Entry, build_zip

JPEG = seed_images()[0].data


def _read(data: bytes, name: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return zf.read(zf.getinfo(name))


def test_a_sound_entry_reads_back_as_written():
    assert _read(build_zip([Entry("a/b.jpg", JPEG)]), "a/b.jpg") == JPEG


@pytest.mark.parametrize(
    ("entry", "raised"),
    [
        (Entry("x.jpg", JPEG, encrypted=True), RuntimeError),
        (Entry("x.jpg", JPEG, method=99), NotImplementedError),
        (Entry("x.jpg", JPEG, corrupt=True), zlib.error),
        (Entry("x.jpg", JPEG, lying_size=1), zipfile.BadZipFile),
    ],
    ids=["encrypted", "unknown method", "corrupt deflate", "lying size"],
)
def test_each_breakage_reads_as_broken(entry, raised):
    with pytest.raises(raised):
        _read(build_zip([entry, Entry("ok.jpg", JPEG)]), "x.jpg")


def test_the_other_entries_of_a_broken_archive_stay_readable():
    data = build_zip([Entry("x.jpg", JPEG, method=99), Entry("ok.jpg", JPEG)])
    assert _read(data, "ok.jpg") == JPEG


def test_duplicate_names_are_both_in_the_directory():
    data = build_zip([Entry("p.jpg", JPEG), Entry("p.jpg", b"other")])
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert [i.filename for i in zf.infolist()] == ["p.jpg", "p.jpg"]


def test_a_legacy_name_is_read_as_cp437_without_the_utf8_flag():
    data = build_zip([Entry("xxxx.jpg", JPEG, legacy_name=b"caf\x82.jpg")])
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        (info,) = zf.infolist()
    assert info.filename == "caf\u00e9.jpg" and not info.flag_bits & 0x800


def test_mutants_are_reproducible_and_mostly_not_the_seed(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    made = write_mutants(first, seed=5, per_image=6)
    write_mutants(second, seed=5, per_image=6)
    assert {p.name: p.read_bytes() for p in first.iterdir()} == {
        p.name: p.read_bytes() for p in second.iterdir()
    }
    seeds = {image.data for image in seed_images()}
    mutants = [first / n for n, how in made.items() if how != "sound"]
    changed = sum(1 for p in mutants if p.read_bytes() not in seeds)
    assert changed >= 0.9 * len(mutants)


def test_lying_sizes_are_what_a_decoder_reads():
    rng = random.Random(1)
    png = next(s.data for s in seed_images() if s.format == "png")
    with Image.open(io.BytesIO(mutate.png_lying_size(png, rng))) as im:
        assert im.size in {*mutate.LYING_SIZES, (2**31 - 1, 1), (30_000, 3_000)}
    jpeg = mutate.jpeg_lying_size(JPEG, rng)
    with Image.open(io.BytesIO(jpeg)) as im:
        assert im.size != Image.open(io.BytesIO(JPEG)).size


def test_repeated_scans_multiply_the_scans():
    progressive = next(s.data for s in seed_images() if s.name == "progressive")
    bomb = mutate.jpeg_repeat_scans(progressive, random.Random(2))
    before = len(mutate.segments(progressive, b"\xff\xda"))
    assert len(mutate.segments(bomb, b"\xff\xda")) >= before + 100


def test_the_memory_bomb_is_small_on_disk_and_at_the_pixel_limit():
    data = png_memory_bomb()
    assert len(data) < 600_000
    assert struct.unpack(">II", data[16:24]) == (10_000, 10_000)
