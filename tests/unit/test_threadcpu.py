"""The per-thread CPU sampler of the benchmarks (``thumbcache.bench.threadcpu``): a real
process run under it, its busy thread's CPU found under that thread and function, and its
idle thread's not counted as work."""

from __future__ import annotations

import subprocess
import sys

from thumbcache.bench.threadcpu import summarize

PROGRAM = """
import threading, time  # threadcpu-marker
def busy_loop():
    end = time.thread_time() + 0.4
    while time.thread_time() < end:
        pass
    time.sleep(0.3)  # alive while the sampler, starved of the GIL by the loop, catches up
def idle_wait():
    threading.Event().wait(0.6)
threads = [threading.Thread(target=busy_loop, name="busy-1"),
           threading.Thread(target=idle_wait, name="idler-1")]
for t in threads: t.start()
for t in threads: t.join()
"""


def _rows(report: str) -> dict[str, int]:
    """The per-thread table: thread -> CPU ms."""
    rows = {}
    for line in report.split("\n\n", maxsplit=1)[0].splitlines()[2:]:
        _, thread, ms, _ = line.split("|")
        rows[thread.strip()] = int(ms)
    return rows


def test_a_busy_thread_is_charged_its_cpu_and_an_idle_one_nothing():
    out = subprocess.run(
        [sys.executable, "-m", "thumbcache.bench.threadcpu", "--match", "threadcpu-marker",
         "--", sys.executable, "-c", PROGRAM],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    report = out.split(":\n\n", 1)[1]
    threads = _rows(report)
    assert 300 <= threads["busy-"] <= 700, report
    assert threads.get("idler-", 0) < 50, report
    assert "| busy- | <string>:busy_loop |" in report


def test_summary_adds_each_functions_cpu_once_per_stack():
    lines = ["T-;a.py:f;a.py:g 3000", "T-;a.py:f;a.py:f 1000", "U;b.py:h 500"]
    report = summarize(lines, top=10)
    assert "| T- | 4 |" in report and "| U | 0 |" in report
    assert "| T- | a.py:f | 4 |" in report and "| T- | a.py:g | 3 |" in report
