"""Issue 10: mutated JPEG, PNG, GIF, TIFF and WebP files through the real scan and render steps.

Given a collection of seeded mutants of ten sound images (bit flips, truncations, repeated
scans and chunks, headers that lie about their size) beside the sound images themselves, when
every scan and render message is run, then no step raises, hangs or blows the memory budget,
every file is an item with an outcome, every failure has a class and a reason, and the sound
images are rendered. The seed is fixed: the same files every run.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.fuzz.harness import error_of, fresh_root, outcome_problems, run_collection
from tests.fuzz.mutate import mutate
from tests.fuzz.seeds import decode_bombs, seed_images
from tests.pipeline_helpers import make_runtime

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
SEED = 20261202
MUTANTS_PER_IMAGE = 24


def write_mutants(root: Path, seed: int, per_image: int) -> dict[str, str]:
    """Write the sound images and their mutants; returns {file name: how it was made}."""
    rng = random.Random(seed)
    made = {}
    for image in seed_images():
        name = f"{image.name}-sound{image.extension}"
        (root / name).write_bytes(image.data)
        made[name] = "sound"
        for n in range(per_image):
            data, how = mutate(image.data, image.format, rng)
            name = f"{image.name}-{n:02d}-{how}{image.extension}"
            (root / name).write_bytes(data)
            made[name] = how
    return made


def test_mutated_images_each_end_with_an_outcome_and_a_reason(tmp_path, mongo_url, db_name):
    rt = make_runtime(tmp_path, mongo_url, db_name)
    root = fresh_root(tmp_path / "collections", "mutants")
    made = write_mutants(root, SEED, MUTANTS_PER_IMAGE)

    run = run_collection(rt, root)

    problems = run.findings + outcome_problems(run)
    items = run.by_source()
    missing = sorted(set(made) - set(items))
    problems += [f"{name} ({made[name]}) was never recorded" for name in missing]
    for name, how in made.items():
        item = items.get(name)
        if how == "sound" and item is not None and item["outcome"] != "completed":
            problems.append(f"sound image {name} ended {item['outcome']}: {error_of(item)}")
    print(f"{len(made)} files, {run.steps} steps; slowest {run.slowest}; largest {run.largest}")
    assert not problems, "\n".join(problems)


def test_decode_bombs_inside_the_limits_stay_within_time_and_memory(tmp_path, mongo_url, db_name):
    """A 400 KB PNG of 10000x10000 RGBA and a 1.8 MB progressive JPEG of 8000x8000 whose
    smallest scan repeats 40,000 times: each must be rendered or refused with a reason,
    within the hang bound and the memory budget; the sound image beside them is rendered."""
    rt = make_runtime(tmp_path, mongo_url, db_name)
    root = fresh_root(tmp_path / "collections", "bombs")
    for bomb in decode_bombs():
        (root / f"{bomb.name}{bomb.extension}").write_bytes(bomb.data)
    sound = seed_images()[0]
    (root / f"sound{sound.extension}").write_bytes(sound.data)

    run = run_collection(rt, root)

    problems = run.findings + outcome_problems(run)
    items = run.by_source()
    assert set(items) == {"memory-bomb.png", "scan-bomb.jpg", "sound.jpg"}, sorted(items)
    if items["sound.jpg"]["outcome"] != "completed":
        problems.append(f"the sound image ended {items['sound.jpg']['outcome']}")
    print(f"slowest {run.slowest}; largest {run.largest}")
    assert not problems, "\n".join(problems)
