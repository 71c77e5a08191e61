"""The original's RAG `/search` (contract §3.10, §5.6), with hybrid keyword + vector ranking.

Synchronous core, no trio. Modules, in the order a request meets them:
- request.py    bodies of /search/ingest, /search, /search/delete -> frozen records; caps
- embedding.py  the original's query vectors: `TEST_VEC:` floats, its ChaCha12 pseudo-embedding
- keywords.py   query words -> an FTS5 MATCH that can only mean "any of these words"
- store.py      DATA_DIR/search/fts.sqlite: FTS5 content index + metadata + applied WAL offset
- ranking.py    filters, version_policy, group_by/group_limit, top_k (pure)
- fusion.py     mode vector | keyword | hybrid (reciprocal rank fusion, k=60)
- exact.py      exact cosine ranking over a matrix (bench, tests, reference)
- query.py      one request end to end; the fixed-dimension rule
- changes.py    documents <-> the `_search` vector collection's items and durable events
- replay.py     the store at boot: the one replay pass, or a rebuild from the collection
"""
