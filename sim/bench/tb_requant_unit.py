"""cocotb bench of the requantization unit (hw/requant.py) on its generated Verilog, against golden.requant.

``out = clamp(rshift_round(acc * M + B_c, S), lo_c, hi)`` for `width` = cols accumulators
per beat (the generated unit has a 16-bit signed output: the residual stream). Every
output value of every row's first N channels and every ``last`` flag is compared with
golden.requant.requantize.

Workload options (`DEFAULT_WORKLOAD`):

* ``rows``, ``channels``: the timed operation (residual constants folded by
  golden.fold.fold_residual_requant from random floats, no stalls, unit idle) and the
  size of the random cases.
* ``gap``, ``backpressure``: stall probabilities of the verification test.

Tests: ``verify_random_and_edges`` (saturation at both ends; M, B over their whole port
ranges; S = 0, 1, ..., MAX_SHIFT and 63; round-half-up at exact .5 for negative values;
per-channel lower bounds from a folded ReLU with code maxima 255 / 15 / 3; random lo_c /
hi; folded residual constants; a table of max_channels; random gaps and back-pressure)
and ``timed_operation`` (cycles = beats + latency expected). M, S and hi change only
while the unit is drained, as the sequencer's contract requires.
"""
from __future__ import annotations

import numpy as np

from bitaccel.golden.fold import fold_code_requant, fold_residual_requant
from bitaccel.golden.formats import MAX_SHIFT, MULT_BITS, OFFSET_BITS, NumericFormat, residual_range
from bitaccel.golden.requant import requantize

from bitaccel.sim.bench.harness import channel_workload_options, bench_test, channel_beats, lanes_of, signed_range, table_rows

DEFAULT_WORKLOAD = {"rows": 6, "channels": 40, "gap": 0.3, "backpressure": 0.3}
M_MAX = (1 << (MULT_BITS - 1)) - 1
_FMT = NumericFormat()          # the folded cases use the default numerics


def _options(tb) -> dict:
    return channel_workload_options(tb, DEFAULT_WORKLOAD)


class Requant:
    def __init__(self, tb, gap: float = 0.0, backpressure: float = 0.0):
        self.tb = tb
        self.u = tb.component
        self.drv = tb.driver("inp", gap=gap)
        self.off_wr, self.lo_wr = tb.driver("offset_write"), tb.driver("lo_write")
        self.mon = tb.monitor("out", backpressure=backpressure)

    async def case(self, name: str, acc, m: int, b, s: int, lo, hi: int, timed: bool = False) -> np.ndarray:
        """Set M / S / hi, load B_c and lo_c, stream `acc` (T, N), compare with golden.

        Returns golden's expected outputs (for the caller's checks that the case exercised
        what it is meant to; the DUT's outputs only go to the scoreboard)."""
        tb, u = self.tb, self.u
        acc = np.asarray(acc, dtype=np.int64)
        t, n = acc.shape
        b = np.broadcast_to(np.asarray(b, dtype=np.int64), (n,))
        lo = np.broadcast_to(np.asarray(lo, dtype=np.int64), (n,))
        await tb.sync()                  # the unit is drained: constants may change now
        tb.set("mult", int(m))
        tb.set("shift", int(s))
        tb.set("hi", int(hi))
        await tb.load(self.off_wr, table_rows(b, u.width, *signed_range(OFFSET_BITS), tb.rng))
        await tb.load(self.lo_wr, table_rows(lo, u.width, *signed_range(u.out_width), tb.rng))
        beats = channel_beats(acc, u.width, "acc", tb.rng, *signed_range(u.acc_width))
        stalls = self.drv.gap > 0 or self.mon.backpressure > 0
        outs = await tb.transact(name, self.drv, beats, self.mon, len(beats), timed=timed,
                                 model_cycles=None if stalls else len(beats) + u.latency)
        expect = requantize(acc, m, b, s, lo, hi)
        tb.scoreboard.compare(f"{name}.value", expect, lanes_of(outs, "value", u.width, t, n))
        tb.scoreboard.compare(f"{name}.last", [x["last"] for x in beats], [o.payload["last"] for o in outs])
        return expect


def random_acc(rng, rows: int, n: int, acc_width: int) -> np.ndarray:
    lo, hi = signed_range(acc_width)
    acc = rng.integers(lo, hi + 1, (rows, n))
    acc[0, :min(2, n)] = [lo, hi][:min(2, n)]
    return acc


def residual_case(rng, rows: int, n: int) -> tuple[np.ndarray, dict]:
    """Realistic residual constants (a ~ alpha_in * s_w) and accumulators of a K = 768 linear."""
    rq = fold_residual_requant(0.8 * 0.03, rng.normal(0, 0.1, n), _FMT)
    acc = np.clip(np.round(rng.normal(0, 30, (rows, n))), -768, 768).astype(np.int64)
    return acc, rq


