"""The engine version: part of every rendition's recipe (no heavy imports here).

Bump it when the output for the same input changes on purpose (resampling, colour handling, a
library upgrade that changes pixels); every rendition is then redone by the next scan.
"""

# 3: PNGs rotated by their XMP orientation; 12-bit and signed 16-bit TIFFs scaled by their
#    declared sample range (issue 10). Every other supported input renders bit-identically.
ENGINE_VERSION = "3"
