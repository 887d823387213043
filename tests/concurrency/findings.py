"""Collect every broken invariant of a scenario before failing, so a report names them all."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class Findings:
    """Named checks run in turn; each failure is kept with its name, none stops the others."""

    def __init__(self) -> None:
        self.found: list[str] = []
        self.passed: list[str] = []

    @contextmanager
    def check(self, what: str) -> Iterator[None]:
        """Run the block as the check ``what``; an AssertionError is recorded, not raised."""
        try:
            yield
        except AssertionError as exc:
            self.found.append(f"{what}: {str(exc)[:1500]}")
        else:
            self.passed.append(what)

    def summary(self) -> str:
        """One line per broken check (or that all held)."""
        if not self.found:
            return f"all {len(self.passed)} checks held"
        return "\n".join(f"  BROKEN {f}" for f in self.found)

    def assert_none(self, context: str = "") -> None:
        """Fail naming every broken check."""
        assert not self.found, f"{context}\n{self.summary()}"
