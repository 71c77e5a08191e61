"""Inputs found by fuzzing a running server (schemathesis + hand-written nasty inputs).

Each test is one input that once answered 500, a non-JSON body, or an error that did not name
the bad field; it now gets a 4xx JSON error naming the field, writes nothing, and the server
keeps serving (and, where the input used to poison the WAL, boots again on the same DATA_DIR).
"""

from __future__ import annotations

import pytest

from tests.api.conftest import open_api
from tests.helpers import assert_error

U64_MAX = (1 << 64) - 1
I64_MAX = (1 << 63) - 1
TTL_MS_MAX = (1 << 53) - 1  # documented maximum (JavaScript's Number.MAX_SAFE_INTEGER)


# ---- ttl_ms whose expiry does not fit a SQLite INTEGER --------------------------------------
# Found: PUT /v1/state/k {"value":1,"ttl_ms":18446744073709551615} passed the u64 shape check,
# was logged, and then state.sqlite refused `now + ttl_ms` (OverflowError): the KV actor died,
# its restart replayed the same event and died again, the server exited, and it could never
# boot on that DATA_DIR again.


@pytest.mark.parametrize("ttl_ms", [U64_MAX, I64_MAX, I64_MAX - 1000, TTL_MS_MAX + 1])
async def test_kv_put_ttl_past_the_integer_range_is_400_and_the_server_lives(tmp_path, ttl_ms):
    data = tmp_path / "data"
    async with open_api(data) as api:
        reply = await api.put("/v1/state/k", json={"value": 1, "ttl_ms": ttl_ms})
        assert_error(reply, 400, "invalid_argument", field="ttl_ms")
        assert_error(await api.get("/v1/state/k"), 404)
        assert (await api.put("/v1/state/k", json={"value": 2})).status_code == 200
    async with open_api(data) as api:  # boots again on the same data dir
        assert (await api.get("/v1/state/k")).json()["value"] == 2


async def test_kv_batch_ttl_past_the_integer_range_is_an_inline_error(tmp_path):
    data = tmp_path / "data"
    async with open_api(data) as api:
        ops = [{"key": "a", "value": 1, "ttl_ms": U64_MAX}, {"key": "b", "value": 2}]
        reply = await api.post("/v1/state/batch_put", json={"operations": ops})
        assert reply.status_code == 200, reply.content
        first, second = reply.json()["results"]
        assert first["status"] == "error" and first["error"]["field"] == "operations[0].ttl_ms"
        assert second["status"] == "ok"
    async with open_api(data) as api:
        assert [item["key"] for item in (await api.get("/v1/state")).json()] == ["b"]


async def test_doc_put_ttl_past_the_integer_range_is_400_and_the_server_lives(tmp_path):
    data = tmp_path / "data"
    async with open_api(data) as api:
        reply = await api.put(f"/v1/doc/c/d?ttl_ms={U64_MAX}", json={"v": 1})
        assert_error(reply, 400, "invalid_argument", field="ttl_ms")
        assert_error(await api.get("/v1/doc/c/d"), 404)
        assert (await api.put("/v1/doc/c/d", json={"v": 2})).status_code == 200
    async with open_api(data) as api:
        assert (await api.get("/v1/doc/c/d")).json()["doc"] == {"v": 2}


async def test_the_largest_accepted_ttl_round_trips(tmp_path):
    data = tmp_path / "data"
    async with open_api(data) as api:
        reply = await api.put("/v1/state/k", json={"value": 1, "ttl_ms": TTL_MS_MAX})
        assert reply.status_code == 200, reply.content
        expires = reply.json()["expires_at_ms"]
        reply = await api.put(f"/v1/doc/c/d?ttl_ms={TTL_MS_MAX}", json={"v": 1})
        assert reply.status_code == 200, reply.content
    async with open_api(data) as api:
        assert (await api.get("/v1/state/k")).json()["expires_at_ms"] == expires
        assert (await api.get("/v1/doc/c/d")).json()["doc"] == {"v": 1}


# ---- JSON nested deeper than orjson can write back ------------------------------------------
# Found: PUT /v1/state/k {"value": [[[...1000 levels...]]]} parsed (orjson reads 1024 levels)
# but canonical_json could not write it (orjson writes at most 254): 500 internal. The same
# for a document body, a find filter, batch values and key permissions.

