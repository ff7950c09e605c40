"""Beat schedule of a tiled matmul on `hw.mac_array.BinaryMacArray` (pure Python + NumPy).

This module is the one owner of the array's beat order, of its operand encoding and of
its timing recurrence; tests, benches, the cycle model and the sequencer use it.

Product: ``out (M, N) = a (M, K) @ b (N, K).T`` of integer codes, in tiles of R rows of a
by C rows of b, row-major tile order (tile (i, j) covers out[i*R:(i+1)*R, j*C:(j+1)*C]).

Operand encoding (offset binary, so no plane weight is negative). A code x of an operand
is ``x = s * u + o`` with u an unsigned integer of `planes` bits:

====================  =======  ==========  ===========  ==============================
operand               planes   s           o            u
====================  =======  ==========  ===========  ==============================
1-bit signed (+-1)    1        2           -1           (x + 1) / 2
b-bit signed, b >= 2  b        1           -2**(b-1)    x + 2**(b-1)
b-bit unsigned        b        1           0            x
====================  =======  ==========  ===========  ==============================

With u = sum_i 2**i u_i (planes u_i in {0,1}) and ``a AND b = (a + b - (a XOR b)) / 2``,
every dot product is a function of three counts, each a sum over plane pairs (i, j) of
``2**(i+j) * popcount(...)`` over the tile's K chunks:

* ``H[r][c]`` (PE accumulator): popcount(a_i[r] XOR b_j[c]), every beat;
* ``P[r]`` (row accumulator): popcount(a_i[r]) on beats with ``row_en``;
* ``Q[c]`` (column accumulator): popcount(b_j[c]) on beats with ``col_en``;

and ``dot = offset + (rho + kappa - (H << (a_pm1 + b_pm1))) / 2`` with
``rho = (-1)**row_neg * (P << a_pm1)``, ``kappa = (-1)**col_neg * (Q << b_pm1)``,
``offset = K * o_a * o_b``. The exact division works because the sum is 2 * (dot - offset).
Derivation: 2 dot = s_a s_b (sum u_a + sum u_b - H') ... = s_a c_b S_a + s_b c_a S_b +
2 K o_a o_b - s_a s_b H, with S = sum over k of u, and c = 0 for a +-1 operand, -1 for a
signed multi-bit one, 2**bits - 1 for an unsigned one; P = c_b S_a is produced by the row
enable: every beat (c_b = 2**bb - 1, Horner weights give the factor), beats with b plane
j = 0 (c_b = -1, with row_neg), or none (c_b = 0). Q likewise with col_en / col_neg.

Beat order inside a tile: plane pairs in falling weight i + j (Horner: the accumulators
double, ``step``, on the first beat of each lower weight), a's plane descending inside one
weight, then the K chunks of L lanes. ``first`` marks the tile's first beat (accumulators
restart from zero), ``last`` its last beat (the accumulators move to the drain, and the
tile constants a_pm1, b_pm1, row_neg, col_neg, offset are taken from that beat).

Padding the array assumes: lanes past K of the last chunk are 0 in both a and b words
(u = 0 there, so no count sees them; offset uses the true K); rows past M (N) in edge
tiles are zero words and their results are dropped by `assemble`.

Results: R drain beats per tile (row r = 0 .. R-1), each C signed values (column c).
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Iterable, Iterator

import numpy as np

from bitaccel.golden.formats import acc_bits, code_range

__all__ = ["ArraySpec", "operand_encoding", "pe_acc_bits", "check_fits", "matmul_beats", "assemble",
           "beats_count", "ideal_cycles", "plane_count", "tile_grid", "tile_plan", "array_cycles",
           "uniform_array_cycles"]


@dataclasses.dataclass(frozen=True)
class ArraySpec:
    """What the schedule needs to know about one generated array.

    rows, cols, lanes : R, C, L.
    pe_width : unsigned bits of the PE, row and column accumulators (H, P, Q).
    out_width : signed bits of a result value (the dot product).
    row_counts : whether the array has the R row popcounts (needed when b is not +-1).
    pipe : edges from a beat's acceptance to its accumulation; drain : edges from a result
        row's read to its transfer, plus one (see `array_cycles`).
    """

    rows: int
    cols: int
    lanes: int
    pe_width: int
    out_width: int
    row_counts: bool = True
    pipe: int = 0
    drain: int = 0


def _check_pos(**kw) -> None:
    for name, v in kw.items():
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, not {v!r}")


def operand_encoding(bits: int, signed: bool) -> tuple[int, int, int, int]:
    """(planes, s, o, c) of an operand kind: x = s*u + o; c is the coefficient the other operand's sum gets."""
    _check_pos(bits=bits)
    if bits == 1 and signed:
        return 1, 2, -1, 0
    if signed:
        return bits, 1, -(1 << (bits - 1)), -1
    return bits, 1, 0, (1 << bits) - 1


