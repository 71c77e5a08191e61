"""The bodies of `/search/ingest`, `/search` and `/search/delete`, checked into frozen records.

Owns: the shape, types, defaults and caps of every field of contract §3.10, plus kissvdb's
additions (`documents` batches, a delete, `mode`, `vector`, `weights`).
Guarantees: every bad input raises a `KissError` whose `field` is the JSON path of what was wrong
(`document.metadata.group_id`, `documents[2].vector`, `filters.language[1]`), before anything is
written; the statuses follow the contract's framework table (wrong type or missing -> 422, like
the original's serde) and kissvdb's caps (over a cap -> 400, `content` over its cap -> 413).
Unknown fields are ignored, as everywhere in the contract; unknown metadata fields are dropped
(the original's typed struct drops them too), so answers carry only the eight known fields.
Never does: I/O, or checks against stored state (the collection's dimension is checked by the
Engine, with query.py's `check_dims`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kissvdb.errors import InvalidArgument, PayloadTooLarge, UnprocessableEntity

from .embedding import TEST_VEC_PREFIX, parse_test_vec, query_vector
from .fusion import DEFAULT_WEIGHTS
from .keywords import query_words

U32_MAX = (1 << 32) - 1
U64_MAX = (1 << 64) - 1
MODES = ("vector", "keyword", "hybrid")
GROUP_FIELDS = ("group_id", "document_id", "filename", "category", "language", "status", "version")
# The metadata the original keeps, with its types: (name, kind). Order is the answer's order.
METADATA_FIELDS = (("filename", "str"), ("processed_at", "u64"), ("category", "str"), ("language", "str"),
                   ("status", "str"), ("version", "str"), ("group_id", "u32"), ("document_id", "str"))
_NUMBER_TYPES = frozenset((int, float))
DEFAULT_TOP_K = 10
DEFAULT_GROUP_LIMIT = 1


@dataclass(frozen=True, slots=True)
class SearchLimits:
    """Caps on every input (400 naming the field past one; `content` 413). The Engine fills these
    from settings (`Engine.search_limits`: MAX_K, MAX_VECTOR_DIM, MAX_VECTOR_BATCH, MAX_JSON_BYTES);
    the defaults are those settings' defaults."""

    content_bytes_max: int = 32768
    docs_per_ingest_max: int = 256
    ids_per_delete_max: int = 256
    query_bytes_max: int = 65536  # room for a 4,096-value TEST_VEC
    query_words_max: int = 256  # distinct words BM25 is asked for
    top_k_max: int = 256
    group_limit_max: int = 256
    dim_max: int = 4096
    metadata_str_bytes_max: int = 256
    languages_max: int = 64
    name_bytes_max: int = 64  # group_by and version_policy
    weight_max: float = 1.0


DEFAULT_LIMITS = SearchLimits()


@dataclass(frozen=True, slots=True)
class SearchDocument:
    """One document to store. `metadata` holds only the known fields that are present; `path`
    is where the body held it (`document`, `documents[3]`), for errors found later (dimension)."""

    id: int
    vector: np.ndarray
    content: str
    metadata: dict
    path: str = "document"


@dataclass(frozen=True, slots=True)
class Filters:
    category: str | None = None
    language: tuple[str, ...] | None = None  # a single string is a one-value tuple
    status: str | None = None
    version_policy: str = "all"  # the code's default (the original's openapi says latest)

    @property
    def latest(self) -> bool:
        return self.version_policy == "latest"


@dataclass(frozen=True, slots=True)
class SearchRequest:
    query: str
    top_k: int = DEFAULT_TOP_K
    filters: Filters = field(default_factory=Filters)
    group_by: str | None = None
    group_limit: int = DEFAULT_GROUP_LIMIT
    mode: str = "vector"
    vector: np.ndarray | None = None  # the client's embedding of `query`
    weights: tuple[float, float] | None = None  # (vector, keyword); None = the tuned defaults

    def query_vector(self) -> np.ndarray:
        """The vector this request ranks by: the client's, else the original's derivation."""
        return self.vector if self.vector is not None else query_vector(self.query)


# ---- small checks -------------------------------------------------------------------------


def _get(obj: dict, name: str, path: str, required: bool = False) -> Any:
    if name not in obj:
        if required:
            raise UnprocessableEntity(f"missing field `{name}`", field=path)
        return None
    return obj[name]


def _object(value, path: str) -> dict:
    if type(value) is not dict:
        raise UnprocessableEntity(f"`{path}` must be an object", field=path)
    return value


def _uint(value, path: str, top: int) -> int:
    if type(value) is not int or value < 0 or value > top:
        raise UnprocessableEntity(f"`{path}` must be an integer from 0 to {top}", field=path)
    return value


