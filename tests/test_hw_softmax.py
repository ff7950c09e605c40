"""SoftmaxUnit (hw/softmax.py) and RestoringDivider (hw/divider.py) against golden.softmax, bit-exactly.

Every output element of every row is compared with golden.softmax (softmax_exp, then
softmax_binarize or softmax_reciprocal + softmax_probs) in the Amaranth simulator. All
randomness is seeded and the seeds are printed.
"""
from __future__ import annotations

import dataclasses
import gc
import os
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import UnusedElaboratable
from hwsim import run, stream_get, stream_put

from bitaccel.golden.formats import NumericFormat, acc_bits, exp_sum_bits
from bitaccel.golden.model import IntegerModel
from bitaccel.golden.random_artifact import random_artifact
from bitaccel.golden.softmax import exp_lut, softmax_binarize, softmax_exp, softmax_probs, softmax_reciprocal
from bitaccel.hw.divider import RestoringDivider
from bitaccel.hw.params import HwParams
from bitaccel.hw.softmax import SoftmaxMode, SoftmaxUnit

FMT = NumericFormat()
BINARY, MULTIBIT = SoftmaxMode.BINARY, SoftmaxMode.MULTIBIT
#: a second, narrower format (every width in the unit is derived from the format)
SMALL_FMT = NumericFormat(exp_frac=10, theta_frac=12, prob_frac=8, recip_guard=3)
#: score range of the default test unit: 1-bit codes, head dim 16 -> |s| <= 16
HEAD_DIM = 16


@dataclasses.dataclass
class Row:
    """One softmax row as the test drives it (scores and valid have the row's length)."""
    scores: np.ndarray
    valid: np.ndarray
    mode: SoftmaxMode
    theta: int
    lut: np.ndarray
    lut_len: int | None = None      # port value; None = len(lut); the LUT in use is lut[:min(lut_len, max_lut)]


def sim_run(dut, *benches, deadline_cycles: int) -> None:
    """hwsim.run, then collect the finished simulation's suspended background watchdog at once
    (if the garbage collector finalizes it while pytest formats a failure, Python 3.11 raises
    an INTERNALERROR "AST constructor recursion depth mismatch" instead of the report)."""
    run(dut, *benches, deadline_cycles=deadline_cycles)
    gc.collect()


def make_unit(width=4, max_seq=37, max_lut=40, fmt=FMT, head_dim=HEAD_DIM, act_bits=1) -> SoftmaxUnit:
    return SoftmaxUnit(width, acc_bits(head_dim, act_bits, True, act_bits, True), max_seq, max_lut, fmt)


