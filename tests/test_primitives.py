"""Threshold, requantization, softmax and LayerNorm primitives against their float definitions."""
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from bitaccel.golden.fold import fold_code_requant, fold_residual_requant, fold_threshold, round_half_up
from bitaccel.golden.formats import MULT_BITS, NumericFormat, fixed_multiplier, residual_range, rshift_round
from bitaccel.golden.layernorm import layernorm, layernorm_eps_q, rsqrt_fixed
from bitaccel.golden.reference import layernorm_float, quantize_float
from bitaccel.golden.requant import requantize
from bitaccel.golden.softmax import exp_lut, softmax_binarize, softmax_exp, softmax_probs, softmax_reciprocal
from bitaccel.golden.threshold import threshold

FMT = NumericFormat()


def test_rshift_round_is_round_half_up_for_negatives_too():
    x = np.arange(-40, 41)
    for s in (1, 2, 3):
        expected = [int(np.floor(Fraction(int(v), 2**s) + Fraction(1, 2))) for v in x]
        assert rshift_round(x, s).tolist() == expected
    assert rshift_round(np.array([3]), -2).tolist() == [12]


def test_threshold_ties_fire():
    thr = np.array([5, -3, 0])
    acc = np.array([[5, -3, 0], [4, -4, -1], [6, -2, 1]])
    assert threshold(acc, thr).tolist() == [[1, 1, 1], [0, 0, 0], [1, 1, 1]]


@given(a=st.floats(1e-3, 5.0), b=st.floats(-20, 20), beta=st.floats(-5, 5), alpha=st.floats(0.05, 5),
       signed=st.booleans(), relu=st.booleans())
@settings(max_examples=300, deadline=None)
def test_fold_threshold_matches_float_rule_on_every_accumulator(a, b, beta, alpha, signed, relu):
    relu = relu and not signed
    acc_max = 300
    thr = fold_threshold(a, np.array([b]), np.array([beta]), alpha, signed, relu, acc_max)[0]
    acc = np.arange(-acc_max, acc_max + 1)
    v = a * acc + b
    if relu:
        v = np.maximum(v, 0.0)
    want = quantize_float(v, alpha, beta, 1, signed)
    got = np.where(acc >= thr, 1.0, -1.0 if signed else 0.0)
    # float64 rounding can only matter within a few ulps of the threshold itself
    near = np.abs((v - beta) - (0.0 if signed else alpha / 2)) < 1e-9 * (1 + np.abs(v))
    assert np.array_equal(got[~near], want[~near])


def test_fold_threshold_exact_tie_fires():
    # v = 0.5 * acc - 1.0, beta = 0.5: v - beta >= 0 <=> acc >= 3 (acc = 3 is an exact tie)
    thr = fold_threshold(0.5, np.array([-1.0]), np.array([0.5]), 1.0, True, False, 100)
    assert thr.tolist() == [3]


def test_fold_threshold_relu_always_and_clamping():
    # relu(v) - beta >= alpha/2 holds for every v when beta + alpha/2 <= 0
    assert fold_threshold(1.0, np.array([0.0]), np.array([-2.0]), 1.0, False, True, 50).tolist() == [-50]
    assert fold_threshold(1.0, np.array([0.0]), np.array([1e6]), 1.0, True, False, 50).tolist() == [51]


@given(bits=st.sampled_from([2, 4, 8]), signed=st.booleans(), relu=st.booleans(), a=st.floats(1e-3, 2.0),
       b=st.floats(-5, 5), beta=st.floats(-2, 2), alpha=st.floats(0.05, 3.0))
@settings(max_examples=200, deadline=None)
def test_fold_code_requant_close_to_float_and_saturates(bits, signed, relu, a, b, beta, alpha):
    relu = relu and not signed
    rq = fold_code_requant(a, np.array([b]), np.array([beta]), alpha, bits, signed, relu)
    acc = np.arange(-2000, 2001)
    got = requantize(acc[:, None], rq["rq_m"], rq["rq_b"], rq["rq_s"], rq["rq_lo"], rq["rq_hi"])[:, 0]
    v = a * acc + b
    if relu:
        v = np.maximum(v, 0.0)
    want = quantize_float(v, alpha, beta, bits, signed)
    # the multiplier has MULT_BITS-1 significant bits: codes differ by at most 1, only next to a rounding boundary
    z = (v - beta) / alpha
    frac_dist = np.abs(z - np.floor(z) - 0.5)
    slack = np.abs(acc) * a / alpha * 2.0 ** -(MULT_BITS - 2) + 1e-9
    assert np.all(np.abs(got - want) <= 1)
    assert np.all((got == want) | (frac_dist <= slack))
    lo, hi = rq["rq_lo"][0], rq["rq_hi"]
    assert got.min() >= lo and got.max() <= hi