DEPTH = 300


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


JSON_HEADERS = {"Content-Type": "application/json"}


async def test_kv_value_nested_too_deeply_is_400_naming_value(api):
    reply = await api.put("/v1/state/k", data=b'{"value": ' + nested(DEPTH) + b"}", headers=JSON_HEADERS)
    assert_error(reply, 400, "invalid_argument", field="value")
    assert_error(await api.get("/v1/state/k"), 404)


async def test_batch_value_nested_too_deeply_is_an_inline_error(api):
    body = b'{"operations": [{"key": "a", "value": ' + nested(DEPTH) + b'}, {"key": "b", "value": 1}]}'
    reply = await api.post("/v1/state/batch_put", data=body, headers=JSON_HEADERS)
    assert reply.status_code == 200, reply.content
    first, second = reply.json()["results"]
    assert first["status"] == "error" and first["error"]["field"] == "operations[0].value"
    assert second["status"] == "ok"
    assert [item["key"] for item in (await api.get("/v1/state")).json()] == ["b"]


async def test_doc_nested_too_deeply_is_400_naming_body(api):
    reply = await api.put("/v1/doc/c/d", data=nested(DEPTH), headers=JSON_HEADERS)
    assert_error(reply, 400, "invalid_argument", field="body")
    assert_error(await api.get("/v1/doc/c/d"), 404)


async def test_find_filter_nested_too_deeply_is_400_naming_filter(api):
    reply = await api.post("/v1/doc/c/find", data=b'{"filter": {"a": ' + nested(DEPTH) + b"}}", headers=JSON_HEADERS)
    assert_error(reply, 400, "invalid_argument", field="filter")


async def test_key_permissions_nested_too_deeply_is_400_naming_permissions(api):
    before = (await api.get("/v1/auth/keys")).json()
    body = b'{"name": "n", "permissions": ' + nested(DEPTH) + b"}"
    reply = await api.post("/v1/auth/keys", data=body, headers=JSON_HEADERS)
    assert_error(reply, 400, "invalid_argument", field="permissions")
    assert (await api.get("/v1/auth/keys")).json() == before


async def test_the_deepest_accepted_value_round_trips(api):
    reply = await api.put("/v1/state/k", data=b'{"value": ' + nested(254) + b"}", headers=JSON_HEADERS)
    assert reply.status_code == 200, reply.content
    assert (await api.get("/v1/state/k")).content.count(b"[") == 254


# ---- NUL in a find/_index field path --------------------------------------------------------
# Found: POST /v1/doc/c/find {"filter": {"a\u0000b": 1}} and POST /v1/doc/c/_index
# {"field": "a\u0000"}: the path is written into the SQL text as a literal, SQLite stops reading
# at the NUL ("unrecognized token"), and apsw's SQLError became a 500.


@pytest.mark.parametrize("body, field", [
    ({"filter": {"a\x00b": 1}}, "filter.a\x00b"),
    ({"filter": {"a": 1}, "sort": "b\x00"}, "sort"),
])
async def test_find_field_path_with_nul_is_400_naming_it(api, body, field):
    assert (await api.put("/v1/doc/c/d", json={"a": 1})).status_code == 200
    assert_error(await api.post("/v1/doc/c/find", json=body), 400, "invalid_argument", field=field)


async def test_index_field_path_with_nul_is_400_naming_field(api):
    assert_error(await api.post("/v1/doc/c/_index", json={"field": "a\x00"}), 400, "invalid_argument", field="field")
    reply = await api.post("/v1/doc/c/_index", json={"field": "a"})
    assert reply.status_code == 200 and reply.json()["created"] is True


# ---- user SQL: NUL in the text, text results that are not UTF-8 -----------------------------
# Found: {"sql": "\u0000select 1"} (apsw: ValueError "null character in query") and
# {"sql": "select cast(x'ff' as text)"} (apsw cannot decode the TEXT: UnicodeDecodeError) were
# 500s on both /v1/sql/query and /v1/sql/exec.