def padded(unit: SoftmaxUnit, row: Row, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Row padded to whole beats: padding lanes get random scores and valid = 0."""
    n = unit.beats(len(row.scores)) * unit.width
    lim = 1 << (unit.score_width - 1)
    s = rng.integers(-lim, lim, n)
    v = np.zeros(n, dtype=bool)
    s[: len(row.scores)] = row.scores
    v[: len(row.valid)] = row.valid
    return s, v


def golden_row(unit: SoftmaxUnit, s: np.ndarray, v: np.ndarray, row: Row) -> tuple[np.ndarray, np.ndarray]:
    """Expected (bits, p) per lane of a padded row; the field of the other mode is 0."""
    fmt = unit.numerics
    if not v.any():                                 # caller's error: the hardware outputs zeros
        return np.zeros(len(s), np.int64), np.zeros(len(s), np.int64)
    used = len(row.lut) if row.lut_len is None else min(row.lut_len, unit.max_lut)
    assert used <= len(row.lut)
    e, total = softmax_exp(s, v, row.lut[:used])
    if row.mode == BINARY:
        return softmax_binarize(e, total, row.theta, fmt).astype(np.int64), np.zeros(len(s), np.int64)
    return np.zeros(len(s), np.int64), softmax_probs(e, softmax_reciprocal(total, fmt), fmt)


def simulate(unit: SoftmaxUnit, rows: list[Row], seed: int, in_stall: float = 0.0, out_stall: float = 0.0,
             lut_garbage: bool = True, lut_order: str = "random") -> None:
    """Drive `rows` through `unit` (LUT rewritten whenever it changes) and check every output beat."""
    print(f"simulate seed={seed} rows={len(rows)} in_stall={in_stall} out_stall={out_stall}")
    rng = np.random.default_rng(seed)
    in_rng, out_rng = np.random.default_rng([seed, 1]), np.random.default_rng([seed, 2])
    w = unit.width
    pads = [padded(unit, r, rng) for r in rows]
    expected = [golden_row(unit, s, v, r) for (s, v), r in zip(pads, rows)]
    got = []

    async def producer(ctx):
        loaded = None
        for (s, v), row in zip(pads, rows):
            if loaded is None or not np.array_equal(loaded, row.lut):
                image = np.zeros(unit.max_lut, np.int64)
                if lut_garbage:   # entries past lut_len must never be read
                    image[:] = rng.integers(1, 1 << (unit.exp_width - 1), unit.max_lut)
                image[: len(row.lut)] = row.lut
                order = rng.permutation(unit.max_lut) if lut_order == "random" else range(unit.max_lut)
                for a in order:
                    await stream_put(ctx, unit.lut_write, {"addr": int(a), "data": int(image[a])}, in_rng, in_stall)
                loaded = row.lut
            ctx.set(unit.mode, row.mode)
            ctx.set(unit.theta, row.theta)
            ctx.set(unit.lut_len, len(row.lut) if row.lut_len is None else row.lut_len)
            n = len(s) // w
            for b in range(n):
                lanes = slice(b * w, (b + 1) * w)
                payload = {"score": [int(x) for x in s[lanes]],
                           "valid": int(sum(int(x) << j for j, x in enumerate(v[lanes]))),
                           "last": int(b == n - 1)}
                await stream_put(ctx, unit.scores, payload, in_rng, in_stall)

    async def consumer(ctx):
        for s, _ in pads:
            beats = [await stream_get(ctx, unit.probs, out_rng, out_stall) for _ in range(len(s) // w)]
            got.append(beats)

    cycles = sum(unit.cycles(len(r.scores), r.mode) for r in rows) + len(rows) * unit.max_lut
    sim_run(unit, producer, consumer, deadline_cycles=int(cycles * (2 + 4 * max(in_stall, out_stall))) + 200)
    assert len(got) == len(rows)
    for i, (beats, (bits, p), row) in enumerate(zip(got, expected, rows)):
        hw_bits = np.array([(int(o.bits) >> j) & 1 for o in beats for j in range(w)])
        hw_p = np.array([int(x) for o in beats for x in o.p])
        hw_last = [int(o.last) for o in beats]
        ctx_msg = f"row {i} (seed {seed}, len {len(row.scores)}, mode {row.mode.name}, theta {row.theta})"
        assert hw_last == [0] * (len(beats) - 1) + [1], ctx_msg
        np.testing.assert_array_equal(hw_bits, bits, err_msg=ctx_msg)
        np.testing.assert_array_equal(hw_p, p, err_msg=ctx_msg)


def random_rows(unit: SoftmaxUnit, rng: np.random.Generator, count: int, luts: list[np.ndarray]) -> list[Row]:
    lim = 1 << (unit.score_width - 1)
    rows = []
    for _ in range(count):
        length = int(rng.integers(1, unit.max_seq + 1))
        spread = int(rng.choice([2, HEAD_DIM, lim]))
        s = rng.integers(max(-spread, -lim), min(spread, lim - 1) + 1, length)
        v = rng.random(length) < rng.choice([1.0, 0.8, 0.4])
        v[rng.integers(length)] = True
        nv = int(v.sum())
        theta = int(rng.integers(1, max(2, (2 << unit.numerics.theta_frac) // nv)))
        lut = luts[int(rng.integers(len(luts)))]
        rows.append(Row(s, v, SoftmaxMode(int(rng.integers(2))), theta, lut))
    return rows


def luts_for(fmt: NumericFormat, max_index: int = 2 * HEAD_DIM) -> list[np.ndarray]:
    return [exp_lut(c, fmt, max_index) for c in (0.0, 0.05, 0.3, 1.1, 4.0)]


# ----------------------------------------------------------------------------- divider
@pytest.mark.parametrize("seed", [11])
def test_divider_matches_integer_division(seed):
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    dw, vw, qw = 30, 12, 20
    dut = RestoringDivider(dw, vw, qw)
    cases = [(int(rng.integers(1, 1 << vw)), 0) for _ in range(40)]
    cases = [(d, int(rng.integers(0, min(1 << dw, d << qw)))) for d, _ in cases]
    cases += [(1, (1 << qw) - 1), ((1 << vw) - 1, (1 << dw) - 1), (7, 0), (0, 12345)]
    got = []

    async def producer(ctx):
        for d, n in cases:
            await stream_put(ctx, dut.request, {"dividend": n, "divisor": d}, rng, 0.3)

    async def consumer(ctx):
        for _ in cases:
            r = await stream_get(ctx, dut.result, rng, 0.3)
            got.append((int(r.quotient), int(r.remainder)))

    sim_run(dut, producer, consumer, deadline_cycles=len(cases) * (dut.latency + 20))
    for (d, n), (q, r) in zip(cases, got):
        if d == 0:
            assert q == (1 << qw) - 1            # documented: all ones
        else:
            assert (q, r) == divmod(n, d), (n, d)


def test_divider_latency():
    dut = RestoringDivider(39, 23, 24)
    t = {}

    async def bench(ctx):
        ctx.set(dut.request.payload, {"dividend": 1 << 38, "divisor": 40000})
        ctx.set(dut.request.valid, 1)
        await ctx.tick().until(dut.request.ready)
        ctx.set(dut.request.valid, 0)
        cycles = 1                      # we are now in the cycle after the transfer cycle
        while not ctx.get(dut.result.valid):
            await ctx.tick()
            cycles += 1
        t["latency"] = cycles
        assert ctx.get(dut.result.payload.quotient) == (1 << 38) // 40000

    sim_run(dut, bench, deadline_cycles=100)
    assert t["latency"] == dut.latency


# ----------------------------------------------------------------------------- softmax, random
@pytest.mark.parametrize("width,max_seq,max_lut,fmt,seed", [
    (4, 37, 40, FMT, 1),
    (3, 20, 36, FMT, 2),
    (1, 9, 34, FMT, 3),
    (5, 23, 40, SMALL_FMT, 4),
], ids=["w4", "w3", "w1", "w5_small_fmt"])
def test_random_rows_with_stalls(width, max_seq, max_lut, fmt, seed):
    """Random lengths (mostly not multiples of width), masks, LUTs, modes and theta; random stalls both sides."""
    print(f"seed={seed}")
    unit = make_unit(width, max_seq, max_lut, fmt)
    rng = np.random.default_rng(seed)
    rows = random_rows(unit, rng, 24, luts_for(fmt))
    simulate(unit, rows, seed, in_stall=0.3, out_stall=0.4)


def test_back_to_back_rows_switching_mode_theta_lut_under_backpressure():
    """1-beat and 2-beat rows back to back, switching mode, θ and LUT, while the output stalls:
    the next row is ingested while the previous one drains (row-register hand-over), and LUT
    writes wait for the previous row's last LUT read."""
    seed = 21
    print(f"seed={seed}")
    unit = make_unit(4, 37, 40)
    rng = np.random.default_rng(seed)
    luts = luts_for(FMT)
    rows = []
    for i in range(30):
        length = int(rng.integers(1, 9))
        s = rng.integers(-16, 17, length)
        v = rng.random(length) < 0.8
        v[0] = True
        theta = 1 if i % 4 in (0, 3) else (1 << FMT.theta_frac) + 1     # consecutive rows differ
        lut = luts[(i // 3) % len(luts)]
        rows.append(Row(s, v, SoftmaxMode(i % 2), theta, lut, lut_len=len(lut) - (i % 2) * (len(lut) // 2)))
    simulate(unit, rows, seed, in_stall=0.0, out_stall=0.7)
    simulate(unit, rows, seed + 1, in_stall=0.5, out_stall=0.0)
    # a new LUT before every row, written from address 0 up while the previous row's last beat
    # may still wait for its LUT read (scores m and m - 1 read addresses 0 and 1)
    luts = [exp_lut(0.3, FMT, 2 * HEAD_DIM), exp_lut(1.1, FMT, 2 * HEAD_DIM)]
    lengths = rng.integers(9, 21, 30)                            # 3 to 5 beats: the output register is busy
    rows = [Row(rng.integers(-1, 1, n), np.ones(n, bool), BINARY if i % 3 else MULTIBIT,
                int(rng.integers(4000, 30000)), luts[i % 2]) for i, n in enumerate(lengths)]
    simulate(unit, rows, seed + 2, in_stall=0.0, out_stall=0.7, lut_order="ascending")


# ----------------------------------------------------------------------------- softmax, directed
def _both(rows: list[Row]) -> list[Row]:
    return [dataclasses.replace(r, mode=m) for r in rows for m in (BINARY, MULTIBIT)]


def test_masks_and_edge_rows():
    seed = 31
    print(f"seed={seed}")
    unit = make_unit(4, 37, 40)
    rng = np.random.default_rng(seed)
    lut = exp_lut(0.3, FMT, 2 * HEAD_DIM)
    short_lut = exp_lut(2.0, FMT, 2 * HEAD_DIM)
    assert len(short_lut) < 2 * HEAD_DIM
    theta = 3000

    def row(s, v, lut_=lut, theta_=theta):
        return Row(np.asarray(s), np.asarray(v, dtype=bool), BINARY, theta_, lut_)

    n = 23
    s = rng.integers(-16, 17, n)
    end_pad = np.arange(n) < 14                                  # padding at the end
    scattered = rng.random(n) < 0.5                              # scattered padding
    scattered[3] = True
    single = np.zeros(n, bool)
    single[17] = True                                            # a single valid key
    max_pad_s = s.copy()
    max_pad_s[~scattered] = 16                                   # the largest scores are all padding
    max_pad_s[scattered] = np.minimum(max_pad_s[scattered], 5)
    rows = [
        row(s, end_pad),
        row(s, scattered),
        row(s, single),
        row([7], [True]),                                        # one key, one beat
        row(max_pad_s, scattered),
        row(np.full(n, -4), np.ones(n)),                         # all scores equal
        row(np.full(16, 9), np.ones(16)),                        # ... and a whole number of beats
        row(np.array([16, -16, 15, -15, 0, 9, -9, 16, 3]), np.ones(9), short_lut),   # beyond the LUT: e = 0
        row(np.array([16, -16, 15, -15, 0, 9, -9, 16, 3]), np.ones(9), lut),
        row(s, np.ones(n)),                                      # no padding
        row(rng.integers(-16, 17, 37), np.ones(37)),             # a full-length row
    ]
    simulate(unit, _both(rows), seed, in_stall=0.2, out_stall=0.2)


def test_theta_ties_and_extremes():
    """Exact ties e_j / Σ = θ / 2^theta_frac fire; θ + 1 does not; θ = 2^theta_frac + 1 never fires; θ = 1."""
    seed = 41
    print(f"seed={seed}")
    unit = make_unit(4, 37, 40)
    tf = FMT.theta_frac
    ef = FMT.exp_frac
    lut = np.array([1 << ef, 1 << (ef - 1), 1 << (ef - 2)], np.int64)   # e of scores 0, -1, -2
    s = np.array([0, -1, -2, -2, -9])                            # Σ = 2^(exp_frac + 1); the last e is 0
    v = np.ones(5, bool)
    e, total = (x.astype(np.int64) for x in softmax_exp(s, v, lut))
    rows = []
    for j in range(3):
        tie = int((e[j] << tf) // total[0])
        assert (int(e[j]) << tf) == tie * int(total[0])          # an exact tie
        for theta in (tie - 1, tie, tie + 1):
            rows.append(Row(s, v, BINARY, theta, lut))
    # k equal keys: p = 1/k exactly; θ = 2^tf / k is a tie for every key
    for k in (1, 2, 4, 8, 16):
        rows.append(Row(np.full(k + 3, 5), np.arange(k + 3) < k, BINARY, (1 << tf) // k, exp_lut(0.3, FMT, 32)))
    big = (1 << tf) + 1                                           # p <= 1 < θ / 2^tf: nothing fires
    top = (1 << unit.theta_width) - 1                             # the largest port value
    for theta in (big, top, 1):
        rows.append(Row(np.array([3]), np.array([True]), BINARY, theta, lut))
        rows.append(Row(s, v, BINARY, theta, lut))
    simulate(unit, rows, seed, out_stall=0.3)
    assert softmax_binarize(np.array([1 << ef]), np.array([1 << ef]), big, FMT)[0] == 0   # even p = 1


def test_empty_row_outputs_zeros_and_lut_len_is_clamped():
    """A row with no valid key (the caller's error) gives all-zero outputs in both modes, and the
    unit carries on; lut_len values above max_lut act as max_lut."""
    seed = 51
    print(f"seed={seed}")
    unit = make_unit(4, 37, 40)
    lut = exp_lut(0.0, FMT, 39)                                  # 40 entries, all 2^15: fills max_lut
    assert len(lut) == unit.max_lut
    s = np.random.default_rng(seed).integers(-32, 32, 37)      # m - s reaches past max_lut
    s[5] = 31
    rows = [Row(s[:9], np.zeros(9, bool), BINARY, 100, lut),
            Row(s[:9], np.zeros(9, bool), MULTIBIT, 100, lut),
            Row(s, np.ones(37, bool), BINARY, 1000, lut, lut_len=(1 << (unit.max_lut.bit_length())) - 1),
            Row(s, np.ones(37, bool), MULTIBIT, 1000, lut, lut_len=unit.max_lut + 1)]
    simulate(unit, _both(rows), seed, in_stall=0.2, out_stall=0.2)


# ----------------------------------------------------------------------------- timing
def _measure(unit: SoftmaxUnit, rows: list[tuple[int, SoftmaxMode]]) -> tuple[list[int], list[int]]:
    """No stalls: cycle index (clock edges since time 0) of each row's first input transfer and
    last output transfer."""
    lut = exp_lut(0.3, unit.numerics, 32)
    first, last = [], []

    async def transfer(ctx, port, cycle):
        """Wait for the transfer on `port` (valid and ready at an edge); return the edge index."""
        while True:
            _, _, valid, ready = await ctx.tick().sample(port.valid, port.ready)   # clk, rst, samples
            cycle += 1
            if valid and ready:
                return cycle

    async def producer(ctx):
        cycle = 0
        ctx.set(unit.lut_write.valid, 1)
        for a, x in enumerate(lut):
            ctx.set(unit.lut_write.payload, {"addr": a, "data": int(x)})
            cycle = await transfer(ctx, unit.lut_write, cycle)
        ctx.set(unit.lut_write.valid, 0)
        ctx.set(unit.lut_len, len(lut))
        ctx.set(unit.theta, 1000)
        ctx.set(unit.scores.valid, 1)
        for seq_len, mode in rows:
            ctx.set(unit.mode, mode)
            n = unit.beats(seq_len)
            for b in range(n):
                ctx.set(unit.scores.payload, {"score": [b] * unit.width, "valid": 1, "last": int(b == n - 1)})
                cycle = await transfer(ctx, unit.scores, cycle)
                if b == 0:
                    first.append(cycle)
        ctx.set(unit.scores.valid, 0)

    async def consumer(ctx):
        cycle = 0
        ctx.set(unit.probs.ready, 1)
        for seq_len, _ in rows:
            for _ in range(unit.beats(seq_len)):
                cycle = await transfer(ctx, unit.probs, cycle)
            last.append(cycle)

    sim_run(unit, producer, consumer, deadline_cycles=20_000)
    return first, last


def test_cycles_formula_matches_measurement():
    unit = make_unit(4, 37, 40)
    for mode in (BINARY, MULTIBIT):
        for seq_len in (1, 4, 5, 13, 37):
            first, last = _measure(unit, [(seq_len, mode)])
            assert last[0] - first[0] + 1 == unit.cycles(seq_len, mode), (seq_len, mode)
    n = unit.beats(13)
    assert unit.cycles(13, BINARY) == 3 * n + 6
    assert unit.cycles(13, MULTIBIT) == 3 * n + FMT.prob_frac + FMT.recip_guard + 8
    assert unit.latency == 3


def test_interval_matches_measurement():
    """Back-to-back rows offered as fast as the unit takes them: each row's last output beat follows the
    previous row's by interval(seq_len) cycles, and the next row is ingested while one is evaluated."""
    unit = make_unit(4, 37, 40)
    for mode in (BINARY, MULTIBIT):
        for seq_len in (1, 3, 6, 21):
            first, last = _measure(unit, [(seq_len, mode)] * 4)
            gaps = [b - a for a, b in zip(last, last[1:])]
            assert gaps == [unit.interval(seq_len, mode)] * 3, (seq_len, mode, gaps)
            assert last[0] - first[0] + 1 == unit.cycles(seq_len, mode)
            assert last[-1] - first[0] + 1 == unit.cycles(seq_len, mode) + 3 * unit.interval(seq_len, mode)
            assert first[1] < last[0] - unit.beats(seq_len), (seq_len, mode)   # row 2 in before row 1's pass 3
            three_passes = unit.cycles(seq_len, mode) - unit.latency + (unit.beats(seq_len) == 1)   # one bank
            assert unit.interval(seq_len, mode) == three_passes - max(unit.beats(seq_len) - 2, 0), (seq_len, mode)


# ----------------------------------------------------------------------------- end to end
@pytest.mark.parametrize("act_bits", [1, 2])
def test_rows_of_a_random_artifact(act_bits):
    """Rows of layers.0.scores of a real forward pass, with its mask, LUT and θ, give layers.0.probs / .p."""
    seed = 61
    print(f"artifact seed=1 act_bits={act_bits} input seed={seed}")
    art = random_artifact("tiny", seed=1, act_bits=act_bits)
    cfg = art.config
    rng = np.random.default_rng(seed)
    b, s = 2, 21
    ids = rng.integers(0, cfg.vocab_size, (b, s))
    mask = np.ones((b, s), bool)
    mask[1, 13:] = False
    out = IntegerModel(art).forward(ids, mask, keep_intermediates=True)["intermediates"]
    scores = out["layers.0.scores"]                               # (B, heads, S, S)
    lut = art["layers.0.softmax.exp_lut"]
    multibit = art.quant["layers.0.probs"] > 1
    theta = 0 if multibit else int(art["layers.0.probs.theta"])
    expected = out["layers.0.p"] if multibit else out["layers.0.probs"]

    unit = SoftmaxUnit(8, acc_bits(cfg.head_dim, act_bits, True, act_bits, True), 24, 2 * len(lut), art.numerics)
    picks = [(bi, h, q) for bi in range(b) for h in range(cfg.heads) for q in range(s)]
    picks = [picks[i] for i in np.sort(rng.choice(len(picks), 20, replace=False))]
    rows = [Row(scores[bi, h, q], mask[bi], MULTIBIT if multibit else BINARY, theta, lut) for bi, h, q in picks]
    for (bi, h, q), row in zip(picks, rows):     # the test's golden path reproduces the model's intermediate
        bits, p = golden_row(unit, row.scores, row.valid, row)
        np.testing.assert_array_equal(p if multibit else bits, expected[bi, h, q])
    simulate(unit, rows, seed, in_stall=0.2, out_stall=0.2)


# ----------------------------------------------------------------------------- construction, widths, Verilog
def test_from_params_derives_widths():
    with warnings.catch_warnings():                  # the units built here are never elaborated
        warnings.simplefilter("ignore", UnusedElaboratable)
        _check_from_params()
        gc.collect()


def test_constructor_validation():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        _check_validation()
        gc.collect()


def _check_from_params():
    p = HwParams()
    unit = SoftmaxUnit.from_params(p)
    assert unit.width == p.cols
    assert unit.score_width == acc_bits(p.max_head_dim, p.max_act_bits, True, p.max_act_bits, True)
    assert unit.sum_width == exp_sum_bits(p.numerics, p.max_seq) == p.exp_sum_width
    assert unit.exp_width == p.numerics.exp_frac + 1
    assert unit.theta_width == p.numerics.theta_frac + 2
    assert unit.prob_width == p.numerics.prob_frac + 1
    assert unit.depth == -(-p.max_seq // p.cols)
    assert SoftmaxUnit.from_params(p, width=3).width == 3
    layout = unit.scores.payload.shape()
    assert layout.size == unit.width * unit.score_width + unit.width + 1
    assert unit.probs.payload.shape().size == unit.width * (1 + unit.prob_width) + 1
    assert unit.lut_write.payload.shape().size == unit.lut_addr_width + unit.exp_width


def _check_validation():
    with pytest.raises(ValueError, match="width"):
        SoftmaxUnit(0, 6, 10, 10, FMT)
    with pytest.raises(TypeError, match="score_width"):
        SoftmaxUnit(4, 6.0, 10, 10, FMT)
    with pytest.raises(ValueError, match="score_width"):
        SoftmaxUnit(4, 1, 10, 10, FMT)
    with pytest.raises(ValueError, match="max_seq"):
        SoftmaxUnit(4, 6, 0, 10, FMT)
    with pytest.raises(ValueError, match="max_lut"):
        SoftmaxUnit(4, 6, 10, 0, FMT)
    with pytest.raises(TypeError, match="NumericFormat"):
        SoftmaxUnit(4, 6, 10, 10, {"exp_frac": 15})
    with pytest.raises(ValueError, match="exp_frac"):
        SoftmaxUnit(4, 6, 10, 10, NumericFormat(exp_frac=2))
    with pytest.raises(TypeError, match="HwParams"):
        SoftmaxUnit.from_params({"cols": 8})
    with pytest.raises(ValueError, match="max_seq"):
        make_unit().cycles(38)
    with pytest.raises(TypeError, match="quotient_width"):
        RestoringDivider(8, 8, True)
    with pytest.raises(ValueError, match="divisor_width"):
        RestoringDivider(8, 0, 4)


#: Verilator -Wall warnings that Amaranth's Verilog output always produces: one module per file
#: name, `reg x = init` plus an always block, debug alias wires, operands narrower than the
#: operator (extension is the intent), and `casez (fsm_state)` blocks listing only the states
#: that drive a signal (a default assignment precedes every one, so no latch).
AMARANTH_STYLE_WAIVERS = ("DECLFILENAME", "PROCASSINIT", "UNUSEDSIGNAL", "WIDTHEXPAND", "CASEINCOMPLETE")
#: Yosys writes an FSM's `state == 0` as `!state`, which Verilator reports as a WIDTHTRUNC; any
#: other truncation fails the test.
FSM_LOGNOT = re.compile(r"%Warning-WIDTHTRUNC: .*Logical operator LOGNOT expects 1 bit on the LHS, "
                        r"but LHS's VARREF '\w+_state' generates \d+ bits\.")


def _verilator() -> str | None:
    root = Path(__file__).resolve().parents[1] / ".venv/lib/python3.11/site-packages/verilator"
    if (root / "bin/verilator").exists():
        return str(root)
    return os.environ.get("VERILATOR_ROOT") if shutil.which("verilator") else None


@pytest.mark.parametrize("make", [lambda: SoftmaxUnit.from_params(HwParams()),
                                  lambda: make_unit(3, 37, 33, SMALL_FMT),
                                  lambda: RestoringDivider(39, 23, 24)],
                         ids=["softmax_default", "softmax_w3_small_fmt", "divider"])
def test_verilog_lint(make, tmp_path):
    """Generated Verilog is clean under `verilator --lint-only -Wall` except Amaranth's style warnings."""
    root = _verilator()
    if root is None:
        pytest.skip("verilator not installed")
    path = tmp_path / "softmax_unit.v"
    path.write_text(verilog.convert(make(), name="softmax_unit", emit_src=False))
    env = dict(os.environ, VERILATOR_ROOT=root, PATH=f"{root}/bin:{os.environ.get('PATH', '')}")
    res = subprocess.run(["verilator", "--lint-only", "-Wall", "-Wno-fatal",
                          *(f"-Wno-{w}" for w in AMARANTH_STYLE_WAIVERS), str(path)],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    warnings = [ln for ln in res.stderr.splitlines() if ln.startswith("%")]
    unexpected = [ln for ln in warnings if not FSM_LOGNOT.match(ln)]
    assert not unexpected, res.stderr


# ----------------------------------------------------------------------------- limits are flagged
def _drive_rows(unit: SoftmaxUnit, rows: list[tuple[np.ndarray, np.ndarray]], lut) -> list[int]:
    """Stream rows (scores, valid) of any length in whole beats; return the error flags after each row's output."""
    w = unit.width
    flags = []

    async def producer(ctx):
        for a, v in enumerate(lut):
            await stream_put(ctx, unit.lut_write, {"addr": a, "data": int(v)})
        ctx.set(unit.mode, BINARY)
        ctx.set(unit.theta, 100)
        ctx.set(unit.lut_len, len(lut))
        for i, (s, v) in enumerate(rows):
            while len(flags) < i:                         # one row at a time: flags belong to one row
                await ctx.tick()
            n = len(s) // w
            for b in range(n):
                lanes = slice(b * w, (b + 1) * w)
                await stream_put(ctx, unit.scores, {"score": [int(x) for x in s[lanes]],
                                                    "valid": int(sum(int(x) << j for j, x in enumerate(v[lanes]))),
                                                    "last": int(b == n - 1)})

    async def consumer(ctx):
        for s, _ in rows:
            n = min(len(s) // unit.width, unit.depth)     # a too-long row outputs at most a full buffer
            for _ in range(n):
                await stream_get(ctx, unit.probs)
            for _ in range(4):
                await ctx.tick()
            flags.append((ctx.get(unit.length_error), ctx.get(unit.masked_row_error)))

    sim_run(unit, producer, consumer, deadline_cycles=4000)
    return flags


def test_row_longer_than_max_seq_raises_length_error():
    """12 keys fit (3 beats of 4); a row of 16 keys, or a valid key past max_seq in the last beat, is flagged."""
    lut = exp_lut(0.5, FMT, 8)
    ok = (np.arange(12) % 5, np.ones(12, bool))
    flags = _drive_rows(make_unit(4, 12, 16), [ok], lut)
    assert flags == [(0, 0)]
    long = (np.arange(16) % 5, np.ones(16, bool))
    assert _drive_rows(make_unit(4, 12, 16), [long, ok], lut) == [(1, 0), (1, 0)]      # sticky
    past = (np.arange(12) % 5, np.ones(12, bool))                                      # max_seq 10: keys 10, 11
    assert _drive_rows(make_unit(4, 10, 16), [past], lut) == [(1, 0)]
    inside = (np.arange(12) % 5, np.arange(12) < 10)                                   # keys 10, 11 masked: fine
    assert _drive_rows(make_unit(4, 10, 16), [inside], lut) == [(0, 0)]


def test_fully_masked_row_raises_masked_row_error():
    """golden raises on a row with no valid key; the unit outputs zeros and sets a sticky flag."""
    lut = exp_lut(0.5, FMT, 8)
    ok = (np.arange(8) % 5, np.ones(8, bool))
    masked = (np.arange(8) % 5, np.zeros(8, bool))
    assert _drive_rows(make_unit(4, 12, 16), [ok, masked, ok], lut) == [(0, 0), (0, 1), (0, 1)]
