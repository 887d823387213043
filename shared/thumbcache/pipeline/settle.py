"""Settling an image's outcome once its stages have ended, and counting it exactly once."""

from __future__ import annotations

from collections.abc import Mapping

from thumbcache.state.model import FAILED
from thumbcache.state.store import Store


def settle_and_count(
    store: Store, job_id: str, image_id: str, increments: Mapping[str, int] | None = None
) -> str | None:
    """Settle the item if every stage ended; the winner counts it (with ``increments``).

    A failed image also counts one more failure on the image itself: after
    ``ops.quarantine_after_failures`` of them across jobs, scans leave it out until ``--force``.
    Returns the outcome this call settled, or None.
    """
    counts = dict(increments or {})
    settled = store.items.settle_outcome(job_id, image_id)
    if settled is not None:
        counts[settled] = counts.get(settled, 0) + 1
    if counts:
        store.jobs.add_progress(job_id, counts)
    if settled == FAILED:
        store.images.count_failure(image_id)
    if settled is not None:
        store.jobs.finish_if_complete(job_id)
    return settled
