"""Every error the engine can raise, with the HTTP status and contract code it maps to.

The core raises these; `kissvdb.api.errors` alone turns them into responses. Each class says
what state it leaves behind, so a caller knows whether to retry.
"""

from __future__ import annotations


class KissError(Exception):
    """Base class. `code` and `message` are the contract's error body; `field` names bad input."""

    status = 500
    code = "internal"

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field

    def body(self) -> dict:
        out = {"error": self.code, "message": self.message}
        if self.field is not None:
            out["field"] = self.field
        return out


class InvalidArgument(KissError):
    """Bad input (400). Nothing was written."""

    status = 400
    code = "invalid_argument"


class PayloadTooLarge(KissError):
    """A JSON value over MAX_JSON_BYTES, or a body over MAX_BODY_BYTES (413). Nothing was written."""

    status = 413
    code = "payload_too_large"


class UnprocessableEntity(KissError):
    """Body parsed but has the wrong shape or type (422, as the original). Nothing was written."""

    status = 422
    code = "invalid_argument"


class UnsupportedMediaType(KissError):
    """A body sent without a content type we accept (415). Nothing was written."""

    status = 415
    code = "unsupported_media_type"


class Unauthorized(KissError):
    """No credential, or a wrong one (401)."""

    status = 401
    code = "unauthorized"


class ClientGone(KissError):
    """The client disconnected before its request body arrived. Nothing was done, and nobody
    is left to read an answer (servers drop it)."""

    status = 400
    code = "client_gone"


class Forbidden(KissError):
    """A valid key whose role does not allow the route (403)."""

    status = 403
    code = "forbidden"


class NotFound(KissError):
    """The key, document, collection or id does not exist (404)."""

    status = 404
    code = "not_found"


class MethodNotAllowed(KissError):
    status = 405
    code = "method_not_allowed"


class RevisionMismatch(KissError):
    """`if_revision` did not match the live revision (409). Nothing was written."""

    status = 409
    code = "revision_mismatch"


class AlreadyExists(KissError):
    status = 409
    code = "already_exists"


class Conflict(KissError):
    """The request does not fit the resource's state (e.g. a DiskANN build on an HNSW
    collection), 409. Nothing was written."""

    status = 409
    code = "conflict"


class RequestTimeout(KissError):
    status = 408
    code = "timeout"


class Overloaded(KissError):
    """An inbox stayed full (503 + Retry-After). The command was never queued: retry later."""

    status = 503
    code = "unavailable"
    retry_after_s = 1


class TooManyRequests(KissError):
    """The caller holds as many of something (open streams) as one key may (429 + Retry-After).
    Nothing changed; close one, or retry later."""

    status = 429
    code = "too_many_requests"
    retry_after_s = 1


class Unavailable(KissError):
    """An actor is restarting or the engine is shutting down (503). Nothing was queued."""

    status = 503
    code = "unavailable"
    retry_after_s = 1


class PersistenceError(KissError):
    """The WAL could not make the write durable.

    With `outcome_unknown` (fsync failed) the write may or may not survive a restart, and the
    server stops taking writes. Without it (write() failed, e.g. ENOSPC) the record was cut
    away: the write did not happen, and a later write may succeed.
    """

    status = 500
    code = "persistence_error"

    def __init__(self, message: str, *, outcome_unknown: bool = False, status: int | None = None):
        super().__init__(message)
        self.outcome_unknown = outcome_unknown
        if status is not None:
            self.status = status


class Corruption(Exception):
    """A WAL record (or other checksummed file) is damaged somewhere other than a torn tail.

    Never becomes a response: the server refuses to start and names the file and byte offset.
    """

    def __init__(self, path: str, position: int, reason: str):
        super().__init__(f"{path}: corrupt record at byte {position}: {reason}")
        self.path = path
        self.position = position
        self.reason = reason


class DataDirLocked(Exception):
    """Another process holds DATA_DIR's lock (a running server, repair or vacuum)."""


class ConfigError(Exception):
    """A setting or flag that cannot be used; the server refuses to start."""


class NotEnabled(KissError):
    """A module switched off by configuration (404 for SQL, as the original). Nothing ran."""

    status = 404
    code = "not_enabled"


class SqliteError(KissError):
    """User SQL failed inside SQLite (400); `message` is SQLite's text. The statement was
    rolled back: nothing was written."""

    status = 400
    code = "sqlite_error"
