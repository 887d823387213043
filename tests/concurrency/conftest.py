"""Fixtures of the concurrency scenarios: the fault suite's cluster of real worker processes
and its shared photo library (imported, so both suites start workers the same way)."""

from __future__ import annotations

from tests.faults.conftest import cluster, photo_library

__all__ = ["cluster", "photo_library"]
