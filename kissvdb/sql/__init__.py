"""User SQL: user.py guards and runs a user's statements on its own database; result.py encodes
result rows as JSON in pieces."""
