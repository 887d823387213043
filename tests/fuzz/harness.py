"""Drive generated collections through the real scan and render steps, watching every step.

In-process with a real MongoDB-protocol server (``tests/pipeline_helpers.make_runtime``): the
scan messages are run by ``scan_step`` until the walk is complete, then every render message by
``render_step``, as a worker would run them, one at a time. Any exception out of a step, a step
slower than the hang bound, or a step whose peak memory exceeds the budget is recorded as a
finding, and the walk goes on, so one run reports every trigger it met.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import dramatiq
from thumbcache.contracts import ScanRequest
from thumbcache.pipeline.render import render_step
from thumbcache.pipeline.runtime import Runtime
from thumbcache.pipeline.scan import scan_step, start_scan

from tests.pipeline_helpers import requests_of

# Hang detection only (never a speed claim): a render of a fuzzed file of a few KB that takes
# this long is stuck in a decode loop. A sound one takes milliseconds.
STEP_HANG_SECONDS = 30.0
# One render must leave room in a render pod's 768 Mi limit (k8s/base/*-service.yaml) for the
# worker process itself (~250 MiB): a step whose peak grows the process by more is a bomb.
STEP_MEMORY_BUDGET_MIB = 512
# Should a render run in a child process (render isolation), the child's peak counts instead:
# it must fit the render pod's limit itself.
CHILD_MEMORY_LIMIT_MIB = 768


@dataclass
class Run:
    """What happened to one collection: the findings, then the job and its items."""

    findings: list[str] = field(default_factory=list)
    job: dict[str, Any] | None = None
    items: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0
    slowest: tuple[float, str] = (0.0, "")
    largest: tuple[int, str] = (0, "")
    hung: set[str] = field(default_factory=set)  # sources whose render outlived the bound

    def by_source(self) -> dict[str, dict[str, Any]]:
        """Items keyed by their source reference."""
        return {i["source"]: i for i in self.items}


def _status_kib(field_name: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field_name} is not in /proc/self/status")


@contextmanager
def peak_growth() -> Iterator[Callable[[], int]]:
    """Measure how far the process's peak resident memory rises inside the block (MiB).

    Writing 5 to /proc/self/clear_refs resets the kernel's high-water mark (VmHWM), so the
    peak is exact, C allocations included, with no sampling thread.
    """
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    before = _status_kib("VmRSS")
    growth = [0]
    yield lambda: growth[0]
    growth[0] = max(0, _status_kib("VmHWM") - before) // 1024


def children_peak_mib() -> int:
    """The largest peak resident memory of any child process that has ended (MiB)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024


def _take(rt: Runtime, queue: str) -> list[dramatiq.Message[Any]]:
    """Remove and return every message waiting in a stub-broker queue (and its delay queue)."""
    out = []
    for name in (queue, f"{queue}.DQ"):
        q = rt.broker.queues.get(name)
        while q is not None and not q.empty():
            out.append(dramatiq.Message.decode(q.get_nowait()))
    return out


def _render_queues(rt: Runtime) -> list[str]:
    names = rt.broker.queues
    return [q for q in names if not q.endswith((".DQ", ".XQ")) and not q.startswith("scan")]


def run_collection(rt: Runtime, root: Path) -> Run:
    """Scan ``root`` to the end, render everything it asked for, and collect the findings."""
    run = Run()
    job = start_scan(rt, str(root))
    scans = _take(rt, "scan")
    while scans:
        message = scans.pop(0)
        try:
            _watched(
                run,
                f"scan of {root.name}",
                None,
                partial(scan_step, rt, ScanRequest.from_dict(message.args[0])),
            )
        except Exception as exc:
            run.findings.append(
                f"scan_step raised {_named(exc)}: {exc} (Dramatiq retries, then drops "
                "the message: the job stays running with no reason)"
            )
            break
        scans.extend(_take(rt, "scan"))
    stages = {
        actor: name
        for name, r in rt.settings.renditions.items()
        for actor in (r.actor_name, r.batch_actor_name)
    }
    for queue in _render_queues(rt):
        for message in _take(rt, queue):
            stage = stages[message.actor_name]
            for request in requests_of(message):  # a batch's images, each watched alone
                label = f"{stage} of {request.source!r}"
                if request.source in run.hung:
                    continue  # one stuck decode per source is enough: spare the CPU
                try:
                    _watched(
                        run,
                        label,
                        request.source,
                        partial(render_step, rt, stage, request, last_try=False),
                    )
                except Exception as exc:
                    run.findings.append(
                        f"render_step raised {_named(exc)}: {exc} for {label} "
                        "(retried as if transient, though the input decides)"
                    )
    run.job = rt.store.jobs.get(job["_id"])
    run.items = list(rt.store.items.iter_job(job["_id"]))
    return run


