"""The seeded plan of a randomized concurrency scenario (pure: a seed in, events out).

Events fire when the first job reaches a fraction of its renditions (progress, not wall time,
so a slow machine runs the same plan): a second job over the same collection, a second
command started mid-job, SIGKILLs of workers, duplicate deliveries, database latency spikes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from tests.concurrency.latency_proxy import LatencyProfile

OVERLAP_JOB = "overlap_job"  # `thumbcache scan` of the same collection (maybe --force)
SECOND_COMMAND = "second_command"  # `thumbcache run` (or `scan --wait`) of it, mid-job
KILL = "kill"  # SIGKILL one worker's process group, restart it at once
DUPLICATES = "duplicates"  # publish a share of a job's render (and scan) messages again
SPIKE = "spike"  # every database round trip slower for a while
KINDS = frozenset({OVERLAP_JOB, SECOND_COMMAND, KILL, DUPLICATES, SPIKE})
KILLABLE = ("scanner", "thumbnail", "thumbnail", "cache", "cache")  # renders are hit more


@dataclass(frozen=True)
class Event:
    """One thing the scheduler does when the first job's progress reaches ``at``."""

    at: float
    kind: str
    detail: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        """How the event is printed in the scenario's report."""
        details = " ".join(
            f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in self.detail.items()
        )
        return f"@{self.at:.2f} {self.kind} {details}".rstrip()


@dataclass(frozen=True)
class Scenario:
    """Everything a seed decides: images, workers per stage, latency and the events."""

    seed: int
    images: int
    workers: dict[str, int]
    latency: LatencyProfile
    events: tuple[Event, ...]

    def lines(self) -> list[str]:
        """The plan, printed before it runs."""
        head = (
            f"seed {self.seed}: {self.images} images, workers {self.workers}, latency "
            f"{self.latency.base_ms:.1f}+{self.latency.jitter_ms:.1f}ms "
            f"(stall {self.latency.stall_chance:.1%} up to {self.latency.stall_ms:.0f}ms)"
        )
        return [head, *(f"  {e.line()}" for e in self.events)]


def plan(seed: int, images: int, kinds: frozenset[str] | None = None) -> Scenario:
    """The scenario of ``seed``: always one overlapping job and one second command.

    ``kinds`` keeps only events of those kinds (the rest of the plan is unchanged), to tell
    which kind of event a finding needs.
    """
    if kinds is not None and not kinds <= KINDS:
        raise ValueError(f"unknown kinds of event {sorted(kinds - KINDS)}; known: {sorted(KINDS)}")
    rng = random.Random(seed)
    command = rng.choice(("run", "run", "scan"))
    events = [
        Event(rng.uniform(0.0, 0.4), OVERLAP_JOB, {"force": rng.random() < 0.5}),
        Event(rng.uniform(0.1, 0.7), SECOND_COMMAND, {"command": command}),
    ]
    for _ in range(rng.randint(2, 4)):
        detail = {"stage": rng.choice(KILLABLE), "pick": rng.random()}
        events.append(Event(rng.uniform(0.05, 0.9), KILL, detail))
    for _ in range(rng.randint(1, 3)):
        detail = {
            "share": rng.uniform(0.1, 0.6),
            "copies": rng.randint(1, 2),
            "scan": rng.random() < 0.3,
            "pick": rng.randrange(1 << 30),
        }
        events.append(Event(rng.uniform(0.0, 0.9), DUPLICATES, detail))
    for _ in range(rng.randint(0, 2)):
        detail = {"extra_ms": rng.uniform(20, 150), "seconds": rng.uniform(0.5, 2.5)}
        events.append(Event(rng.uniform(0.0, 0.9), SPIKE, detail))
    latency = LatencyProfile(
        base_ms=rng.uniform(0.2, 1.0),
        jitter_ms=rng.uniform(1.0, 6.0),
        stall_chance=rng.uniform(0.0, 0.02),
        stall_ms=rng.uniform(50, 300),
    )
    workers = {"scanner": rng.randint(1, 2), "thumbnail": 2, "cache": 2}
    kept = [e for e in events if kinds is None or e.kind in kinds]
    ordered = tuple(sorted(kept, key=lambda e: e.at))
    return Scenario(seed, images, workers, latency, ordered)
