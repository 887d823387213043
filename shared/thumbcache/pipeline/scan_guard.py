"""A scan that cannot go on ends its job ``failed`` with the reason, never ``running`` forever.

A scan slice that raises is retried by Dramatiq with backoff (a database, broker or disk fault
may clear; a crash between publishing and the checkpoint is redone), and on its last try the
job ends failed. A bug (an exception that the same input raises again: a wrong type, a missing
key, a document the database refuses) ends it at once, since more tries would only delay the
reason. The reason (class and message) is stored on the job; renders published before the
scan stopped still complete and count; the next ``run`` of the folder starts a new job.
"""

from __future__ import annotations

import logging

from dramatiq.middleware.time_limit import TimeLimitExceeded

from thumbcache.contracts import ScanRequest
from thumbcache.errors import PermanentError
from thumbcache.pipeline.runtime import Runtime
from thumbcache.pipeline.scan import scan_step
from thumbcache.state.model import error_doc
from thumbcache.state.store import DocumentRefused

log = logging.getLogger(__name__)
# What another try cannot mend: the same scan raises it again.
BUGS = (
    PermanentError,
    TypeError,
    AttributeError,
    NameError,
    AssertionError,
    LookupError,
    ValueError,
    DocumentRefused,
)


def scan_or_end_job(rt: Runtime, request: ScanRequest, *, tries: int, max_tries: int) -> None:
    """Run one scan slice (try number ``tries`` of ``max_tries``); end the job failed when it
    cannot go on, re-raise when another try may help."""
    try:
        scan_step(rt, request)
    except BUGS as exc:
        end_job_failed(rt, request.job_id, exc, "the scan stopped on an unexpected error")
    except (Exception, TimeLimitExceeded) as exc:
        if tries < max_tries:
            log.warning(
                "scan of job %s failed (try %d of %d), will be retried: %s: %s",
                request.job_id, tries, max_tries, type(exc).__name__, exc,
            )  # fmt: skip
            raise
        end_job_failed(rt, request.job_id, exc, f"the scan gave up after {tries} tries")


def end_job_failed(rt: Runtime, job_id: str, exc: BaseException, context: str) -> bool:
    """Store the exception as the job's reason and end it failed; True if this call ended it."""
    error_class = str(getattr(exc, "error_class", type(exc).__name__))
    log.error("job %s failed: %s: %s (%s)", job_id, error_class, exc, context, exc_info=exc)
    return rt.store.jobs.fail(job_id, error_doc(error_class, f"{exc} ({context})"))
