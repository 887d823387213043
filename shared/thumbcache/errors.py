"""Every thumbcache error, named for the decision it forces.

``PermanentError``: the input is at fault; fail the item now, store the reason, never retry.
``TransientError``: the environment is at fault (database, disk, broker); retry with backoff.
"""


class ThumbcacheError(Exception):
    """Base class of every thumbcache error."""

    @property
    def error_class(self) -> str:
        """The short name stored with a failure and used to group failures."""
        return type(self).__name__


class ConfigError(ThumbcacheError):
    """A configuration value is missing or invalid; raised at start-up, naming the key."""


class CollectionBusy(ThumbcacheError):
    """Another process owns the collection's job; this one may not start or resume it now."""


class PermanentError(ThumbcacheError):
    """The image or archive itself is bad: fail at once, with a reason, without retries."""

    # Whether a failure of this class counts toward the scanner's quarantine of an image that
    # keeps failing; False for failures that say nothing about the file (a missing plugin).
    counts_toward_quarantine: bool = True


class EmptyFile(PermanentError):
    """The source has zero bytes."""


class NotAnImage(PermanentError):
    """The bytes are not an image in a supported format."""


class UnsupportedFormat(PermanentError):
    """It looks like an image, but this install cannot render its format; says why, what to add."""

    counts_toward_quarantine = False  # installing the extra fixes it: the file is not at fault


class CorruptImage(PermanentError):
    """The image header parsed but the data is truncated or damaged."""


class ImageTooLarge(PermanentError):
    """The image exceeds the pixel, frame or byte limit; refused before decoding."""


class DecodeBomb(PermanentError):
    """An image built to cost far more to decode than its pixels need; refused before decoding."""


class UnsafeSource(PermanentError):
    """The source path or archive entry name would escape the collection root."""


class ArchiveLimitExceeded(PermanentError):
    """An archive breaks an entry-count, size or compression-ratio limit."""


class CorruptArchive(PermanentError):
    """The archive cannot be read as a ZIP file, or an entry's data is damaged."""


class UnsupportedArchiveEntry(PermanentError):
    """An archive entry no reader here decodes: encrypted, or an unsupported compression."""


class SourceMissing(PermanentError):
    """The source file or archive entry is gone, or changed into something that is not a file."""


class WorkerCrashed(PermanentError):
    """The item was started too many times without finishing: it kills its worker (poison)."""


class Quarantined(PermanentError):
    """The unchanged image failed in too many jobs: left out of scans until ``--force``."""

    counts_toward_quarantine = False  # already quarantined: a count would only grow


class StaleItem(PermanentError):
    """The item went stale (no heartbeat) too many times: failed as poison."""


class RenderTimeout(PermanentError):
    """Rendering took longer than its wall-clock limit; its process was stopped."""


class RenderCrashed(PermanentError):
    """The render process died while rendering this image (its decoder crashed)."""


class UnexpectedSourceError(PermanentError):
    """An exception nobody foresaw while reading one source: that source alone fails, its
    error stored under the exception's own class name (the traceback goes to the log)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause) or repr(cause))
        self.cause_class = type(cause).__name__

    @property
    def error_class(self) -> str:
        """The class name of the exception that was raised."""
        return self.cause_class


class TransientError(ThumbcacheError):
    """A fault outside the image (database, disk, broker): retry with bounded backoff."""


class StorageError(TransientError):
    """Writing a rendition failed (disk full, permission denied, I/O error)."""


class StateUnavailable(TransientError):
    """The job-state database could not be reached."""


class RenderProcessUnavailable(TransientError):
    """A render process could not be started (the host is short of processes or memory)."""
