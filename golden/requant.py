"""Requantization unit: accumulator -> saturated fixed-point or multi-bit code.

out = clamp(rshift_round(acc * M + B, S), lo, hi)

M is a scalar multiplier (2**14 <= M < 2**15, see formats.fixed_multiplier), B a
per-channel int64 offset, S a scalar right shift with round-half-up, lo a
per-channel lower bound (it carries a folded ReLU) and hi a scalar upper bound.
Used for the residual stream (lo/hi = the 16-bit range) and for multi-bit codes.
"""
from __future__ import annotations

import numpy as np

from .formats import rshift_round


def requantize(acc: np.ndarray, m: int, b: np.ndarray, s: int, lo, hi) -> np.ndarray:
    """acc (..., N) int64 -> int64 (..., N); widths: see formats.requant_product_bits."""
    x = np.asarray(acc, dtype=np.int64) * np.int64(m)
    x += np.asarray(b, dtype=np.int64)
    y = rshift_round(x, int(s))
    return np.clip(y, lo, hi, out=y)