@pytest.mark.parametrize("path", ["/v1/sql/query", "/v1/sql/exec"])
@pytest.mark.parametrize("sql", ["\x00select 1", "select 1 -- \x00", "select 1\x00; drop table t"])
async def test_sql_with_nul_is_400_naming_sql(api, path, sql):
    assert_error(await api.post(path, json={"sql": sql}), 400, "sqlite_error", field="sql")


@pytest.mark.parametrize("sql", ["select cast(x'ff' as text)", "select char(55296)"])
async def test_sql_query_text_that_is_not_utf8_is_400_naming_sql(api, sql):
    assert_error(await api.post("/v1/sql/query", json={"sql": sql}), 400, "sqlite_error", field="sql")
    assert (await api.post("/v1/sql/query", json={"sql": "select 1 as one"})).json() == {"rows": [{"one": 1}]}


async def test_stored_text_that_is_not_utf8_is_readable_as_a_blob(api):
    reply = await api.post("/v1/sql/exec", json={"sql": "create table t(a)"})
    assert reply.status_code == 200, reply.content
    reply = await api.post("/v1/sql/exec", json={"sql": "insert into t values (cast(x'ff' as text))"})
    assert reply.json() == {"rows_affected": 1}
    assert_error(await api.post("/v1/sql/query", json={"sql": "select a from t"}), 400, "sqlite_error", field="sql")
    reply = await api.post("/v1/sql/query", json={"sql": "select cast(a as blob) as a from t"})
    assert reply.json() == {"rows": [{"a": "/w"}]}


async def test_sql_exec_returning_text_that_is_not_utf8_is_refused_and_rolled_back(api):
    assert (await api.post("/v1/sql/exec", json={"sql": "create table t(a)"})).status_code == 200
    reply = await api.post("/v1/sql/exec", json={"sql": "insert into t values (1) returning cast(x'ff' as text)"})
    assert_error(reply, 400, "sqlite_error", field="sql")
    assert (await api.post("/v1/sql/query", json={"sql": "select count(*) as n from t"})).json() == {"rows": [{"n": 0}]}


# ---- percent-encoded bytes that are not UTF-8, over a real socket ---------------------------
# Found: hypercorn percent-decodes the path with errors="replace", so PUT /v1/state/%FF and
# PUT /v1/state/%FE both wrote the key "\ufffd" (two keys silently became one), and a document
# id or API-key id did the same. (Quart's test client re-encodes the path, so this needs
# hypercorn on a socket.)


async def start_live(nursery, data_dir, **overrides) -> tuple[tuple[str, int], object]:
    """Serve kissvdb with hypercorn in this process: `((host, port), stop_event)`."""
    import functools

    import trio

    from kissvdb.api.server import serve
    from kissvdb.config import Settings
    from tests.api.conftest import API_KEY

    stop = trio.Event()
    settings = Settings(data_dir=str(data_dir), api_key=API_KEY, port=0, **overrides)
    url = await nursery.start(functools.partial(serve, settings, shutdown_trigger=stop.wait, handle_signals=False))
    host, port = url.rsplit("/", 1)[1].rsplit(":", 1)
    return (host, int(port)), stop


@pytest.fixture
async def live(tmp_path, nursery):
    """`(host, port)` of kissvdb served by hypercorn in this process, stopped at teardown."""
    address, stop = await start_live(nursery, tmp_path / "live")
    yield address
    stop.set()


async def raw_request(live, method: str, target: bytes, body: bytes | None = None) -> tuple[int, dict, bytes]:
    """One HTTP/1.1 request with the target sent byte for byte; (status, headers, body)."""
    import trio

    from tests.api.conftest import API_KEY

    head = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: x", b"Connection: close",
            b"Authorization: Bearer " + API_KEY.encode()]
    if body is not None:
        head += [b"Content-Type: application/json", b"Content-Length: %d" % len(body)]
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream(*live)
        async with stream:
            await stream.send_all(b"\r\n".join(head) + b"\r\n\r\n" + (body or b""))
            data = b""
            while chunk := await stream.receive_some():
                data += chunk
                head_bytes, sep, content = data.partition(b"\r\n\r\n")
                if sep:
                    lines = head_bytes.split(b"\r\n")
                    headers = {k.strip().lower().decode(): v.strip().decode()
                               for k, _, v in (line.partition(b":") for line in lines[1:])}
                    if len(content) >= int(headers.get("content-length", "0")):
                        return int(lines[0].split()[1]), headers, content
    raise AssertionError(f"incomplete response: {data!r}")


