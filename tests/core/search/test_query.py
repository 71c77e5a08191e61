"""/search answers end to end through kissvdb.search (store on a real file, exact vectors):
the original's semantics of contract §5.6 (TEST_VEC, filters, latest, group_by, top_k), the
three modes, and the fixed-dimension rule."""

import numpy as np
import orjson
import pytest

from kissvdb.search.exact import ExactRanker
from kissvdb.search.fusion import fuse, rrf
from kissvdb.search.query import SearchDimMismatch, check_dims, search
from kissvdb.search.request import parse_ingest, parse_search
from kissvdb.search.store import Put, SearchStore


class Store:
    """A SearchStore plus an exact ranker, fed documents the way ingest would."""

    def __init__(self, path):
        self.fts = SearchStore(path)
        self.vectors: dict[int, np.ndarray] = {}
        self.offset = 0
        self.dim = None

    def ingest(self, *docs):
        parsed = parse_ingest({"documents": list(docs)})
        self.dim = check_dims(parsed, self.dim)
        puts = []
        for d in parsed:
            self.offset += 1
            self.vectors[d.id] = d.vector
            puts.append(Put(d.id, d.content, d.metadata, self.offset))
        self.fts.apply(self.offset, puts)

    def search(self, **body):
        ranker = ExactRanker(list(self.vectors), np.stack(list(self.vectors.values()))) if self.vectors else None
        rank = ranker.rank if ranker else (lambda q, n, a: [])
        out = search(parse_search(body), self.fts, rank, self.dim)
        return orjson.loads(orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY))


def d(id, vector, content="", **metadata):
    return {"id": id, "vector": vector, "content": content, "metadata": metadata}


def result_ids(answer):
    return [r["document"]["id"] for r in answer["results"]]


@pytest.fixture
def s(tmp_path):
    return Store(str(tmp_path / "fts.sqlite"))


def test_answer_shape_and_cosine_scores(s):
    s.ingest(d(1, [1, 0], "one", category="c", group_id=5), d(2, [0.6, 0.8], "two"))
    out = s.search(query="TEST_VEC:1,0", top_k=5)
    assert list(out) == ["query", "top_k", "results"] and out["query"] == "TEST_VEC:1,0" and out["top_k"] == 5
    assert out["results"] == [  # float32 scores printed shortest, as the original
        {"score": 1.0, "document": {"id": 1, "content": "one", "metadata": {"category": "c", "group_id": 5}}},
        {"score": 0.6, "document": {"id": 2, "content": "two", "metadata": {}}}]


def test_top_k_cuts_and_zero_is_empty(s):
    s.ingest(*(d(i, [1, i / 10]) for i in range(5)))
    assert result_ids(s.search(query="TEST_VEC:1,0", top_k=2)) == [0, 1]
    assert s.search(query="TEST_VEC:1,0", top_k=0)["results"] == []


def test_filters_category_status_language(s):
    s.ingest(d(1, [1, 0], category="a", status="ok", language="es"),
             d(2, [1, 0.1], category="a", status="old", language="en"),
             d(3, [1, 0.2], category="b", language="fr"),
             d(4, [1, 0.3]))
    q = "TEST_VEC:1,0"
    assert result_ids(s.search(query=q, filters={"category": "a"})) == [1, 2]
    assert result_ids(s.search(query=q, filters={"status": "ok"})) == [1]
    assert result_ids(s.search(query=q, filters={"language": "fr"})) == [3]
    assert result_ids(s.search(query=q, filters={"language": ["en", "fr"]})) == [2, 3]
    assert result_ids(s.search(query=q, filters={"language": []})) == []
    assert result_ids(s.search(query=q, filters={"category": "a", "language": "en"})) == [2]
    assert result_ids(s.search(query=q, filters={"category": "zzz"})) == []
    assert result_ids(s.search(query=q, filters={})) == [1, 2, 3, 4]


