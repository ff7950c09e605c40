"""Beat schedule of a tiled bit-serial matmul on `hw.mac_array.BinaryMacArray` (pure Python + NumPy).

A product ``out = a @ b.T`` of code matrices a (M, K) and b (N, K) runs as tiles of R rows
of a by C rows of b, in row-major tile order (tile (i, j) covers out[i*R:(i+1)*R,
j*C:(j+1)*C]). Each tile issues, for every plane pair (a plane outer, b plane inner, as
golden.matmul.bit_planes orders them) and every K chunk of L lanes, one beat in the
array's ``operands`` layout; `first` marks a tile's first beat and `last` its last. The
array answers one `results` beat per tile; `assemble` drops the zero padding rows of edge
tiles. Lane i of chunk j holds element k = j*L + i (LSB first, as golden/packing.py).
"""
from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np

from golden.matmul import bit_planes

__all__ = ["matmul_beats", "assemble", "ideal_cycles", "beats_count", "plane_count", "tile_grid"]

#: PlaneMode value for (a plane kind, b plane kind); kind "pm1" is +-1, "01" is {0, 1}.
_MODE = {("pm1", "pm1"): 0, ("01", "pm1"): 1, ("pm1", "01"): 2, ("01", "01"): 3}


def _check_pos(**kw) -> None:
    for name, v in kw.items():
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, not {v!r}")


def plane_count(bits: int) -> int:
    """Bit planes of a `bits`-bit operand (1 for binary, signed or not)."""
    return int(bits)


