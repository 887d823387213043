"""Operations tests: real MongoDB-protocol server, real files, faults planted by hand."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from thumbcache.pipeline.runtime import Runtime
from thumbcache.pipeline.scan import start_scan
from thumbcache_control import cli

from tests.pipeline_helpers import drain, folder_of, make_runtime

DAY = 24 * 3600


def processed(
    tmp_path: Path, mongo_url: str, db_name: str, count: int = 3, **env: str
) -> tuple[Runtime, dict[str, Any], dict[str, Any]]:
    """A collection of ``count`` images run through every stage: (runtime, job, collection)."""
    rt = make_runtime(tmp_path, mongo_url, db_name, **env)
    job = start_scan(rt, str(folder_of(tmp_path, count, size=(320, 240))))
    drain(rt)
    collection = rt.store.collections.get(job["collection_id"])
    assert collection is not None
    return rt, rt.store.jobs.get(job["_id"]), collection


def rescan(rt: Runtime, root: str) -> dict[str, Any]:
    """Scan a collection again to the end; return the finished job."""
    job = start_scan(rt, root)
    drain(rt)
    done = rt.store.jobs.get(job["_id"])
    assert done is not None and done["status"] == "done"
    return done


def age(path: str | Path, days: float) -> None:
    """Make a file look ``days`` old."""
    then = time.time() - days * DAY
    os.utime(path, (then, then), follow_symlinks=False)


def plant(path: Path, size: int, days_old: float) -> Path:
    """Write a file of ``size`` bytes that looks ``days_old`` old."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    age(path, days_old)
    return path


def renditions(rt: Runtime, collection_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    """{(image_id, stage): record} of a collection."""
    return {
        (image["_id"], stage): record
        for image in rt.store.images.iter_collection(collection_id)
        for stage, record in (image.get("renditions") or {}).items()
    }


def stats(rt: Runtime, folder_id: str) -> tuple[int, int]:
    """(files, bytes) a folder's statistics hold."""
    folder = rt.store.folders.get(folder_id)
    assert folder is not None
    return folder["total_files"], folder["current_size_bytes"]


def run_cli(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    rt: Runtime,
    *argv: str,
) -> dict[str, Any]:
    """Run ``thumbcache ARGV --json`` on the runtime's database; return the parsed output."""
    for name in list(os.environ):
        if name.startswith("THUMBCACHE_"):
            monkeypatch.delenv(name)
    settings = rt.settings
    monkeypatch.setenv("THUMBCACHE_MONGO_URL", settings.mongo_url)
    monkeypatch.setenv("THUMBCACHE_DATABASE", settings.database)
    monkeypatch.setenv("THUMBCACHE_DATA_DIR", settings.data_dir)
    monkeypatch.setenv("THUMBCACHE_CACHE_FOLDERS", ":".join(settings.cache_folders))
    capsys.readouterr()
    assert cli.main([*argv, "--json"]) == 0
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    return result
