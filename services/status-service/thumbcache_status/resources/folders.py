"""``/v1/cache-folders`` and ``/v1/alerts``."""

from __future__ import annotations

import falcon

from thumbcache_status import params
from thumbcache_status.reader import StatusReader
from thumbcache_status.views import alert_view, folder_view


class CacheFolders:
    """Every cache folder with its bytes, files, capacity and collections."""

    def __init__(self, reader: StatusReader) -> None:
        self._reader = reader

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """All folders (a handful: no paging)."""
        params.check_known(req.params, ())
        resp.media = {"items": [folder_view(f) for f in self._reader.folders()]}
        resp.cache_control = ["no-store"]


class Alerts:
    """Alerts raised by the operations side (read-only here)."""

    def __init__(self, reader: StatusReader) -> None:
        self._reader = reader

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """A page of alerts, newest first; an empty list when there are none."""
        params.check_known(req.params, ("limit", "cursor"))
        page = params.parse_page(req.params, params.ALERT_ID)
        found = self._reader.alerts(page.limit, page.after)
        resp.media = {"items": [alert_view(a) for a in found.docs], "next_cursor": found.next_key}
        resp.cache_control = ["no-store"]
