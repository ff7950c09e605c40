"""Integer LayerNorm over the 16-bit residual stream, with a defined reciprocal square root.

For one row x (H residual integers):
  S1 = sum x,  S2 = sum x^2,  V = max(H*S2 - S1^2 + eps_q, 1)   (eps_q = round(eps * H^2 * 4**residual_frac))
  d_i = H*x_i - S1                                              (= H * (x_i - mean), exact)
  (r, s) = rsqrt_fixed(V)                                       (r / 2**(RSQRT_Q + s) ~ 1 / sqrt(V))
  n_i = rshift_round(d_i * r, RSQRT_Q + s - ln_norm_frac)        (normalized, ln_norm_frac bits)
  y_i = sat16(rshift_round(n_i * gamma_i, ln_norm_frac + gamma_frac - residual_frac) + beta_i)
"""
from __future__ import annotations

import numpy as np

from .formats import RSQRT_IN_BITS, RSQRT_Q, NumericFormat, residual_range, rshift_round


def bit_length(v: np.ndarray) -> np.ndarray:
    """Exact bit length of non-negative int64 values."""
    v = np.asarray(v, dtype=np.int64)
    return (v[..., None] >= (np.int64(1) << np.arange(63, dtype=np.int64))).sum(axis=-1)


def rsqrt_fixed(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Defined reciprocal square root of integers V >= 1 -> (r, s), int64.

    s = max(0, ceil((bitlen(V) - RSQRT_IN_BITS) / 2));  V_s = V >> 2s  (V_s < 2**RSQRT_IN_BITS)
    r = the largest integer with r^2 * V_s <= 2**(2 * RSQRT_Q)        (r <= 2**RSQRT_Q)
    """
    v = np.asarray(v, dtype=np.int64)
    if v.size and v.min() < 1:
        raise ValueError("rsqrt_fixed needs V >= 1")
    s = np.maximum(0, (bit_length(v) - RSQRT_IN_BITS + 1) // 2)
    vs = v >> (2 * s)
    limit = np.int64(1) << np.int64(2 * RSQRT_Q)
    r = np.floor(np.float64(1 << RSQRT_Q) / np.sqrt(vs.astype(np.float64))).astype(np.int64)
    for _ in range(4):  # float estimate is within one of the answer; settle it exactly
        r = np.where(r * r * vs > limit, r - 1, r)
        r = np.where((r + 1) * (r + 1) * vs <= limit, r + 1, r)
    assert np.all(r * r * vs <= limit) and np.all((r + 1) * (r + 1) * vs > limit)
    return r, s


def layernorm_eps_q(eps: float, hidden: int, fmt: NumericFormat) -> int:
    """eps in the units of V: round(eps * H^2 * 4**residual_frac)."""
    return int(np.floor(eps * hidden * hidden * float(4 ** fmt.residual_frac) + 0.5))


def layernorm(x: np.ndarray, gamma_q: np.ndarray, beta_q: np.ndarray, eps_q: int, fmt: NumericFormat,
              return_parts: bool = False):
    """x (..., H) residual ints -> y (..., H) residual ints (int64). See the module docstring."""
    x = np.asarray(x, dtype=np.int64)
    h = x.shape[-1]
    s1 = x.sum(axis=-1, keepdims=True)
    xf = x.astype(np.float64)                      # |x| < 2**15: x*x and the row sum are exact in float64
    s2 = np.einsum("...i,...i->...", xf, xf)[..., None].astype(np.int64)
    v = np.maximum(h * s2 - s1 * s1 + np.int64(eps_q), 1)
    d = h * x - s1
    r, s = rsqrt_fixed(v)
    shift = RSQRT_Q + s - fmt.ln_norm_frac          # per row, always > 0 (RSQRT_Q > ln_norm_frac)
    n = d * r                                       # in-place steps below: same integers, fewer temporaries
    n += np.int64(1) << (shift - 1)
    n >>= shift                                     # n = rshift_round(d * r, shift)
    y = n * np.asarray(gamma_q, dtype=np.int64)
    y = rshift_round(y, fmt.ln_norm_frac + fmt.gamma_frac - fmt.residual_frac)
    y += np.asarray(beta_q, dtype=np.int64)
    np.clip(y, *residual_range(), out=y)
    if return_parts:
        return y, {"sum": s1[..., 0], "var": v[..., 0], "rsqrt": r[..., 0], "rsqrt_shift": s[..., 0], "norm": n}
    return y