def _str(value, path: str, bytes_max: int, status=InvalidArgument) -> str:
    if type(value) is not str:
        raise UnprocessableEntity(f"`{path}` must be a string", field=path)
    if len(value) > bytes_max // 4 and len(value.encode("utf-8")) > bytes_max:
        raise status(f"`{path}` is longer than {bytes_max} bytes", field=path)
    return value


def _optional_uint(obj: dict, name: str, path: str, default: int, cap: int) -> int:
    value = obj.get(name)
    if value is None:
        return default
    value = _uint(value, path, U64_MAX)
    if value > cap:
        raise InvalidArgument(f"`{path}` is at most {cap}", field=path)
    return value


def parse_vector(value, path: str, dim_max: int) -> np.ndarray:
    """A JSON array of numbers as float32; non-finite (after the float32 cast) -> 400."""
    if type(value) is not list or not set(map(type, value)) <= _NUMBER_TYPES:
        raise UnprocessableEntity(f"`{path}` must be an array of numbers", field=path)
    if len(value) > dim_max:
        raise InvalidArgument(f"`{path}` has more than {dim_max} values", field=path)
    try:
        with np.errstate(over="ignore"):
            vec = np.asarray(value, dtype=np.float64).astype(np.float32)
    except OverflowError:  # an integer past float64's range
        raise InvalidArgument(f"`{path}` has a non-finite value", field=path) from None
    if not np.isfinite(vec).all():
        raise InvalidArgument(f"`{path}` has a non-finite value", field=path)
    return vec


# ---- ingest and delete --------------------------------------------------------------------


def parse_metadata(value, path: str, limits: SearchLimits) -> dict:
    """The known metadata fields that are present (null counts as absent), typed as the original."""
    obj = _object(value, path)
    out = {}
    for name, kind in METADATA_FIELDS:
        v = obj.get(name)
        if v is None:
            continue
        where = f"{path}.{name}"
        if kind == "str":
            out[name] = _str(v, where, limits.metadata_str_bytes_max)
        else:
            out[name] = _uint(v, where, U32_MAX if kind == "u32" else U64_MAX)
    return out


def parse_document(value, path: str, limits: SearchLimits = DEFAULT_LIMITS) -> SearchDocument:
    obj = _object(value, path)
    doc_id = _uint(_get(obj, "id", f"{path}.id", True), f"{path}.id", U32_MAX)
    vector = parse_vector(_get(obj, "vector", f"{path}.vector", True), f"{path}.vector", limits.dim_max)
    if not len(vector):
        raise InvalidArgument(f"`{path}.vector` is empty", field=f"{path}.vector")
    content = _str(_get(obj, "content", f"{path}.content", True), f"{path}.content",
                   limits.content_bytes_max, PayloadTooLarge)
    metadata = parse_metadata(_get(obj, "metadata", f"{path}.metadata", True), f"{path}.metadata", limits)
    return SearchDocument(doc_id, vector, content, metadata, path)


def parse_ingest(body, limits: SearchLimits = DEFAULT_LIMITS) -> list[SearchDocument]:
    """`{"document": {...}}` (the original) or `{"documents": [...]}` (kissvdb's batch, at most
    `docs_per_ingest_max`). A batch naming one id twice is refused: which one should win?"""
    obj = _object(body, "body")
    if "documents" in obj and obj["documents"] is not None:
        if obj.get("document") is not None:
            raise InvalidArgument("send `document` or `documents`, not both", field="documents")
        items = obj["documents"]
        if type(items) is not list:
            raise UnprocessableEntity("`documents` must be an array", field="documents")
        if not items:
            raise InvalidArgument("`documents` is empty", field="documents")
        if len(items) > limits.docs_per_ingest_max:
            raise InvalidArgument(f"at most {limits.docs_per_ingest_max} documents per ingest", field="documents")
        docs = [parse_document(item, f"documents[{i}]", limits) for i, item in enumerate(items)]
        seen: set[int] = set()
        for i, doc in enumerate(docs):
            if doc.id in seen:
                raise InvalidArgument(f"id {doc.id} appears twice in `documents`", field=f"documents[{i}].id")
            seen.add(doc.id)
        return docs
    return [parse_document(_get(obj, "document", "document", True), "document", limits)]


def parse_delete(body, limits: SearchLimits = DEFAULT_LIMITS) -> list[int]:
    """`{"id": u32}` or `{"ids": [u32, ...]}` (at most `ids_per_delete_max`, duplicates folded)."""
    obj = _object(body, "body")
    if obj.get("ids") is not None:
        ids = obj["ids"]
        if type(ids) is not list:
            raise UnprocessableEntity("`ids` must be an array", field="ids")
        if not ids:
            raise InvalidArgument("`ids` is empty", field="ids")
        if len(ids) > limits.ids_per_delete_max:
            raise InvalidArgument(f"at most {limits.ids_per_delete_max} ids per delete", field="ids")
        return list(dict.fromkeys(_uint(v, f"ids[{i}]", U32_MAX) for i, v in enumerate(ids)))
    return [_uint(_get(obj, "id", "id", True), "id", U32_MAX)]