def assert_raw_error(reply, status: int, field: str) -> None:
    import orjson

    code, headers, content = reply
    assert code == status, (code, content)
    assert headers["content-type"].startswith("application/json"), (headers, content)
    body = orjson.loads(content)
    assert isinstance(body["error"], str) and isinstance(body["message"], str), body
    assert body.get("field") == field, body


@pytest.mark.parametrize("method, target, body, field", [
    ("PUT", b"/v1/state/%FF", b'{"value": 1}', "key"),
    ("PUT", b"/v1/state/a%C3", b'{"value": 1}', "key"),
    ("PUT", b"/v1/state/%ED%A0%80", b'{"value": 1}', "key"),  # an encoded surrogate
    ("GET", b"/v1/state/%FE", None, "key"),
    ("DELETE", b"/v1/state/%FF", None, "key"),
    ("PUT", b"/v1/state/%C0%AF", b'{"value": 1}', "key"),  # an overlong `/`
    ("PUT", b"/v1/state/%E0%80%AF", b'{"value": 1}', "key"),  # an overlong `/`, three bytes
    ("PUT", b"/v1/state/%F8%88%80%80%80", b'{"value": 1}', "key"),  # a five-byte sequence
    ("PUT", b"/v1/state/%F4%90%80%80", b'{"value": 1}', "key"),  # past U+10FFFF
    ("PUT", b"/v1/doc/c/%FF", b'{"v": 1}', "id"),
    ("PUT", b"/v1/doc/c/%C0%80", b'{"v": 1}', "id"),  # an overlong NUL
    ("DELETE", b"/v1/auth/keys/%FF", None, "id"),
])
async def test_path_bytes_that_are_not_utf8_are_400_naming_the_parameter(live, method, target, body, field):
    assert_raw_error(await raw_request(live, method, target, body), 400, field)
    code, _, content = await raw_request(live, "GET", b"/v1/state")
    assert (code, content) == (200, b"[]")


@pytest.mark.parametrize("target", [b"/v1/state/\xff", b"/v1/state/\x01", b"/v1/state/\x7f", b"/v1/doc/c/\xc3\xa9"])
async def test_raw_bytes_in_the_target_are_400_and_the_server_goes_on(live, target):
    code, headers, content = await raw_request(live, "PUT", target, b'{"value": 1}')
    assert code == 400 and headers["content-type"].startswith("application/json"), (code, content)
    code, _, content = await raw_request(live, "GET", b"/v1/state")
    assert (code, content) == (200, b"[]")


async def test_an_encoded_replacement_character_is_still_a_key(live):
    code, _, content = await raw_request(live, "PUT", b"/v1/state/%EF%BF%BD", b'{"value": 1}')
    assert code == 200, content
    code, _, content = await raw_request(live, "GET", b"/v1/state/%EF%BF%BD")
    assert code == 200 and b'"key":"\xef\xbf\xbd"' in content


# ---- OPTIONS on a static path that shadows a parameter --------------------------------------
# Found by schemathesis (allow_header_conformance): OPTIONS /v1/state/batch_put listed
# DELETE, GET, HEAD, PUT (the `{key}` route's methods) although each of them answers 405 there;
# the same for /v1/doc/{c}/find and /_index. The 405 and the OPTIONS answer now agree.


@pytest.mark.parametrize("path", ["/v1/state/batch_put", "/v1/doc/c/find", "/v1/doc/c/_index"])
async def test_options_and_405_agree_on_static_paths(api, path):
    options = await api.request("OPTIONS", path)
    assert options.status_code == 204
    assert options.headers["Allow"] == "OPTIONS, POST"
    for method in ("GET", "HEAD", "PUT", "DELETE"):
        reply = await api.request(method, path)
        assert reply.status_code == 405, (method, reply.content)
        assert reply.headers["Allow"] == "OPTIONS, POST"


