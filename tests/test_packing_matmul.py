"""Packing and the binary matmul forms: packed xnor-popcount and BLAS give identical integers."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from bitaccel.golden.formats import code_range
from bitaccel.golden.matmul import (bitserial_matmul, blas_matmul, n_neg, xnor_popcount_matmul, xnor_popcount_matmul_01,
                           xnor_popcount_matmul_0101)
from bitaccel.golden.packing import n_words, pack_bits, pm1_to_bits, tail_mask, unpack_bits

KINDS = [(1, True), (1, False), (2, True), (2, False), (4, True), (4, False), (8, True), (8, False)]


def random_codes(rng, shape, bits, signed, fill=None):
    lo, hi = code_range(bits, signed)
    if fill == "min":
        return np.full(shape, lo, dtype=np.int64)
    if fill == "max":
        return np.full(shape, hi, dtype=np.int64)
    if bits == 1 and signed:
        return 2 * rng.integers(0, 2, shape) - 1
    return rng.integers(lo, hi + 1, shape)


@given(k=st.integers(1, 300), rows=st.integers(1, 4), seed=st.integers(0, 2**31))
@settings(max_examples=60, deadline=None)
def test_pack_roundtrip_and_padding_zero(k, rows, seed):
    bits = np.random.default_rng(seed).integers(0, 2, (rows, k))
    words = pack_bits(bits)
    assert words.shape == (rows, n_words(k)) and words.dtype == np.uint64
    assert np.array_equal(unpack_bits(words, k), bits)
    assert np.all(words & ~tail_mask(k) == 0), "padding bits must be zero"


def test_pack_bit_order_lsb_first():
    bits = np.zeros(70, dtype=np.uint8)
    bits[[0, 2, 64, 69]] = 1
    assert pack_bits(bits).tolist() == [0b101, (1 << 0) | (1 << 5)]


@given(k=st.integers(1, 260), m=st.integers(1, 5), n=st.integers(1, 5), kind=st.sampled_from([(a, b) for a in KINDS for b in KINDS]),
       fill=st.sampled_from([None, None, None, "min", "max"]), seed=st.integers(0, 2**31))
@settings(max_examples=150, deadline=None)
def test_bitserial_equals_blas_equals_int(k, m, n, kind, fill, seed):
    rng = np.random.default_rng(seed)
    (ab, asg), (bb, bsg) = kind
    a = random_codes(rng, (m, k), ab, asg, fill)
    b = random_codes(rng, (n, k), bb, bsg)
    exact = a @ b.T
    assert np.array_equal(bitserial_matmul(a, ab, asg, b, bb, bsg), exact)
    assert np.array_equal(blas_matmul(a, b), exact)


@pytest.mark.parametrize("k", [1, 63, 64, 65, 127, 128, 129, 384])
def test_three_plane_forms_edge_cases(k):
    rng = np.random.default_rng(k)
    ones, zeros = np.ones((1, k), np.uint8), np.zeros((1, k), np.uint8)
    rand = rng.integers(0, 2, (3, k)).astype(np.uint8)
    for a in (ones, zeros, rand):
        for b in (ones, zeros, rand):
            pa, pb = pack_bits(a), pack_bits(b)
            a_pm, b_pm = 2 * a.astype(np.int64) - 1, 2 * b.astype(np.int64) - 1
            assert np.array_equal(xnor_popcount_matmul(pa, pb, k), a_pm @ b_pm.T)
            assert np.array_equal(xnor_popcount_matmul_01(pa, pb, k), a.astype(np.int64) @ b_pm.T)
            assert np.array_equal(xnor_popcount_matmul_01(pa, pb, k, n_neg(pb, k)), a.astype(np.int64) @ b_pm.T)
            assert np.array_equal(xnor_popcount_matmul_0101(pa, pb, k), a.astype(np.int64) @ b.astype(np.int64).T)


def test_all_ones_and_all_minus_ones_extremes():
    k = 130
    plus, minus = np.ones((1, k), np.int64), -np.ones((1, k), np.int64)
    wp, wm = pack_bits(pm1_to_bits(plus)), pack_bits(pm1_to_bits(minus))
    assert xnor_popcount_matmul(wp, wp, k)[0, 0] == k
    assert xnor_popcount_matmul(wp, wm, k)[0, 0] == -k
    assert n_neg(wm, k)[0] == k and n_neg(wp, k)[0] == 0


def test_bad_operands_raise():
    with pytest.raises(ValueError):
        bitserial_matmul(np.zeros((2, 3)), 1, True, np.ones((2, 3)), 1, True)  # 0 is not a +-1 code
    with pytest.raises(ValueError):
        bitserial_matmul(np.full((2, 3), 2), 1, False, np.ones((2, 3)), 1, True)
    with pytest.raises(ValueError):
        pack_bits(np.array([0, 2]))
