"""The words of a query for BM25, and the FTS5 MATCH expression that can only mean "any of these".

Owns: the one tokenizer between user text and SQLite FTS5.
Guarantees: user text is never parsed as FTS5 syntax. Each word (a run of `\\w` characters,
lower-cased, first occurrence kept) becomes a double-quoted string, and the strings are joined
with OR: operators (`AND`, `NOT`, `NEAR`), column filters (`content:`), prefixes (`*`), carets
and parentheses in the query are either split away (they are not `\\w`) or quoted into plain
words. FTS5 then splits each quoted word with the index's own tokenizer (unicode61), so
`max_count` is the phrase "max count", as it is in the indexed text.
A `TEST_VEC:` query is a vector written as text: it has no words.
Never does: I/O.
"""

from __future__ import annotations

import re

from .embedding import TEST_VEC_PREFIX

_WORD = re.compile(r"\w+")


def query_words(text: str) -> list[str]:
    """The distinct words of `text`, lower-cased, in order of first appearance."""
    if text.startswith(TEST_VEC_PREFIX):
        return []
    return list(dict.fromkeys(w.lower() for w in _WORD.findall(text)))


def match_expression(words: list[str]) -> str | None:
    """`"a" OR "b" OR ...` for FTS5 MATCH, or None when there is no word to look for."""
    if not words:
        return None
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in words)