@pytest.mark.parametrize("path", ["/v1/state/batch_put2", "/v1/state/a/batch_put", "/v1/doc/c/finds"])
async def test_keys_that_only_contain_a_static_name_are_keys(api, path):
    assert "PUT" in (await api.request("OPTIONS", path)).headers["Allow"]
    body = {"value": 1} if path.startswith("/v1/state") else {"v": 1}
    assert (await api.put(path, json=body)).status_code == 200
    assert (await api.get(path)).status_code == 200


# ---- a body that never comes ----------------------------------------------------------------
# Found: PUT with `Content-Length: 100` and no body bytes (or a chunked body whose first chunk
# never completes) was never answered: the pipeline took the first body message before the
# request deadline started, so REQUEST_TIMEOUT_SECS did not apply and the connection and its
# task were held forever (a slowloris).


@pytest.mark.parametrize("head", [
    b"Content-Length: 100\r\n",
    b"Transfer-Encoding: chunked\r\n",
])
async def test_a_body_that_never_arrives_is_408_within_the_request_timeout(tmp_path, nursery, head):
    import orjson
    import trio

    from tests.api.conftest import API_KEY

    address, stop = await start_live(nursery, tmp_path / "live", request_timeout_secs=1)
    stream = await trio.open_tcp_stream(*address)
    async with stream:
        await stream.send_all(b"PUT /v1/state/k HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + API_KEY.encode()
                              + b"\r\nContent-Type: application/json\r\n" + head + b"\r\n")
        started = trio.current_time()
        data = b""
        with trio.fail_after(5):
            while b"}" not in data:
                chunk = await stream.receive_some()
                assert chunk, data
                data += chunk
        assert trio.current_time() - started < 2.5  # one deadline, not one per phase
    status_line, _, rest = data.partition(b"\r\n")
    assert status_line.split()[1] == b"408", data
    assert orjson.loads(rest.partition(b"\r\n\r\n")[2])["error"] == "timeout"
    stop.set()


# ---- a newline inside a key or id -----------------------------------------------------------
# Found by schemathesis: PUT/GET/DELETE /v1/state/a%0Ab answered 404 "route not found"
# (the path converter's regex `.+` does not match a newline), although batch_put could write
# that key; the same for document ids.


@pytest.mark.parametrize("key", ["a\nb", "\n", "x\r\n", "batch_put\n"])
async def test_kv_key_with_a_newline_is_reachable(api, key):
    path = "/v1/state/" + key.replace("\n", "%0A").replace("\r", "%0D")
    reply = await api.put(path, json={"value": 1})
    assert reply.status_code == 200, reply.content
    assert reply.json()["key"] == key
    assert (await api.get(path)).json()["key"] == key
    assert (await api.delete(path)).json() == {"deleted": True}


async def test_kv_key_written_by_batch_with_a_newline_reads_back(api):
    reply = await api.post("/v1/state/batch_put", json={"operations": [{"key": "a\nb", "value": 1}]})
    assert reply.json()["results"][0]["status"] == "ok"
    assert (await api.get("/v1/state/a%0Ab")).json()["value"] == 1


async def test_doc_id_with_a_newline_is_reachable(api):
    reply = await api.put("/v1/doc/c/a%0Ab", json={"v": 1})
    assert reply.status_code == 200, reply.content
    assert (await api.get("/v1/doc/c/a%0Ab")).json()["id"] == "a\nb"
    assert (await api.delete("/v1/doc/c/a%0Ab")).json() == {"deleted": True}


# ---- a 204 framed as a chunked body ---------------------------------------------------------
# Found by schemathesis: every OPTIONS answer (204) carried `transfer-encoding: chunked` and no
# body at all, so a keep-alive client that follows the framing (Python's http.client, requests)
# waited for a last chunk that never came: each OPTIONS hung until the client's timeout.


async def test_a_204_carries_no_body_framing_and_the_connection_goes_on(live):
    import trio

    from tests.api.conftest import API_KEY

    auth = b"Authorization: Bearer " + API_KEY.encode() + b"\r\n"
    options = b"OPTIONS /v1/state/k HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n"
    get = b"GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream(*live)
        async with stream:
            await stream.send_all(options + get)  # both on one keep-alive connection
            data = b""
            while chunk := await stream.receive_some():
                data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 204 "), data
    assert b"transfer-encoding" not in head.lower() and b"content-length" not in head.lower(), head
    assert rest.startswith(b"HTTP/1.1 200 ") and rest.endswith(b"\r\n\r\nok"), rest  # no bytes between the two


