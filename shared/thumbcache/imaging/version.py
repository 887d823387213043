"""The engine version: part of every rendition's recipe (no heavy imports here).

Bump it when the output for the same input changes on purpose (resampling, colour handling, a
library upgrade that changes pixels); every rendition is then redone by the next scan.
"""

ENGINE_VERSION = "2"
