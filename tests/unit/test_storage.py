"""Cache-folder placement, rendition layout and atomic writes."""

from collections import Counter
from dataclasses import replace

import pytest
from thumbcache.errors import StorageError
from thumbcache.renditions import CACHE, THUMBNAIL, RenditionSettings
from thumbcache.storage.atomic import remove_leftover_temps, write_atomically
from thumbcache.storage.layout import rendition_path
from thumbcache.storage.placement import FolderCandidate, choose_folder


def folders(*ids, full=()):
    return [FolderCandidate(i, accepting=i not in full) for i in ids]


def test_placement_is_stable_and_spreads_collections():
    chosen = [choose_folder(f"c{i}", folders("a", "b", "c")) for i in range(3000)]
    assert chosen == [choose_folder(f"c{i}", folders("c", "b", "a")) for i in range(3000)]
    counts = Counter(chosen)
    assert all(800 < n < 1200 for n in counts.values()), counts


def test_adding_a_folder_moves_only_what_the_new_folder_wins():
    before = {f"c{i}": choose_folder(f"c{i}", folders("a", "b", "c")) for i in range(3000)}
    after = {c: choose_folder(c, folders("a", "b", "c", "d")) for c in before}
    moved = [c for c in before if before[c] != after[c]]
    assert all(after[c] == "d" for c in moved)
    assert 500 < len(moved) < 1000  # about a quarter


def test_full_folders_take_no_new_collections():
    assert all(choose_folder(f"c{i}", folders("a", "b", full=("a",))) == "b" for i in range(200))
    with pytest.raises(ValueError, match="no cache folder"):
        choose_folder("c", folders("a", full=("a",)))


def test_paths_follow_the_review_layout_with_sizes_from_settings():
    cache = replace(CACHE, format="webp")
    assert rendition_path("/f", THUMBNAIL, "col", "img") == "/f/thumbnails/col/img_300x300.jpg"
    assert rendition_path("/f", cache, "col", "img") == "/f/cache/col/img_cache_1920x1080.webp"


def test_a_new_rendition_gets_its_own_folder_and_names_by_default():
    preview = RenditionSettings(600, 600, name="preview")
    assert rendition_path("/f", preview, "col", "img") == "/f/preview/col/img_preview_600x600.jpg"
    assert (preview.queue_name, preview.backfill_queue_name, preview.actor_name) == (
        "preview",
        "preview-backfill",
        "generate_preview",
    )


def test_atomic_write_leaves_the_whole_file_and_no_temp(tmp_path):
    target = tmp_path / "d" / "x.jpg"
    write_atomically(str(target), b"old")
    write_atomically(str(target), b"new content")
    assert target.read_bytes() == b"new content"
    assert [p.name for p in target.parent.iterdir()] == ["x.jpg"]


def test_a_write_into_a_missing_parent_that_cannot_be_made_fails_cleanly(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StorageError, match="cannot write"):
        write_atomically(str(blocker / "sub" / "x.jpg"), b"data")
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_leftover_temps_of_crashed_writes_are_removed_and_nothing_else(tmp_path):
    write_atomically(str(tmp_path / "kept.jpg"), b"whole")
    (tmp_path / "kept.jpg.tmp-deadbeef").write_bytes(b"half")
    (tmp_path / "other.tmp-1").write_bytes(b"half")
    assert remove_leftover_temps(str(tmp_path)) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["kept.jpg"]
    assert remove_leftover_temps(str(tmp_path / "missing")) == 0
