"""Image similarity for tests and the benchmark."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2


def _luma(px: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """Luma (BT.601, as SSIM is usually reported) of RGB or grey pixels, as float64."""
    if px.ndim == 3:
        px = cv2.cvtColor(px, cv2.COLOR_RGB2GRAY)
    return px.astype(np.float64)


def ssim(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> float:
    """Mean SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5) of two same-size images."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    x, y = _luma(a), _luma(b)

    def blur(v: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.asarray(cv2.GaussianBlur(v, (11, 11), 1.5), dtype=np.float64)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    num = (2 * mx * my + _C1) * (2 * cxy + _C2)
    den = (mx * mx + my * my + _C1) * (vx + vy + _C2)
    m = num / den
    return float(m[5:-5, 5:-5].mean()) if min(m.shape) > 10 else float(m.mean())
