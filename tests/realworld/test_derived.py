"""Thumbnails derived from cache images (ADR 0007) on the real-world corpus.

Boxes are made small (cache 200x200, thumbnail 50x50) so that most of the corpus is large
enough to derive, and each stage renders alone (``worker.shared_decode`` off), as separately
deployed services do. Given the same corpus run with derivation on and off, then every file ends
the same way with the same reason, derivation was used for many of them, and each derived
thumbnail decodes, has the size the source gives, and shows the same picture.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from thumbcache.bench.metrics import ssim

from tests.realworld import sources
from tests.realworld.runner import RunResult, run_corpus

pytestmark = pytest.mark.integration
SMALL_SEPARATE = {
    "THUMBCACHE_RENDITIONS__CACHE__WIDTH": "200",
    "THUMBCACHE_RENDITIONS__CACHE__HEIGHT": "200",
    "THUMBCACHE_RENDITIONS__THUMBNAIL__WIDTH": "50",
    "THUMBCACHE_RENDITIONS__THUMBNAIL__HEIGHT": "50",
    "THUMBCACHE_WORKER__SHARED_DECODE": "false",
}
# Measured: median 0.962; the lowest, 0.756, is a faint drawing on white (uncompressed_rgb.*)
# where SSIM weighs tiny differences of near-flat areas: the same picture to the eye.
MIN_SSIM = 0.7


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunResult, RunResult]:
    root = sources.materialise()
    base = tmp_path_factory.mktemp("derived")
    derive = "THUMBCACHE_RENDITIONS__THUMBNAIL__DERIVE_FROM"
    derived, direct = (
        run_corpus(root, base / name, 900, {**SMALL_SEPARATE, derive: mode})
        for name, mode in (("derived", "cache"), ("direct", ""))
    )
    assert derived.ended and direct.ended
    return derived, direct


def test_every_file_ends_the_same_way_with_or_without_derivation(runs):
    derived, direct = runs
    assert derived.images.keys() == direct.images.keys()
    differ = [s for s in derived.images if derived.images[s]["error"] != direct.images[s]["error"]]
    assert differ == []
    assert (derived.summary or {})["failed"] == (direct.summary or {})["failed"]


def test_derived_thumbnails_have_the_sources_size_and_picture(runs):
    derived, direct = runs
    made = {
        s: d for s, d in derived.images.items() if (d.get("thumbnail") or {}).get("derived_from")
    }
    assert len(made) > 100, "the corpus should exercise derivation"
    for source, line in made.items():
        mine, theirs = line["thumbnail"], direct.images[source]["thumbnail"]
        assert (mine["width"], mine["height"]) == (theirs["width"], theirs["height"]), source
        a = np.asarray(Image.open(mine["path"]).convert("RGB"))
        b = np.asarray(Image.open(theirs["path"]).convert("RGB"))
        if min(a.shape[:2]) > 10:
            assert ssim(a, b) >= MIN_SSIM, source