# ---- CBOR values JSON cannot hold, on the vector routes -------------------------------------
# Found by hand: a CBOR search body whose `filters` held a byte string, `undefined`, a map key
# that is not a string, a set (tag 258) or an unknown tag was a 500 (the filters' JSON size could
# not be measured), and so was a JSON `filters` nested 255..1024 levels deep; a vector holding a
# CBOR bignum was a 500 (OverflowError converting it to float), on search and upsert_batch.

CBOR_HEADERS = {"Content-Type": "application/cbor"}
VECTORS = "/v1/vector/c"


async def vector_collection(api) -> int:
    """A dimension-2 collection holding one vector; returns the durable offset after it."""
    assert (await api.post(VECTORS, json={"dim": 2, "metric": "cosine"})).status_code == 200
    reply = await api.post(f"{VECTORS}/upsert", json={"id": "a", "vector": [1, 0], "meta": {"x": 1}})
    assert reply.status_code == 200, reply.content
    return api.engine.durable_offset


def odd_filters() -> list:
    """CBOR `filters` that JSON cannot hold, each as a pytest param."""
    import cbor2

    values = {"bytes": b"bytes", "undefined": cbor2.undefined, "set": cbor2.CBORTag(258, [1, 2]),
              "unknown-tag": cbor2.CBORTag(9999, 1), "bignum": 1 << 70}
    cases = [pytest.param({"x": v}, id=f"value-{k}") for k, v in values.items()]
    cases += [pytest.param({"x": {"$in": [v]}}, id=f"operator-{k}") for k, v in values.items()]
    return cases + [pytest.param({1: 1}, id="integer-key"), pytest.param({(1, 2): 1}, id="array-key")]


@pytest.mark.parametrize("filters", odd_filters())
async def test_cbor_filters_json_cannot_hold_are_422_naming_filters(api, filters):
    import cbor2

    await vector_collection(api)
    body = {"vector": [1.0, 0.0], "k": 1, "filters": filters}
    reply = await api.post(f"{VECTORS}/search", data=cbor2.dumps(body), headers=CBOR_HEADERS)
    assert_error(reply, 422, "invalid_argument", field="filters")
    queries = [{"vector": [1.0, 0.0], "k": 1}, body]
    reply = await api.post(f"{VECTORS}/search_batch", data=cbor2.dumps({"queries": queries}), headers=CBOR_HEADERS)
    assert_error(reply, 422, "invalid_argument", field="queries[1].filters")
    hits = (await api.post(f"{VECTORS}/search", json={"vector": [1, 0], "k": 1})).json()["hits"]
    assert [hit["id"] for hit in hits] == ["a"]


async def test_search_filters_nested_too_deeply_are_400_naming_filters(api):
    await vector_collection(api)
    body = b'{"vector": [1, 0], "k": 1, "filters": {"x": ' + nested(DEPTH) + b"}}"
    reply = await api.post(f"{VECTORS}/search", data=body, headers=JSON_HEADERS)
    assert_error(reply, 400, "invalid_argument", field="filters")
    reply = await api.post(f"{VECTORS}/search_batch", data=b'{"queries": [' + body + b"]}", headers=JSON_HEADERS)
    assert_error(reply, 400, "invalid_argument", field="queries[0].filters")


async def test_a_cbor_bignum_in_a_vector_is_400_and_writes_nothing(api):
    import cbor2

    before = await vector_collection(api)
    body = cbor2.dumps({"vector": [1 << 1100, 0], "k": 1})
    reply = await api.post(f"{VECTORS}/search", data=body, headers=CBOR_HEADERS)
    assert_error(reply, 400, "invalid_argument", field="vector")
    items = [{"id": "b", "vector": [1 << 1100, 0]}, {"id": "c", "vector": [0, 1]}]
    reply = await api.post(f"{VECTORS}/upsert_batch", data=cbor2.dumps({"items": items}), headers=CBOR_HEADERS)
    assert reply.status_code == 200, reply.content
    first, second = reply.json()["results"]
    assert first["status"] == "error" and first["error"]["error"] == "invalid_argument", first
    assert second == {"status": "upserted", "id": "c"}
    assert_error(await api.get(f"{VECTORS}/get?id=b"), 404)
    assert (await api.get(f"{VECTORS}/get?id=c")).status_code == 200
    assert api.engine.durable_offset == before + 1  # `c` alone was logged


