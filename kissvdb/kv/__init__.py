"""The key-value model: state.py decides KV commands and applies KV events (the cache of
state.sqlite's `kv` table lives in kissvdb/statedb/)."""
