"""The /search FTS5 store on real files: idempotent apply with its applied offset in the same
transaction, unique ids, deletes, BM25 ranking, query-syntax safety, reopen and rebuild."""

import os
import subprocess
import sys
import time

import pytest

from kissvdb.errors import RequestTimeout
from kissvdb.search.request import Filters
from kissvdb.search.store import Put, Remove, SearchStore


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "fts.sqlite")


def ids(hits):
    return [i for i, _ in hits]


def test_apply_then_query_ranks_by_bm25(path):
    s = SearchStore(path)
    assert s.apply(3, [Put(1, "the cat sat on the mat", {}, 1), Put(2, "a dog and a cat and a cat", {}, 2),
                       Put(3, "nothing here", {}, 3)])
    hits = s.query("cat", 10)
    assert ids(hits) == [2, 1]  # two mentions in a short text beat one
    assert hits[0][1] > hits[1][1] > 0  # -bm25: higher is better
    assert s.query("mat OR dog", 10) and ids(s.query("unicorn", 10)) == []
    assert ids(s.query("cat", 1)) == [2]


def test_apply_skips_offsets_already_applied(path):
    s = SearchStore(path)
    assert s.apply(5, [Put(1, "alpha", {}, 5)])
    assert not s.apply(5, [Put(1, "beta", {}, 5)])
    assert not s.apply(4, [Remove(1)])
    assert ids(s.query("alpha", 10)) == [1] and ids(s.query("beta", 10)) == []
    assert s.applied_offset == 5


def test_empty_batch_advances_the_offset(path):
    s = SearchStore(path)
    assert s.apply(9, [])
    s.close()
    assert SearchStore(path).applied_offset == 9


def test_put_of_an_existing_id_replaces_it_and_remove_deletes(path):
    s = SearchStore(path)
    s.apply(1, [Put(1, "old words", {"category": "a"}, 1)])
    s.apply(2, [Put(1, "new words", {"category": "b"}, 2)])
    assert ids(s.query("old", 10)) == [] and ids(s.query("new", 10)) == [1]
    assert len(s) == 1 and s.metadata(1) == {"category": "b"}
    assert s.documents([1]) == {1: {"id": 1, "content": "new words", "metadata": {"category": "b"}}}
    s.apply(3, [Remove(1), Remove(99)])
    assert len(s) == 0 and ids(s.query("new", 10)) == [] and s.documents([1]) == {}


def test_changes_apply_in_order_within_a_batch(path):
    s = SearchStore(path)
    s.apply(2, [Put(1, "first", {}, 1), Remove(1), Put(2, "second", {}, 2)])
    assert len(s) == 1 and ids(s.query("first second", 10)) == [2]
    s.apply(4, [Remove(2), Put(2, "third", {}, 4)])
    assert ids(s.query("third", 10)) == [2]


@pytest.mark.parametrize("text", ['cat"', "cat AND", "NOT cat", "content:cat", "cat*", "^cat", "(cat",
                                  'NEAR(cat dog)', "cat OR", "'", "*", '""', "-cat", "cat + dog", "{content}: cat"])
def test_user_text_is_never_fts5_syntax(path, text):
    s = SearchStore(path)
    s.apply(2, [Put(1, "cat and near not", {}, 1), Put(2, "dog", {}, 2)])
    hits = s.query(text, 10)  # never raises an FTS5 syntax error
    assert set(ids(hits)) <= {1, 2}


def test_operator_words_are_plain_words(path):
    s = SearchStore(path)
    s.apply(2, [Put(1, "apples", {}, 1), Put(2, "and or not near", {}, 2)])
    assert ids(s.query("NOT", 10)) == [2]
    assert set(ids(s.query("apples NOT", 10))) == {1, 2}  # OR of two words, not "apples minus not"