def tile_grid(m: int, n: int, rows: int, cols: int) -> tuple[int, int]:
    """Number of tiles along M and N: (ceil(M / R), ceil(N / C))."""
    return -(-m // rows), -(-n // cols)


def beats_count(m: int, n: int, k: int, a_bits: int, b_bits: int, rows: int, cols: int, lanes: int) -> int:
    """Beats `matmul_beats` issues: tiles * plane pairs * ceil(K / L)."""
    _check_pos(m=m, n=n, k=k, a_bits=a_bits, b_bits=b_bits, rows=rows, cols=cols, lanes=lanes)
    tm, tn = tile_grid(m, n, rows, cols)
    return tm * tn * plane_count(a_bits) * plane_count(b_bits) * -(-k // lanes)


def ideal_cycles(m: int, n: int, k: int, a_bits: int, b_bits: int, rows: int, cols: int, lanes: int) -> float:
    """Binary MACs of the product (M*N*K*plane pairs) over the array's peak R*C*L per cycle (real-valued)."""
    _check_pos(m=m, n=n, k=k, a_bits=a_bits, b_bits=b_bits, rows=rows, cols=cols, lanes=lanes)
    return m * n * k * plane_count(a_bits) * plane_count(b_bits) / (rows * cols * lanes)


def _pack_lanes(bits01: np.ndarray, lanes: int) -> np.ndarray:
    """{0,1} array (X, K) -> Python-int words (X, ceil(K/L)) as an object array, lane i = bit i."""
    x, k = bits01.shape
    chunks = -(-k // lanes)
    lane_bytes = -(-lanes // 8)
    padded = np.zeros((x, chunks, lane_bytes * 8), dtype=np.uint8)
    flat = np.zeros((x, chunks * lanes), dtype=np.uint8)
    flat[:, :k] = bits01
    padded[:, :, :lanes] = flat.reshape(x, chunks, lanes)
    as_bytes = np.packbits(padded, axis=-1, bitorder="little")   # (X, chunks, lane_bytes)
    out = np.empty((x, chunks), dtype=object)
    for i in range(x):
        for j in range(chunks):
            out[i, j] = int.from_bytes(as_bytes[i, j].tobytes(), "little")
    return out


def matmul_beats(a_codes: np.ndarray, a_bits: int, a_signed: bool, b_codes: np.ndarray, b_bits: int,
                 b_signed: bool, rows: int, cols: int, lanes: int) -> Iterator[dict]:
    """The operand beats of ``a_codes @ b_codes.T`` tiled on an R x C x L array.

    Parameters
    ----------
    a_codes : (M, K) int array
        Codes of A (`a_bits`-bit, `a_signed`; 1-bit signed = +-1).
    b_codes : (N, K) int array
        Codes of B (b_bits, b_signed; a weight matrix is 1-bit signed).
    rows, cols, lanes : int
        Array size R, C, L.

    Returns
    -------
    Iterator[dict]
        Lazily, one dict per beat (arguments are checked at the call): ``a`` (R ints of L bits), ``w`` (C ints), ``count`` (1..L), ``mode``
        (0..3, `hw.mac_array.PlaneMode`), ``shift``, ``negate``, ``first``, ``last``.
    """
    a_codes = np.asarray(a_codes)
    b_codes = np.asarray(b_codes)
    if a_codes.ndim != 2 or b_codes.ndim != 2 or a_codes.shape[1] != b_codes.shape[1]:
        raise ValueError(f"matmul_beats needs (M, K) and (N, K) codes, not {a_codes.shape} and {b_codes.shape}")
    _check_pos(rows=rows, cols=cols, lanes=lanes)
    (m, k), n = a_codes.shape, b_codes.shape[0]
    if k < 1:
        raise ValueError("K must be >= 1")
    a_planes = _tile_planes(a_codes, a_bits, a_signed, rows, lanes)     # validates the codes now
    b_planes = _tile_planes(b_codes, b_bits, b_signed, cols, lanes)
    return _beats(a_planes, b_planes, m, n, k, rows, cols, lanes)


def _tile_planes(codes, bits, signed, tile, lanes):
    """[(weight, kind, words)] with rows padded to a multiple of `tile` and words (rows, chunks)."""
    k = codes.shape[1]
    out = []
    for weight, kind, p in bit_planes(codes, bits, signed):
        padded = np.zeros((tile * -(-p.shape[0] // tile), k), dtype=np.uint8)
        padded[:p.shape[0]] = p
        out.append((weight, kind, _pack_lanes(padded, lanes)))
    return out


def _beats(a_planes, b_planes, m, n, k, rows, cols, lanes) -> Iterator[dict]:
    tm, tn = tile_grid(m, n, rows, cols)
    chunks = -(-k // lanes)
    n_beats = len(a_planes) * len(b_planes) * chunks
    for i in range(tm):
        for j in range(tn):
            beat = 0
            for wa, ka, pa in a_planes:
                for wb, kb, pb in b_planes:
                    weight = wa * wb
                    shift = abs(weight).bit_length() - 1
                    for ch in range(chunks):
                        yield {
                            "a": list(pa[i * rows:(i + 1) * rows, ch]),
                            "w": list(pb[j * cols:(j + 1) * cols, ch]),
                            "count": min(lanes, k - ch * lanes),
                            "mode": _MODE[(ka, kb)],
                            "shift": shift,
                            "negate": int(weight < 0),
                            "first": int(beat == 0),
                            "last": int(beat == n_beats - 1),
                        }
                        beat += 1


def assemble(results: Iterable, m: int, n: int, rows: int, cols: int) -> np.ndarray:
    """Place tile results (each R*C accumulators, row-major, in `matmul_beats` tile order) into an (M, N) int64 matrix."""
    _check_pos(m=m, n=n, rows=rows, cols=cols)
    tm, tn = tile_grid(m, n, rows, cols)
    full = np.zeros((tm * rows, tn * cols), dtype=np.int64)
    results = list(results)
    if len(results) != tm * tn:
        raise ValueError(f"expected {tm * tn} tile results for {m}x{n} on {rows}x{cols}, got {len(results)}")
    for t, acc in enumerate(results):
        acc = np.asarray(list(acc), dtype=np.int64)
        if acc.shape != (rows * cols,):
            raise ValueError(f"tile result {t} holds {acc.shape} values, not {rows * cols}")
        i, j = divmod(t, tn)
        full[i * rows:(i + 1) * rows, j * cols:(j + 1) * cols] = acc.reshape(rows, cols)
    return full[:m, :n]
