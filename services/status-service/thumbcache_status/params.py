"""Typed, validated query parameters: nothing from a request reaches a query unchecked.

Every value that leaves here is a plain ``str``, ``int`` or ``bool`` matched against a pattern or
a range, so no MongoDB operator (``{"$ne": ...}``) can be smuggled into a filter.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from thumbcache_status.errors import BadRequestError, NotFoundError

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_CURSOR_CHARS = 2048

JOB_ID = re.compile(r"[0-9]{8}T[0-9]{6}-[0-9a-f]{8}")
COLLECTION_ID = re.compile(r"[0-9a-f]{16}")
IMAGE_ID = re.compile(r"[0-9a-f]{24}")
ERROR_CLASS = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,99}")
JOB_ID_PATTERN = f"^{JOB_ID.pattern}$"
COLLECTION_ID_PATTERN = f"^{COLLECTION_ID.pattern}$"
IMAGE_ID_PATTERN = f"^{IMAGE_ID.pattern}$"
ERROR_CLASS_PATTERN = f"^{ERROR_CLASS.pattern}$"
ITEM_ID_PATTERN = f"^{JOB_ID.pattern}:{IMAGE_ID.pattern}$"
ITEM_ID = re.compile(f"{JOB_ID.pattern}:{IMAGE_ID.pattern}")
ALERT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


@dataclass(frozen=True)
class Page:
    """How much of a list to return and where to continue (``after`` is a decoded cursor)."""

    limit: int = DEFAULT_LIMIT
    after: str | None = None


def check_known(params: Mapping[str, object], allowed: Iterable[str]) -> None:
    """Reject unknown query parameters (``status[$ne]`` and typos alike)."""
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise BadRequestError(f"unknown query parameter {unknown[0][:64]!r}")


def single(params: Mapping[str, object], name: str) -> str | None:
    """One value of a query parameter, or None; repeated parameters are rejected."""
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequestError(f"query parameter {name!r} must be given once")
    return value


def parse_limit(raw: str | None) -> int:
    """``limit``: an integer 1..1000, 100 when absent."""
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isascii() or not raw.isdigit() or len(raw) > 7:
        raise BadRequestError(f"limit must be an integer from 1 to {MAX_LIMIT}")
    value = int(raw)
    if not 1 <= value <= MAX_LIMIT:
        raise BadRequestError(f"limit must be an integer from 1 to {MAX_LIMIT}")
    return value


def parse_page(params: Mapping[str, object], cursor: re.Pattern[str] | None) -> Page:
    """``limit`` and ``cursor`` of a list request; a cursor is the key the last page ended at.

    ``cursor=None`` accepts any string (it is only ever compared with ``$gt`` as a string).
    """
    raw = single(params, "cursor")
    if raw is not None and (
        not raw or len(raw) > MAX_CURSOR_CHARS or (cursor is not None and not cursor.fullmatch(raw))
    ):
        raise BadRequestError("cursor is not one this API returned")
    return Page(parse_limit(single(params, "limit")), raw)


def parse_choice(raw: str | None, name: str, choices: Iterable[str]) -> str | None:
    """An optional value from a fixed set."""
    if raw is None:
        return None
    options = tuple(choices)
    if raw not in options:
        raise BadRequestError(f"{name} must be one of {', '.join(options)}")
    return raw


def parse_match(raw: str | None, name: str, pattern: re.Pattern[str]) -> str | None:
    """An optional value that must match ``pattern`` in full."""
    if raw is None:
        return None
    if not pattern.fullmatch(raw):
        raise BadRequestError(f"{name} is malformed")
    return raw


def path_id(raw: str, pattern: re.Pattern[str], what: str) -> str:
    """An id from the path: a malformed one cannot exist, so it is simply not found."""
    if not pattern.fullmatch(raw):
        raise NotFoundError(f"no {what} with that id")
    return raw
