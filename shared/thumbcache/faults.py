"""Test-only fault injection: named points in the pipeline where a test can crash a worker.

Off in production. ``THUMBCACHE_FAULTS`` is read once, when this module is imported; unset or
empty, :func:`fault_point` returns after one check of a module constant. A spec is a list of
``point=action@match`` separated by ``;``::

    THUMBCACHE_FAULTS="after_rename=kill-once@p003.jpg;before_render=kill@poison"

At ``point``, when the source contains ``match`` (no ``@match``: every source), the process
runs ``action`` (``in_render_process`` runs in the render process, the others in the worker):

- ``kill``: SIGKILL itself (no cleanup, no ack: the crash the pipeline must survive);
- ``raise``: raise :class:`InjectedFault` (a RuntimeError);
- ``sleep:SECONDS``: pause (to widen a race window or keep work in flight).

``-once`` (``kill-once``, ``raise-once``, ``sleep-once:0.5``) fires once per (fault, source)
across processes and restarts: the first process to create a marker file in the directory
named by ``THUMBCACHE_FAULTS_DIR`` fires, later ones pass. A ``-once`` fault without that
directory is a configuration error, raised at import.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

FAULTS_VARIABLE = "THUMBCACHE_FAULTS"
FAULTS_DIR_VARIABLE = "THUMBCACHE_FAULTS_DIR"
POINTS = frozenset(
    {"before_render", "in_render_process", "after_path_check", "after_rename", "before_counts",
     "after_record", "scan_chunk"}
)  # fmt: skip
ACTIONS = frozenset({"kill", "raise", "sleep"})


class InjectedFault(RuntimeError):
    """The error a ``raise`` fault raises."""


@dataclass(frozen=True)
class Fault:
    """One entry of the spec: at ``point``, for sources containing ``match``, do ``action``."""

    point: str
    action: str
    match: str = ""
    once: bool = False
    seconds: float = 0.0

    def marker_name(self, source: str) -> str:
        """The marker file name of a ``-once`` fault for one source."""
        key = f"{self.point}|{self.action}|{self.match}|{source}".encode()
        return f"{self.point}-{self.action}-{hashlib.sha256(key).hexdigest()[:16]}"


def parse_faults(spec: str) -> Mapping[str, tuple[Fault, ...]]:
    """Parse a spec into a read-only ``{point: faults}`` table; ValueError names a bad entry."""
    table: dict[str, list[Fault]] = {}
    for raw in spec.split(";"):
        entry = raw.strip()
        if not entry:
            continue
        fault = _parse_entry(entry)
        table.setdefault(fault.point, []).append(fault)
    return MappingProxyType({point: tuple(faults) for point, faults in table.items()})


def _parse_entry(entry: str) -> Fault:
    point, sep, rest = entry.partition("=")
    point = point.strip()
    if not sep or point not in POINTS:
        raise ValueError(f"{FAULTS_VARIABLE}: {entry!r}: expected point=action, point one of "
                         f"{sorted(POINTS)}")  # fmt: skip
    action, _, match = rest.partition("@")
    action, has_value, value = action.strip().partition(":")
    once = action.endswith("-once")
    action = action.removesuffix("-once")
    if action not in ACTIONS:
        raise ValueError(f"{FAULTS_VARIABLE}: {entry!r}: action one of {sorted(ACTIONS)}")
    if (action == "sleep") != bool(has_value):
        raise ValueError(f"{FAULTS_VARIABLE}: {entry!r}: sleep:SECONDS, other actions no value")
    seconds = 0.0
    if has_value:
        try:
            seconds = float(value)
        except ValueError:
            raise ValueError(f"{FAULTS_VARIABLE}: {entry!r}: bad seconds {value!r}") from None
        if not seconds >= 0:
            raise ValueError(f"{FAULTS_VARIABLE}: {entry!r}: seconds must be >= 0")
    return Fault(point, action, match, once, seconds)


class FaultTable:
    """Faults by point, and the directory where ``-once`` faults leave their markers."""

    def __init__(self, faults: Mapping[str, tuple[Fault, ...]], once_dir: str | None) -> None:
        if any(f.once for fs in faults.values() for f in fs) and not once_dir:
            raise ValueError(f"a -once fault needs {FAULTS_DIR_VARIABLE} (a writable directory)")
        self.faults = faults
        self.once_dir = once_dir

    def hit(self, point: str, source: str) -> None:
        """Run the first fault of ``point`` that matches ``source`` and is still armed."""
        for fault in self.faults.get(point, ()):
            if fault.match in source and self._arm(fault, source):
                _act(fault)
                return

    def _arm(self, fault: Fault, source: str) -> bool:
        if not fault.once:
            return True
        assert self.once_dir is not None
        path = os.path.join(self.once_dir, fault.marker_name(source))
        try:  # O_EXCL: exactly one process creates the marker and fires
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            return False
        return True


def _act(fault: Fault) -> None:
    if fault.action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)  # pragma: no cover - the signal is delivered before this returns
    elif fault.action == "raise":
        raise InjectedFault(f"injected fault at {fault.point}")
    else:
        time.sleep(fault.seconds)


def load_faults(env: Mapping[str, str] = os.environ) -> FaultTable | None:
    """The fault table the environment asks for, or None (production)."""
    spec = env.get(FAULTS_VARIABLE, "")
    if not spec.strip():
        return None
    return FaultTable(parse_faults(spec), env.get(FAULTS_DIR_VARIABLE) or None)


_TABLE = load_faults()


def fault_point(name: str, source: str) -> None:
    """A named point where a test may inject a fault; nothing at all in production."""
    if _TABLE is None:
        return
    _TABLE.hit(name, source)
