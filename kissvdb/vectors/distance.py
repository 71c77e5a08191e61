"""Scores, normalisation, Q8 codes and exact top-k: the arithmetic every index shares.

Contract (API-CONTRACT §5.5): both metrics rank by the cosine of the angle. `cosine` stores a
vector as sent, `dot` stores its L2-normalised copy; a query is normalised; score = dot of unit
vectors (0 when a norm is 0), float32. Hits are sorted by score descending, ties by id ascending.

Every index searches unit vectors: a row's unit vector is `raw / norm` (norm kept per row, 0 for a
zero vector), so an exact score is `(raw @ q_unit) / norm` and never needs a second copy.
"""

from __future__ import annotations

import math

import numkong
import numpy as np

F32 = np.float32
METRICS = ("cosine", "dot")


def as_f32(vector) -> np.ndarray:
    """A 1-d float32 copy-free view when possible (bytes, list or array in)."""
    if isinstance(vector, (bytes, bytearray, memoryview)):
        return np.frombuffer(vector, dtype="<f4")
    return np.asarray(vector, dtype=F32).reshape(-1)


def norms_of(rows: np.ndarray) -> np.ndarray:
    """L2 norm of each row, float32."""
    rows = np.asarray(rows, dtype=F32)
    return np.sqrt(np.einsum("ij,ij->i", rows, rows, dtype=F32)).astype(F32, copy=False)


def unit(vector: np.ndarray) -> np.ndarray:
    """L2-normalised float32 copy; a zero vector stays zero (its scores are 0)."""
    v = np.asarray(vector, dtype=F32)
    n = float(np.sqrt(np.dot(v, v)))
    if n == 0.0 or not math.isfinite(n):  # math, not numpy: no ufunc call on a Python float
        return np.zeros_like(v)
    return v / F32(n)  # float32 / float32 scalar is float32 already


def unit_rows(rows: np.ndarray, norms: np.ndarray | None = None) -> np.ndarray:
    rows = np.asarray(rows, dtype=F32)
    if norms is None:
        norms = norms_of(rows)
    safe = np.where(norms > 0, norms, F32(1)).astype(F32)
    out = rows / safe[:, None]
    out[norms == 0] = 0
    return out.astype(F32, copy=False)


def stored_form(vector: np.ndarray, metric: str) -> np.ndarray:
    """What a collection stores for `vector`: as sent for cosine, unit for dot."""
    return unit(vector) if metric == "dot" else np.asarray(vector, dtype=F32)


def exact_scores(rows: np.ndarray, norms: np.ndarray, q_unit: np.ndarray) -> np.ndarray:
    """Cosine of each stored row against a unit query (0 for zero rows), float32."""
    dots = rows @ q_unit
    if norms.all():
        out = dots / norms
    else:
        out = dots / np.where(norms > 0, norms, F32(1))
        out[norms == 0] = 0
    np.minimum(out, 1, out=out)  # not np.clip: its Python wrapper costs more than the work here
    np.maximum(out, -1, out=out)
    return out.astype(F32, copy=False)


# ---- Q8 ----------------------------------------------------------------------------------


def q8_encode(units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int8 codes, float32 scales) of unit rows: scale = max|x|/127 (1 if all zero)."""
    units = np.atleast_2d(np.asarray(units, dtype=F32))
    amax = np.abs(units).max(axis=1) if units.shape[1] else np.zeros(len(units), F32)
    scales = np.where(amax > 0, amax / F32(127), F32(1)).astype(F32)
    codes = np.clip(np.rint(units / scales[:, None]), -127, 127).astype(np.int8)
    return codes, scales


def q8_query(q_unit: np.ndarray) -> np.ndarray:
    """Int8 codes of a unit query for ranking Q8 rows (its scale is common to every row's
    score, so it is not kept)."""
    amax = float(np.abs(q_unit).max()) if len(q_unit) else 0.0
    if amax == 0.0 or not math.isfinite(amax):
        return np.zeros(len(q_unit), np.int8)
    return np.rint(q_unit * F32(127.0 / amax)).astype(np.int8)


def q8_dots(query_codes: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Exact integer dot products of one int8 query with int8 rows (float64 out).

    numkong's SIMD int8 kernel: numpy has no fast int8 product, and converting the codes to
    float32 for BLAS cost about four times the scan itself. Sums fit a float64 exactly
    (|sum| <= dim * 127^2)."""
    if len(codes) == 0:
        return np.zeros(0)
    return np.asarray(numkong.cdist(query_codes.reshape(1, -1), codes, metric="dot"))[0]


# ---- ranking -----------------------------------------------------------------------------


def top_rows(scores: np.ndarray, rows: np.ndarray, k: int, id_of) -> list[tuple[int, float]]:
    """The best `k` (row, score) by score desc, ties by id asc (`id_of(row)` -> str).

    Ties at the cut are resolved by id too: every row scoring at least the k-th score is a
    candidate, so a row is never dropped for a worse id than one kept.
    """
    n = len(scores)
    if n == 0 or k <= 0:
        return []
    if n > k:
        part = np.argpartition(-scores, k - 1)[:k]
        threshold = scores[part].min()
        sel = np.flatnonzero(scores >= threshold)
        s_list = scores[sel].tolist()
        r_list = rows[sel].tolist()
    else:
        s_list = scores.tolist()
        r_list = np.asarray(rows).tolist()
    cand = sorted(zip(s_list, r_list), key=lambda p: (-p[0], id_of(p[1])))
    return [(r, s) for s, r in cand[:k]]


def ranked(pairs, k: int, id_of) -> list[tuple[int, float]]:
    """Sort (row, score) pairs by score desc, id asc and keep `k`."""
    out = sorted(pairs, key=lambda p: (-p[1], id_of(p[0])))
    return out[:k]
