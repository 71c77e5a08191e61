"""The change stream over Server-Sent Events: `GET /v1/stream` and its legacy alias `/v1/events`.

| route          | query                                                                      |
|----------------|----------------------------------------------------------------------------|
| /v1/stream     | since, types (comma list), key_prefix, collection                          |
| /v1/events     | since, types, prefix (-> key_prefix); key_prefix and collection are ignored |

Start: a `Last-Event-ID` header that parses as u64 wins over `since`; default 0; events with
offset > start are sent. A `since` that is not a u64 is 400 naming `since`.
The response is `text/event-stream` with `cache-control: no-cache` and no send timeout. The
frames, keep-alives, replay and gap notices come from `engine.subscribe` (bytes chunks, see
kissvdb/cdc.py and actors/cdc.py); this module only opens the subscription when the body starts
streaming and closes it in `finally`, whether the client left or the server is stopping.
A HEAD request gets the headers and no subscription.
"""

from __future__ import annotations

from kissvdb.cdc import EventFilter

from ..codec import parse_u64, query_uint

SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # tell reverse proxies not to buffer the stream
}


def register(app) -> None:
    engine = app.engine
    response_class = app.response_class

    def start_offset(request) -> int:
        since = query_uint(request.args, "since", 0)
        last_event_id = parse_u64(request.headers.get("Last-Event-ID"))
        return since if last_event_id is None else last_event_id

    def stream(request, since: int, flt: EventFilter):
        if request.method == "HEAD":
            return response_class(b"", 200, SSE_HEADERS)

        async def body():
            subscription = engine.subscribe(since, flt)
            try:
                async for chunk in subscription:
                    yield chunk
            finally:
                # Synchronous, so it runs even while the stream is being cancelled.
                subscription.close()

        response = response_class(body(), 200, SSE_HEADERS)
        response.timeout = None  # a stream lives as long as its client
        return response

    @app.route("/v1/stream", methods=["GET"], endpoint="stream")
    async def stream_route(request):
        args = request.args
        since = start_offset(request)
        flt = EventFilter.from_query(args.get("types"), args.get("key_prefix"), args.get("collection"))
        return stream(request, since, flt)

    @app.route("/v1/events", methods=["GET"], endpoint="events_legacy")
    async def events_route(request):
        args = request.args
        since = start_offset(request)
        flt = EventFilter.from_query(args.get("types"), args.get("prefix"), None)
        return stream(request, since, flt)
