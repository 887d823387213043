"""Every error the API answers with, named for the status it maps to, mapped to HTTP once."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any, ClassVar

import falcon
from thumbcache.errors import CollectionBusy
from thumbcache.state.store import DatabaseError

log = logging.getLogger(__name__)


class ApiError(Exception):
    """Base of the errors a responder raises; carries its HTTP status (its title is the
    status's standard reason phrase, "Not Found")."""

    status: ClassVar[str] = falcon.HTTP_400
    headers: ClassVar[dict[str, str]] = {}

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description

    @property
    def title(self) -> str:
        """The reason phrase of the status: ``Service Unavailable`` for 503."""
        return reason_phrase(self.status)


def reason_phrase(status: str) -> str:
    """``"Service Unavailable"`` for ``"503 Service Unavailable"`` or ``"503"``."""
    return HTTPStatus(int(status.split(maxsplit=1)[0])).phrase


class BadRequestError(ApiError):
    """A parameter or body is malformed, out of range or unknown."""


class UnauthorizedError(ApiError):
    """The bearer token is missing or wrong."""

    status = falcon.HTTP_401
    headers = {"WWW-Authenticate": "Bearer"}


class ForbiddenError(ApiError):
    """The request is understood but not allowed (a source outside the allowed roots)."""

    status = falcon.HTTP_403


class MisdirectedRequestError(ApiError):
    """The Host header names no host this server answers for (DNS rebinding)."""

    status = "421 Misdirected Request"


class NotFoundError(ApiError):
    """No such job, collection, image or rendition."""

    status = falcon.HTTP_404


class PayloadTooLargeError(ApiError):
    """The request body is larger than the API accepts."""

    status = falcon.HTTP_413


class UnsupportedMediaTypeError(ApiError):
    """The request body is not JSON."""

    status = falcon.HTTP_415


class UnavailableError(ApiError):
    """A dependency (the database, the broker) is down or a feature is switched off."""

    status = falcon.HTTP_503


def _api_error(req: falcon.Request, resp: falcon.Response, ex: ApiError, params: Any) -> None:
    raise falcon.HTTPError(
        ex.status, title=ex.title, description=ex.description, headers=ex.headers
    )


def _database_error(
    req: falcon.Request, resp: falcon.Response, ex: DatabaseError, params: Any
) -> None:
    log.warning("database error on %s %s: %s", req.method, req.path, ex)
    raise falcon.HTTPServiceUnavailable(
        title=reason_phrase(falcon.HTTP_503),
        description="the job-state database is not answering",
    )


def _busy(req: falcon.Request, resp: falcon.Response, ex: CollectionBusy, params: Any) -> None:
    raise falcon.HTTPError(
        falcon.HTTP_409, title=reason_phrase(falcon.HTTP_409), description=str(ex)
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
    app.add_error_handler(DatabaseError, _database_error)
    app.add_error_handler(CollectionBusy, _busy)
    app.add_error_handler(ApiError, _api_error)
    app.set_error_serializer(_serialize)
