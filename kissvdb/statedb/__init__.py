"""state.sqlite, the file KV keys and documents are materialized in: file.py opens it (pragmas,
the `kv` table, applied offsets, checkpoint); cache.py is the bounded durable cache with the
in-flight overlay that the KV and document state machines share."""
