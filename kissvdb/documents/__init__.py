"""The document model: state.py decides document commands and applies document events,
table.py is the `docs` table of state.sqlite (+ its indexes), query.py compiles `find` into SQL,
reader.py runs a compiled find on a read connection."""
