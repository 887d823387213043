"""Deterministic ids: the same collection root and source always get the same id."""

from __future__ import annotations

import hashlib
import os
import secrets
import time


def collection_id_for(root: str) -> str:
    """A stable id for a collection, from its resolved absolute root path."""
    return hashlib.sha256(os.path.realpath(root).encode()).hexdigest()[:16]


def image_id_for(collection_id: str, source: str) -> str:
    """A stable id for an image, from its collection and its source reference."""
    return hashlib.sha256(f"{collection_id}\0{source}".encode()).hexdigest()[:24]


def new_job_id(now: float | None = None) -> str:
    """A new job id that sorts by creation time."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{secrets.token_hex(4)}"


def job_item_id(job_id: str, image_id: str) -> str:
    """The composed ``_id`` of a job item: one document per image per job."""
    return f"{job_id}:{image_id}"
