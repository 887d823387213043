"""``/v1/images/{image_id}/{rendition}``: rendition files by image id, read-only.

The file served is the one the image's rendition record names, and only if it lies inside the
cache folder that record points to: nothing in the request ever becomes a path.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import IO, Any

import falcon

from thumbcache_status import params
from thumbcache_status.errors import NotFoundError
from thumbcache_status.reader import StatusReader

CONTENT_TYPES = {"jpeg": "image/jpeg", "jpg": "image/jpeg", "webp": "image/webp"}
CACHE_CONTROL = ["public", "max-age=300"]

Opener = Callable[[str], IO[bytes]]


def open_binary(path: str) -> IO[bytes]:
    """Open a rendition file for reading."""
    return open(path, "rb")  # Falcon closes the stream once sent


class Rendition:
    """The file of one configured rendition of an image."""

    def __init__(
        self, reader: StatusReader, renditions: tuple[str, ...], opener: Opener = open_binary
    ) -> None:
        self._reader = reader
        self._renditions = renditions
        self._open = opener

    def on_get(
        self, req: falcon.Request, resp: falcon.Response, image_id: str, rendition: str
    ) -> None:
        """The file, with an ETag and cache headers; 304 when the client's copy is current."""
        params.check_known(req.params, ())
        image_id = params.path_id(image_id, params.IMAGE_ID, "image")
        if rendition not in self._renditions:
            raise NotFoundError(f"no rendition {rendition!r} here (configured: "
                                f"{', '.join(self._renditions)})")  # fmt: skip
        path, record = self._locate(image_id, rendition)
        try:
            stat = os.stat(path)
        except OSError:
            raise NotFoundError(f"the {rendition} file of this image is gone") from None
        etag = _etag(path, stat.st_size, stat.st_mtime_ns)
        resp.etag = etag
        resp.cache_control = CACHE_CONTROL
        if req.if_none_match and (etag in req.if_none_match or "*" in req.if_none_match):
            resp.status = falcon.HTTP_304
            return
        ext = os.path.splitext(path)[1].lstrip(".").lower()
        resp.content_type = CONTENT_TYPES.get(str(record.get("format")), CONTENT_TYPES.get(ext))
        try:
            resp.stream = self._open(path)
        except OSError:
            raise NotFoundError(f"the {rendition} file of this image is gone") from None
        resp.content_length = stat.st_size

    def _locate(self, image_id: str, rendition: str) -> tuple[str, dict[str, Any]]:
        image = self._reader.image(image_id)
        record = ((image or {}).get("renditions") or {}).get(rendition)
        if not record or not isinstance(record.get("path"), str):
            raise NotFoundError(f"this image has no {rendition}")
        folder = self._reader.folder(str(record.get("folder_id")))
        path = os.path.realpath(record["path"])
        if folder is None or not _within(path, os.path.realpath(str(folder.get("path")))):
            raise NotFoundError(f"this image has no {rendition} in a known cache folder")
        return path, record


def _within(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:
        return False


def _etag(path: str, size: int, mtime_ns: int) -> str:
    return hashlib.sha256(f"{path}\0{size}\0{mtime_ns}".encode()).hexdigest()[:24]