@pytest.mark.parametrize("raw, status", [
    # {"vector": a list holding itself (shared-value tags 28 and 29), "k": 1}
    (bytes([0xa2, 0x66]) + b"vector" + bytes([0xd8, 28, 0x81, 0xd8, 29, 0x00]) + b"\x61k\x01", 422),
    (b"\x81" * 100_000 + b"\x01", 400),                            # nested past cbor2's depth limit
    (b"\x5b" + (1 << 62).to_bytes(8, "big"), 400),                 # a byte string of 2**62 bytes, announced
    (b"\x9b" + (1 << 62).to_bytes(8, "big"), 400),                 # an array of 2**62 items, announced
    (b"\xa1\x66vector\x5f\x41a\x41a\xff", 422),                    # an indefinite-length byte string (2 bytes)
    (b"", 400),
    (b"\xff", 400),
])
@pytest.mark.parametrize("route", ["search", "upsert_batch"])
async def test_malformed_cbor_bodies_are_4xx_and_write_nothing(api, raw, status, route):
    before = await vector_collection(api)
    reply = await api.post(f"{VECTORS}/{route}", data=raw, headers=CBOR_HEADERS)
    assert_error(reply, status, "invalid_argument")
    assert api.engine.durable_offset == before


# ---- numbers with more digits than Python converts ------------------------------------------
# Found by hand: `GET /v1/state?limit=<5000 nines>` and `GET /v1/stream?since=<5000 nines>` were
# 500s: int() refuses strings of more than 4300 digits (ValueError) before the u64 check ran.
# `Last-Event-ID` went through the same parser.

MANY_DIGITS = "9" * 5000


@pytest.mark.parametrize("method, path, field", [
    ("GET", f"/v1/state?limit={MANY_DIGITS}", "limit"),
    ("GET", f"/v1/stream?since={MANY_DIGITS}", "since"),
    ("GET", f"/v1/events?since={MANY_DIGITS}", "since"),
    ("PUT", f"/v1/doc/c/d?ttl_ms={MANY_DIGITS}", "ttl_ms"),
    ("PUT", f"/v1/doc/c/d?if_revision={MANY_DIGITS}", "if_revision"),
    ("DELETE", f"/v1/doc/c/d?if_revision={MANY_DIGITS}", "if_revision"),
])
async def test_query_numbers_with_thousands_of_digits_are_400_naming_them(api, method, path, field):
    before = api.engine.durable_offset
    body = {"json": {"v": 1}} if method == "PUT" else {}
    assert_error(await api.request(method, path, **body), 400, "invalid_argument", field=field)
    assert api.engine.durable_offset == before


async def test_zero_padded_query_numbers_still_parse(api):
    assert (await api.put("/v1/state/k", json={"value": 1})).status_code == 200
    reply = await api.get("/v1/state?limit=" + "0" * 40 + "1")
    assert [item["key"] for item in reply.json()] == ["k"]


async def test_a_last_event_id_with_thousands_of_digits_is_ignored(live):
    import trio

    from tests.api.conftest import API_KEY

    head = (b"GET /v1/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + API_KEY.encode()
            + b"\r\nLast-Event-ID: " + MANY_DIGITS.encode() + b"\r\n\r\n")
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream(*live)
        async with stream:
            await stream.send_all(head)
            data = b""
            while b"\r\n" not in data:
                chunk = await stream.receive_some()
                assert chunk, data
                data += chunk
    assert data.startswith(b"HTTP/1.1 200 "), data  # the stream starts, from `since` (0)


# ---- probes that found nothing: NUL, JSON that is not JSON, duplicate keys, numbers ---------
# Hand-written inputs a schema-driven fuzzer rarely builds. Each passed when first tried; they
# stay so that the next change to the codec or the stores cannot break them unseen.


