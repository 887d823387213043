"""Python warnings from decoders go to the log, with the source they belong to.

Pillow (and the optional readers) warn of damaged files with ``UserWarning`` ("Possibly
corrupt EXIF data", "Tag data larger than file", ...); printed raw they break the progress
bar and name no file. Renders and probes run in worker threads, and ``catch_warnings`` is
process-global, so instead one ``showwarning`` hook is installed for the process and the
source comes from a context variable each thread sets around its work (:func:`image_source`).
Warnings from anything else keep going to the previous hook.

Filters still decide first: under ``-W error`` (as in this project's tests) a decoder warning
is raised, and the engine reports it as a damaged image.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from typing import Any, TextIO

log = logging.getLogger("thumbcache.imaging")

_source: ContextVar[str | None] = ContextVar("thumbcache_image_source", default=None)
_DECODER_PACKAGES = ("PIL", "pi_heif", "pillow_jxl", "rawpy")
_MODULES = r"(PIL|pi_heif|pillow_jxl|rawpy|thumbcache\.imaging)(\.|$)"
_lock = threading.Lock()
_previous: Any = warnings.showwarning
_filtered = False


@contextmanager
def image_source(source: str) -> Iterator[None]:
    """Attribute decoder warnings raised in this block (this thread, this task) to ``source``."""
    token = _source.set(source)
    try:
        yield
    finally:
        _source.reset(token)


def route_warnings() -> None:
    """Send decoder warnings to the log from now on; cheap and idempotent (called per image)."""
    global _previous, _filtered  # noqa: PLW0603 - one hook per process, guarded by a lock
    if warnings.showwarning is _show and _filtered:
        return
    with _lock:
        if warnings.showwarning is not _show:
            _previous = warnings.showwarning
            warnings.showwarning = _show
        if not _filtered:
            # Appended, so every filter already there (-W, PYTHONWARNINGS, pytest's) wins;
            # otherwise Python's default shows a message once per code line, for one file.
            warnings.filterwarnings("always", category=UserWarning, module=_MODULES, append=True)
            _filtered = True


def _show(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    if not _from_decoder(filename):
        _previous(message, category, filename, lineno, file, line)
        return
    source = _source.get()
    log.warning(
        "%s: %s: %s",
        source or "(source not set)",
        category.__name__,
        message,
        extra={"source": source, "warning_category": category.__name__},
    )


def _from_decoder(filename: str) -> bool:
    path = os.path.realpath(filename)
    return any(path.startswith(root) for root in _decoder_roots())


@cache
def _decoder_roots() -> tuple[str, ...]:
    """The folders of the decoder packages and of this engine (warnings are attributed to
    the caller's line when a library warns with ``stacklevel=2``)."""
    roots = [os.path.realpath(os.path.dirname(__file__)) + os.sep]
    for name in _DECODER_PACKAGES:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        for location in (spec.submodule_search_locations or []) if spec else []:
            roots.append(os.path.realpath(location) + os.sep)
    return tuple(roots)
