"""Rendering benchmark: ``python -m thumbcache.bench`` (see docs/BENCHMARKS.md).

The generated corpus (:mod:`.corpus`) and SSIM (:mod:`.metrics`) are also used by the tests.
"""
