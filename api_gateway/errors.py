"""The gateway's own errors, and the one table that maps every error to HTTP.

Responders never catch errors to pick a status code: they raise, and the
handlers installed by ``install`` turn the exception into a JSON answer of the
shape ``{"error": {"code": ..., "field": ..., "message": ...}}``.
"""
from __future__ import annotations

import logging
from typing import Any

import falcon
from peewee import InterfaceError, OperationalError

from common.auth import Forbidden, Unauthorized
from common.errors import BrokerUnavailable, CorralError, NotFound, ValidationError

log = logging.getLogger(__name__)

RETRY_AFTER_S = 5
MAX_FIELD_CHARS = 200


class GatewayError(CorralError):
    """Base class of the errors only the REST gateway raises."""


class Conflict(GatewayError):
    """The request is valid but the resource's state forbids it (e.g. a finished task)."""


class UnsupportedMediaType(GatewayError):
    """The request body is neither JSON nor a form."""


class PayloadTooLarge(GatewayError):
    """The request body is bigger than the gateway accepts."""


class DatabaseUnavailable(GatewayError):
    """The database could not be reached or is busy."""


class TooManyAttempts(GatewayError):
    """This client address failed authentication too often; it must wait ``retry_after_s``."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many failed authentications from this address; retry in {retry_after_s}s")
        self.retry_after_s = retry_after_s


# exception class -> (HTTP status, error code, send Retry-After)
STATUS_TABLE: dict[type[Exception], tuple[str, str, bool]] = {
    ValidationError: (falcon.HTTP_400, "invalid", False),
    Unauthorized: (falcon.HTTP_401, "unauthorized", False),
    Forbidden: (falcon.HTTP_403, "forbidden", False),
    NotFound: (falcon.HTTP_404, "not_found", False),
    Conflict: (falcon.HTTP_409, "conflict", False),
    PayloadTooLarge: (falcon.HTTP_413, "too_large", False),
    UnsupportedMediaType: (falcon.HTTP_415, "unsupported_media_type", False),
    TooManyAttempts: (falcon.HTTP_429, "rate_limited", True),
    BrokerUnavailable: (falcon.HTTP_503, "broker_unavailable", True),
    DatabaseUnavailable: (falcon.HTTP_503, "database_unavailable", True),
}
FALLBACK = (falcon.HTTP_500, "internal", False)
# Error codes for the errors Falcon raises itself.
_HTTP_CODES = {400: "invalid", 404: "not_found", 405: "method_not_allowed", 411: "length_required",
               413: "too_large", 415: "unsupported_media_type"}
# What a client is told about a service it depends on; the details go to the log only.
_UNAVAILABLE = {BrokerUnavailable: "the broker did not accept the request; retry later",
                DatabaseUnavailable: "the database is unavailable or busy; retry later"}


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    if field is not None and len(field) > MAX_FIELD_CHARS:
        field = field[:MAX_FIELD_CHARS] + "..."
    return {"error": {"code": code, "field": field, "message": message[:2000]}}


def _lookup(ex: Exception) -> tuple[str, str, bool]:
    for cls in type(ex).__mro__:
        if cls in STATUS_TABLE:
            return STATUS_TABLE[cls]
    return FALLBACK


def _handle_corral_error(req: falcon.Request, resp: falcon.Response, ex: CorralError,
                         params: dict[str, Any]) -> None:
    status, code, retry = _lookup(ex)
    resp.status = status
    if retry:
        resp.set_header("Retry-After", str(getattr(ex, "retry_after_s", RETRY_AFTER_S)))
    if isinstance(ex, Unauthorized):
        resp.set_header("WWW-Authenticate", 'Bearer realm="corral"')
    field: str | None = None
    message = str(ex)
    if isinstance(ex, ValidationError):
        field, message = ex.field, f"{_clip(ex.field)}: {ex.reason}"
    elif status == falcon.HTTP_503:
        log.warning("%s %s answered 503: %s", req.method, req.path, ex)
        message = next((text for cls, text in _UNAVAILABLE.items() if isinstance(ex, cls)), "unavailable")
    resp.media = error_body(code, message, field)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_FIELD_CHARS else text[:MAX_FIELD_CHARS] + "..."


def _handle_database_error(req: falcon.Request, resp: falcon.Response, ex: Exception,
                           params: dict[str, Any]) -> None:
    _handle_corral_error(req, resp, DatabaseUnavailable(f"database unavailable: {ex!r}"), params)


def _handle_http_error(req: falcon.Request, resp: falcon.Response, ex: falcon.HTTPError,
                       params: dict[str, Any]) -> None:
    """Falcon's own errors (unknown route, method not allowed, bad header) in our shape."""
    resp.status = ex.status
    if ex.headers:
        resp.set_headers(ex.headers)
    code = _HTTP_CODES.get(ex.status_code, "http_error")
    message = ex.description or f"{ex.title}: {req.method} {_clip(req.path)}"
    resp.media = error_body(code, message)


def _handle_unexpected(req: falcon.Request, resp: falcon.Response, ex: Exception,
                       params: dict[str, Any]) -> None:
    log.exception("unexpected error answering %s %s", req.method, req.path)
    resp.status = falcon.HTTP_500
    resp.media = error_body("internal", "internal server error; the gateway's log has the details")


def install(app: falcon.App) -> None:
    """Register every error handler on ``app``; the most specific class wins."""
    app.add_error_handler(Exception, _handle_unexpected)
    app.add_error_handler(falcon.HTTPError, _handle_http_error)
    app.add_error_handler(CorralError, _handle_corral_error)
    app.add_error_handler((OperationalError, InterfaceError), _handle_database_error)
