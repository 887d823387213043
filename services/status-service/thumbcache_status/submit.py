"""Submitting a scan: the request body, the allowed-roots rule, and the submitter itself."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from thumbcache.pipeline.runtime import Runtime
from thumbcache.pipeline.scan import start_scan

from thumbcache_status.errors import BadRequestError, ForbiddenError

MAX_SOURCE_CHARS = 4096
BODY_FIELDS = {"source", "force"}

# Takes a checked, resolved folder and ``force``; returns the new job's id.
Submitter = Callable[[str, bool], str]


@dataclass(frozen=True)
class ScanBody:
    """A valid ``POST /v1/scans`` body."""

    source: str
    force: bool = False


def parse_scan_body(data: object) -> ScanBody:
    """Check the body's shape and types; unknown fields are rejected."""
    if not isinstance(data, Mapping):
        raise BadRequestError("the body must be a JSON object")
    unknown = sorted(set(data) - BODY_FIELDS)
    if unknown:
        raise BadRequestError(f"unknown field {str(unknown[0])[:64]!r}")
    source = data.get("source")
    if not isinstance(source, str) or not source.strip():
        raise BadRequestError("'source' must be a non-empty string")
    if len(source) > MAX_SOURCE_CHARS or "\0" in source or not _encodable(source):
        raise BadRequestError("'source' is not a usable path")
    force = data.get("force", False)
    if not isinstance(force, bool):
        raise BadRequestError("'force' must be true or false")
    return ScanBody(source, force)


def _encodable(text: str) -> bool:
    """False for lone surrogates (valid JSON escapes that are no file name)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def resolve_source(source: str, allowed_roots: tuple[str, ...]) -> str:
    """The real path of ``source`` if it lies under an allowed root and is a folder.

    Containment is checked on resolved paths (``..`` and symlinks cannot escape) and before
    existence, so the API tells nothing about folders outside the roots.
    """
    if not os.path.isabs(source):
        raise BadRequestError("'source' must be an absolute path")
    real = os.path.realpath(source)
    if not any(_within(real, os.path.realpath(root)) for root in allowed_roots):
        raise ForbiddenError("'source' is not under an allowed root")
    if not os.path.isdir(real):
        raise BadRequestError("'source' is not an existing folder")
    return real


def _within(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:
        return False


def runtime_submitter(rt: Runtime) -> Submitter:
    """Create the job state, then enqueue its scan on the runtime's broker."""

    def submit(source: str, force: bool) -> str:
        return str(start_scan(rt, source, force=force)["_id"])

    return submit
