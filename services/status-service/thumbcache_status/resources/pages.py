"""The dashboard page (``/``) and the API description (``/openapi.json``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import falcon

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
# The page loads its own script and style only; images come from this API (as blobs when
# a token is needed: an <img> cannot send one).
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class Dashboard:
    """The single-page dashboard (plain HTML, CSS and JavaScript under ``static/``)."""

    def __init__(self, static_dir: Path = STATIC_DIR) -> None:
        self._html = (static_dir / "index.html").read_bytes()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The page; it fetches everything else from the API."""
        resp.content_type = falcon.MEDIA_HTML
        resp.data = self._html
        resp.cache_control = ["no-cache"]
        resp.set_header("Content-Security-Policy", CSP)


class OpenApi:
    """The OpenAPI document."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self._spec = spec

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The spec as JSON."""
        resp.media = self._spec
