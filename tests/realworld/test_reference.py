"""The reference decoder tells opening from decoding, in child processes, and caches."""

from __future__ import annotations

from tests.imagegen import jpeg_bytes, png_bytes
from tests.realworld import reference


def test_opens_and_loads_are_told_apart(tmp_path):
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    (root / "sound.png").write_bytes(png_bytes(40, 30))
    whole = jpeg_bytes(64, 48, orientation=6)
    (root / "sub" / "turned.jpg").write_bytes(whole)
    big = jpeg_bytes(400, 300)
    (root / "truncated.jpg").write_bytes(big[: len(big) * 2 // 3])
    (root / "notes.txt").write_text("not an image")
    paths = ["notes.txt", "sound.png", "sub/turned.jpg", "truncated.jpg"]

    verdicts = reference.classify(root, paths, cache=tmp_path)

    assert set(verdicts) == set(paths)
    assert (verdicts["sound.png"].opens, verdicts["sound.png"].loads) == (True, True)
    turned = verdicts["sub/turned.jpg"]
    assert (turned.width, turned.height) == (64, 48)
    assert (turned.shown_width, turned.shown_height) == (48, 64)  # EXIF orientation 6
    assert (verdicts["truncated.jpg"].opens, verdicts["truncated.jpg"].loads) == (True, False)
    assert verdicts["truncated.jpg"].error
    notes = verdicts["notes.txt"]
    assert not notes.opens and notes.error is not None
    assert str(root) not in notes.error  # errors name the corpus path only
    assert reference.classify(root, paths, cache=tmp_path) == verdicts  # from the cache


def test_known_extensions_include_pillow_formats_and_plugin_formats():
    known = reference.known_image_extensions()
    assert {".jpg", ".png", ".tga", ".jp2", ".psd", ".heic", ".avif", ".dng"} <= known
    assert ".txt" not in known and ".mpg" not in known
