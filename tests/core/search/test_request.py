"""Every field of /search/ingest, /search and /search/delete: defaults, answers, and each bad
input refused with the status and the field it names (contract §3.10 plus kissvdb's caps)."""

import random

import numpy as np
import pytest

from kissvdb.errors import InvalidArgument, KissError, PayloadTooLarge, UnprocessableEntity
from kissvdb.search.request import (DEFAULT_LIMITS, SearchLimits, parse_delete, parse_ingest, parse_search)

DOC = {"id": 7, "vector": [0.1, 0.2], "content": "hello", "metadata": {}}


def doc(**changes):
    out = dict(DOC)
    out.update(changes)
    return out


def refused(fn, body, status_cls, field, limits=DEFAULT_LIMITS):
    with pytest.raises(status_cls) as info:
        fn(body, limits)
    assert type(info.value) is status_cls, info.value
    assert info.value.field == field, (info.value.field, info.value.message)
    return info.value


# ---- ingest -------------------------------------------------------------------------------


def test_ingest_reads_one_document_with_every_metadata_field():
    meta = {"filename": "a.pdf", "processed_at": 1700000000000, "category": "c", "language": "es",
            "status": "ok", "version": "v2", "group_id": 4294967295, "document_id": "d1"}
    (d,) = parse_ingest({"document": doc(metadata=meta)})
    assert d.id == 7 and d.content == "hello" and d.metadata == meta
    assert d.vector.dtype == np.float32 and d.vector.tolist() == [np.float32(0.1), np.float32(0.2)]


def test_ingest_drops_unknown_and_null_metadata_fields():
    (d,) = parse_ingest({"document": doc(metadata={"category": None, "author": "x", "status": "s"}), "x": 1})
    assert d.metadata == {"status": "s"}


def test_ingest_batch_of_documents():
    docs = parse_ingest({"documents": [doc(id=1), doc(id=2)]})
    assert [d.id for d in docs] == [1, 2]


@pytest.mark.parametrize("body, field", [
    ({}, "document"),
    ({"document": None}, "document"),
    ({"document": []}, "document"),
    ({"document": {k: v for k, v in DOC.items() if k != "id"}}, "document.id"),
    ({"document": doc(id=-1)}, "document.id"),
    ({"document": doc(id=1 << 32)}, "document.id"),
    ({"document": doc(id=1.5)}, "document.id"),
    ({"document": doc(id="7")}, "document.id"),
    ({"document": doc(id=True)}, "document.id"),
    ({"document": {k: v for k, v in DOC.items() if k != "vector"}}, "document.vector"),
    ({"document": doc(vector="1,2")}, "document.vector"),
    ({"document": doc(vector=[1, "2"])}, "document.vector"),
    ({"document": doc(vector=[1, True])}, "document.vector"),
    ({"document": {k: v for k, v in DOC.items() if k != "content"}}, "document.content"),
    ({"document": doc(content=3)}, "document.content"),
    ({"document": {k: v for k, v in DOC.items() if k != "metadata"}}, "document.metadata"),
    ({"document": doc(metadata=None)}, "document.metadata"),
    ({"document": doc(metadata=[])}, "document.metadata"),
    ({"document": doc(metadata={"group_id": -1})}, "document.metadata.group_id"),
    ({"document": doc(metadata={"group_id": 1 << 32})}, "document.metadata.group_id"),
    ({"document": doc(metadata={"processed_at": "1"})}, "document.metadata.processed_at"),
    ({"document": doc(metadata={"processed_at": 1 << 64})}, "document.metadata.processed_at"),
    ({"document": doc(metadata={"category": 1})}, "document.metadata.category"),
    ({"document": doc(metadata={"document_id": 5})}, "document.metadata.document_id"),
    ({"documents": {}}, "documents"),
    ({"documents": [doc(), 5]}, "documents[1]"),
    ({"documents": [doc(id=1), doc(id="x")]}, "documents[1].id"),
])
def test_ingest_wrong_shapes_are_422_naming_the_field(body, field):
    refused(parse_ingest, body, UnprocessableEntity, field)


def test_ingest_body_that_is_not_an_object():
    refused(parse_ingest, [DOC], UnprocessableEntity, "body")


@pytest.mark.parametrize("body, field", [
    ({"document": doc(vector=[])}, "document.vector"),
    ({"document": doc(vector=[1e39])}, "document.vector"),  # past float32: infinite
    ({"document": doc(vector=[10 ** 400])}, "document.vector"),
    ({"documents": []}, "documents"),
    ({"documents": [doc(id=1), doc(id=1)]}, "documents[1].id"),
    ({"document": DOC, "documents": [DOC]}, "documents"),
])
def test_ingest_bad_values_are_400_naming_the_field(body, field):
    refused(parse_ingest, body, InvalidArgument, field)


