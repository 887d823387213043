"""The engine version: part of every rendition's recipe (no heavy imports here).

Bump it when the output for the same input changes on purpose (resampling, colour handling, a
library upgrade that changes pixels); every rendition is then redone by the next scan.
"""

# 3: PNGs rotated by their XMP orientation; 12-bit and signed 16-bit TIFFs scaled by their
#    declared sample range (issue 10). Every other supported input renders bit-identically.
# 4: a final reduction under 1.2x is bicubic (it was a bilinear 2x upsample and a 2x2 area
#    reduction, SSIM 0.96-0.97 against Lanczos there, now 0.98-0.995; issue 14); renditions
#    decoded for every configured rendition when decodes are shared (worker.shared_decode).
# 5: a final reduction of 1.2x-2.4x is a Lanczos low pass and bicubic sampling (it was the area
#    filter, after a 2x bilinear upsample under 2x): SSIM at q85 up 0.003-0.013, level with
#    pyvips and sharp (issue 14).
ENGINE_VERSION = "5"
