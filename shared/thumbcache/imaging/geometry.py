"""Pure geometry: fitting a picture inside a box."""


def fit_within(width: int, height: int, box_w: int, box_h: int) -> tuple[int, int]:
    """The largest size inside ``box_w`` x ``box_h`` with the aspect of ``width`` x ``height``.

    Never upscales: an image already inside the box keeps its size. Each side is at least 1.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"invalid size {width}x{height}")
    scale = min(box_w / width, box_h / height, 1.0)
    if scale >= 1.0:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))
