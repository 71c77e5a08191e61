"""kissvdb's HTTP/1.1 server: trio sockets, the httptools parser, apps called directly.

It serves any `App` (`async def app(request) -> Response | StreamResponse`) and knows nothing of
kissvdb's routes, auth or engine. Modules: limits (every cap and timeout), messages (what the app
sees and returns), reader (parsing, no I/O), wire (response bytes, no I/O), connection (one
client), server (accepting, the connection cap, graceful stop), errors.
"""

from .errors import BodyTimeout, BodyTooLarge, ClientDisconnected, InvalidBody
from .limits import HttpLimits
from .messages import App, Headers, QueryArgs, Request, Response, StreamResponse
from .server import HttpServer, HttpStatistics, serve_http

__all__ = [
    "App", "BodyTimeout", "BodyTooLarge", "ClientDisconnected", "Headers", "HttpLimits",
    "HttpServer", "HttpStatistics", "InvalidBody", "QueryArgs", "Request", "Response",
    "StreamResponse", "serve_http",
]
