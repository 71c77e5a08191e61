"""API keys: store.py is keys.sqlite (hashed keys, roles, revocation)."""