def plane_count(bits: int) -> int:
    """Bit planes of a `bits`-bit operand (1 for binary, signed or not)."""
    return int(bits)


def pe_acc_bits(k: int, a_bits: int, b_bits: int) -> int:
    """Unsigned bits of the PE / row / column accumulators over K: bit_length(K (2**a - 1)(2**b - 1))."""
    _check_pos(k=k, a_bits=a_bits, b_bits=b_bits)
    return (k * ((1 << a_bits) - 1) * ((1 << b_bits) - 1)).bit_length()


def check_fits(spec: ArraySpec, k: int, a_bits: int, a_signed: bool, b_bits: int, b_signed: bool) -> None:
    """Raise ValueError naming the array limit that this product would exceed (never wrap silently)."""
    need_pe = pe_acc_bits(k, a_bits, b_bits)
    if need_pe > spec.pe_width:
        raise ValueError(f"K={k} with {a_bits}-bit x {b_bits}-bit planes needs {need_pe}-bit PE accumulators, "
                         f"over the array's pe_width={spec.pe_width}")
    need_out = acc_bits(k, a_bits, a_signed, b_bits, b_signed)
    if need_out > spec.out_width:
        raise ValueError(f"K={k} with {a_bits}-bit x {b_bits}-bit codes needs {need_out}-bit results, "
                         f"over the array's out_width={spec.out_width}")
    if operand_encoding(b_bits, b_signed)[3] != 0 and not spec.row_counts:
        raise ValueError(f"a {b_bits}-bit {'signed' if b_signed else 'unsigned'} b operand needs row counts; "
                         "this array is built without them (row_counts=False: b must be +-1)")


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


