"""cocotb bench of the threshold unit (hw/threshold.py) on its generated Verilog, against golden.threshold.

``bits[i] = acc[i] >= thr[channel + i]`` for `width` = cols accumulators per beat; every
output bit of every row's first N channels and every ``last`` flag is compared with
golden.threshold.threshold.

Workload options (`DEFAULT_WORKLOAD`, overridden by sim.runner's workload):

* ``rows``, ``channels``: the timed operation (rows of N channels, random accumulators
  and thresholds over their whole ranges, no stalls, unit idle); also the size of the
  random case of the verification test. ``channels`` need not be a multiple of cols.
* ``gap``, ``backpressure``: stall probabilities of the verification test.

Tests: ``verify_random_and_edges`` (random full-range values; exact ties acc == T and
acc == T - 1; T = -A always fires and T = A + 1 never fires; all-zero, all-max and all-min
accumulators; constants folded by golden.fold, including the ReLU always-fire case; a
table of max_channels; random gaps and back-pressure) and ``timed_operation``
(cycles = beats + latency expected).
"""
from __future__ import annotations

import numpy as np

from bitaccel.golden.fold import fold_threshold
from bitaccel.golden.threshold import threshold

from bitaccel.sim.bench.harness import bench_test, channel_beats, channel_workload_options, lanes_of, signed_range, table_rows

DEFAULT_WORKLOAD = {"rows": 6, "channels": 40, "gap": 0.3, "backpressure": 0.3}


def _options(tb) -> dict:
    return channel_workload_options(tb, DEFAULT_WORKLOAD)


async def run_case(tb, name: str, acc: np.ndarray, thr: np.ndarray, drv, wr, mon, timed: bool = False) -> None:
    """Load `thr`, stream `acc` (T, N) through the unit, compare bits and last flags with golden."""
    u = tb.component
    await tb.load(wr, table_rows(thr, u.width, *signed_range(u.acc_width + 1), tb.rng))
    beats = channel_beats(acc, u.width, "acc", tb.rng, *signed_range(u.acc_width))
    stalls = drv.gap > 0 or mon.backpressure > 0
    outs = await tb.transact(name, drv, beats, mon, len(beats), timed=timed,
                             model_cycles=None if stalls else len(beats) + u.latency)
    t, n = acc.shape
    tb.scoreboard.compare(f"{name}.bits", threshold(acc, thr), lanes_of(outs, "bits", u.width, t, n, bits=True))
    tb.scoreboard.compare(f"{name}.last", [b["last"] for b in beats], [o.payload["last"] for o in outs])


def random_case(rng, rows: int, n: int, acc_width: int) -> tuple[np.ndarray, np.ndarray]:
    """Accumulators and thresholds uniform over their whole signed ranges; both accumulator ends in row 0."""
    a_lo, a_hi = signed_range(acc_width)
    t_lo, t_hi = signed_range(acc_width + 1)
    acc = rng.integers(a_lo, a_hi + 1, (rows, n))
    thr = rng.integers(t_lo, t_hi + 1, n)
    acc[0, :min(2, n)] = [a_lo, a_hi][:min(2, n)]
    return acc, thr


@bench_test(verify=True)
async def verify_random_and_edges(tb):
    opt = _options(tb)
    u = tb.component
    drv, wr = tb.driver("inp", gap=opt["gap"]), tb.driver("thr_write")
    mon = tb.monitor("out", backpressure=opt["backpressure"])
    rng = tb.rng
    n = opt["channels"]

    # random values over the whole accumulator and threshold ranges
    await run_case(tb, "random", *random_case(rng, opt["rows"], n, u.acc_width), drv, wr, mon)

    # ties and the clamp limits of golden.fold.fold_threshold (A = largest |acc| of a site)
    a_max = (1 << (u.acc_width - 1)) - 1
    thr = rng.integers(-a_max + 1, a_max + 1, n)
    thr[:2] = [-a_max, a_max + 1]                       # always fires / never fires
    acc = np.stack([thr, thr - 1, np.full(n, a_max), np.full(n, -a_max), np.zeros(n, np.int64),
                    np.full(n, -1), rng.integers(-a_max, a_max + 1, n)])
    acc[:, :2] = np.clip(acc[:, :2], -a_max, a_max)
    expect = threshold(acc, thr)
    assert expect[0, 2:].all() and not expect[1, 2:].any() and expect[:, 0].all() and not expect[:, 1].any()
    await run_case(tb, "ties_and_limits", acc, thr, drv, wr, mon)

    # all-zero thresholds against all-zero accumulators (every bit 1), and small-range ties
    await run_case(tb, "all_zero", np.zeros((2, n), np.int64), np.zeros(n, np.int64), drv, wr, mon)
    small = rng.integers(-3, 4, (4, n))
    await run_case(tb, "small_ties", small, rng.integers(-3, 4, n), drv, wr, mon)

    # folded thresholds (signed, unsigned, ReLU-folded with always-fire channels), K = 256 products
    k = 256
    a, alpha = 0.7 * 0.03, 0.3
    b, beta = rng.normal(0, 0.1, n), rng.normal(0, 0.05, n)
    beta[:3] = -1.0
    for signed, relu in ((True, False), (False, False), (False, True)):
        thr = fold_threshold(a, b, beta, alpha, signed, relu, k)
        acc = np.clip(np.round(rng.normal(0, 16, (3, n))), -k, k).astype(np.int64)
        acc[0] = np.clip(thr, -k, k)                   # exact ties where reachable
        await run_case(tb, f"folded_{'signed' if signed else 'relu' if relu else 'unsigned'}", acc, thr, drv, wr, mon)

    # the whole table: max_channels channels (every table row written and read)
    mc = u.max_channels
    await run_case(tb, "full_table", *random_case(rng, 2, mc, u.acc_width), drv, wr, mon)

    # no stalls, back to back after heavy back-pressure
    drv.gap, mon.backpressure = 0.0, 0.0
    await run_case(tb, "no_stalls", *random_case(rng, 3, n, u.acc_width), drv, wr, mon)
    drv.gap, mon.backpressure = 0.6, 0.7
    await run_case(tb, "heavy_stalls", *random_case(rng, 3, n, u.acc_width), drv, wr, mon)


@bench_test()
async def timed_operation(tb):
    opt = _options(tb)
    u = tb.component
    drv, wr, mon = tb.driver("inp"), tb.driver("thr_write"), tb.monitor("out")
    acc, thr = random_case(tb.rng, opt["rows"], opt["channels"], u.acc_width)
    await run_case(tb, "timed", acc, thr, drv, wr, mon, timed=True)
