"""Where each rendition lives inside a cache folder (the review's layout, sizes from settings)."""

from __future__ import annotations

import os

from thumbcache.settings import RenditionSettings

TEMP_MARKER = ".tmp-"
STAGE_DIRS = {"thumbnail": "thumbnails", "cache": "cache"}


def rendition_filename(stage: str, image_id: str, rendition: RenditionSettings) -> str:
    """``{image_id}_300x300.jpg`` for thumbnails, ``{image_id}_cache_1920x1080.jpg`` for cache."""
    size = f"{rendition.width}x{rendition.height}"
    if stage == "thumbnail":
        return f"{image_id}_{size}.{rendition.extension}"
    if stage == "cache":
        return f"{image_id}_cache_{size}.{rendition.extension}"
    raise ValueError(f"not a render stage: {stage!r}")


def rendition_path(
    folder: str, stage: str, collection_id: str, image_id: str, rendition: RenditionSettings
) -> str:
    """The absolute path of a rendition: ``{folder}/{thumbnails|cache}/{collection}/{file}``."""
    return os.path.join(
        folder,
        STAGE_DIRS[stage],
        collection_id,
        rendition_filename(stage, image_id, rendition),
    )


def is_temp_name(name: str) -> bool:
    """True for the temporary name of a write in progress (or of one that crashed)."""
    return TEMP_MARKER in name
