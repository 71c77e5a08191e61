"""The HTTP application: `create_app(engine, settings)` and the one request pipeline.

`KissApp` is a plain async callable, `await app(request) -> Response | StreamResponse`, served
as is by our trio + httptools server and, through an adapter (api/asgi.py), by hypercorn. There
is no framework request or response object per request. For every request, in this order:
1. Host check (DNS rebinding, while the key is `dev`) and CORS preflight (`OPTIONS` + `Origin` +
   `Access-Control-Request-Method`), answered before auth so browsers can ask (the original
   answered 401: a quirk not copied). See api/origins.py.
2. Routing on the percent-decoded path (api/routing.py). The route says whether it is public.
3. Auth for every route that is not public, before the routing verdict is revealed: an
   unauthenticated request to an unknown path is 401, not 404. A non-public handler never runs
   without a principal (`auth.authorize` refuses a missing one).
4. State-changing requests from a foreign origin are refused (api/origins.py).
5. The handler, under the request deadline (REQUEST_TIMEOUT_SECS, counted from the headers'
   arrival, so a body that never comes is a 408 too). Streaming bodies (SSE) are written after
   the handler returns and are not under it.
6. Errors -> `api.errors.error_response` (the one table); CORS and `nosniff` on every response,
   errors and 401s included. HEAD is served by the GET route; the server drops the body.
Never does: touch an actor. Handlers only await Engine methods.
"""

from __future__ import annotations

from time import perf_counter

import trio

from kissvdb.config import Settings
from kissvdb.errors import ClientGone, Forbidden, InvalidArgument, NotFound, RequestTimeout

from .auth import KeyChecker, StaticKeyChecker, StoredKeyChecker, authenticate, authorize
from .errors import error_response, kiss_error_response
from .http.messages import Response
from .metrics import UNMATCHED, ApiMetrics, route_label
from .origins import OriginPolicy
from .routing import Route, Router

CORS_METHODS = "GET, HEAD, PUT, POST, DELETE, OPTIONS"
CORS_EXPOSE = "Retry-After, Allow, Content-Type"
CORS_MAX_AGE_S = "600"
REQUEST_TIMED_OUT = RequestTimeout("request timed out")
NOSNIFF = ("X-Content-Type-Options", "nosniff")