def _named(exc: BaseException) -> str:
    kind = type(exc)
    return (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )


class StepHung(Exception):
    """A step outlived the hang bound; it was left running in its daemon thread."""


def _in_thread(step: Callable[[], object], timeout: float) -> None:
    """Run ``step`` in a daemon thread (decoders release the GIL, and a stuck one cannot be
    interrupted): raise what it raised, or StepHung past ``timeout``."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            step()
        except BaseException as exc:  # handed to the caller as is
            failure.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise StepHung(f"still running after {timeout:.0f} s")
    if failure:
        raise failure[0]


def _watched(run: Run, label: str, source: str | None, step: Callable[[], object]) -> None:
    started = time.monotonic()
    children_before = children_peak_mib()
    with peak_growth() as growth:
        try:
            _in_thread(step, STEP_HANG_SECONDS)
        except StepHung as exc:
            run.findings.append(f"{label} hung: {exc}")
            if source is None:
                raise
            run.hung.add(source)
            return
    seconds = time.monotonic() - started
    run.steps += 1
    run.slowest = max(run.slowest, (seconds, label))
    run.largest = max(run.largest, (growth(), label))
    if seconds > STEP_HANG_SECONDS:
        run.findings.append(f"{label} took {seconds:.1f} s (hang bound {STEP_HANG_SECONDS} s)")
    if growth() > STEP_MEMORY_BUDGET_MIB:
        run.findings.append(
            f"{label} grew the process by {growth()} MiB (budget {STEP_MEMORY_BUDGET_MIB} MiB)"
        )
    children = children_peak_mib()
    if children > max(children_before, CHILD_MEMORY_LIMIT_MIB):
        run.findings.append(
            f"{label} ran a child process that peaked at {children} MiB "
            f"(the render pod's limit is {CHILD_MEMORY_LIMIT_MIB} MiB)"
        )


def outcome_problems(run: Run) -> list[str]:
    """Every item ends with an outcome; every failure has a class and a message."""
    problems = []
    if run.job is None:
        return ["the job is gone"]
    if run.job["status"] != "done":
        problems.append(f"job is {run.job['status']!r}, not done: {_counts(run.job)}")
    for item in run.items:
        outcome = item.get("outcome")
        if outcome not in ("completed", "skipped", "failed"):
            problems.append(f"{item['source']!r} has no outcome ({outcome!r})")
        elif outcome == "failed" and not _reasoned(item):
            problems.append(f"{item['source']!r} failed without a class and a message")
    return problems


def _reasoned(item: dict[str, Any]) -> bool:
    errors = [item.get("error")] + [s.get("error") for s in item.get("stages", {}).values()]
    return any(e and e.get("class") and e.get("message") for e in errors)


def _counts(job: dict[str, Any]) -> dict[str, int]:
    return {k: job.get(k, 0) for k in ("total", "completed", "skipped", "failed")}


def error_of(item: dict[str, Any]) -> str:
    """An item's failure as ``Class: message`` (the scan's, else the first stage's)."""
    errors = [item.get("error")] + [s.get("error") for s in item.get("stages", {}).values()]
    first = next((e for e in errors if e), None)
    return "" if first is None else f"{first['class']}: {first['message']}"


def fresh_root(base: Path, label: str) -> Path:
    """A new, empty collection folder under ``base`` (one per example)."""
    base.mkdir(parents=True, exist_ok=True)
    index = len(os.listdir(base))
    root = base / f"{label}-{index:04d}"
    root.mkdir()
    return root
