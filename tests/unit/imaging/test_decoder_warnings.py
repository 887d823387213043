"""Decoder warnings reach the log with the source they belong to, never the terminal raw,
from many threads at once; other warnings are left alone."""

from __future__ import annotations

import logging
import struct
import threading
import warnings
from collections.abc import Iterator

import pytest
from imaging_helpers import THUMB, save
from PIL import Image
from thumbcache.errors import CorruptImage
from thumbcache.imaging import image_source, render
from thumbcache.settings import LimitSettings

LIMITS = LimitSettings()


def jpeg_with_damaged_exif(colour: tuple[int, int, int] = (10, 200, 10)) -> bytes:
    """A sound JPEG whose EXIF names a tag lying past its end (Pillow warns, then skips it)."""
    tiff = b"II*\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHII", 0x010E, 2, 100, 4096)
    exif = b"Exif\x00\x00" + tiff + struct.pack("<I", 0)
    return save(Image.new("RGB", (64, 48), colour), "JPEG", exif=exif)


@pytest.fixture
def warnings_shown() -> Iterator[None]:
    """Warnings shown, not raised, as outside pytest (whose filter escalates them to errors)."""
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        yield


@pytest.mark.usefixtures("warnings_shown")
def test_a_decoder_warning_is_logged_with_its_source(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    with caplog.at_level(logging.WARNING, "thumbcache.imaging"), image_source("album/a.jpg"):
        r = render(jpeg_with_damaged_exif(), THUMB, LIMITS)
    assert (r.width, r.height) == (64, 48), "a warning is not a failure"
    records = [rec for rec in caplog.records if rec.name == "thumbcache.imaging"]
    assert records, "the warning must reach the log"
    assert all(rec.getMessage().startswith("album/a.jpg: UserWarning: ") for rec in records)
    assert any("Skipping tag 270" in rec.getMessage() for rec in records)
    assert records[0].source == "album/a.jpg"  # type: ignore[attr-defined]
    assert capsys.readouterr().err == "", "nothing raw on the terminal"


@pytest.mark.usefixtures("warnings_shown")
def test_threads_rendering_at_once_each_get_their_own_source(
    caplog: pytest.LogCaptureFixture,
) -> None:
    barrier = threading.Barrier(4)

    def work(n: int) -> None:
        data = jpeg_with_damaged_exif((n * 40, 0, 0))
        with image_source(f"photo{n}.jpg"):
            barrier.wait()
            for _ in range(5):
                render(data, THUMB, LIMITS)

    with caplog.at_level(logging.WARNING, "thumbcache.imaging"):
        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    sources = [rec.source for rec in caplog.records if rec.name == "thumbcache.imaging"]  # type: ignore[attr-defined]
    for n in range(4):
        # One warning per header read: probe and decode each read it at least once a render.
        assert sources.count(f"photo{n}.jpg") >= 5
    assert None not in sources


@pytest.mark.usefixtures("warnings_shown")
def test_other_warnings_still_go_to_the_previous_hook(caplog: pytest.LogCaptureFixture) -> None:
    shown: list[str] = []
    warnings.showwarning = lambda message, *args, **kwargs: shown.append(str(message))
    render(jpeg_with_damaged_exif(), THUMB, LIMITS)  # installs the hook in front of it
    with caplog.at_level(logging.WARNING, "thumbcache.imaging"):
        warnings.warn("not a decoder's business", UserWarning, stacklevel=1)
    assert "not a decoder's business" not in caplog.text
    assert shown == ["not a decoder's business"]


def test_under_an_error_filter_the_filter_decides() -> None:
    """Under pytest's filter (error), the decoder's warning is raised, not logged: the engine
    reports the image as damaged, with the warning's text."""
    with pytest.raises(CorruptImage, match="Tag data larger than file"), image_source("b.jpg"):
        render(jpeg_with_damaged_exif(), THUMB, LIMITS)
