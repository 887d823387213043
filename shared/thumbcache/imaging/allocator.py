"""glibc's allocator told to keep freed image buffers for the next image.

By default glibc serves every allocation over 128 kB (a decoded image, a resized copy, an encoder
buffer) with its own ``mmap`` and gives it back with ``munmap`` when freed, so the next image's
buffers are fresh pages that the kernel must fault in and zero, one by one. Measured on one core
(docs/BENCHMARKS.md, "The allocator"): a 12 MP photo's two renditions spent 14-18 ms of their
~105 ms in the kernel, a 2 MP image's 6 of 32 ms. With buffers up to :data:`MMAP_AT_BYTES` taken
from the heap, and up to :data:`KEEP_FREE_BYTES` of freed heap kept for reuse, those faults are
gone: 79 and 26 ms, the same peak memory. Larger buffers (very large images) are still mapped
and returned at once, so what a process keeps is bounded by what ordinary images need.
"""

from __future__ import annotations

import ctypes
import ctypes.util

# mallopt(3) parameter numbers (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_AT_BYTES = 32 << 20  # glibc's ceiling for this threshold on 64-bit systems
KEEP_FREE_BYTES = 128 << 20

# The same settings for a process started with them (glibc reads these at its first malloc).
ENVIRONMENT = {
    "MALLOC_MMAP_THRESHOLD_": str(MMAP_AT_BYTES),
    "MALLOC_TRIM_THRESHOLD_": str(KEEP_FREE_BYTES),
}


def keep_image_buffers() -> bool:
    """Tune this process's allocator for rendering; False where the C library is not glibc
    (nothing changes there)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_AT_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, KEEP_FREE_BYTES)
    )
