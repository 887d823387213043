"""Run the real product over the corpus as a user does, and read back what it recorded.

``thumbcache run CORPUS --json --data-dir DIR`` runs as a child process; ``thumbcache images``
and ``thumbcache status`` (the user-facing readers) say what became of each file. A run that
does not end in time is interrupted and its store is read all the same: the figures of a stuck
job are what a user would find.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from thumbcache.ids import collection_id_for

BOXES = {"thumbnail": (300, 300), "cache": (1920, 1080)}
INTERRUPT_GRACE_SECONDS = 30.0
CLI = (sys.executable, "-m", "thumbcache_control.cli")
# thumbcache.logs' format: "2026-12-02 05:54:46,405 WARNING 18344 thumbcache.x: message"
LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ \d+ \S+: ")


@dataclass
class RunResult:
    """What one ``thumbcache run`` over the corpus did and left behind."""

    returncode: int | None  # None: it did not end in time and was stopped
    seconds: float
    summary: dict[str, Any] | None  # the --json line, when it ended normally
    stderr: list[str]  # every line the run wrote to standard error
    collection_id: str
    job: dict[str, Any] | None = None  # `thumbcache status JOB --json`
    images: dict[str, dict[str, Any]] = field(default_factory=dict)  # source -> image line

    @property
    def raw_stderr(self) -> list[str]:
        """Standard-error lines that are not log records: library noise on the terminal."""
        return [line for line in self.stderr if line.strip() and not LOG_RECORD.match(line)]

    @property
    def ended(self) -> bool:
        """The run ended by itself (not stopped by the hang detection)."""
        return self.returncode is not None


def child_env(settings: Mapping[str, str] | None = None) -> dict[str, str]:
    """The user's environment without any THUMBCACHE_* setting leaking in (but ``settings``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("THUMBCACHE_")}
    env["THUMBCACHE_LOG_LEVEL"] = "WARNING"
    return {**env, **(settings or {})}


def thumbcache(
    *args: str, timeout: float = 300, settings: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run one ``thumbcache`` command to its end."""
    return subprocess.run(
        [*CLI, *args],
        env=child_env(settings),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_corpus(
    root: Path, data_dir: Path, timeout: float, settings: Mapping[str, str] | None = None
) -> RunResult:
    """``thumbcache run`` over ``root`` (with ``settings``, THUMBCACHE_* variables); stopped
    (SIGINT, then SIGKILL) past ``timeout``."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [*CLI, "run", str(root), "--data-dir", str(data_dir), "--json"],
        env=child_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    returncode: int | None
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
        returncode = proc.returncode
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)  # the CLI stops its workers and embedded server
        try:
            stdout, stderr = proc.communicate(timeout=INTERRUPT_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        returncode = None
    seconds = time.monotonic() - started
    summary = _last_json(stdout) if returncode is not None else None
    result = RunResult(
        returncode, seconds, summary, stderr.splitlines(), collection_id_for(str(root))
    )
    result.job = _job(data_dir, result.collection_id, summary)
    result.images = _images(data_dir, result.collection_id, settings)
    return result


def _last_json(stdout: str) -> dict[str, Any] | None:
    lines = stdout.strip().splitlines()
    try:
        return dict(json.loads(lines[-1])) if lines else None
    except json.JSONDecodeError:
        return None


def _job(data_dir: Path, collection_id: str, summary: dict[str, Any] | None) -> dict[str, Any]:
    job_id = summary["job_id"] if summary else None
    if job_id is None:  # stopped: find the collection's newest job among the recent ones
        recent = thumbcache("status", "--data-dir", str(data_dir), "--json")
        jobs = [json.loads(x) for x in recent.stdout.splitlines() if x.strip()]
        ours = [j for j in jobs if j["collection_id"] == collection_id]
        if not ours:
            raise AssertionError(f"no job of the corpus was recorded: {recent.stderr}")
        job_id = max(ours, key=lambda j: j["job_id"])["job_id"]
    shown = thumbcache("status", str(job_id), "--data-dir", str(data_dir), "--json")
    assert shown.returncode == 0, shown.stderr
    return dict(json.loads(shown.stdout.strip().splitlines()[-1]))


def _images(
    data_dir: Path, collection_id: str, settings: Mapping[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    listing = thumbcache(
        "images", collection_id, "--data-dir", str(data_dir), "--json", settings=settings
    )
    assert listing.returncode == 0, listing.stderr
    lines = [json.loads(x) for x in listing.stdout.splitlines() if x.strip()]
    return {line["source"]: line for line in lines}


def rendition_problems(images: dict[str, dict[str, Any]]) -> list[str]:
    """Renditions that are missing, do not decode, or do not fit their box or their record."""
    problems = []
    for source, line in sorted(images.items()):
        for stage, (box_w, box_h) in BOXES.items():
            record = line.get(stage)
            if record is None:
                continue
            try:
                with Image.open(record["path"]) as im:
                    im.load()
                    size = im.size
            except (OSError, ValueError, SyntaxError) as exc:
                problems.append(f"{source} {stage}: does not decode: {exc}")
                continue
            if size != (record["width"], record["height"]):
                problems.append(f"{source} {stage}: file is {size}, record says {record}")
            if size[0] > box_w or size[1] > box_h:
                problems.append(f"{source} {stage}: {size} does not fit {box_w}x{box_h}")
    return problems
