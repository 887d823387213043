"""``/healthz`` (the process is up) and ``/readyz`` (the database answers)."""

from __future__ import annotations

import falcon

from thumbcache_status.errors import UnavailableError
from thumbcache_status.reader import StatusReader


class Health:
    """Liveness: answering at all is the answer."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """200 while the process serves requests."""
        resp.media = {"status": "ok"}
        resp.cache_control = ["no-store"]


class Ready:
    """Readiness: the job-state database answers a ping."""

    def __init__(self, reader: StatusReader) -> None:
        self._reader = reader

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """200 when the database answers, else 503."""
        if not self._reader.ping():
            raise UnavailableError("the job-state database is not answering")
        resp.media = {"status": "ready"}
        resp.cache_control = ["no-store"]
