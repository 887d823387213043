"""Where each rendition lives inside a cache folder: ``{folder}/{rendition folder}/{collection}/
{file}``, the folder and file names being the rendition's own (``thumbnails/…/{id}_300x300.jpg``
for the built-in thumbnail)."""

from __future__ import annotations

import os

from thumbcache.renditions import RenditionSettings

TEMP_MARKER = ".tmp-"


def rendition_path(
    folder: str, rendition: RenditionSettings, collection_id: str, image_id: str
) -> str:
    """The absolute path of one image's rendition in a cache folder."""
    return os.path.join(
        folder, rendition.folder_name, collection_id, rendition.file_name_for(image_id)
    )


def collection_dir(folder: str, rendition: RenditionSettings, collection_id: str) -> str:
    """The directory holding one collection's files of one rendition."""
    return os.path.join(folder, rendition.folder_name, collection_id)


def is_temp_name(name: str) -> bool:
    """True for the temporary name of a write in progress (or of one that crashed)."""
    return TEMP_MARKER in name