# ---- search -------------------------------------------------------------------------------


def parse_filters(value, limits: SearchLimits) -> Filters:
    if value is None:
        return Filters()
    obj = _object(value, "filters")
    category = obj.get("category")
    status = obj.get("status")
    policy = obj.get("version_policy")
    language = obj.get("language")
    if language is not None:
        if type(language) is list:
            if len(language) > limits.languages_max:
                raise InvalidArgument(f"`filters.language` takes at most {limits.languages_max} values",
                                      field="filters.language")
            language = tuple(_str(v, f"filters.language[{i}]", limits.metadata_str_bytes_max)
                             for i, v in enumerate(language))
        elif type(language) is str:
            language = (_str(language, "filters.language", limits.metadata_str_bytes_max),)
        else:
            raise UnprocessableEntity("`filters.language` must be a string or an array of strings",
                                      field="filters.language")
    return Filters(
        category=None if category is None else _str(category, "filters.category", limits.metadata_str_bytes_max),
        language=language,
        status=None if status is None else _str(status, "filters.status", limits.metadata_str_bytes_max),
        version_policy="all" if policy is None else _str(policy, "filters.version_policy", limits.name_bytes_max),
    )


def parse_weights(value, limits: SearchLimits) -> tuple[float, float] | None:
    """`{"vector": w, "keyword": w}` for hybrid ranking, each clamped to [0, weight_max]; a missing
    one keeps its default (DEFAULT_WEIGHTS, tuned on bench/rag_set). Both 0 ranks nothing: 400."""
    if value is None:
        return None
    obj = _object(value, "weights")
    out = []
    for name in ("vector", "keyword"):
        w = obj.get(name)
        if w is None:
            out.append(None)
            continue
        if type(w) not in _NUMBER_TYPES:
            raise UnprocessableEntity(f"`weights.{name}` must be a number", field=f"weights.{name}")
        out.append(min(max(float(w), 0.0), limits.weight_max))
    if out == [None, None]:
        return None
    w_vec, w_kw = (d if w is None else w for w, d in zip(out, DEFAULT_WEIGHTS))
    if w_vec == 0.0 and w_kw == 0.0:
        raise InvalidArgument("`weights` cannot both be 0", field="weights")
    return w_vec, w_kw


def _check_query(query: str, mode: str, has_vector: bool, limits: SearchLimits) -> None:
    """A TEST_VEC query must hold finite values within the dimension cap; keyword ranking reads
    at most `query_words_max` distinct words."""
    if not has_vector and query.startswith(TEST_VEC_PREFIX):
        vec = parse_test_vec(query)
        if vec is not None and len(vec) > limits.dim_max:
            raise InvalidArgument(f"`query` TEST_VEC has more than {limits.dim_max} values", field="query")
        if vec is not None and not np.isfinite(vec).all():
            raise InvalidArgument("`query` TEST_VEC has a non-finite value", field="query")
    if mode != "vector" and len(query_words(query)) > limits.query_words_max:
        raise InvalidArgument(f"`query` has more than {limits.query_words_max} distinct words", field="query")


def parse_search(body, limits: SearchLimits = DEFAULT_LIMITS) -> SearchRequest:
    obj = _object(body, "body")
    query = _str(_get(obj, "query", "query", True), "query", limits.query_bytes_max)
    top_k = _optional_uint(obj, "top_k", "top_k", DEFAULT_TOP_K, limits.top_k_max)
    group_limit = _optional_uint(obj, "group_limit", "group_limit", DEFAULT_GROUP_LIMIT, limits.group_limit_max)
    group_by = obj.get("group_by")
    if group_by is not None:
        group_by = _str(group_by, "group_by", limits.name_bytes_max)
    mode = obj.get("mode")
    if mode is None:
        mode = "vector"
    elif type(mode) is not str:
        raise UnprocessableEntity("`mode` must be a string", field="mode")
    elif mode not in MODES:
        raise InvalidArgument(f"`mode` must be one of {', '.join(MODES)}", field="mode")
    vector = obj.get("vector")
    if vector is not None:
        vector = parse_vector(vector, "vector", limits.dim_max)
        if not len(vector):
            raise InvalidArgument("`vector` is empty", field="vector")
    _check_query(query, mode, vector is not None, limits)
    return SearchRequest(query=query, top_k=top_k, filters=parse_filters(obj.get("filters"), limits),
                         group_by=group_by, group_limit=group_limit, mode=mode, vector=vector,
                         weights=parse_weights(obj.get("weights"), limits))
