"""The errors the HTTP server raises into an app, and the ones it answers by itself.

Owns: what can go wrong on the wire, as `KissError` subclasses, so an app that maps KissError
to responses (kissvdb's does) answers them with the same status, code and body as the server
itself, and both servers agree. Never does: build a response (wire.py does that).

Raised by `Request.body()`:
- `BodyTooLarge` (413, field "body"): a chunked body passed max_body_bytes. The rest of the body
  is not read; the connection closes after the response.
- `BodyTimeout` (408): the body did not arrive within body_timeout_s. The connection closes.
- `InvalidBody` (400, field "body"): the body's framing is broken (bad chunk size, or the
  client closed its side before the body was complete). The connection closes.
If the app lets one of these escape, the server answers it as the app would have.
`ClientDisconnected` is not an error to answer: the peer is gone (a failed read or write).
"""

from __future__ import annotations

from kissvdb.errors import ClientGone, InvalidArgument, PayloadTooLarge, RequestTimeout


class BodyTooLarge(PayloadTooLarge):
    """The body passed max_body_bytes (413). Nothing was read past the cap."""

    def __init__(self, limit: int):
        super().__init__("request body too large", field="body")  # the message kissvdb always gave


class BodyTimeout(RequestTimeout):
    """The body did not arrive in time (408). The connection is closed after the answer."""

    def __init__(self, message: str = "request body not received in time"):
        super().__init__(message)


class InvalidBody(InvalidArgument):
    """The body's framing is broken, or it ended early (400)."""

    def __init__(self, message: str):
        super().__init__(message, field="body")


class ClientDisconnected(ClientGone):
    """The client is gone: a write failed, or its connection broke mid-body. A KissError so an
    app that lets it escape answers it like any other (the server drops that answer)."""

    def __init__(self, message: str = "client disconnected"):
        super().__init__(message)


class UrlTooLong(InvalidArgument):
    status = 414

    def __init__(self, limit: int):
        super().__init__(f"request target longer than {limit} bytes", field="url")


class HeadersTooLarge(InvalidArgument):
    status = 431

    def __init__(self, limit: int):
        super().__init__(f"request line and headers larger than {limit} bytes", field="headers")


class VersionNotSupported(InvalidArgument):
    status = 505

    def __init__(self, version: str):
        super().__init__(f"HTTP/{version} is not supported; use HTTP/1.1")