async def test_nul_in_keys_and_ids_round_trips_and_survives_a_restart(tmp_path):
    data = tmp_path / "data"
    async with open_api(data) as api:
        assert (await api.put("/v1/state/a%00b", json={"value": 1})).json()["key"] == "a\x00b"
        assert (await api.put("/v1/doc/c/a%00b", json={"v": 1})).json()["id"] == "a\x00b"
        assert (await api.post(VECTORS, json={"dim": 2, "metric": "cosine"})).status_code == 200
        assert (await api.post(f"{VECTORS}/upsert", json={"id": "a\x00b", "vector": [1, 0]})).status_code == 200
    async with open_api(data) as api:  # replayed from the log and the checkpoints
        assert (await api.get("/v1/state/a%00b")).json()["value"] == 1
        assert [item["key"] for item in (await api.get("/v1/state?prefix=a%00")).json()] == ["a\x00b"]
        assert (await api.get("/v1/doc/c/a%00b")).json()["doc"] == {"v": 1}
        found = (await api.post("/v1/doc/c/find", json={"filter": {"v": 1}})).json()["documents"]
        assert [doc["id"] for doc in found] == ["a\x00b"]
        assert (await api.get(f"{VECTORS}/get?id=a%00b")).json()["vector"] == [1.0, 0.0]
        hits = (await api.post(f"{VECTORS}/search", json={"vector": [1, 0], "k": 1})).json()["hits"]
        assert [hit["id"] for hit in hits] == ["a\x00b"]


@pytest.mark.parametrize("body", [
    b'{"value": NaN}', b'{"value": Infinity}', b'{"value": -Infinity}', b'{"value": 1e400}',
    b'{"value": "\\ud800"}',            # a lone surrogate, escaped
    b'{"value": "\xed\xa0\x80"}',      # a surrogate, encoded
    b'{"value": "\xff"}', b'\xef\xbb\xbf{"value": 1}', b'{"value": 1} x', b'{"value": 1}\x00',
    b'{"value": ' + nested(1100) + b"}",  # deeper than orjson parses
])
async def test_json_that_is_not_json_is_400_naming_body(api, body):
    for method, path in (("PUT", "/v1/state/k"), ("PUT", "/v1/doc/c/k"), ("POST", "/v1/sql/exec"),
                         ("POST", f"{VECTORS}/upsert")):
        reply = await api.request(method, path, data=body, headers=JSON_HEADERS)
        assert_error(reply, 400, "invalid_argument", field="body")
    assert api.engine.durable_offset == 0


async def test_duplicate_keys_the_last_one_wins(api):
    body = b'{"value": 1, "ttl_ms": 1, "value": {"a": 1, "a": [2]}, "ttl_ms": null}'
    reply = await api.put("/v1/state/k", data=body, headers=JSON_HEADERS)
    assert reply.status_code == 200 and reply.json()["expires_at_ms"] is None, reply.content
    assert (await api.get("/v1/state/k")).json()["value"] == {"a": [2]}


@pytest.mark.parametrize("method, path, body, field", [
    ("PUT", "/v1/state/k", b'{"value": 1, "ttl_ms": 18446744073709551616}', "ttl_ms"),
    ("PUT", "/v1/state/k", b'{"value": 1, "if_revision": 1e2}', "if_revision"),
    ("POST", "/v1/doc/c/find", b'{"limit": 18446744073709551616}', "limit"),
    ("POST", "/v1/vector/c", b'{"dim": 18446744073709551616, "metric": "cosine"}', "dim"),
    ("POST", "/v1/vector/c", b'{"dim": -1, "metric": "cosine"}', "dim"),
])
async def test_numbers_json_reads_as_floats_or_negatives_are_422_naming_them(api, method, path, body, field):
    assert_error(await api.request(method, path, data=body, headers=JSON_HEADERS), 422, "invalid_argument", field=field)
    assert api.engine.durable_offset == 0


async def test_integers_past_64_bits_are_stored_as_floats(api):
    body = b'{"value": [123456789012345678901234567890, -123456789012345678901234567890]}'
    assert (await api.put("/v1/state/k", data=body, headers=JSON_HEADERS)).status_code == 200
    assert (await api.get("/v1/state/k")).json()["value"] == [1.2345678901234568e29, -1.2345678901234568e29]
