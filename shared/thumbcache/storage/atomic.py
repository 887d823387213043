"""Write a file so that readers see either nothing or the whole file, never a part."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets

from thumbcache.errors import StorageError
from thumbcache.storage.layout import TEMP_MARKER


def write_atomically(path: str, data: bytes, *, fsync: bool = False) -> None:
    """Write ``data`` to a temporary name beside ``path``, then rename it into place.

    The temporary file is removed if anything fails. ``fsync`` makes the write durable across a
    power loss (a rename alone is safe across process crashes). Raises StorageError.
    """
    directory = os.path.dirname(path)
    tmp = f"{path}{TEMP_MARKER}{secrets.token_hex(4)}"
    try:
        os.makedirs(directory, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        _remove_quietly(tmp)
        raise StorageError(f"cannot write {path}: {_describe(exc)}") from exc


def _describe(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "disk full"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return exc.strerror or str(exc)


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def remove_leftover_temps(directory: str) -> int:
    """Delete temporary files that crashed writes left in ``directory``; return how many.

    Only safe while nothing writes there (a resuming single-process run, before its workers
    start); elsewhere orphan cleanup removes them after its grace period.
    """
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if entry.is_file(follow_symlinks=False) and TEMP_MARKER in entry.name:
            _remove_quietly(entry.path)
            removed += 1
    return removed