def test_ingest_caps():
    small = SearchLimits(content_bytes_max=8, docs_per_ingest_max=2, dim_max=3, metadata_str_bytes_max=4)
    refused(parse_ingest, {"document": doc(content="é" * 5)}, PayloadTooLarge, "document.content", small)
    parse_ingest({"document": doc(content="é" * 4)}, small)  # 8 bytes: at the cap
    refused(parse_ingest, {"documents": [doc(id=i) for i in range(3)]}, InvalidArgument, "documents", small)
    refused(parse_ingest, {"document": doc(vector=[1, 2, 3, 4])}, InvalidArgument, "document.vector", small)
    refused(parse_ingest, {"document": doc(metadata={"filename": "abcde"})}, InvalidArgument,
            "document.metadata.filename", small)


# ---- delete -------------------------------------------------------------------------------


def test_delete_one_or_many_ids():
    assert parse_delete({"id": 3}) == [3]
    assert parse_delete({"ids": [3, 4, 3]}) == [3, 4]


@pytest.mark.parametrize("body, cls, field", [
    ({}, UnprocessableEntity, "id"),
    ({"id": -1}, UnprocessableEntity, "id"),
    ({"id": "3"}, UnprocessableEntity, "id"),
    ({"ids": 3}, UnprocessableEntity, "ids"),
    ({"ids": [1, 1 << 32]}, UnprocessableEntity, "ids[1]"),
    ({"ids": []}, InvalidArgument, "ids"),
])
def test_delete_bad_input(body, cls, field):
    refused(parse_delete, body, cls, field)


def test_delete_cap():
    refused(parse_delete, {"ids": [1, 2, 3]}, InvalidArgument, "ids", SearchLimits(ids_per_delete_max=2))


# ---- search -------------------------------------------------------------------------------


def test_search_defaults_are_the_originals():
    req = parse_search({"query": "hi"})
    assert (req.query, req.top_k, req.group_by, req.group_limit, req.mode) == ("hi", 10, None, 1, "vector")
    assert req.filters.category is None and req.filters.language is None and req.filters.status is None
    assert req.filters.version_policy == "all" and not req.filters.latest
    assert req.vector is None and req.weights is None
    nulls = parse_search({"query": "hi", "top_k": None, "filters": None, "group_by": None, "group_limit": None,
                          "mode": None, "vector": None, "weights": None})
    assert (nulls.top_k, nulls.group_limit, nulls.mode) == (10, 1, "vector")


def test_search_reads_every_field():
    req = parse_search({"query": "q", "top_k": 3, "group_by": "filename", "group_limit": 2, "mode": "hybrid",
                        "vector": [1, 2], "weights": {"vector": 0.25, "keyword": 0.75},
                        "filters": {"category": "c", "language": ["es", "en"], "status": "s",
                                    "version_policy": "latest"}})
    assert (req.top_k, req.group_by, req.group_limit, req.mode) == (3, "filename", 2, "hybrid")
    assert req.vector.tolist() == [1.0, 2.0] and req.weights == (0.25, 0.75)
    f = req.filters
    assert (f.category, f.language, f.status, f.latest) == ("c", ("es", "en"), "s", True)
    assert parse_search({"query": "q", "filters": {"language": "es"}}).filters.language == ("es",)


def test_search_query_vector_is_the_clients_or_derived():
    assert parse_search({"query": "TEST_VEC:1,2"}).query_vector().tolist() == [1.0, 2.0]
    assert parse_search({"query": "TEST_VEC:1,2", "vector": [3]}).query_vector().tolist() == [3.0]
    assert len(parse_search({"query": "words"}).query_vector()) == 384


def test_search_weights_are_clamped_and_default_per_side():
    assert parse_search({"query": "q", "weights": {"vector": 7, "keyword": -2}}).weights == (1.0, 0.0)
    assert parse_search({"query": "q", "weights": {"vector": 0.2}}).weights == (0.2, 0.5)
    assert parse_search({"query": "q", "weights": {}}).weights is None