@given(a=st.floats(1e-4, 1.0), b=st.floats(-10, 10), frac=st.integers(4, 12))
@settings(max_examples=200, deadline=None)
def test_residual_requant_error_bound_and_saturation(a, b, frac):
    fmt = NumericFormat(residual_frac=frac)
    rq = fold_residual_requant(a, np.array([b]), fmt)
    acc = np.arange(-5000, 5001)
    y = requantize(acc[:, None], rq["rq_m"], rq["rq_b"], rq["rq_s"], rq["rq_lo"], rq["rq_hi"])[:, 0]
    exact = (a * acc + b) * 2.0 ** frac
    m_err = abs(int(rq["rq_m"]) * 2.0 ** -int(rq["rq_s"]) - a * 2.0 ** frac)
    bound = 0.5 + np.abs(acc) * m_err + 2.0 ** -int(rq["rq_s"]) + 1e-9
    lo, hi = residual_range()
    inside = (exact > lo) & (exact < hi)
    assert np.all(np.abs(y[inside] - exact[inside]) <= bound[inside])
    assert np.all(y[exact >= hi + bound] == hi) and np.all(y[exact <= lo - bound] == lo)
    assert y.min() >= lo and y.max() <= hi


def test_fixed_multiplier_range():
    for m in (1e-6, 0.003, 0.5, 1.0, 3.7, 1000.0):
        mm, s = fixed_multiplier(m)
        assert 2 ** (MULT_BITS - 2) <= mm < 2 ** (MULT_BITS - 1)
        assert abs(mm * 2.0 ** -s / m - 1) <= 2.0 ** -(MULT_BITS - 2)
    with pytest.raises(ValueError):
        fixed_multiplier(0.0)
    with pytest.raises(ValueError):
        fixed_multiplier(1e30)


# ----------------------------------------------------------------------------- softmax
def test_exp_lut_definition():
    lut = exp_lut(0.25, FMT, 200)
    assert lut[0] == 1 << FMT.exp_frac and lut[-1] > 0
    t = np.arange(len(lut))
    assert np.array_equal(lut, np.floor(np.exp(-0.25 * t) * 2**FMT.exp_frac + 0.5).astype(np.int64))
    assert np.floor(np.exp(-0.25 * len(lut)) * 2**FMT.exp_frac + 0.5) == 0  # trimmed only trailing zeros
    assert exp_lut(0.0, FMT, 10).tolist() == [1 << FMT.exp_frac] * 11


def test_softmax_masking_and_max_over_valid_keys():
    lut = exp_lut(0.5, FMT, 64)
    scores = np.array([[3, 40, 1, -5]])
    valid = np.array([[True, False, True, True]])  # the largest score is padding: ignored
    e, total = softmax_exp(scores, valid, lut)
    assert e[0, 1] == 0 and e[0, 0] == lut[0] and e[0, 2] == lut[2] and e[0, 3] == lut[8]
    assert total[0, 0] == e.sum()
    with pytest.raises(ValueError):
        softmax_exp(scores, np.zeros_like(valid), lut)


def test_softmax_scores_beyond_lut_give_zero():
    lut = exp_lut(4.0, FMT, 64)  # exp(-4 t) underflows quickly
    e, _ = softmax_exp(np.array([[64, 0, 60]]), np.ones((1, 3), bool), lut)
    assert e[0, 1] == 0 and e[0, 0] == lut[0]


