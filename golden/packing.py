"""Bit packing of binary tensors.

Order: along the last axis, element k lives in 64-bit word k // 64 at bit k % 64
(least significant bit first). Bit 1 means +1 (for +-1 tensors) or 1 (for {0,1}
tensors); bit 0 means -1 or 0. Padding bits past K are 0 and are never counted.
"""
from __future__ import annotations

import numpy as np

from .formats import WORD_BITS


def n_words(k: int) -> int:
    """Number of 64-bit words holding k bits."""
    return (k + WORD_BITS - 1) // WORD_BITS


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Pack a {0,1} array of shape (..., K) into uint64 words of shape (..., ceil(K/64))."""
    bits = np.asarray(bits)
    if bits.size and (bits.min() < 0 or bits.max() > 1):
        raise ValueError("pack_bits expects values in {0, 1}")
    k = bits.shape[-1]
    pad = n_words(k) * WORD_BITS - k
    b = np.concatenate([bits.astype(np.uint8), np.zeros(bits.shape[:-1] + (pad,), np.uint8)], axis=-1)
    as_bytes = np.packbits(b, axis=-1, bitorder="little")  # (..., 8 * words), byte j holds bits 8j..8j+7
    return np.ascontiguousarray(as_bytes).view("<u8").astype(np.uint64)


def unpack_bits(words: np.ndarray, k: int) -> np.ndarray:
    """Inverse of `pack_bits`: uint64 words (..., W) -> uint8 {0,1} array (..., k)."""
    words = np.asarray(words, dtype=np.uint64)
    if words.shape[-1] != n_words(k):
        raise ValueError(f"{words.shape[-1]} words cannot hold exactly {k} bits")
    as_bytes = np.ascontiguousarray(words.astype("<u8")).view(np.uint8)
    return np.unpackbits(as_bytes, axis=-1, bitorder="little")[..., :k]


def pm1_to_bits(x: np.ndarray) -> np.ndarray:
    """+-1 values -> bits (+1 -> 1, -1 -> 0)."""
    x = np.asarray(x)
    if x.size and not np.all(np.abs(x) == 1):
        raise ValueError("expected values in {-1, +1}")
    return (x > 0).astype(np.uint8)


def tail_mask(k: int) -> np.ndarray:
    """uint64 mask per word with ones at the positions < k (used to ignore padding)."""
    m = np.full(n_words(k), np.uint64(0xFFFFFFFFFFFFFFFF), dtype=np.uint64)
    r = k % WORD_BITS
    if r:
        m[-1] = np.uint64((1 << r) - 1)
    return m
