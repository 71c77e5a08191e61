"""Vector collections: exact (FLAT), HNSW (hnswlib) and IVF_FLAT_Q8 (numpy) search, run files,
manifest, persistence of the index itself and compaction. Synchronous; never imports trio.
"""
