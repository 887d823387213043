"""Apply an EXIF orientation (1-8) to BGR(A) pixels, as Pillow's exif_transpose would."""

from __future__ import annotations

from collections.abc import Callable

import cv2

from thumbcache.imaging.colour import Pixels

_ORIENT: dict[int, Callable[[Pixels], Pixels]] = {
    2: lambda px: cv2.flip(px, 1),
    3: lambda px: cv2.rotate(px, cv2.ROTATE_180),
    4: lambda px: cv2.flip(px, 0),
    5: cv2.transpose,
    6: lambda px: cv2.rotate(px, cv2.ROTATE_90_CLOCKWISE),
    7: lambda px: cv2.flip(cv2.transpose(px), -1),
    8: lambda px: cv2.rotate(px, cv2.ROTATE_90_COUNTERCLOCKWISE),
}


def apply_orientation(px: Pixels, orientation: int) -> Pixels:
    """``px`` as it should be displayed under EXIF ``orientation`` (1 and unknown: unchanged)."""
    op = _ORIENT.get(orientation)
    return px if op is None else op(px)
