"""Fixed-point softmax over small integer attention scores.

Scores s (integers, |s| <= A) of one query row over its keys. Padded keys are excluded.
  m     = max over valid keys of s
  e_j   = LUT[m - s_j] if m - s_j < len(LUT) else 0      (0 for padded keys)
  LUT[t] = floor(2**exp_frac * exp(-c * t) + 1/2),  c = alpha_q * alpha_k / sqrt(d_head)
  sum   = sum_j e_j                                      (>= LUT[0] = 2**exp_frac)
1-bit probabilities (division-free): bit_j = (e_j << theta_frac) >= theta * sum
  (equivalently e_j >= ceil(theta * sum / 2**theta_frac), one multiply per row).
Multi-bit probabilities use a defined reciprocal:
  R     = floor(2**(exp_frac + prob_frac + recip_guard) / sum)
  p_j   = rshift_round(e_j * R, exp_frac + recip_guard)  (1.0 = 2**prob_frac)
then a requantization (golden.requant) to the unsigned code.
"""
from __future__ import annotations

import math

import numpy as np

from .formats import NumericFormat, rshift_round


def exp_lut(c: float, fmt: NumericFormat, max_index: int) -> np.ndarray:
    """LUT[t] = round(2**exp_frac * exp(-c t)) for t = 0..max_index, trailing zeros dropped -> int64."""
    if not math.isfinite(c) or c < 0:
        raise ValueError(f"softmax scale c must be finite and >= 0, not {c!r}")
    t = np.arange(max_index + 1, dtype=np.float64)
    lut = np.floor(np.exp(-c * t) * float(1 << fmt.exp_frac) + 0.5).astype(np.int64)
    nz = np.flatnonzero(lut)
    return lut[: nz[-1] + 1]


def softmax_exp(scores: np.ndarray, valid: np.ndarray, lut: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """scores (..., S) integers (any int or exact-float dtype), valid (..., S) bool (broadcastable)
    -> (e (..., S) int32, sum (..., 1) int64).

    Every row needs at least one valid key.
    """
    valid = np.asarray(valid, dtype=bool)
    if not valid.any(axis=-1).all():
        raise ValueError("softmax: every row needs at least one unmasked key")
    t = np.array(scores, dtype=np.int32)            # a private copy, updated in place below
    if not valid.all():
        np.putmask(t, ~np.broadcast_to(valid, t.shape), np.iinfo(np.int32).min // 2)
    m = t.max(axis=-1, keepdims=True)
    np.subtract(m, t, out=t)                        # t = m - s >= 0
    np.minimum(t, len(lut), out=t)                  # padded keys and t >= len(LUT) -> index len(LUT)
    e = np.take(np.append(lut, 0).astype(np.int32), t)
    return e, e.sum(axis=-1, keepdims=True, dtype=np.int64)


def softmax_binarize(e: np.ndarray, total: np.ndarray, theta: int, fmt: NumericFormat) -> np.ndarray:
    """1-bit probabilities without division: (e << theta_frac) >= theta * sum -> uint8.

    Computed as e >= ceil(theta * sum / 2**theta_frac), one threshold per row (identical for integer e).
    """
    row_thr = (np.int64(theta) * np.asarray(total, dtype=np.int64) + ((1 << fmt.theta_frac) - 1)) >> fmt.theta_frac
    return (e >= row_thr).view(np.uint8)


def softmax_reciprocal(total: np.ndarray, fmt: NumericFormat) -> np.ndarray:
    """R = floor(2**(exp_frac + prob_frac + recip_guard) / sum) (exact integer division)."""
    return np.int64(1 << (fmt.exp_frac + fmt.prob_frac + fmt.recip_guard)) // np.asarray(total, dtype=np.int64)


def softmax_probs(e: np.ndarray, recip: np.ndarray, fmt: NumericFormat) -> np.ndarray:
    """Fixed-point probabilities p_j = rshift_round(e_j * R, exp_frac + recip_guard) -> int64."""
    return rshift_round(e * recip, fmt.exp_frac + fmt.recip_guard)