@bench_test(verify=True)
async def verify_random_and_edges(tb):
    opt = _options(tb)
    rng = tb.rng
    rq = Requant(tb, opt["gap"], opt["backpressure"])
    u = rq.u
    n, rows, aw = opt["channels"], opt["rows"], u.acc_width
    r_lo, r_hi = residual_range()
    o_lo, o_hi = signed_range(OFFSET_BITS)
    lo16 = np.full(n, r_lo)

    acc = random_acc(rng, rows, n, aw)
    exp = await rq.case("saturate_high", acc, M_MAX, o_hi, 0, lo16, r_hi)
    assert (exp == r_hi).all()
    exp = await rq.case("saturate_low", acc, M_MAX, o_lo, 0, lo16, r_hi)
    assert (exp == r_lo).all()
    await rq.case("max_shift", random_acc(rng, rows, n, aw), M_MAX, rng.integers(o_lo, o_hi + 1, n), MAX_SHIFT,
                  lo16, r_hi)
    for s in (0, 1, 7, 13, 20, 33, 47, 63):               # 63: the top of the shift port
        scale = 1 << min(s + 15, OFFSET_BITS - 1)          # B around +-2^15 after >> S
        await rq.case(f"shift_{s}", random_acc(rng, 3, n, aw), int(rng.integers(0, M_MAX + 1)),
                      rng.integers(-scale, scale, n), s, lo16, r_hi)

    # round half up at exact .5, negative values too: acc / 2, (acc + 2) / 4, (acc - 3) / 2
    ramp = (np.arange(-20, -20 + 4 * n) % 41 - 20).reshape(4, n)
    exp = await rq.case("half_up_div2", ramp, 1 << (MULT_BITS - 2), 0, MULT_BITS - 1, lo16, r_hi)
    assert (exp[ramp == -3] == -1).all() and (exp[ramp == -1] == 0).all()
    await rq.case("half_up_div4", ramp, 1 << (MULT_BITS - 2), 1 << (MULT_BITS - 1), MULT_BITS, lo16, r_hi)
    await rq.case("half_up_m1", ramp, 1, -3, 1, lo16, r_hi)

    # multi-bit codes with per-channel lower bounds from a folded ReLU
    a, alpha = 0.7 * 0.03, 0.05
    b, beta = rng.normal(0, 0.3, n), rng.normal(0, 0.3, n)
    for bits in (8, 4, 2):
        c = fold_code_requant(a, b, beta, alpha, bits, False, True)
        acc = np.clip(np.round(rng.normal(0, 400, (4, n))), *signed_range(aw)).astype(np.int64)
        exp = await rq.case(f"relu_codes_{bits}", acc, c["rq_m"], c["rq_b"], c["rq_s"], c["rq_lo"], c["rq_hi"])
        assert exp.max() == (1 << bits) - 1

    # random per-channel lo (can exceed hi: clip semantics) and hi
    await rq.case("random_lo_hi", random_acc(rng, rows, n, aw), int(rng.integers(1 << 14, 1 << 15)),
                  rng.integers(-(1 << 30), 1 << 30, n), 20, rng.integers(-200, 50, n), int(rng.integers(-20, 300)))

    # realistic residual constants; all-zero accumulators give the rounded bias
    acc, c = residual_case(rng, rows, n)
    await rq.case("folded_residual", acc, c["rq_m"], c["rq_b"], c["rq_s"], c["rq_lo"], c["rq_hi"])
    await rq.case("zero_acc", np.zeros((2, n), np.int64), c["rq_m"], c["rq_b"], c["rq_s"], c["rq_lo"], c["rq_hi"])

    # the whole table (max_channels channels), then no stalls and heavy stalls
    mc = u.max_channels
    await rq.case("full_table", random_acc(rng, 2, mc, aw), int(rng.integers(0, M_MAX + 1)),
                  rng.integers(-(1 << 36), 1 << 36, mc), 24, np.full(mc, r_lo), r_hi)
    rq.drv.gap, rq.mon.backpressure = 0.0, 0.0
    acc, c = residual_case(rng, 3, n)
    await rq.case("no_stalls", acc, c["rq_m"], c["rq_b"], c["rq_s"], c["rq_lo"], c["rq_hi"])
    rq.drv.gap, rq.mon.backpressure = 0.6, 0.7
    await rq.case("heavy_stalls", acc, c["rq_m"], c["rq_b"], c["rq_s"], c["rq_lo"], c["rq_hi"])


@bench_test()
async def timed_operation(tb):
    opt = _options(tb)
    rq = Requant(tb)
    acc, c = residual_case(tb.rng, opt["rows"], opt["channels"])
    await rq.case("timed", acc, c["rq_m"], c["rq_b"], c["rq_s"], c["rq_lo"], c["rq_hi"], timed=True)
