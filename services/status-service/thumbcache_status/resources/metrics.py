"""``GET /metrics``: Prometheus text from the collector over the job state."""

from __future__ import annotations

import falcon
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


class Metrics:
    """Renders the app's own registry (never the process-global one)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Every metric, collected now."""
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = generate_latest(self._registry)
        resp.cache_control = ["no-store"]