def test_query_restricted_to_allowed_ids(path):
    s = SearchStore(path)
    s.apply(3, [Put(i, "cat " * i, {}, i) for i in (1, 2, 3)])
    assert ids(s.query("cat", 10)) == [3, 2, 1]
    assert ids(s.query("cat", 10, {1, 2})) == [2, 1]
    assert ids(s.query("cat", 1, {1})) == [1]
    assert s.query("cat", 10, set()) == []


def test_test_vec_queries_and_empty_text_have_no_words(path):
    s = SearchStore(path)
    s.apply(1, [Put(1, "test_vec 1 2", {}, 1)])
    assert s.query("TEST_VEC:1,2", 10) == [] and s.query("  ...  ", 10) == []


def test_query_past_its_deadline_times_out(path):
    s = SearchStore(path)
    s.apply(1, [Put(i, f"word{i % 50} common", {}, 1) for i in range(2000)])
    with pytest.raises(RequestTimeout):
        s.query("common", 10, deadline=time.monotonic() - 1)
    assert ids(s.query("common", 3)) == [0, 1, 2]  # the connection still works afterwards


def test_reopen_keeps_rows_metadata_and_offset(path):
    s = SearchStore(path)
    s.apply(4, [Put(1, "persisted text", {"group_id": 3, "processed_at": 9, "status": "x"}, 4)])
    s.close()
    s = SearchStore(path)
    assert s.applied_offset == 4 and ids(s.query("persisted", 10)) == [1]
    assert s.metadata(1) == {"processed_at": 9, "status": "x", "group_id": 3}
    assert list(s.metadata(1)) == ["processed_at", "status", "group_id"]  # the original's field order


def test_reset_replaces_everything_in_one_go(path):
    s = SearchStore(path)
    s.apply(10, [Put(1, "stale", {}, 1)])
    s.reset(20, [Put(2, "fresh", {}, 15)])
    assert s.applied_offset == 20 and ids(s.query("stale", 10)) == [] and ids(s.query("fresh", 10)) == [2]
    s.close()
    assert len(SearchStore(path)) == 1


def test_allowed_ids_follow_filters(path):
    s = SearchStore(path)
    s.apply(3, [Put(1, "a", {"category": "x"}, 1), Put(2, "b", {"category": "y"}, 2), Put(3, "c", {}, 3)])
    assert s.allowed(Filters()) is None
    assert s.allowed(Filters(category="x")) == {1}


def test_checkpoint_reports_the_durable_offset(path):
    s = SearchStore(path)
    s.apply(7, [Put(1, "x", {}, 7)])
    assert s.durable_offset == 0
    assert s.checkpoint() == 7 and s.durable_offset == 7
    assert os.path.getsize(path + "-wal") == 0  # truncated: everything is in the main file


CRASH = """
import os, sys
from kissvdb.search.store import Put, SearchStore
s = SearchStore(sys.argv[1])
s.apply(1, [Put(1, "before crash", {}, 1)])
s.checkpoint()
s.apply(2, [Put(2, "after checkpoint", {}, 2)])
os._exit(9)  # no close, no checkpoint: as kill -9
"""


def test_a_killed_process_leaves_rows_and_offset_together(path):
    proc = subprocess.run([sys.executable, "-c", CRASH, path], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 9, proc.stderr
    s = SearchStore(path)
    # Whatever survived, rows and offset agree: replaying the WAL from applied_offset + 1 is exact.
    assert s.applied_offset in (1, 2)
    assert sorted(ids(s.query("before after", 10))) == ([1] if s.applied_offset == 1 else [1, 2])
    s.apply(2, [Put(2, "after checkpoint", {}, 2)])  # recovery replays from applied_offset + 1
    assert s.applied_offset == 2
    assert sorted(ids(s.query("before after", 10))) == [1, 2]


def test_discard_removes_the_files(path):
    s = SearchStore(path)
    s.apply(1, [Put(1, "x", {}, 1)])
    s.close()
    SearchStore.discard(path)
    assert not os.path.exists(path) and SearchStore(path).applied_offset == 0
