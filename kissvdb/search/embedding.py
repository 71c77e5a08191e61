"""The query vector of a `/search` request when the client sends none: the original's two forms.

- `TEST_VEC:1,2.5,-3` -> the comma-separated floats (each trimmed), when every part parses and
  there is at least one; otherwise the text falls through to the pseudo-embedding, as the
  original does.
- Any other text -> a deterministic pseudo-random 384-d vector with values in [0, 1), seeded by
  the CRC-32 of the text's UTF-8 bytes. The original draws it with Rust's `rand` 0.8:
  `StdRng::seed_from_u64(crc32)` (a PCG32 stream fills the 32-byte ChaCha12 key) and
  `rng.gen::<f32>()` (the top 24 bits of `next_u32()` times 2^-24). This module reproduces that
  stream bit for bit (tests/core/search/test_embedding.py checks rand's own value-stability
  vector), so a query answers the same documents in both servers.

Guarantees: pure, no I/O; the same text always gives the same float32 vector. TEST_VEC parts
follow Rust's `f32::from_str` grammar: a part Rust would refuse (such as "1_0" or "0x1", which
Python's float() takes) makes the whole text a pseudo-embedding, as in the original.
"""

from __future__ import annotations

import re
import zlib

import numpy as np

PSEUDO_DIM = 384  # the original's fixed pseudo-embedding length
TEST_VEC_PREFIX = "TEST_VEC:"

# Rust's f32::from_str grammar: optional sign, digits with an optional point and exponent, or
# inf/infinity/nan (any case). Python's float() also takes "1_0" and surrounding spaces.
_RUST_FLOAT = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf|infinity|nan)\Z", re.IGNORECASE)

_MASK64 = (1 << 64) - 1
_PCG_MUL = 6364136223846793005
_PCG_INC = 11634580027462260723
_CHACHA_CONST = (0x61707865, 0x3320646E, 0x79622D32, 0x6B206574)  # "expand 32-byte k"
_CHACHA_ROUNDS = 12  # StdRng in rand 0.8 is ChaCha12Rng


def parse_test_vec(text: str) -> np.ndarray | None:
    """The floats of a `TEST_VEC:` query, or None when the text is not one (or does not parse)."""
    if not text.startswith(TEST_VEC_PREFIX):
        return None
    parts = [p.strip() for p in text[len(TEST_VEC_PREFIX):].split(",")]
    if not all(_RUST_FLOAT.match(p) for p in parts):
        return None
    with np.errstate(over="ignore"):
        values = np.array([float(p) for p in parts], dtype=np.float64).astype(np.float32)
    return values if len(values) else None


def pcg32_seed(state: int) -> bytes:
    """rand_core's `seed_from_u64`: 32 seed bytes from a PCG32 stream started at `state`."""
    out = bytearray()
    for _ in range(8):
        state = (state * _PCG_MUL + _PCG_INC) & _MASK64
        xorshifted = (((state >> 18) ^ state) >> 27) & 0xFFFFFFFF
        rot = state >> 59
        word = ((xorshifted >> rot) | (xorshifted << ((32 - rot) & 31))) & 0xFFFFFFFF
        out += word.to_bytes(4, "little")
    return bytes(out)


def _rotl(x: np.ndarray, n: int) -> np.ndarray:
    return (x << np.uint32(n)) | (x >> np.uint32(32 - n))


def chacha_words(seed: bytes, n_words: int, rounds: int = _CHACHA_ROUNDS) -> np.ndarray:
    """The first `n_words` u32 of the ChaCha keystream with key `seed`, stream 0, a 64-bit
    block counter from 0: the words `rand_chacha`'s `next_u32()` returns, in order."""
    blocks = -(-n_words // 16)
    key = np.frombuffer(seed, dtype="<u4").astype(np.uint32)
    counter = np.arange(blocks, dtype=np.uint64)
    init = np.empty((16, blocks), dtype=np.uint32)
    init[0:4] = np.array(_CHACHA_CONST, dtype=np.uint32)[:, None]
    init[4:12] = key[:, None]
    init[12] = (counter & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    init[13] = (counter >> np.uint64(32)).astype(np.uint32)
    init[14:16] = 0
    x = [init[i].copy() for i in range(16)]

    def quarter(a: int, b: int, c: int, d: int) -> None:
        x[a] += x[b]; x[d] = _rotl(x[d] ^ x[a], 16)  # noqa: E702 (the cipher's own layout)
        x[c] += x[d]; x[b] = _rotl(x[b] ^ x[c], 12)  # noqa: E702
        x[a] += x[b]; x[d] = _rotl(x[d] ^ x[a], 8)  # noqa: E702
        x[c] += x[d]; x[b] = _rotl(x[b] ^ x[c], 7)  # noqa: E702

    for _ in range(rounds // 2):
        quarter(0, 4, 8, 12); quarter(1, 5, 9, 13); quarter(2, 6, 10, 14); quarter(3, 7, 11, 15)  # noqa: E702
        quarter(0, 5, 10, 15); quarter(1, 6, 11, 12); quarter(2, 7, 8, 13); quarter(3, 4, 9, 14)  # noqa: E702
    out = np.stack(x) + init  # (16, blocks): word i of every block
    return out.T.reshape(-1)[:n_words]


def pseudo_embedding(text: str, dim: int = PSEUDO_DIM) -> np.ndarray:
    """The original's stand-in embedding of `text`: `dim` float32 values in [0, 1)."""
    seed = pcg32_seed(zlib.crc32(text.encode("utf-8")))
    words = chacha_words(seed, dim)
    return ((words >> np.uint32(8)).astype(np.float32) * np.float32(2.0 ** -24)).astype(np.float32)


def query_vector(text: str) -> np.ndarray:
    """The vector the original searches with for the query `text`."""
    vec = parse_test_vec(text)
    return vec if vec is not None else pseudo_embedding(text)
