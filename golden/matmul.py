"""Binary matrix products: packed xnor-popcount paths and an independent BLAS path.

All functions return exact int64 dot products ``out[m, n] = sum_k a[m, k] * b[n, k]``
(both operands are row-major with the reduction along the last axis, like a
PyTorch Linear weight of shape (N, K)).

Operand kinds (see docs/numerics.md, "Codes"):
  * ``pm1``: 1-bit signed, values {-1, +1}, one bit plane (bit 1 = +1).
  * any other (bits, signed) code: bit planes of {0, 1}; plane j has weight 2**j,
    except the top plane of a signed code, whose weight is -2**(bits-1).

Plane-pair identities used by the packed path (K = true length, padding masked):
  * +-1 x +-1:  dot = 2 * popcount(xnor(a, b)) - K
  * {0,1} x +-1: dot = popcount(xnor(a, w)) - n_neg(w)            (appendix A.4)
  * {0,1} x {0,1}: dot = (popcount(xnor(a, b)) - K + popcount(a) + popcount(b)) / 2
"""
from __future__ import annotations

import numpy as np

from .formats import code_max_abs, code_range
from .packing import pack_bits, tail_mask

_CHUNK_ELEMS = 1 << 22  # uint64 words per temporary (M_chunk * N * W) block


def _xnor_popcount(a_words: np.ndarray, b_words: np.ndarray, k: int) -> np.ndarray:
    """popcount(xnor(a_m, b_n)) over the first k bits, for every row pair -> (M, N) int64."""
    a_words = np.asarray(a_words, dtype=np.uint64)
    b_words = np.asarray(b_words, dtype=np.uint64)
    if a_words.shape[-1] != b_words.shape[-1]:
        raise ValueError(f"operands hold {a_words.shape[-1]} and {b_words.shape[-1]} words per row")
    mask = tail_mask(k)
    m, (n, w) = a_words.shape[0], b_words.shape
    out = np.empty((m, n), dtype=np.int64)
    step = max(1, _CHUNK_ELEMS // max(1, n * w))
    for i in range(0, m, step):
        x = ~(a_words[i:i + step, None, :] ^ b_words[None, :, :]) & mask
        out[i:i + step] = np.bitwise_count(x).sum(axis=-1, dtype=np.int64)
    return out


def popcount_rows(words: np.ndarray) -> np.ndarray:
    """Number of one bits in each row of packed words (padding bits are zero) -> int64."""
    return np.bitwise_count(np.asarray(words, dtype=np.uint64)).sum(axis=-1, dtype=np.int64)


def n_neg(w_words: np.ndarray, k: int) -> np.ndarray:
    """Number of -1 entries in each packed +-1 row of length k (the A.4 correction)."""
    return k - popcount_rows(w_words)


def xnor_popcount_matmul(a_words: np.ndarray, b_words: np.ndarray, k: int) -> np.ndarray:
    """+-1 x +-1 product of packed rows: 2 * popcount(xnor) - k."""
    return 2 * _xnor_popcount(a_words, b_words, k) - k


def xnor_popcount_matmul_01(a_words: np.ndarray, w_words: np.ndarray, k: int,
                            w_n_neg: np.ndarray | None = None) -> np.ndarray:
    """{0,1} x +-1 product: popcount(xnor(a, w)) - n_neg(w).

    `w_n_neg` is the per-row constant stored with static weights; when None it is
    computed on the fly (dynamic operands such as V in P.V).
    """
    if w_n_neg is None:
        w_n_neg = n_neg(w_words, k)
    return _xnor_popcount(a_words, w_words, k) - np.asarray(w_n_neg, dtype=np.int64)[None, :]


def xnor_popcount_matmul_0101(a_words: np.ndarray, b_words: np.ndarray, k: int) -> np.ndarray:
    """{0,1} x {0,1} product (AND-popcount) computed with the xnor array plus row popcounts."""
    twice = _xnor_popcount(a_words, b_words, k) - k + popcount_rows(a_words)[:, None] + popcount_rows(b_words)[None, :]
    return twice >> 1


def bit_planes(codes: np.ndarray, bits: int, signed: bool) -> list[tuple[int, str, np.ndarray]]:
    """Split integer codes (..., K) into weighted bit planes [(weight, kind, bits01)].

    kind is "pm1" for a 1-bit signed operand (bits01 = 1 for +1) and "01" otherwise.
    sum(weight * value(plane)) reproduces the codes exactly.
    """
    codes = np.asarray(codes, dtype=np.int64)
    lo, hi = code_range(bits, signed)
    if codes.size and (codes.min() < lo or codes.max() > hi):
        raise ValueError(f"codes outside [{lo}, {hi}] for a {bits}-bit {'signed' if signed else 'unsigned'} operand")
    if bits == 1 and signed:
        if codes.size and np.any(codes == 0):
            raise ValueError("a 1-bit signed operand holds only -1 and +1")
        return [(1, "pm1", (codes > 0).astype(np.uint8))]
    u = codes & ((1 << bits) - 1)  # two's complement bit pattern
    planes = []
    for j in range(bits):
        weight = -(1 << j) if (signed and j == bits - 1) else (1 << j)
        planes.append((weight, "01", ((u >> j) & 1).astype(np.uint8)))
    return planes


def _plane_product(ka: str, pa: np.ndarray, kb: str, pb: np.ndarray, k: int) -> np.ndarray:
    if ka == "pm1" and kb == "pm1":
        return xnor_popcount_matmul(pa, pb, k)
    if ka == "01" and kb == "pm1":
        return xnor_popcount_matmul_01(pa, pb, k)
    if ka == "pm1" and kb == "01":
        return xnor_popcount_matmul_01(pb, pa, k).T
    return xnor_popcount_matmul_0101(pa, pb, k)


def bitserial_matmul(a: np.ndarray, a_bits: int, a_signed: bool,
                     b: np.ndarray, b_bits: int = 1, b_signed: bool = True) -> np.ndarray:
    """Exact product of code matrices a (M, K) and b (N, K) by packed bit planes -> (M, N) int64.

    acc = sum over plane pairs of weight_a * weight_b * plane_product.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"bitserial_matmul needs (M, K) and (N, K), not {a.shape} and {b.shape}")
    k = a.shape[1]
    out = np.zeros((a.shape[0], b.shape[0]), dtype=np.int64)
    b_planes = [(wb, kb, pack_bits(pb)) for wb, kb, pb in bit_planes(b, b_bits, b_signed)]
    for wa, ka, pa in bit_planes(a, a_bits, a_signed):
        pa = pack_bits(pa)
        for wb, kb, pb in b_planes:
            out += (wa * wb) * _plane_product(ka, pa, kb, pb, k)
    return out


def blas_matmul(a: np.ndarray, b: np.ndarray, max_abs_a: int | None = None, max_abs_b: int | None = None) -> np.ndarray:
    """Exact integer product a @ b.T through floating-point BLAS -> int64.

    Uses float32 when every partial sum is below 2**24 (exact), else float64 (exact
    below 2**53). Bounds default to the operands' own maxima.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    k = a.shape[-1]
    ma = int(np.abs(a).max(initial=0)) if max_abs_a is None else max_abs_a
    mb = int(np.abs(b).max(initial=0)) if max_abs_b is None else max_abs_b
    bound = k * ma * mb
    if bound < (1 << 24):
        dtype = np.float32
    elif bound < (1 << 53):
        dtype = np.float64
    else:
        raise ValueError(f"product bound {bound} is not exact in float64")
    return np.matmul(a.astype(dtype, copy=False), np.swapaxes(b.astype(dtype, copy=False), -1, -2)).astype(np.int64)


def code_matmul(a: np.ndarray, a_bits: int, a_signed: bool, b: np.ndarray, b_bits: int, b_signed: bool,
                path: str = "blas") -> np.ndarray:
    """Dispatch an exact code product by path: "blas" (fast) or "packed" (bit planes)."""
    if path == "blas":
        return blas_matmul(a, b, code_max_abs(a_bits, a_signed), code_max_abs(b_bits, b_signed))
    if path == "packed":
        return bitserial_matmul(a, a_bits, a_signed, b, b_bits, b_signed)
    raise ValueError(f"matmul path must be 'blas' or 'packed', not {path!r}")
