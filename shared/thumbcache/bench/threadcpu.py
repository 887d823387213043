"""Where a process's own CPU goes, per thread and per Python function (issue 14).

``python -m thumbcache.bench.threadcpu [--match thumbcache] [--exclude sandbox] -- COMMAND...``
runs COMMAND with a sampler loaded through ``sitecustomize`` into each Python process whose
command line contains ``--match`` and not ``--exclude`` (by default ``thumbcache run`` itself,
not its render processes). Every 4 ms the sampler reads each thread's CPU time from
``/proc/self/task/<tid>/schedstat`` and adds what the thread used since the last read to the
Python stack it has at that moment; at exit it writes the totals, which this command prints.

A thread's short bursts between two reads are added to the stack it waits in afterwards (often
``threading.wait``): read a thread's total as exact, and the split of it by function as a
sample. What a thread used after the last read before it ended is lost, or counted under
``(ended)``; a thread spinning in Python holds the GIL the sampler needs, and on a loaded
machine the sampler then lagged by 100-150 ms. py-spy, even with ``--gil``, counts lock and
pipe waits as work, which this does not. The sampler's own reads cost about 0.4 s of system
time per 20 s. A ``sitecustomize`` the environment already has is shadowed while the command
runs.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SAMPLER = r"""
import os, sys
_out = os.environ.get("THREADCPU_OUT")
with open("/proc/self/cmdline", "rb") as _f:
    _argv = _f.read().replace(b"\0", b" ").decode("utf-8", "replace")
if _out and os.environ["THREADCPU_MATCH"] in _argv and not (
    os.environ["THREADCPU_EXCLUDE"] and os.environ["THREADCPU_EXCLUDE"] in _argv
):
    import atexit, collections, threading, time

    _cpu = collections.Counter()
    _last = {}

    def _sample():
        me = threading.get_native_id()
        while True:
            time.sleep(0.004)
            used = {}
            for tid in os.listdir("/proc/self/task"):
                try:
                    with open(f"/proc/self/task/{tid}/schedstat", "rb") as f:
                        ns = int(f.read().split()[0])
                except (OSError, ValueError):
                    continue
                tid = int(tid)
                if tid != me and ns > _last.get(tid, 0):
                    used[tid], _last[tid] = ns - _last.get(tid, 0), ns
            threads = {t.native_id: t for t in threading.enumerate()}
            frames = sys._current_frames()
            for tid, ns in used.items():
                thread = threads.get(tid)
                name = thread.name.rstrip("0123456789") if thread else "(ended)"
                frame = frames.get(thread.ident) if thread else None
                stack = []
                while frame is not None:
                    code = frame.f_code
                    stack.append(f"{os.path.basename(code.co_filename)}:{code.co_name}")
                    frame = frame.f_back
                _cpu[name + ";" + ";".join(reversed(stack))] += ns // 1000

    def _write():
        with open(f"{_out}/{os.getpid()}.txt", "w") as fh:
            fh.writelines(f"{stack} {us}\n" for stack, us in _cpu.items())

    threading.Thread(target=_sample, name="threadcpu", daemon=True).start()
    atexit.register(_write)
"""


def summarize(lines: list[str], top: int) -> str:
    """Per thread, its CPU and the functions its stacks passed through (inclusive)."""
    by_thread: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[tuple[str, str]] = collections.Counter()
    for line in lines:
        stack, microseconds = line.rsplit(" ", 1)
        thread, *frames = stack.split(";")
        by_thread[thread] += int(microseconds)
        for frame in set(frames):
            inclusive[(thread, frame)] += int(microseconds)
    out = ["| thread | CPU ms |", "|---|---:|"]
    out += [f"| {thread} | {us / 1000:.0f} |" for thread, us in by_thread.most_common()]
    out += ["", f"| thread | function (inclusive, top {top}) | CPU ms |", "|---|---|---:|"]
    out += [f"| {t} | {f} | {us / 1000:.0f} |" for (t, f), us in inclusive.most_common(top)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Run the command under the sampler and print where its CPU went."""
    parser = argparse.ArgumentParser(prog="python -m thumbcache.bench.threadcpu")
    parser.add_argument(
        "--match", default="thumbcache", help="sample processes whose argv has this"
    )
    parser.add_argument("--exclude", default="sandbox", help="but not those whose argv has this")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("a command to run is needed")
    with tempfile.TemporaryDirectory(prefix="threadcpu-") as tmp:
        (Path(tmp) / "sitecustomize.py").write_text(SAMPLER)
        out = Path(tmp) / "out"
        out.mkdir()
        path = os.pathsep.join(p for p in (tmp, os.environ.get("PYTHONPATH", "")) if p)
        env = {**os.environ, "PYTHONPATH": path, "THREADCPU_OUT": str(out),
               "THREADCPU_MATCH": args.match, "THREADCPU_EXCLUDE": args.exclude}  # fmt: skip
        code = subprocess.call(command, env=env)
        for result in sorted(out.iterdir()):
            print(f"\nprocess {result.stem} ({' '.join(command)}):\n")
            print(summarize(result.read_text().splitlines(), args.top))
    return code


if __name__ == "__main__":
    sys.exit(main())
