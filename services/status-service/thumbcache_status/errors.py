"""Every error the API answers with, named for the status it maps to, mapped to HTTP once."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import falcon
from pymongo.errors import PyMongoError

log = logging.getLogger(__name__)


class ApiError(Exception):
    """Base of the errors a responder raises; carries its HTTP status and title."""

    status: ClassVar[str] = falcon.HTTP_400
    title: ClassVar[str] = "Bad Request"
    headers: ClassVar[dict[str, str]] = {}

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class BadRequestError(ApiError):
    """A parameter or body is malformed, out of range or unknown."""


class UnauthorizedError(ApiError):
    """The bearer token is missing or wrong."""

    status = falcon.HTTP_401
    title = "UnauthorizedError"
    headers = {"WWW-Authenticate": "Bearer"}


class ForbiddenError(ApiError):
    """The request is understood but not allowed (a source outside the allowed roots)."""

    status = falcon.HTTP_403
    title = "ForbiddenError"


class NotFoundError(ApiError):
    """No such job, collection, image or rendition."""

    status = falcon.HTTP_404
    title = "Not Found"


class PayloadTooLargeError(ApiError):
    """The request body is larger than the API accepts."""

    status = falcon.HTTP_413
    title = "Payload Too Large"


class UnsupportedMediaTypeError(ApiError):
    """The request body is not JSON."""

    status = falcon.HTTP_415
    title = "Unsupported Media Type"


class UnavailableError(ApiError):
    """A dependency (the database, the broker) is down or a feature is switched off."""

    status = falcon.HTTP_503
    title = "Service UnavailableError"


def _api_error(req: falcon.Request, resp: falcon.Response, ex: ApiError, params: Any) -> None:
    raise falcon.HTTPError(
        ex.status, title=ex.title, description=ex.description, headers=ex.headers
    )


def _database_error(
    req: falcon.Request, resp: falcon.Response, ex: PyMongoError, params: Any
) -> None:
    log.warning("database error on %s %s: %s", req.method, req.path, ex)
    raise falcon.HTTPServiceUnavailable(
        title="Service UnavailableError", description="the job-state database is not answering"
    )


def _unexpected(req: falcon.Request, resp: falcon.Response, ex: Exception, params: Any) -> None:
    if isinstance(ex, falcon.HTTPError):
        raise ex  # Falcon's own 404/405/400 keep their status and pass to the serializer
    log.exception("unexpected error on %s %s", req.method, req.path)
    raise falcon.HTTPInternalServerError(
        title="Internal Server Error", description="an unexpected error occurred; see the logs"
    )


def _serialize(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
    """Always JSON ``{"title", "description"}``, whatever the client's Accept header says."""
    resp.content_type = falcon.MEDIA_JSON
    resp.media = {"title": exc.title, "description": exc.description or exc.title}
    resp.append_header("Vary", "Accept")


def install(app: falcon.App[falcon.Request, falcon.Response]) -> None:
    """Map every error to HTTP, most general first (Falcon picks the most specific)."""
    app.add_error_handler(Exception, _unexpected)
    app.add_error_handler(PyMongoError, _database_error)
    app.add_error_handler(ApiError, _api_error)
    app.set_error_serializer(_serialize)
