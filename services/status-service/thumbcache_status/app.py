"""The Falcon app factory: built clients in, a WSGI app out (no settings are read here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import falcon
from thumbcache.settings import Settings
from thumbcache.state.clock import Clock, utcnow
from thumbcache.state.store import Store

from thumbcache_status import errors
from thumbcache_status.access import UNGUARDED, Access, AccessGuard
from thumbcache_status.collector import QueueDepths, StateCollector, build_registry
from thumbcache_status.openapi import build_spec
from thumbcache_status.reader import ITEM_SCAN_BUDGET, StatusReader
from thumbcache_status.redact import HidePaths, PathRedactor
from thumbcache_status.resources.collections import (
    CollectionImages,
    CollectionItem,
    CollectionList,
)
from thumbcache_status.resources.folders import Alerts, CacheFolders
from thumbcache_status.resources.health import Health, Ready
from thumbcache_status.resources.jobs import JobFailures, JobItem, JobList
from thumbcache_status.resources.metrics import Metrics
from thumbcache_status.resources.pages import STATIC_DIR, Dashboard, OpenApi
from thumbcache_status.resources.renditions import Opener, Rendition, open_binary
from thumbcache_status.resources.scans import Scans
from thumbcache_status.submit import Planner, Submitter


class SecurityHeaders:
    """Headers every response carries."""

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        """No MIME sniffing, no referrer, no framing."""
        resp.set_header("X-Content-Type-Options", "nosniff")
        resp.set_header("Referrer-Policy", "no-referrer")
        resp.set_header("X-Frame-Options", "DENY")


def create_app(
    store: Store,
    settings: Settings,
    *,
    submit_scan: Submitter | None = None,
    plan_scan: Planner | None = None,
    allowed_roots: tuple[str, ...] = (),
    access: Access = UNGUARDED,
    show_paths: bool = False,
    queue_depths: QueueDepths | None = None,
    clock: Clock = utcnow,
    static_dir: Path = STATIC_DIR,
    item_scan_budget: int = ITEM_SCAN_BUDGET,
    opener: Opener = open_binary,
) -> falcon.App[falcon.Request, falcon.Response]:
    """The status service over ``store``.

    ``submit_scan`` creates a scan job (None: ``POST /v1/scans`` answers 503); scans are taken
    only under ``allowed_roots`` (none: every source is refused). ``access`` (built by
    :func:`~thumbcache_status.access.access_for` at the edge) holds the token every data route
    needs and the Host names a loopback listener answers; absolute folder paths appear only
    with ``show_paths``.
    ``opener`` opens rendition files (a test may make it fail). The renditions of ``settings``
    name the image records, the rendition routes and the OpenAPI document.
    """
    renditions = settings.rendition_names
    reader = StatusReader(store, item_scan_budget)
    middleware: list[Any] = [SecurityHeaders(), AccessGuard(access)]
    if not show_paths:
        middleware.append(HidePaths(PathRedactor(allowed_roots)))
    app = falcon.App(middleware=middleware)
    app.req_options.strip_url_path_trailing_slash = True
    app.req_options.keep_blank_qs_values = True  # ``?status=`` is bad input, not no input
    errors.install(app)
    registry = build_registry(StateCollector(reader, queue_depths, clock))

    app.add_route("/", Dashboard(static_dir))
    app.add_static_route("/static", str(static_dir))
    app.add_route("/openapi.json", OpenApi(build_spec(renditions)))
    app.add_route("/healthz", Health())
    app.add_route("/readyz", Ready(reader))
    app.add_route("/metrics", Metrics(registry))
    app.add_route("/v1/jobs", JobList(reader, clock))
    app.add_route("/v1/jobs/{job_id}", JobItem(reader, clock))
    app.add_route("/v1/jobs/{job_id}/failures", JobFailures(reader))
    app.add_route("/v1/collections", CollectionList(reader))
    app.add_route("/v1/collections/{collection_id}", CollectionItem(reader))
    app.add_route("/v1/collections/{collection_id}/images", CollectionImages(reader, renditions))
    app.add_route("/v1/images/{image_id}/{rendition}", Rendition(reader, renditions, opener))
    app.add_route("/v1/cache-folders", CacheFolders(reader))
    app.add_route("/v1/alerts", Alerts(reader))
    app.add_route("/v1/scans", Scans(submit_scan, tuple(allowed_roots), plan_scan))
    return app
