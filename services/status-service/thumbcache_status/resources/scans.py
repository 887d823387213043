"""``POST /v1/scans``: submit a scan of a folder under an allowed root."""

from __future__ import annotations

import json

import falcon

from thumbcache_status import params
from thumbcache_status.errors import (
    BadRequestError,
    PayloadTooLargeError,
    UnavailableError,
    UnsupportedMediaTypeError,
)
from thumbcache_status.submit import Planner, Submitter, parse_scan_body, resolve_source

MAX_BODY_BYTES = 16 * 1024


class Scans:
    """Creates a scan job (202) once the body and source check out (the token is checked by
    :class:`~thumbcache_status.access.AccessGuard`, like every data route's)."""

    def __init__(
        self,
        submit: Submitter | None,
        allowed_roots: tuple[str, ...],
        plan: Planner | None = None,
    ) -> None:
        self._submit = submit
        self._plan = plan
        self._roots = allowed_roots

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Check, then submit; answer with the new job's id."""
        params.check_known(req.params, ())
        body = parse_scan_body(_read_json(req))
        if body.dry_run:
            if self._plan is None:
                raise UnavailableError("this service does not plan scans")
            resp.media = self._plan(resolve_source(body.source, self._roots))
            return
        if self._submit is None:
            raise UnavailableError("this service does not submit scans (no broker configured)")
        source = resolve_source(body.source, self._roots)
        job_id = self._submit(source, body.force)
        resp.status = falcon.HTTP_202
        resp.media = {"job_id": job_id}
        resp.location = f"/v1/jobs/{job_id}"


def _read_json(req: falcon.Request) -> object:
    if req.content_type is None or req.content_type.split(";")[0].strip() != falcon.MEDIA_JSON:
        raise UnsupportedMediaTypeError("send the body as application/json")
    if req.content_length is not None and req.content_length > MAX_BODY_BYTES:
        raise PayloadTooLargeError(f"the body must be at most {MAX_BODY_BYTES} bytes")
    raw = req.bounded_stream.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLargeError(f"the body must be at most {MAX_BODY_BYTES} bytes")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise BadRequestError("the body is not valid JSON") from None
