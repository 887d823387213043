"""The OpenAPI 3.0 description of the API (what ``GET /openapi.json`` serves)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from thumbcache.contracts import SCAN_STAGE
from thumbcache.state.model import JOB_STATUSES

from thumbcache_status.params import (
    ALERT_ID,
    COLLECTION_ID_PATTERN,
    DEFAULT_LIMIT,
    ERROR_CLASS_PATTERN,
    IMAGE_ID_PATTERN,
    ITEM_ID_PATTERN,
    JOB_ID_PATTERN,
    MAX_CURSOR_CHARS,
    MAX_LIMIT,
)
from thumbcache_status.submit import MAX_SOURCE_CHARS

JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": list(props) if required is None else required,
    }


def _page_of(item: str, cursor: dict[str, Any]) -> dict[str, Any]:
    return _obj({"items": {"type": "array", "items": _ref(item)}, "next_cursor": cursor})


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    names = {
        400: "bad input",
        401: "missing or wrong token",
        403: "not allowed",
        404: "not found",
        409: "another process is running a job of that collection",
        413: "body too large",
        415: "body is not JSON",
        421: "the Host header names no host this loopback server answers for",
        503: "a dependency is down",
    }
    return {str(c): _json(_ref("Error"), names[c]) for c in codes}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _path(name: str, pattern: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": pattern},
    }


LIMIT = _query(
    "limit",
    {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
    "page size",
)


def _cursor(pattern: str | None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": MAX_CURSOR_CHARS}
    if pattern:
        schema["pattern"] = pattern
    return _query("cursor", schema, "the next_cursor of the previous page")


TIME = _nullable({"type": "string", "format": "date-time"})
COUNT = {"type": "integer", "minimum": 0}
COUNTS = _obj({k: COUNT for k in ("total", "completed", "skipped", "failed")})
STR = {"type": "string"}
NSTR = _nullable(STR)
NNUM = _nullable({"type": "number", "minimum": 0})


def _schemas(renditions: Sequence[str]) -> dict[str, Any]:
    record = _nullable(
        _obj(
            {
                "path": STR,
                "width": COUNT,
                "height": COUNT,
                "bytes": COUNT,
                "quality": _nullable({"type": "integer"}),
                "derived_from": NSTR,  # the rendition whose file it was made from (ADR 0007)
            }
        )
    )
    return {
        "Error": _obj({"title": STR, "description": STR}),
        "Health": _obj({"status": {"type": "string", "enum": ["ok", "ready"]}}),
        "CurrentItem": _obj({"source": NSTR, "stage": STR, "worker": NSTR, "since": TIME}),
        "Job": _obj(
            {
                "job_id": {"type": "string", "pattern": JOB_ID_PATTERN},
                "collection_id": STR,
                "kind": STR,
                "status": {"type": "string", "enum": list(JOB_STATUSES)},
                "root": NSTR,
                **{k: COUNT for k in ("total", "completed", "skipped", "failed")},
                "created_at": TIME,
                "started_at": TIME,
                "finished_at": TIME,
                "last_progress_at": TIME,
                "scan_complete": {"type": "boolean"},
                "error": _nullable(_obj({"class": STR, "message": STR})),
                "rate_per_s": NNUM,
                "eta_s": NNUM,
                "idle_s": NNUM,
                # the scan and each rendition the job renders (named as in [renditions])
                "stages": {
                    "type": "object",
                    "required": [SCAN_STAGE],
                    "additionalProperties": COUNTS,
                },
                "current_items": {"type": "array", "items": _ref("CurrentItem")},
            }
        ),
        "JobPage": _page_of("Job", _nullable({"type": "string", "pattern": JOB_ID_PATTERN})),
        "Failure": _obj(
            {
                "image_id": NSTR,
                "source": NSTR,
                "stage": STR,
                "error_class": STR,
                "message": STR,
                "attempts": COUNT,
            }
        ),
        "FailurePage": _page_of("Failure", _nullable({"type": "string"})),
        "Collection": _obj(
            {
                "collection_id": STR,
                "name": NSTR,
                "root": NSTR,
                "folder_id": NSTR,
                "created_at": TIME,
                "last_job_id": NSTR,
                "last_scan_at": TIME,
            }
        ),
        "CollectionPage": _page_of("Collection", NSTR),
        "Image": _obj(
            {
                "image_id": STR,
                "source": STR,
                "width": _nullable({"type": "integer"}),
                "height": _nullable({"type": "integer"}),
                "format": NSTR,
                "error": NSTR,
                **dict.fromkeys(renditions, record),
            }
        ),
        "ImagePage": _page_of("Image", NSTR),
        "CacheFolder": _obj(
            {
                "folder_id": STR,
                "path": NSTR,
                "bytes": {"type": "integer"},
                "files": {"type": "integer"},
                "capacity_bytes": _nullable({"type": "integer"}),
                "high_water": NNUM,
                "fill_ratio": _nullable({"type": "number"}),
                "collections": COUNT,
            }
        ),
        "CacheFolderList": _obj({"items": {"type": "array", "items": _ref("CacheFolder")}}),
        "Alert": _obj(
            {
                "alert_id": STR,
                "job_id": NSTR,
                "kind": NSTR,
                "message": NSTR,
                "raised_at": TIME,
                "acknowledged": {"type": "boolean"},
            }
        ),
        "AlertPage": _page_of("Alert", NSTR),
        "ScanRequest": {
            **_obj(
                {
                    "source": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": MAX_SOURCE_CHARS,
                        "pattern": "^/[^\\u0000]*$",
                        "description": "an absolute folder under an allowed root",
                    },
                    "force": {"type": "boolean", "default": False},
                    "dry_run": {
                        "type": "boolean",
                        "default": False,
                        "description": "only plan: counts, bytes and CPU time; nothing rendered",
                    },
                },
                required=["source"],
            ),
            "additionalProperties": False,
        },
        "ScanAccepted": _obj({"job_id": STR}),
        "ScanPlan": {
            "type": "object",
            "required": [
                "source",
                "collection_id",
                "images",
                "failed",
                "render",
                "skip",
                "expected_bytes",
                "expected_cpu_seconds",
                "basis",
            ],
            "properties": {
                "source": STR,
                "collection_id": STR,
                "images": {"type": "integer"},
                "failed": {"type": "integer"},
                "would_render_images": {"type": "integer"},
                "render": {"type": "object", "additionalProperties": {"type": "integer"}},
                "skip": {"type": "object", "additionalProperties": {"type": "integer"}},
                "expected_bytes": {"type": "object", "additionalProperties": {"type": "integer"}},
                "expected_cpu_seconds": {"type": "number"},
                "basis": {"type": "string", "enum": ["measured", "default"]},
                "truncated": {"type": "boolean"},
                "truncated_by": _nullable({"type": "string", "enum": ["images", "seconds"]}),
            },
        },
    }


def _get(summary: str, ok: dict[str, Any], params: list[Any], *errors: int) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "parameters": params,
            "responses": {"200": ok, **_errors(*errors)},
        }
    }


def _rendition(renditions: Sequence[str]) -> dict[str, Any]:
    image = {"schema": {"type": "string", "format": "binary"}}
    return {
        "get": {
            "summary": "A rendition's file of an image (read-only, by image id and rendition)",
            "parameters": [
                _path("image_id", IMAGE_ID_PATTERN),
                {
                    "name": "rendition",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "enum": list(renditions)},
                },
            ],
            "responses": {
                "200": {
                    "description": "the image",
                    "content": {"image/jpeg": image, "image/webp": image},
                },
                "304": {"description": "not modified (If-None-Match)"},
                **_errors(404),
            },
        }
    }


SECURITY_NOTE = (
    "With a token configured (THUMBCACHE_API_TOKEN; always when the service listens beyond "
    "loopback) every route needs 'Authorization: Bearer <token>' but the probes and the "
    "dashboard's page shell; status.public_reads opens the reads. A loopback listener answers "
    "only requests whose Host is localhost, 127.0.0.1 or [::1] (421 otherwise)."
)
OPEN_OPERATIONS = ("/healthz", "/readyz")


def build_spec(renditions: Sequence[str]) -> dict[str, Any]:
    """The whole OpenAPI document, for the configured renditions (bearer security on every
    operation but the probes)."""
    spec = _document(renditions)
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            if path in OPEN_OPERATIONS:
                operation["security"] = []
            else:
                operation["responses"].update(_errors(401, 421))
    return spec


def _document(renditions: Sequence[str]) -> dict[str, Any]:
    job_id = _path("job_id", JOB_ID_PATTERN)
    collection_id = _path("collection_id", COLLECTION_ID_PATTERN)
    page = _json
    return {
        "openapi": "3.0.3",
        "info": {"title": "thumbcache status API", "version": "1", "description": SECURITY_NOTE},
        "security": [{"bearer": []}],
        "paths": {
            "/healthz": _get("The process is up", page(_ref("Health"), "up"), []),
            "/readyz": _get(
                "The job-state database answers", page(_ref("Health"), "ready"), [], 503
            ),
            "/v1/jobs": _get(
                "Jobs, newest first",
                page(_ref("JobPage"), "a page of jobs"),
                [
                    _query("status", {"type": "string", "enum": list(JOB_STATUSES)}, "status"),
                    _query(
                        "collection_id",
                        {"type": "string", "pattern": COLLECTION_ID_PATTERN},
                        "collection",
                    ),
                    LIMIT,
                    _cursor(JOB_ID_PATTERN),
                ],
                400,
            ),
            "/v1/jobs/{job_id}": _get("One job", page(_ref("Job"), "the job"), [job_id], 404),
            "/v1/jobs/{job_id}/failures": _get(
                "Failed items of a job; a page may be short and still have a next_cursor",
                page(_ref("FailurePage"), "a page of failures"),
                [
                    job_id,
                    LIMIT,
                    _cursor(ITEM_ID_PATTERN),
                    _query(
                        "reason", {"type": "string", "pattern": ERROR_CLASS_PATTERN}, "error class"
                    ),
                ],
                400,
                404,
            ),
            "/v1/collections": _get(
                "Collections by id",
                page(_ref("CollectionPage"), "a page of collections"),
                [LIMIT, _cursor(COLLECTION_ID_PATTERN)],
                400,
            ),
            "/v1/collections/{collection_id}": _get(
                "One collection", page(_ref("Collection"), "the collection"), [collection_id], 404
            ),
            "/v1/collections/{collection_id}/images": _get(
                "A collection's images in source order",
                page(_ref("ImagePage"), "a page of images"),
                [collection_id, LIMIT, _cursor(None)],
                400,
                404,
            ),
            "/v1/images/{image_id}/{rendition}": _rendition(renditions),
            "/v1/cache-folders": _get(
                "Cache folders with bytes, files, capacity and collections",
                page(_ref("CacheFolderList"), "every cache folder"),
                [],
            ),
            "/v1/alerts": _get(
                "Alerts, newest first",
                page(_ref("AlertPage"), "a page of alerts"),
                [LIMIT, _cursor(f"^{ALERT_ID.pattern}$")],
                400,
            ),
            "/v1/scans": {
                "post": {
                    "summary": "Submit a scan of a folder under an allowed root",
                    "requestBody": {
                        "required": True,
                        "content": {JSON: {"schema": _ref("ScanRequest")}},
                    },
                    "responses": {
                        "200": page(_ref("ScanPlan"), "dry run: what the scan would do"),
                        "202": page(_ref("ScanAccepted"), "the scan's job was created"),
                        **_errors(400, 401, 403, 409, 413, 415, 503),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "metrics",
                            "content": {"text/plain": {"schema": STR}},
                        }
                    },
                }
            },
        },
        "components": {
            "schemas": _schemas(renditions),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