def test_softmax_binarize_tie_fires_and_matches_division():
    rng = np.random.default_rng(0)
    e = rng.integers(0, 1 << FMT.exp_frac, (200, 16))
    e[:, 0] = 1 << FMT.exp_frac
    total = e.sum(-1, keepdims=True)
    theta = 3000
    bits = softmax_binarize(e, total, theta, FMT)
    exact = np.array([[Fraction(int(x), int(t[0])) >= Fraction(theta, 2**FMT.theta_frac) for x in row] for row, t in zip(e, total)])
    assert np.array_equal(bits.astype(bool), exact)
    # an exact tie: e / sum == theta / 2**theta_frac
    e = np.array([[1 << 15, 1 << 15]])
    assert softmax_binarize(e, e.sum(-1, keepdims=True), 1 << (FMT.theta_frac - 1), FMT).tolist() == [[1, 1]]


def test_softmax_reciprocal_probabilities_close_to_float():
    rng = np.random.default_rng(1)
    scores = rng.integers(-64, 65, (50, 40))
    lut = exp_lut(0.1, FMT, 128)
    e, total = softmax_exp(scores, np.ones_like(scores, bool), lut)
    p = softmax_probs(e, softmax_reciprocal(total, FMT), FMT) / 2.0**FMT.prob_frac
    x = -0.1 * (scores.max(-1, keepdims=True) - scores)
    ref = np.exp(x) / np.exp(x).sum(-1, keepdims=True)
    # LUT rounding (half an LSB of 2**-exp_frac per entry) + reciprocal floor + final rounding
    bound = 2.0 ** -FMT.exp_frac * scores.shape[1] + 2.0 ** -FMT.prob_frac
    assert np.abs(p - ref).max() <= bound
    assert np.all(softmax_reciprocal(total, FMT) == (1 << (FMT.exp_frac + FMT.prob_frac + FMT.recip_guard)) // total)


# ----------------------------------------------------------------------------- LayerNorm
@given(v=st.integers(1, 2**56))
@settings(max_examples=300, deadline=None)
def test_rsqrt_definition(v):
    r, s = rsqrt_fixed(np.array([v]))
    r, s = int(r[0]), int(s[0])
    vs = v >> (2 * s)
    assert vs < 2**30 and (s == 0 or vs >= 2**28)
    assert r * r * vs <= 2**60 < (r + 1) * (r + 1) * vs


@pytest.mark.parametrize("hidden", [8, 64, 384, 768])
def test_layernorm_close_to_float(hidden):
    rng = np.random.default_rng(hidden)
    f_r, f_g, f_n = FMT.residual_frac, FMT.gamma_frac, FMT.ln_norm_frac
    x = np.clip(np.round(rng.normal(0, 4, (64, hidden)) * 2**f_r), *residual_range()).astype(np.int64)
    x[0] = 7                                  # constant row: variance 0 (only eps)
    x[1] = residual_range()[1]                # all at the positive limit
    x[2, ::2], x[2, 1::2] = residual_range()  # extreme spread
    gamma = 1 + 0.3 * rng.normal(size=hidden)
    beta = 0.2 * rng.normal(size=hidden)
    g_q = round_half_up(gamma * 2**f_g).astype(np.int64)
    b_q = round_half_up(beta * 2**f_r).astype(np.int64)
    eps = 1e-12
    y = layernorm(x, g_q, b_q, layernorm_eps_q(eps, hidden, FMT), FMT)
    ref = layernorm_float(x / 2**f_r, g_q / 2**f_g, b_q / 2**f_r, eps)
    norm = np.abs(ref - b_q / 2**f_r) / np.abs(g_q / 2**f_g)
    # rsqrt: >= 15 significant bits (2**-14 relative incl. the V shift); norm rounding; final rounding
    bound = norm * np.abs(g_q / 2**f_g) * 2.0**-14 + np.abs(g_q / 2**f_g) * 2.0**-(f_n + 1) + 2.0**-(f_r + 1) + 1e-12
    assert np.all(np.abs(y / 2**f_r - ref) <= bound)
    assert np.array_equal(y[0], np.clip(b_q, *residual_range()))  # constant row -> beta


def test_layernorm_saturates():
    x = np.zeros((2, 256), np.int64)
    x[:, 0] = 1000  # one-hot row: normalized value sqrt(255) ~ 16, times gamma ~ +-16 exceeds +-128
    gamma = np.stack([np.full(256, 2**15 - 1), np.full(256, -(2**15))])
    y = np.stack([layernorm(x[i:i + 1], gamma[i], np.zeros(256), 0, FMT)[0] for i in range(2)])
    assert y[0, 0] == residual_range()[1] and y[1, 0] == residual_range()[0]