@pytest.mark.parametrize("body, field", [
    ({}, "query"),
    ({"query": None}, "query"),
    ({"query": 5}, "query"),
    ({"query": "q", "top_k": -1}, "top_k"),
    ({"query": "q", "top_k": 2.5}, "top_k"),
    ({"query": "q", "top_k": "3"}, "top_k"),
    ({"query": "q", "top_k": 1 << 64}, "top_k"),  # past usize: serde's 422
    ({"query": "q", "group_limit": -1}, "group_limit"),
    ({"query": "q", "group_by": 3}, "group_by"),
    ({"query": "q", "filters": []}, "filters"),
    ({"query": "q", "filters": {"category": 1}}, "filters.category"),
    ({"query": "q", "filters": {"status": ["a"]}}, "filters.status"),
    ({"query": "q", "filters": {"language": 1}}, "filters.language"),
    ({"query": "q", "filters": {"language": ["es", 2]}}, "filters.language[1]"),
    ({"query": "q", "filters": {"version_policy": 1}}, "filters.version_policy"),
    ({"query": "q", "mode": 1}, "mode"),
    ({"query": "q", "vector": "1,2"}, "vector"),
    ({"query": "q", "weights": [1, 1]}, "weights"),
    ({"query": "q", "weights": {"vector": "1"}}, "weights.vector"),
    ({"query": "q", "weights": {"keyword": True}}, "weights.keyword"),
])
def test_search_wrong_shapes_are_422_naming_the_field(body, field):
    refused(parse_search, body, UnprocessableEntity, field)


@pytest.mark.parametrize("body, field", [
    ({"query": "q", "mode": "semantic"}, "mode"),
    ({"query": "q", "vector": []}, "vector"),
    ({"query": "q", "vector": [1e39]}, "vector"),
    ({"query": "q", "weights": {"vector": 0, "keyword": 0}}, "weights"),
    ({"query": "TEST_VEC:1,inf"}, "query"),
    ({"query": "TEST_VEC:1,1e39"}, "query"),
    ({"query": "q", "top_k": 257}, "top_k"),
    ({"query": "q", "group_limit": 257}, "group_limit"),
])
def test_search_bad_values_are_400_naming_the_field(body, field):
    refused(parse_search, body, InvalidArgument, field)


def test_search_caps():
    small = SearchLimits(query_bytes_max=10, query_words_max=2, dim_max=2, languages_max=1, name_bytes_max=3)
    refused(parse_search, {"query": "x" * 11}, InvalidArgument, "query", small)
    refused(parse_search, {"query": "a b c", "mode": "keyword"}, InvalidArgument, "query", small)
    parse_search({"query": "a b c a"}, small)  # vector mode reads no words
    parse_search({"query": "a b a", "mode": "hybrid"}, small)  # two distinct words
    refused(parse_search, {"query": "TEST_VEC:1,2,3"}, InvalidArgument, "query", small)
    refused(parse_search, {"query": "q", "vector": [1, 2, 3]}, InvalidArgument, "vector", small)
    refused(parse_search, {"query": "q", "filters": {"language": ["a", "b"]}}, InvalidArgument,
            "filters.language", small)
    refused(parse_search, {"query": "q", "group_by": "filename"}, InvalidArgument, "group_by", small)
    refused(parse_search, {"query": "q", "filters": {"version_policy": "latest"}}, InvalidArgument,
            "filters.version_policy", small)


def test_unknown_group_by_and_version_policy_are_accepted_as_the_original_does():
    req = parse_search({"query": "q", "group_by": "author", "filters": {"version_policy": "newest"}})
    assert req.group_by == "author" and not req.filters.latest


def _random_json(rng, depth=0):
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, 1, -1, 7, 2 ** 32, 2 ** 64, -2 ** 63, 10 ** 30])
    if kind == 3:
        return rng.choice([0.5, -1e39, 1e308, 3.0, -0.0])
    if kind in (4, 5):
        return rng.choice(["", "q", "latest", "TEST_VEC:1,2", "TEST_VEC:", "filename", "hybrid", "é" * 3])
    if kind in (6, 7):
        return {rng.choice(FIELDS): _random_json(rng, depth + 1) for _ in range(rng.randrange(4))}
    return [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]


FIELDS = ["query", "top_k", "filters", "group_by", "group_limit", "mode", "vector", "weights", "category",
          "language", "status", "version_policy", "keyword", "document", "documents", "id", "ids", "content",
          "metadata", "group_id", "processed_at", "filename"]


@pytest.mark.parametrize("seed", range(5))
def test_any_json_is_parsed_or_refused_naming_a_field(seed):
    rng = random.Random(seed)
    for _ in range(400):
        body = _random_json(rng)
        if rng.random() < 0.7:
            body = {rng.choice(FIELDS): _random_json(rng) for _ in range(rng.randrange(1, 6))}
            if rng.random() < 0.5:
                body["query"] = rng.choice(["q", "TEST_VEC:1,2", "a b"])
        for parse in (parse_search, parse_ingest, parse_delete):
            try:
                parse(body)
            except KissError as error:
                assert error.field, (seed, body, error.message)
                assert 400 <= error.status < 500, (seed, body)
