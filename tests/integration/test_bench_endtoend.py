"""The end-to-end benchmark command (issue 14) on a tiny scale: it runs, it writes its tables."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from thumbcache.bench.endtoend import marginals, markdown, read_through

pytestmark = pytest.mark.integration


def _installed(module: str) -> bool:
    try:
        __import__(module)
    except (ImportError, OSError):
        return False
    return True


def test_tiny_run_writes_json_and_table(tmp_path: Path) -> None:
    out, work = tmp_path / "out", tmp_path / "work"
    peers = "engine,pyvips" if _installed("pyvips") else "engine"
    env = {k: v for k, v in os.environ.items() if not k.startswith("THUMBCACHE_")}
    result = subprocess.run(
        [sys.executable, "-m", "thumbcache.bench.endtoend", "--parts", "startup,throughput",
         "--collections", "fhd,cbz", "--scale", "0.01", "--pixel-scale", "0.2", "--rounds", "1",
         "--peers", peers, "--no-npm", "--out", str(out), "--work", str(work)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((out / "endtoend.json").read_text())
    assert data["parts_done"] == ["startup", "throughput"]
    assert 0 < data["startup"]["empty"]["wall"] < 60
    rows = data["throughput"]
    assert set(rows) == {"fhd", "cbz"}
    assert rows["fhd"]["images"] == 2 and rows["cbz"]["images"] == 4  # 2 x 0.01 x 200; 2 x 2
    for row in rows.values():
        for method in peers.split(","):
            (seconds,) = row["seconds"][method]
            assert 0 < seconds < 60
        (run,) = row["run"]
        assert run["wall"] >= data["startup"]["empty"]["wall"] * 0.5
        assert run["cpu"] > 0 and 0 <= run["cpu_db"] <= run["cpu"]
        assert 0 < run["utilisation"] <= 1.5  # server shutdown CPU falls after the wall
    table = (out / "endtoend.md").read_text()
    assert "| collection | `thumbcache run` | engine, 2 processes (ceiling) |" in table
    assert "sharp not installed" in table or "sharp" in data["meta"]
    fhd_line = next(line for line in table.splitlines() if "(384x216)" in line and "x)" in line)
    rates = [float(cell.split()[0]) for cell in fhd_line.strip("|").split("|")[1:3]]
    assert all(math.isfinite(r) and r > 0 for r in rates)


def test_markdown_of_every_part() -> None:
    run = {"wall": 2.0, "walls": [2.0], "cpu": 3.0, "cpu_db": 1.0, "utilisation": 0.75}
    results = {
        "meta": {"started": "2026-12-02T10:00:00", "commit": "abc", "python": "3.11",
                 "machine": "x86_64", "cpus": 2, "rounds": 1, "pyvips": None, "sharp": None,
                 "load": {"throughput": [1.0, 1.5]}},
        "startup": {"empty": run},
        "throughput": {"fhd": {"label": "200 x 2 MP", "images": 200,
                               "seconds": {"run": [10.0], "engine": [5.0]},
                               "run": [{**run, "wall": 10.0}]}},
        "onecore": {"images": [100, 200], "size": [1920, 1080], "cpu": 0, "engine_ms": 30.0,
                    "run_ms": 36.0, "ratio": 1.2, "seconds": {}},
        "curve": {"size": [800, 450], "rows": [
            {"images": 100, "run": run, "rerun": {**run, "wall": 1.0}},
            {"images": 1100, "run": {**run, "wall": 12.0}, "rerun": {**run, "wall": 1.5}}]},
        "quality": {"fhd": {"label": "200 x 2 MP", "images": 1, "scores": {
            "thumbnail": {"engine": {"mean": 0.95, "min": 0.94, "kb": 20.0}}}}},
    }  # fmt: skip
    table = markdown(results)
    assert "| 200 x 2 MP | 20.0 (0.50x) | 40.0 | n/a | n/a |" in table
    assert "images/s without start-up" in table and "| 25.0 |" in table  # 200 / (10 - 2)
    assert "**1.20x** (target <= 1.1x)" in table
    assert marginals(results["curve"]["rows"]) == [(100, 1100, 10.0, 0.5)]
    assert "| thumbnail | 0.9500 (0.9400), 20 kB |" in table


def test_read_through_reads_every_file_of_a_nested_collection(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    sizes = {"top.jpg": 10, "a/mid.cbz": 3 << 20, "a/b/deep.png": 1}
    for name, size in sizes.items():
        (tmp_path / name).write_bytes(os.urandom(size))
    assert read_through(tmp_path) == sum(sizes.values())
