"""Submitting a scan: the request body, the allowed-roots rule, and the submitter itself."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from thumbcache.ops.regenerate import plan_source
from thumbcache.pipeline.runtime import Runtime
from thumbcache.pipeline.scan import start_scan

from thumbcache_status.errors import BadRequestError, ForbiddenError, UnavailableError

MAX_SOURCE_CHARS = 4096
BODY_FIELDS = {"source", "force", "dry_run"}

# Takes a checked, resolved folder and ``force``; returns the new job's id.
Submitter = Callable[[str, bool], str]
# Takes a checked, resolved folder; returns what a scan would do (renders nothing).
Planner = Callable[[str], dict[str, Any]]


@dataclass(frozen=True)
class ScanBody:
    """A valid ``POST /v1/scans`` body."""

    source: str
    force: bool = False
    dry_run: bool = False


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
    dry_run = data.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise BadRequestError("'dry_run' must be true or false")
    return ScanBody(source, force, dry_run)


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


def runtime_planner(rt: Runtime) -> Planner:
    """Plan a scan without rendering or writing anything (``"dry_run": true``), bounded by
    ``status.plan_max_images`` and ``status.plan_max_seconds`` (the answer says when it was cut).

    A plan reads every image's header, which needs Pillow: the status image does not install
    it (the ``status`` extra), so there a dry run is refused with that reason instead of
    reporting every image failed.
    """
    if importlib.util.find_spec("PIL") is None:

        def refuse(source: str) -> dict[str, Any]:
            raise UnavailableError(
                "a dry run reads image headers, and this service has no image header reader "
                "(install thumbcache[scanner], or run `thumbcache plan SOURCE` with the control "
                "image)"
            )

        return refuse

    bounds = rt.settings.status

    def plan(source: str) -> dict[str, Any]:
        return plan_source(
            rt, source, max_images=bounds.plan_max_images, max_seconds=bounds.plan_max_seconds
        )

    return plan