def tile_plan(k: int, a_bits: int, a_signed: bool, b_bits: int, b_signed: bool, lanes: int) -> list[dict]:
    """Control fields of one tile's beats, in issue order, without operand words.

    Each dict: ``i`` (a plane), ``j`` (b plane), ``chunk``, and the beat fields ``first``, ``step``,
    ``row_en``, ``col_en``, ``last`` and the tile constants ``a_pm1``, ``b_pm1``, ``row_neg``,
    ``col_neg``, ``offset``.
    """
    _check_pos(k=k, lanes=lanes)
    pa, _, oa, ca = operand_encoding(a_bits, a_signed)
    pb, _, ob, cb = operand_encoding(b_bits, b_signed)
    chunks = -(-k // lanes)
    pairs = sorted(((i, j) for i in range(pa) for j in range(pb)), key=lambda ij: (-(ij[0] + ij[1]), -ij[0]))
    const = {"a_pm1": int(a_bits == 1 and a_signed), "b_pm1": int(b_bits == 1 and b_signed),
             "row_neg": int(cb < 0), "col_neg": int(ca < 0), "offset": k * oa * ob}
    plan, prev_w = [], None
    for i, j in pairs:
        w = i + j
        for ch in range(chunks):
            plan.append({
                "i": i, "j": j, "chunk": ch,
                "first": int(not plan),
                "step": int(prev_w is not None and ch == 0 and w != prev_w),
                "row_en": int(cb > 0 or (cb < 0 and j == 0)),
                "col_en": int(ca > 0 or (ca < 0 and i == 0)),
                "last": 0, **const,
            })
        prev_w = w
    plan[-1]["last"] = 1
    return plan


def _offset_planes(codes: np.ndarray, bits: int, signed: bool, tile: int, lanes: int) -> list:
    """Offset-binary planes of (X, K) codes, rows padded to a multiple of `tile`, as Python-int words (rows, chunks)."""
    codes = np.asarray(codes, dtype=np.int64)
    lo, hi = code_range(bits, signed)
    if codes.size and (codes.min() < lo or codes.max() > hi):
        raise ValueError(f"codes outside [{lo}, {hi}] for a {bits}-bit {'signed' if signed else 'unsigned'} operand")
    planes, s, o, _ = operand_encoding(bits, signed)
    if bits == 1 and signed and codes.size and np.any(codes == 0):
        raise ValueError("a 1-bit signed operand holds only -1 and +1")
    u = (codes - o) // s
    x, k = codes.shape
    out = []
    for i in range(planes):
        p = np.zeros((tile * -(-x // tile), k), dtype=np.uint8)
        p[:x] = (u >> i) & 1
        out.append(_pack_lanes(p, lanes))
    return out


def _pack_lanes(bits01: np.ndarray, lanes: int) -> np.ndarray:
    """{0,1} array (X, K) -> Python-int words (X, ceil(K/L)) as an object array, lane i = bit i, zero padded."""
    x, k = bits01.shape
    chunks = -(-k // lanes)
    lane_bytes = -(-lanes // 8)
    flat = np.zeros((x, chunks * lanes), dtype=np.uint8)
    flat[:, :k] = bits01
    padded = np.zeros((x, chunks, lane_bytes * 8), dtype=np.uint8)
    padded[:, :, :lanes] = flat.reshape(x, chunks, lanes)
    as_bytes = np.packbits(padded, axis=-1, bitorder="little")   # (X, chunks, lane_bytes)
    out = np.empty((x, chunks), dtype=object)
    for i in range(x):
        for j in range(chunks):
            out[i, j] = int.from_bytes(as_bytes[i, j].tobytes(), "little")
    return out


def matmul_beats(a_codes: np.ndarray, a_bits: int, a_signed: bool, b_codes: np.ndarray, b_bits: int,
                 b_signed: bool, spec: ArraySpec) -> Iterator[dict]:
    """The operand beats of ``a_codes @ b_codes.T`` tiled on the array `spec` (arguments checked at the call).

    Returns an iterator of dicts in the array's ``operands`` layout: ``a`` (R ints of L bits),
    ``w`` (C ints), ``first``, ``step``, ``row_en``, ``col_en``, ``last``, ``a_pm1``, ``b_pm1``,
    ``row_neg``, ``col_neg``, ``offset``. Raises ValueError naming the limit when the product
    does not fit `spec` (`check_fits`).
    """
    a_codes = np.asarray(a_codes)
    b_codes = np.asarray(b_codes)
    if a_codes.ndim != 2 or b_codes.ndim != 2 or a_codes.shape[1] != b_codes.shape[1]:
        raise ValueError(f"matmul_beats needs (M, K) and (N, K) codes, not {a_codes.shape} and {b_codes.shape}")
    if not isinstance(spec, ArraySpec):
        raise TypeError(f"spec must be an ArraySpec, not {spec!r}")
    _check_pos(rows=spec.rows, cols=spec.cols, lanes=spec.lanes)
    (m, k), n = a_codes.shape, b_codes.shape[0]
    if k < 1 or m < 1 or n < 1:
        raise ValueError(f"M, N and K must be >= 1, not {m}, {n}, {k}")
    check_fits(spec, k, a_bits, a_signed, b_bits, b_signed)
    a_planes = _offset_planes(a_codes, a_bits, a_signed, spec.rows, spec.lanes)
    b_planes = _offset_planes(b_codes, b_bits, b_signed, spec.cols, spec.lanes)
    plan = tile_plan(k, a_bits, a_signed, b_bits, b_signed, spec.lanes)
    return _beats(a_planes, b_planes, plan, m, n, spec.rows, spec.cols)


_CTRL = ("first", "step", "row_en", "col_en", "last", "a_pm1", "b_pm1", "row_neg", "col_neg", "offset")


def _beats(a_planes, b_planes, plan, m, n, rows, cols) -> Iterator[dict]:
    tm, tn = tile_grid(m, n, rows, cols)
    for ti in range(tm):
        for tj in range(tn):
            for p in plan:
                beat = {"a": list(a_planes[p["i"]][ti * rows:(ti + 1) * rows, p["chunk"]]),
                        "w": list(b_planes[p["j"]][tj * cols:(tj + 1) * cols, p["chunk"]])}
                beat.update((f, p[f]) for f in _CTRL)
                yield beat


def assemble(results: Iterable, m: int, n: int, rows: int, cols: int) -> np.ndarray:
    """Place drain beats (R per tile, each C values, in `matmul_beats` tile order) into an (M, N) int64 matrix."""
    _check_pos(m=m, n=n, rows=rows, cols=cols)
    tm, tn = tile_grid(m, n, rows, cols)
    full = np.zeros((tm * rows, tn * cols), dtype=np.int64)
    results = list(results)
    if len(results) != tm * tn * rows:
        raise ValueError(f"expected {tm * tn * rows} drain beats for {m}x{n} on {rows}x{cols}, got {len(results)}")
    for beat, vals in enumerate(results):
        vals = np.asarray(list(vals), dtype=np.int64)
        if vals.shape != (cols,):
            raise ValueError(f"drain beat {beat} holds {vals.shape} values, not {cols}")
        t, r = divmod(beat, rows)
        i, j = divmod(t, tn)
        full[i * rows + r, j * cols:(j + 1) * cols] = vals
    return full[:m, :n]


def array_cycles(tile_beats: Iterable[int], rows: int, pipe: int, drain: int) -> int:
    """Exact cycles of back-to-back tiles on the array, operands offered every cycle, results always taken.

    Counted from the first operand beat's transfer to the last result beat's transfer, both
    included. Rules of the hardware (hw/mac_array.py), with edges numbered from the first
    beat's transfer (edge 0): a beat accepted at edge t accumulates (the tile's last beat:
    loads a drain bank) at edge t + pipe and never stalls there; the drain reads a tile's R
    rows at consecutive edges, starting the edge after its load and after the previous tile's
    last row; tile k's last beat is accepted only after tile k - 2's last row was read (two
    drain banks), and the beats behind it wait with it. Result row r read at edge s
    transfers at edge s + drain - 1.
    """
    _check_pos(rows=rows, pipe=pipe, drain=drain)
    edge = -1        # acceptance edge of the previous beat
    ends: list[int] = []     # edge at which each tile's last row is read
    for beats in tile_beats:
        _check_pos(beats=beats)
        edge += beats
        if len(ends) >= 2:
            edge = max(edge, ends[-2] + 1)
        start = edge + pipe + 1
        if ends:
            start = max(start, ends[-1] + 1)
        ends.append(start + rows - 1)
    if not ends:
        raise ValueError("array_cycles needs at least one tile")
    return ends[-1] + drain


def uniform_array_cycles(tiles: int, beats: int, rows: int, pipe: int, drain: int) -> int:
    """`array_cycles` of `tiles` tiles of `beats` beats each (``beats - 1 + pipe + drain + rows`` for one tile)."""
    _check_pos(tiles=tiles, beats=beats, rows=rows, pipe=pipe, drain=drain)
    return array_cycles(itertools.repeat(beats, tiles), rows, pipe, drain)