class KissApp:
    """The route table over one engine, with its settings and key checker. No globals."""

    def __init__(self, engine, settings: Settings, key_checker: KeyChecker, routes: list[Route]):
        self.engine = engine
        self.settings = settings
        self.key_checker = key_checker
        self.router = Router(routes)
        self._route_labels: dict[str, str] = {}
        self.policy = OriginPolicy(settings)
        self.api_metrics = ApiMetrics()
        self.request_timeout_s = float(settings.request_timeout_secs)

    @property
    def routes(self) -> tuple[Route, ...]:
        return self.router.routes

    async def __call__(self, request):
        started = perf_counter()
        deadline = getattr(request, "deadline", None)
        if deadline is None:
            deadline = request.deadline = trio.current_time() + self.request_timeout_s
        with trio.move_on_at(deadline) as scope:
            response = await self._respond(request)
        if scope.cancelled_caught:
            response = kiss_error_response(REQUEST_TIMED_OUT)
        self.api_metrics.observe(self._route_label(request.route), request.method, perf_counter() - started)
        return self._finish(request, response)

    async def _respond(self, request):
        try:
            return await self._dispatch(request)
        except ClientGone:
            raise  # nobody left to answer; the server closes the connection
        except BaseExceptionGroup as group:
            # A nursery inside a handler: answer for its one real failure, if there is one.
            # (Checked first: ExceptionGroup is also an Exception.)
            leaves = _leaves(group)
            if len(leaves) == 1 and isinstance(leaves[0], Exception):
                return error_response(leaves[0], self.api_metrics, _where(request))
            if all(isinstance(leaf, Exception) for leaf in leaves):
                return error_response(group, self.api_metrics, _where(request))
            raise  # carries a Cancelled or KeyboardInterrupt: not ours to answer
        except Exception as error:
            return error_response(error, self.api_metrics, _where(request))

    async def _dispatch(self, request):
        method = request.method
        headers = request.headers
        policy = self.policy
        policy.check_host(headers)
        if method == "OPTIONS" and "Access-Control-Request-Method" in headers:
            return self._preflight(request)
        try:
            match = self.router.match(method, request.path)
        except NotFound:
            authenticate(request, self.key_checker)  # 401 before revealing what is routed
            raise
        route = request.route = match.route
        principal = None
        if not match.public:
            principal = authenticate(request, self.key_checker, route is not None and route.query_key)
        request.principal = principal
        policy.check_write_origin(method, headers)
        if route is None:
            if method == "OPTIONS":
                return _no_content([("Allow", ", ".join(sorted(match.allowed)))])
            raise match.method_not_allowed()
        authorize(principal, route)
        if not request.path_is_utf8:
            _refuse_non_utf8_path(match.params)
        return await route.handler(request, **match.params)

    def _route_label(self, route: Route | None) -> str:
        if route is None:
            return UNMATCHED
        label = self._route_labels.get(route.path)
        if label is None:
            label = self._route_labels[route.path] = route_label(route.path)
        return label

    # ---- what every response gets --------------------------------------------------------

    def _finish(self, request, response):
        headers = response.headers
        headers.append(NOSNIFF)
        policy = self.policy
        origin = request.headers.get("Origin")
        restricted = not policy.any_origin
        if origin is not None or restricted:
            if restricted:
                headers.append(("Vary", "Origin"))
            allowed = policy.allowed_origin(origin)
            if allowed is not None:
                headers.append(("Access-Control-Allow-Origin", allowed))
                headers.append(("Access-Control-Expose-Headers", CORS_EXPOSE))
        return response

    def _preflight(self, request) -> Response:
        if self.policy.allowed_origin(request.headers.get("Origin")) is None:
            return kiss_error_response(Forbidden("origin not allowed", field="Origin"))
        headers = [
            ("Access-Control-Allow-Methods", CORS_METHODS),
            ("Access-Control-Max-Age", CORS_MAX_AGE_S),
        ]
        requested = request.headers.get("Access-Control-Request-Headers")
        if requested:
            # Echoed rather than "*": a wildcard does not cover Authorization.
            headers.append(("Access-Control-Allow-Headers", requested))
        return _no_content(headers)


def _where(request) -> str:
    return f"{request.method} {request.path}"


def _refuse_non_utf8_path(params: dict) -> None:
    """Refuse a path whose percent-decoded bytes are not UTF-8, naming the parameter.

    Decoding with a replacement character would make `%FF` and `%FE` one key; the servers keep
    the bad bytes as lone surrogates instead (api/http/messages.decode_path), so they are found.
    """
    field = next((name for name, value in params.items()
                  if any("\udc80" <= ch <= "\udcff" for ch in value)), "path")
    raise InvalidArgument(f"`{field}` is not valid UTF-8 once percent-decoded", field=field)


def _no_content(headers: list[tuple[str, str]]) -> Response:
    return Response(b"", 204, headers)


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            out.extend(_leaves(exc))
        else:
            out.append(exc)
    return out


def route_table(app: KissApp) -> list[Route]:
    """Every route, from the route modules. The one source of truth for routing, roles, 405s,
    OPTIONS, HEAD, public paths and the OpenAPI test."""
    from .routes import assets, auth_keys, documents, events, search, sql, state, system, vectors

    from .routes import diskann

    table: list[Route] = []
    for module in (system, assets, state, events, documents, sql, auth_keys, vectors, search):
        table.extend(module.routes(app))
    table.extend(diskann.routes(app))
    return table


def create_app(engine, settings: Settings, *, key_checker: KeyChecker | None = None) -> KissApp:
    """The HTTP app over `engine`. The caller owns the engine's lifetime (open before, close after)."""
    if key_checker is None:
        keys = getattr(engine, "keys", None)
        key_checker = StoredKeyChecker(settings.api_key, keys) if keys is not None else StaticKeyChecker(settings.api_key)
    app = KissApp(engine, settings, key_checker, [])
    app.router = Router(route_table(app))
    return app
