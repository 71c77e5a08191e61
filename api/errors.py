"""Where every error becomes a response: the one table from exception to status and body.

Owns: the translation of `KissError` (raised by the engine and by `codec`) and of the
framework's own failures (werkzeug `HTTPException`s: no route, wrong method, body too large,
body read timeout) into the contract's error body

    {"error": "<code>", "message": "<text>"}            (+ "field" when input was bad)

Guarantees: every response this module builds is JSON with that shape; 503s carry Retry-After;
405s carry Allow; anything that is not a known error is a 500 `internal` that is logged with its
traceback and counted in `ApiMetrics.internal_errors_total`, because a 500 is a bug.
Never does: decide what is an error. The core and `codec` raise; this module only translates.

The status and code of a `KissError` live on the class (kissvdb/errors.py), so the engine and this
layer cannot disagree; `FRAMEWORK_ERRORS` below is the table for everything that is not ours.
"""

from __future__ import annotations

import logging

import orjson
from quart_trio.wrappers import TrioResponse
from werkzeug import exceptions as wz

from kissvdb.errors import (
    InvalidArgument,
    KissError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
)

log = logging.getLogger("kissvdb.api")

JSON = "application/json"


def method_not_allowed(allowed: list[str] | tuple[str, ...]) -> MethodNotAllowed:
    """A 405 whose response lists `allowed` in its Allow header."""
    error = MethodNotAllowed("method not allowed")
    error.allow = sorted(set(allowed))
    return error


def _no_route(e: wz.HTTPException) -> KissError:
    return NotFound("route not found")


def _wrong_method(e: wz.HTTPException) -> KissError:
    return method_not_allowed(getattr(e, "valid_methods", None) or ())


def _too_large(e: wz.HTTPException) -> KissError:
    return PayloadTooLarge("request body too large", field="body")


def _body_timeout(e: wz.HTTPException) -> KissError:
    return RequestTimeout("request timed out")


def _bad_request(e: wz.HTTPException) -> KissError:
    return InvalidArgument(e.description or "bad request")


# werkzeug exception class -> KissError factory. Looked up along the class's MRO, so
# werkzeug's subclasses (e.g. BadRequestKeyError) land on their parent's row.
FRAMEWORK_ERRORS: dict[type[wz.HTTPException], object] = {
    wz.NotFound: _no_route,
    wz.MethodNotAllowed: _wrong_method,
    wz.RequestEntityTooLarge: _too_large,
    wz.RequestTimeout: _body_timeout,
    wz.BadRequest: _bad_request,
}


def to_kiss_error(error: BaseException) -> KissError | None:
    """The KissError `error` stands for, or None if it is unknown (a bug)."""
    if isinstance(error, KissError):
        return error
    if isinstance(error, wz.HTTPException):
        for cls in type(error).__mro__:
            factory = FRAMEWORK_ERRORS.get(cls)
            if factory is not None:
                return factory(error)  # type: ignore[operator]
        # Any other werkzeug HTTP error keeps its status under a generic code.
        generic = KissError(error.description or error.name)
        generic.status = error.code or 500
        generic.code = "http_error" if (error.code or 500) < 500 else "internal"
        return generic
    return None


def kiss_error_response(error: KissError) -> TrioResponse:
    """The response for a known error: its status, the contract body, and its headers."""
    response = TrioResponse(orjson.dumps(error.body()), error.status, content_type=JSON)
    retry_after = getattr(error, "retry_after_s", None)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    allow = getattr(error, "allow", None)
    if allow is not None:
        response.headers["Allow"] = ", ".join(allow)
    return response


def error_response(error: BaseException, metrics=None, where: str = "") -> TrioResponse:
    """The response for any exception a request raised.

    Unknown exceptions are bugs: logged with traceback, counted on `metrics` (an ApiMetrics),
    and answered 500 `internal` without leaking their text to the client.
    """
    known = to_kiss_error(error)
    if known is not None:
        if known.status >= 500 and not isinstance(error, KissError):
            log.error("framework error %s on %s", error, where)
        return kiss_error_response(known)
    log.error("internal error on %s", where, exc_info=error)
    if metrics is not None:
        metrics.internal_errors_total += 1
    return kiss_error_response(KissError("internal error"))
