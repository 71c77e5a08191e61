"""RequestReader without sockets or an event loop: bytes in, Requests (or an error) out."""

from __future__ import annotations

import pytest

from kissvdb.api.http import BodyTooLarge, HttpLimits, InvalidBody
from kissvdb.api.http.reader import RequestReader


def reader(**limits) -> RequestReader:
    return RequestReader(HttpLimits(**limits), ("127.0.0.1", 1), None, lambda: 100.0)


def test_a_request_split_at_every_byte_parses_the_same():
    data = (b"POST /a%20b/c?x=1 HTTP/1.1\r\nHost: h\r\nX-Name: va" + b"l" * 50 + b"ue\r\n"
            b"Content-Length: 5\r\n\r\nhello")
    for cut in range(1, len(data)):
        r = reader()
        r.feed(data[:cut])
        r.feed(data[cut:])
        (request,) = r.ready
        assert (request.method, request.raw_path, request.path) == ("POST", b"/a%20b/c", "/a b/c")
        assert request.query_string == b"x=1"
        assert request.headers.get("X-NAME") == "va" + "l" * 50 + "ue"
        assert request.complete and request._chunks and b"".join(request._chunks) == b"hello"
        assert request.deadline == 100.0 + HttpLimits().request_timeout_s


def test_trailers_count_against_the_body_and_are_not_headers():
    r = reader(max_body_bytes=100)
    r.feed(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: " + b"v" * 200 + b"\r\n\r\n")
    (request,) = r.ready
    assert "x-t" not in request.headers
    assert isinstance(request.body_error, BodyTooLarge)


def test_content_length_over_the_cap_is_refused_from_the_head():
    r = reader(max_body_bytes=10)
    r.feed(b"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n" + b"x" * 11)
    (request,) = r.ready
    assert isinstance(request.refusal, BodyTooLarge)
    assert request._chunks == []  # never buffered


def test_an_endless_chunked_body_is_cut():
    r = reader(max_body_bytes=1000, max_header_bytes=1000)
    r.feed(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
    (request,) = r.ready
    for _ in range(10):  # chunk extensions carry no body bytes but still have to end
        r.feed(b"1;" + b"e" * 400)
    assert isinstance(request.body_error, BodyTooLarge) and r.dead


def test_an_incomplete_head_is_bounded_by_bytes_fed():
    r = reader(max_header_bytes=2048)
    r.feed(b"GET / HTTP/1.1\r\nHost: h\r\nX: ")
    for _ in range(3):
        r.feed(b"v" * 1000)
    assert r.dead and r.error is not None and r.error.status == 431


def test_eof_mid_body_fails_the_body():
    r = reader()
    r.feed(b"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
    r.feed_eof()
    assert isinstance(r.ready[0].body_error, InvalidBody)


@pytest.mark.parametrize("data, status", [
    (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (b"GET / HTTP/2.0\r\n\r\n", 505),
    (b"GET /" + b"a" * 100 + b" HTTP/1.1\r\nHost: h\r\n\r\n", 414),
])
def test_bad_heads_leave_an_error_to_answer(data, status):
    r = reader(max_url_bytes=64)
    r.feed(data)
    assert not r.ready and r.dead
    assert r.error.status == status


def test_the_pipelined_queue_stops_parsing_at_its_cap():
    r = reader(max_pipelined_requests=2)
    r.feed(b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\n" * 5)
    assert [request.raw_path for request in r.ready] == [b"/1", b"/1"]
    assert r.dead and r.error is None  # nothing to answer: the client retries the rest
