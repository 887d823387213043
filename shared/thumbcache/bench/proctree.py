"""``thumbcache run`` started as a user starts it, with the CPU time of its whole process tree.

The benchmark process makes itself a child subreaper (Linux ``PR_SET_CHILD_SUBREAPER``), so
every process the run starts, including the embedded database's supervisor, which leaves the
run's session and outlives it, stays its descendant; once they have all ended and been reaped,
``getrusage(RUSAGE_CHILDREN)`` holds their exact CPU seconds. A sampler reads ``/proc`` every
0.1 s for a breakdown (the database server against the rest; a lower bound: the last 0.1 s
of each process escapes it).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PR_SET_CHILD_SUBREAPER = 36
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_SUBREAPER = False


def become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux); True if it is."""
    global _SUBREAPER  # noqa: PLW0603 - a process-wide fact, set once
    if not _SUBREAPER:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            _SUBREAPER = libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
        except (OSError, AttributeError):
            _SUBREAPER = False
    return _SUBREAPER


def thumbcache_command() -> list[str]:
    """The ``thumbcache`` console script next to this interpreter (as a user runs it)."""
    script = Path(sys.executable).with_name("thumbcache")
    if script.exists():
        return [str(script)]
    found = shutil.which("thumbcache")
    return [found] if found else [sys.executable, "-m", "thumbcache_control.cli"]


@dataclass
class RunResult:
    """One ``thumbcache run``: wall seconds to its exit, CPU seconds of its process tree."""

    wall: float
    cpu: float  # exact when the subreaper worked, else the sampled sum
    cpu_db: float  # sampled: the database server (SecantusDB)
    cpu_sampled: float  # sampled: every process of the tree
    cores: int
    summary: dict[str, Any] = field(default_factory=dict)
    teardown: float = 0.0  # seconds after the run's exit until its last descendant ended

    @property
    def utilisation(self) -> float:
        """CPU seconds over wall seconds times the cores it could use."""
        return self.cpu / self.wall / self.cores if self.wall else 0.0


def _children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                out += [
                    int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()
                ]
    return out


def _descendants(root: int) -> list[int]:
    seen: list[int] = []
    stack = _children(root)
    while stack:
        pid = stack.pop()
        seen.append(pid)
        stack += _children(pid)
    return seen


def _cpu_and_role(pid: int) -> tuple[float, str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14, 15)
    return cpu, ("db" if b"secantus" in cmdline else "app")


class _Sampler(threading.Thread):
    def __init__(self, exclude: set[int], interval: float = 0.1) -> None:
        super().__init__(name="cpu-sampler", daemon=True)
        self.exclude = exclude
        self.interval = interval
        self.last: dict[int, tuple[float, str]] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        me = os.getpid()
        while True:
            for pid in _descendants(me):
                if pid in self.exclude:
                    continue
                got = _cpu_and_role(pid)
                if got is not None:  # a zombie has no cmdline: its role stays what it was
                    role = "db" if self.last.get(pid, (0, ""))[1] == "db" else got[1]
                    self.last[pid] = (got[0], role)
            if self.stop.wait(self.interval):
                return

    def totals(self) -> tuple[float, float]:
        total = sum(c for c, _ in self.last.values())
        return total, sum(c for c, role in self.last.values() if role == "db")


def _reap_new(known: set[int], timeout: float) -> None:
    """Wait for every child not in ``known`` (orphans adopted as subreaper included) to end;
    children from before (a multiprocessing resource tracker...) are left alone."""
    deadline = time.monotonic() + timeout
    me = os.getpid()
    while time.monotonic() < deadline:
        new = set(_children(me)) - known
        if not new:
            return
        for pid in new:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    raise TimeoutError(f"descendants of the run still alive after {timeout:.0f} s")


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_thumbcache(
    source: Path,
    data_dir: Path,
    *,
    fresh: bool = True,
    cpus: Sequence[int] | None = None,
    extra_env: dict[str, str] | None = None,
    timeout: float = 3600,
) -> RunResult:
    """``thumbcache run SOURCE --data-dir DATA_DIR --json``, default settings (``THUMBCACHE_*``
    variables of this environment removed), optionally pinned to ``cpus``; a fresh data dir
    unless ``fresh`` is False. Raises if it fails or does not account for every image."""
    if fresh:
        shutil.rmtree(data_dir, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("THUMBCACHE_")}
    env.update(extra_env or {})
    cmd = [*thumbcache_command(), "run", str(source), "--data-dir", str(data_dir), "--json"]
    if cpus is not None:  # as a user pins it: taskset (util-linux)
        cmd = ["taskset", "-c", ",".join(map(str, sorted(set(cpus)))), *cmd]
    cores = len(set(cpus)) if cpus is not None else len(os.sched_getaffinity(0))
    subreaper = become_subreaper()
    known = set(_children(os.getpid()))
    before = _children_cpu()
    sampler = _Sampler(exclude=known)
    sampler.start()
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )  # fmt: skip
    stdout, stderr = proc.communicate(timeout=timeout)
    wall = time.perf_counter() - started
    ended = time.monotonic()
    try:
        if subreaper:
            _reap_new(known, timeout=120)
    finally:
        sampler.stop.set()
        sampler.join()
    teardown = time.monotonic() - ended
    if proc.returncode != 0:
        raise RuntimeError(f"thumbcache run exited {proc.returncode}: {stderr[-2000:]}")
    summary = json.loads(stdout.strip().splitlines()[-1])
    sampled, db = sampler.totals()
    cpu = _children_cpu() - before if subreaper else sampled
    return RunResult(wall, cpu, db, sampled, cores, summary, teardown)
