"""The change stream over Server-Sent Events: `GET /v1/stream` and its legacy alias `/v1/events`.

| route          | query                                                                      |
|----------------|----------------------------------------------------------------------------|
| /v1/stream     | since, types (comma list), key_prefix, collection                          |
| /v1/events     | since, types, prefix (-> key_prefix); key_prefix and collection are ignored |

Start: a `Last-Event-ID` header that parses as u64 wins over `since`; default 0; events with
offset > start are sent. `since=now` starts at the current end (the durable offset when the
request is handled), so only later events come: the dashboard's default. Any other `since`
that is not a u64 is 400 naming `since`.
The response is `text/event-stream` with `cache-control: no-cache`, not under the request
deadline. The frames, keep-alives, replay and gap notices come from `engine.subscribe` (bytes
chunks, see kissvdb/cdc.py and actors/cdc.py); the subscription is opened in the handler (so a
refused one is an ordinary JSON error: too many streams for this key, or too many replays at once)
and is the response's chunk iterator: the server closes it when the client leaves, the server
stops, or it ends by itself (the key it was opened with was revoked). A HEAD request gets the
headers and no subscription. These are the only routes that accept the key as `?api_key=`.
"""

from __future__ import annotations

from kissvdb.cdc import KEEPALIVE, EventFilter

from ..codec import parse_u64, query_uint
from ..http.messages import Response, StreamResponse
from ..routing import Route

SSE_HEADERS = (
    ("Content-Type", "text/event-stream"),
    ("Cache-Control", "no-cache"),
    ("X-Accel-Buffering", "no"),  # tell reverse proxies not to buffer the stream
)


def routes(app) -> list[Route]:
    engine = app.engine

    def start_offset(request) -> int:
        args = request.args
        since = engine.durable_offset if args.get("since") == "now" else query_uint(args, "since", 0)
        last_event_id = parse_u64(request.headers.get("Last-Event-ID"))
        return since if last_event_id is None else last_event_id

    def stream(request, since: int, flt: EventFilter):
        if request.method == "HEAD":
            return Response(b"", 200, list(SSE_HEADERS))
        principal = request.principal
        owner = principal.key_id or principal.name
        subscription = engine.subscribe(since, flt, owner=owner)
        return StreamResponse(subscription, 200, list(SSE_HEADERS), heartbeat=KEEPALIVE)

    async def stream_route(request):
        args = request.args
        since = start_offset(request)
        flt = EventFilter.from_query(args.get("types"), args.get("key_prefix"), args.get("collection"))
        return stream(request, since, flt)

    async def events_route(request):
        args = request.args
        since = start_offset(request)
        flt = EventFilter.from_query(args.get("types"), args.get("prefix"), None)
        return stream(request, since, flt)

    return [
        Route("GET", "/v1/stream", stream_route, "read", "stream", query_key=True),
        Route("GET", "/v1/events", events_route, "read", "events_legacy", query_key=True),
    ]
