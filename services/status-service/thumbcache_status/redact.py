"""Folder paths on the API: absolute ones only when configured (``status.show_paths``).

Otherwise a path under an allowed root shows from that root's name on (``collections/holiday``
for ``/collections/holiday``) and any other as ``.../<name>``; paths inside messages (an error
from the file system) are shortened the same way. Sources of images are relative already.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

import falcon

HIDDEN = "..."
# An absolute path inside free text: a '/' at the start or after a space, quote, '(' or '='.
EMBEDDED = re.compile(r"(?<![^\s'\"(=\[,])/[^\s'\"),\]]*")
RELATIVE_KEYS = frozenset({"source"})  # image sources: relative to their collection's root
UNTOUCHED_PATHS = frozenset({"/openapi.json"})


class PathRedactor:
    """Rewrites absolute paths in strings by the rule above."""

    def __init__(self, roots: Iterable[str] = ()) -> None:
        known = {r.rstrip("/") for root in roots for r in (root, os.path.realpath(root))}
        # Longest first: a root inside another shows from its own name.
        self._roots = sorted((r for r in known if r), key=len, reverse=True)

    def path(self, path: str) -> str:
        """One absolute path, shortened."""
        for root in self._roots:
            if path == root or path.startswith(root + "/"):
                return os.path.basename(root) + path[len(root) :]
        name = os.path.basename(path.rstrip("/"))
        return f"{HIDDEN}/{name}" if name else HIDDEN

    def text(self, text: str) -> str:
        """A string that is a path, or holds some (a message)."""
        if text.startswith("/") and "\n" not in text and ": " not in text:
            return self.path(text)
        for root in self._roots:  # known roots first: their paths may hold spaces
            text = re.sub(
                rf"(?<![^\s'\"(=\[,]){re.escape(root)}(?=[/\s'\"),\]]|$)",
                lambda m: self.path(m.group(0)),
                text,
            )
        return EMBEDDED.sub(lambda m: self.path(m.group(0)), text)

    def value(self, value: Any, key: str | None = None) -> Any:
        """``value`` with every string (and mapping key) rewritten; relative sources kept."""
        if isinstance(value, str):
            if key in RELATIVE_KEYS and not value.startswith("/"):
                return value
            return self.text(value)
        if isinstance(value, dict):
            return {
                (self.text(k) if isinstance(k, str) else k): self.value(v, k)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.value(v, key) for v in value]
        return value


class HidePaths:
    """Falcon middleware: JSON answers (errors included) without absolute paths."""

    def __init__(self, redactor: PathRedactor) -> None:
        self._redactor = redactor

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        """Rewrite the media of every answer but the API description."""
        if req.path in UNTOUCHED_PATHS or resp.media is None:
            return
        resp.media = self._redactor.value(resp.media)