def test_version_policy_latest(s):
    s.ingest(d(1, [1, 0], group_id=7, processed_at=10),
             d(2, [0, 1], group_id=7, processed_at=20),  # the latest of group 7, though it scores worse
             d(3, [1, 0.1], group_id=8),  # processed_at missing = 0 ...
             d(4, [1, 0.2], group_id=8, processed_at=0),  # ... tie: the first ingested (3) wins
             d(5, [1, 0.3]))  # no group_id: always kept
    q = "TEST_VEC:1,0"
    assert result_ids(s.search(query=q, filters={"version_policy": "latest"})) == [3, 5, 2]
    assert result_ids(s.search(query=q)) == [1, 3, 4, 5, 2]  # default: all
    assert result_ids(s.search(query=q, filters={"version_policy": "other"})) == [1, 3, 4, 5, 2]
    # filters first, then versions: with group 7's latest filtered away, its older one is the latest left
    s.ingest(d(6, [1, 0.05], group_id=9, processed_at=1, status="draft"),
             d(7, [0.5, 1], group_id=9, processed_at=2, status="final"))
    assert result_ids(s.search(query=q, filters={"version_policy": "latest", "status": "draft"})) == [6]


def test_reingest_replaces_and_makes_the_document_newer(s):
    s.ingest(d(1, [1, 0], "old", group_id=1), d(2, [1, 0.1], "other", group_id=1))
    assert result_ids(s.search(query="TEST_VEC:1,0", filters={"version_policy": "latest"})) == [1]
    s.ingest(d(1, [1, 0], "new", group_id=1))  # now ingested after 2: 2 wins the tie
    out = s.search(query="TEST_VEC:1,0", filters={"version_policy": "latest"})
    assert result_ids(out) == [2]
    assert [r["document"]["content"] for r in s.search(query="TEST_VEC:1,0")["results"]] == ["new", "other"]


def test_group_by_keeps_group_limit_per_group_and_cuts_items(s):
    s.ingest(d(1, [1, 0.0], filename="a"), d(2, [1, 0.1], filename="a"), d(3, [1, 0.2], filename="b"),
             d(4, [1, 0.3], filename="a"), d(5, [1, 0.4]), d(6, [1, 0.5], filename="b"))
    q = "TEST_VEC:1,0"
    assert result_ids(s.search(query=q, group_by="filename")) == [1, 3, 5]  # 5: a group of its own
    assert result_ids(s.search(query=q, group_by="filename", group_limit=2)) == [1, 2, 3, 6, 5]
    assert result_ids(s.search(query=q, group_by="filename", group_limit=2, top_k=3)) == [1, 2, 3]
    assert s.search(query=q, group_by="filename", group_limit=0)["results"] == []
    assert result_ids(s.search(query=q, group_by="author")) == [1, 2, 3, 4, 5, 6]  # unknown: each its own


@pytest.mark.parametrize("field, values", [
    ("group_id", [1, 1, 2]), ("document_id", ["x", "x", "y"]), ("category", ["c", "c", "d"]),
    ("language", ["es", "es", "en"]), ("status", ["s", "s", "t"]), ("version", ["1", "1", "2"]),
    ("filename", ["f", "f", "g"])])
def test_group_by_each_of_the_seven_fields(s, field, values):
    s.ingest(*(d(i, [1, i / 10], **{field: v}) for i, v in enumerate(values)))
    assert result_ids(s.search(query="TEST_VEC:1,0", group_by=field)) == [0, 2]


def test_grouping_reaches_past_the_first_candidates(s):
    # 40 hits of one file rank first; the second group is found by widening the ranking.
    s.ingest(*(d(i, [1, i / 1000], filename="big") for i in range(40)), d(99, [0, 1], filename="small"))
    assert result_ids(s.search(query="TEST_VEC:1,0", top_k=2, group_by="filename")) == [0, 99]


def test_keyword_and_hybrid_modes(s):
    s.ingest(d(1, [1, 0], "reciprocal rank fusion of rankings"), d(2, [0, 1], "cosine similarity of vectors"),
             d(3, [0.7, 0.7], "fusion cuisine"))
    kw = s.search(query="rank fusion", mode="keyword")
    assert result_ids(kw) == [1, 3] and kw["results"][0]["score"] > kw["results"][1]["score"] > 0
    assert result_ids(s.search(query="rank fusion", mode="vector", vector=[0, 1]))[0] == 2
    hy = s.search(query="rank fusion", mode="hybrid", vector=[0, 1])
    assert set(result_ids(hy)) == {1, 2, 3}
    assert result_ids(s.search(query="rank fusion", mode="hybrid", vector=[0, 1],
                               weights={"vector": 1, "keyword": 0})) == [2, 3, 1]
    assert result_ids(s.search(query="rank fusion", mode="hybrid", vector=[0, 1],
                               weights={"vector": 0, "keyword": 1})) == [1, 3]


