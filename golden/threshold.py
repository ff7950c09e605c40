"""Threshold unit: accumulator -> one output bit per element, with per-channel integer thresholds.

bit = 1 exactly when acc >= thr (ties at the threshold give 1). For a signed
binarization the bit means +1/-1, for an unsigned one 1/0 (see `bits_to_codes`).
"""
from __future__ import annotations

import numpy as np


def threshold(acc: np.ndarray, thr: np.ndarray) -> np.ndarray:
    """acc (..., N) int, thr (N,) int -> uint8 bits (..., N): acc >= thr."""
    return (np.asarray(acc, dtype=np.int64) >= np.asarray(thr, dtype=np.int64)).astype(np.uint8)


def bits_to_codes(bits: np.ndarray, signed: bool) -> np.ndarray:
    """Threshold bits -> activation codes: signed {-1,+1}, unsigned {0,1} (int64)."""
    bits = np.asarray(bits, dtype=np.int64)
    return 2 * bits - 1 if signed else bits
