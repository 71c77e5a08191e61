"""`POST /v1/doc/{c}/find` at its documented limits, and hostile cursors (issue 9 defect 8).

Both used to be 500s: `$in` with 1,000 values (the documented maximum) compiled to a chain of
ORs deeper than SQLite's expression limit, and a cursor is user input whose fields were bound
to SQLite without checking their types. Every case here is a 200 with the right documents or a
400 naming the field; never a 500.
"""

from __future__ import annotations

import base64
import json
import random

import orjson
import pytest

from kissvdb.documents.query import FILTER_TERMS_MAX, IN_VALUES_MAX
from tests.helpers import assert_error

SEED = 20261209


async def put(api, collection: str, id_: str, doc):
    reply = await api.put(f"/v1/doc/{collection}/{id_}", json=doc)
    assert reply.status_code == 200, reply.content


async def find(api, **body):
    reply = await api.post("/v1/doc/c/find", json=body)
    assert reply.status_code == 200, reply.content
    return reply.json()


def ids(body) -> list[str]:
    return [d["id"] for d in body["documents"]]


async def test_in_and_nin_take_the_documented_maximum_of_values(api):
    for i in range(6):
        await put(api, "c", f"d{i}", {"k": {"o": i}, "n": i})
    objects = [{"o": j} for j in range(IN_VALUES_MAX)]
    assert ids(await find(api, filter={"k": {"$in": objects}})) == [f"d{i}" for i in range(6)]
    assert ids(await find(api, filter={"k": {"$nin": objects}})) == []
    mixed = [None, True, "4", 4.0, [4]] + list(range(10, IN_VALUES_MAX + 5))[: IN_VALUES_MAX - 6] + [4]
    assert len(mixed) == IN_VALUES_MAX
    assert ids(await find(api, filter={"n": {"$in": mixed}})) == ["d4"]  # 4 only as an integer
    body = await find(api, filter={"k": {"$in": objects[:800], "$nin": objects[:3]}, "n": {"$nin": mixed}})
    assert ids(body) == ["d3", "d5"]
    too_many = objects + [{"o": -1}]
    assert_error(await api.post("/v1/doc/c/find", json={"filter": {"k": {"$in": too_many}}}), 400,
                 "invalid_argument", field="filter.k.$in")


async def test_a_filter_takes_the_documented_maximum_of_conditions(api):
    await put(api, "c", "d", {f"f{i}": i for i in range(FILTER_TERMS_MAX)})
    full = {f"f{i}": i for i in range(FILTER_TERMS_MAX)}
    assert ids(await find(api, filter=full)) == ["d"]
    operators = {f"f{i}": {"$gte": i, "$lte": i} for i in range(FILTER_TERMS_MAX // 2)}
    assert ids(await find(api, filter=operators)) == ["d"]
    over = dict(full, extra=1)
    body = assert_error(await api.post("/v1/doc/c/find", json={"filter": over}), 400, "invalid_argument",
                        field="filter")
    assert str(FILTER_TERMS_MAX) in body["message"]
    over_ops = dict(operators, last={"$ne": 1})
    assert_error(await api.post("/v1/doc/c/find", json={"filter": over_ops}), 400, field="filter")


def cursor_of(obj) -> str:
    # The standard library, not orjson: it writes integers of any size, as an attacker may.
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def random_json(rng: random.Random, depth: int = 0):
    kinds = ["null", "bool", "int", "bigint", "float", "str", "list", "dict"]
    kind = rng.choice(kinds if depth < 3 else kinds[:6])
    if kind == "null":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "int":
        return rng.randint(-10, 10)
    if kind == "bigint":
        return rng.choice([2**63, 2**64 - 1, -(2**63) - 1, -(2**63), 10**30])
    if kind == "float":
        return rng.choice([0.5, -1e300, 1e-300, 3.0])
    if kind == "str":
        return rng.choice(["", "a", "\x00", "é", "x" * 300, "[1]", "{}"])
    if kind == "list":
        return [random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(["s", "v", "id", "x"]): random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))}


async def test_the_crafted_cursor_of_the_report_is_400(api):
    await put(api, "c", "d", {"a": 1})
    crafted = cursor_of({"s": [["a", False]], "v": [{"a": 1}, 2], "id": "x"})
    assert_error(await api.post("/v1/doc/c/find", json={"sort": "a", "cursor": crafted}), 400,
                 "invalid_argument", field="cursor")


async def test_random_json_in_any_cursor_field_is_400_cursor_never_500(api):
    for i in range(5):
        await put(api, "c", f"d{i}", {"a": i, "b": f"s{i}"})
    sort = ["a", "-b"]
    first = await find(api, sort=sort, limit=2)
    valid = orjson.loads(base64.urlsafe_b64decode(first["next_cursor"] + "=="))
    assert set(valid) == {"s", "v", "id"} and len(valid["v"]) == 4
    rng = random.Random(SEED)
    refused = 0
    for case in range(300):
        obj = orjson.loads(orjson.dumps(valid))
        target = rng.choice(["s", "v", "id", "v[i]", "whole", "drop"])
        if target == "v[i]":
            obj["v"][rng.randrange(4)] = random_json(rng)
        elif target == "whole":
            obj = random_json(rng)
        elif target == "drop":
            del obj[rng.choice(["s", "v", "id"])]
        else:
            obj[target] = random_json(rng)
        reply = await api.post("/v1/doc/c/find", json={"sort": sort, "limit": 2, "cursor": cursor_of(obj)})
        context = f"seed={SEED} case={case} cursor={obj!r}"
        assert reply.status_code in (200, 400), (context, reply.content)
        if reply.status_code == 400:
            assert_error(reply, 400, "invalid_argument", field="cursor")
            refused += 1
    assert refused > 250  # almost every mutation is refused; the rest happened to be well formed


@pytest.mark.parametrize("text", ["", "=", "a", "____", base64.urlsafe_b64encode(b"\xff\xfe").decode(),
                                  base64.urlsafe_b64encode(b"[]").decode(), cursor_of("x"), cursor_of(None)])
async def test_cursor_strings_that_are_not_ours_are_400(api, text):
    assert_error(await api.post("/v1/doc/c/find", json={"cursor": text}), 400, field="cursor")