def test_keyword_mode_respects_filters_and_groups(s):
    s.ingest(d(1, [1, 0], "apple apple", category="x", filename="f"), d(2, [1, 0], "apple", category="y"),
             d(3, [1, 0], "apple pie", category="x", filename="f"))
    assert result_ids(s.search(query="apple", mode="keyword", filters={"category": "x"})) == [1, 3]
    assert result_ids(s.search(query="apple", mode="keyword", group_by="filename")) == [1, 2]


def test_dimension_is_fixed_by_the_first_document(s):
    s.ingest(d(1, [1, 0]))
    with pytest.raises(SearchDimMismatch) as info:
        s.ingest(d(2, [1, 0]), d(3, [1, 0, 0]))
    assert info.value.field == "documents[1].vector" and info.value.code == "dim_mismatch"
    assert result_ids(s.search(query="TEST_VEC:1,0")) == [1]  # nothing of the refused ingest was stored
    with pytest.raises(SearchDimMismatch) as info:
        s.search(query="q", vector=[1, 0, 0])
    assert info.value.field == "vector"
    # a derived query vector of another length ranks nothing by vector (the original's answer) ...
    assert s.search(query="TEST_VEC:1,0,0")["results"] == []
    assert s.search(query="plain words")["results"] == []  # the 384-d pseudo-embedding
    # ... while keywords still rank
    s.ingest(d(3, [0, 1], "plain words"))
    assert result_ids(s.search(query="plain words", mode="hybrid")) == [3]


def test_check_dims_names_the_single_document_field():
    (doc,) = parse_ingest({"document": d(1, [1, 2, 3])})
    with pytest.raises(SearchDimMismatch) as info:
        check_dims([doc], 2)
    assert info.value.field == "document.vector"
    assert check_dims([doc], None) == 3


def test_empty_store_answers_no_results(s):
    assert s.search(query="anything", mode="hybrid")["results"] == []


def test_pseudo_embedding_queries_rank_384_d_documents(s):
    from kissvdb.search.embedding import pseudo_embedding
    s.ingest(d(1, pseudo_embedding("the query").tolist()), d(2, pseudo_embedding("another").tolist()))
    out = s.search(query="the query")
    assert result_ids(out) == [1, 2] and out["results"][0]["score"] == pytest.approx(1.0, abs=1e-6)


def test_rrf_scores_and_ties():
    fused = rrf([(1.0, [(1, 0.9), (2, 0.8)]), (1.0, [(2, 5.0), (1, 4.0)])])
    assert [i for i, _ in fused] == [1, 2] and fused[0][1] == fused[1][1] == 1 / 61 + 1 / 62  # a tie: by id
    assert [i for i, _ in rrf([(0.5, [(3, 1.0)]), (0.5, [(4, 1.0)])])] == [3, 4]
    assert [i for i, _ in rrf([(0.0, [(3, 1.0)]), (1.0, [(4, 1.0)])])] == [4]
    assert fuse("vector", [(1, 0.5)], [(2, 3.0)]) == [(1, 0.5)]
    assert fuse("keyword", [(1, 0.5)], [(2, 3.0)]) == [(2, 3.0)]


def test_largest_group_request_stays_within_the_documents(s):
    s.ingest(*(d(i, [1, i / 10], f"word{i} shared", filename=str(i % 3)) for i in range(7)))
    for mode in ("vector", "keyword", "hybrid"):
        out = s.search(query="TEST_VEC:1,0" if mode == "vector" else "shared", mode=mode, top_k=256,
                       group_by="filename", group_limit=256)
        assert sorted(result_ids(out)) == list(range(7))
