"""Where every error becomes a response: the one table from exception to status and body.

Owns: the translation of `KissError` (raised by the engine, the router and `codec`) into the
contract's error body

    {"error": "<code>", "message": "<text>"}            (+ "field" when input was bad)

Guarantees: every response this module builds is JSON with that shape; 503s carry Retry-After;
405s carry Allow; anything that is not a KissError is a 500 `internal` that is logged with its
traceback and counted in `ApiMetrics.internal_errors_total`, because a 500 is a bug.
Never does: decide what is an error. The core and `codec` raise; this module only translates.
The status and code of a `KissError` live on the class (kissvdb/errors.py), so the engine and this
layer cannot disagree.
"""

from __future__ import annotations

import logging

import orjson

from kissvdb.errors import KissError, MethodNotAllowed

from .http.messages import Response

log = logging.getLogger("kissvdb.api")

JSON = "application/json"


def method_not_allowed(allowed: list[str] | tuple[str, ...]) -> MethodNotAllowed:
    """A 405 whose response lists `allowed` in its Allow header."""
    error = MethodNotAllowed("method not allowed")
    error.allow = sorted(set(allowed))
    return error


def kiss_error_response(error: KissError) -> Response:
    """The response for a known error: its status, the contract body, and its headers."""
    headers = [("Content-Type", JSON)]
    retry_after = getattr(error, "retry_after_s", None)
    if retry_after is not None:
        headers.append(("Retry-After", str(retry_after)))
    allow = getattr(error, "allow", None)
    if allow is not None:
        headers.append(("Allow", ", ".join(allow)))
    return Response(orjson.dumps(error.body()), error.status, headers)


def error_response(error: BaseException, metrics=None, where: str = "") -> Response:
    """The response for any exception a request raised.

    Unknown exceptions are bugs: logged with traceback, counted on `metrics` (an ApiMetrics),
    and answered 500 `internal` without leaking their text to the client.
    """
    if isinstance(error, KissError):
        return kiss_error_response(error)
    log.error("internal error on %s", where, exc_info=error)
    if metrics is not None:
        metrics.internal_errors_total += 1
    return kiss_error_response(KissError("internal error"))
