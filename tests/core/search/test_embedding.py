"""The original's query vectors: TEST_VEC parsing and the ChaCha12 pseudo-embedding, checked
against rand's own value-stability vectors and the ChaCha reference keystream."""

import zlib

import numpy as np

from kissvdb.search.embedding import (PSEUDO_DIM, chacha_words, pcg32_seed, pseudo_embedding, query_vector,
                                      parse_test_vec)


def test_stdrng_matches_rands_value_stability_vector():
    # rand 0.8 src/rngs/std.rs test_stdrng_construction: from_seed, next_u64, then a child
    # seeded from the next 32 bytes.
    seed = bytes([1, 0, 0, 0, 23, 0, 0, 0, 200, 1, 0, 0, 210, 30, 0, 0] + [0] * 16)
    words = chacha_words(seed, 10)
    assert int(words[0]) | int(words[1]) << 32 == 10719222850664546238
    child = chacha_words(words[2:10].astype("<u4").tobytes(), 2)
    assert int(child[0]) | int(child[1]) << 32 == 14064965282130556830


def test_chacha20_zero_key_is_the_reference_keystream():
    # The all-zero key/nonce ChaCha20 keystream starts 76 b8 e0 ad a0 f1 3d 90 (RFC 7539 A.1).
    words = chacha_words(bytes(32), 2, rounds=20)
    assert [int(w) for w in words] == [0xADE0B876, 0x903DF1A0]


def test_pcg32_seed_differs_per_input_and_is_stable():
    assert pcg32_seed(0) != pcg32_seed(1)
    assert pcg32_seed(12345) == pcg32_seed(12345)
    assert len(pcg32_seed(7)) == 32


def test_pseudo_embedding_is_deterministic_384_values_in_unit_interval():
    a = pseudo_embedding("hello world")
    assert a.dtype == np.float32 and a.shape == (PSEUDO_DIM,)
    assert ((a >= 0) & (a < 1)).all()
    assert np.array_equal(a, pseudo_embedding("hello world"))
    assert not np.array_equal(a, pseudo_embedding("hello world!"))
    # 24-bit multiples of 2^-24, as rand's gen::<f32>() makes them
    assert np.array_equal(a * 2 ** 24, np.round(a * 2 ** 24))


def test_pseudo_embedding_is_seeded_by_crc32_of_utf8():
    text = "¿qué tal?"
    seed = pcg32_seed(zlib.crc32(text.encode("utf-8")))
    expect = (chacha_words(seed, PSEUDO_DIM) >> 8).astype(np.float32) * np.float32(2 ** -24)
    assert np.array_equal(pseudo_embedding(text), expect)


def test_test_vec_parses_trimmed_floats():
    assert parse_test_vec("TEST_VEC: 1, 2.5 ,-3,.5,1e2").tolist() == [1, 2.5, -3, 0.5, 100]
    assert parse_test_vec("TEST_VEC:1").tolist() == [1.0]


def test_test_vec_that_does_not_parse_falls_back_to_the_pseudo_embedding():
    for text in ("TEST_VEC:", "TEST_VEC:1,,2", "TEST_VEC:a,b", "TEST_VEC:1_0", "TEST_VEC:0x1", "test_vec:1"):
        assert parse_test_vec(text) is None
        assert np.array_equal(query_vector(text), pseudo_embedding(text))
