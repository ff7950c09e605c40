"""cocotb bench of the fixed-point softmax unit (hw/softmax.py) on its generated Verilog, against golden.softmax.

One attention row per input row of beats (`width` = cols scores per beat, ``valid`` mask,
``last``); one output beat per input beat with 1-bit probabilities (BINARY mode,
golden.softmax.softmax_binarize) or multi-bit probabilities (MULTIBIT mode,
softmax_reciprocal + softmax_probs). Every lane of every output beat is compared (padding
lanes, valid = 0, must be 0), ``bits`` and ``p`` in both modes (the other mode's field
must be 0), and every ``last`` flag.

Workload options (`DEFAULT_WORKLOAD`):

* ``seq_len``, ``rows``, ``mode`` ("binary" / "multibit"): the timed operation, `rows`
  back-to-back rows of `seq_len` valid keys, no stalls, unit idle; expected
  ``SoftmaxUnit.cycles(seq_len) + (rows - 1) * interval(seq_len)``.
* ``random_rows``: rows of the randomized part of the verification test.
* ``gap``, ``backpressure``: stall probabilities of the verification test.

Tests: ``verify_random_and_edges`` (random lengths, masks, LUTs, modes and θ; padding at
the end / scattered / a single valid key / the largest scores all padding; equal scores;
scores beyond the LUT; full-length rows; exact θ ties, θ = 2^theta_frac + 1 and the
largest port value; lut_len above max_lut; a row with no valid key — the caller's error,
where the hardware defines all-zero outputs and golden raises; random gaps and
back-pressure) and ``timed_operation``.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from bitaccel.golden.softmax import exp_lut, softmax_binarize, softmax_exp, softmax_probs, softmax_reciprocal
from bitaccel.hw.softmax import SoftmaxMode

from bitaccel.sim.bench.harness import Beat, bench_test, bits_of, workload_options

BINARY, MULTIBIT = SoftmaxMode.BINARY, SoftmaxMode.MULTIBIT
DEFAULT_WORKLOAD = {"seq_len": 20, "rows": 3, "mode": "binary", "random_rows": 16, "gap": 0.3, "backpressure": 0.3}


@dataclasses.dataclass
class Row:
    scores: np.ndarray
    valid: np.ndarray
    mode: SoftmaxMode
    theta: int
    lut: np.ndarray
    lut_len: int | None = None      # port value; None = len(lut)


class Softmax:
    def __init__(self, tb, gap: float = 0.0, backpressure: float = 0.0):
        self.tb, self.u = tb, tb.component
        self.drv = tb.driver("scores", gap=gap)
        self.lut_wr = tb.driver("lut_write")
        self.mon = tb.monitor("probs", backpressure=backpressure)
        self.loaded = None
        self.head_dim = tb.params.max_head_dim

    def padded(self, row: Row) -> tuple[np.ndarray, np.ndarray]:
        """The row padded to whole beats: padding lanes get random scores and valid = 0."""
        u = self.u
        n = u.beats(len(row.scores)) * u.width
        lim = 1 << (u.score_width - 1)
        s = self.tb.rng.integers(-lim, lim, n)
        v = np.zeros(n, dtype=bool)
        s[:len(row.scores)] = row.scores
        v[:len(row.valid)] = row.valid
        return s, v

    def expected(self, s, v, row: Row) -> tuple[np.ndarray, np.ndarray]:
        """(bits, p) per lane of a padded row; the other mode's field is 0."""
        u, fmt = self.u, self.u.numerics
        if not v.any():                  # no valid key: golden raises, the hardware outputs zeros
            return np.zeros(len(s), np.int64), np.zeros(len(s), np.int64)
        used = len(row.lut) if row.lut_len is None else min(row.lut_len, u.max_lut)
        e, total = softmax_exp(s, v, row.lut[:used])
        if row.mode == BINARY:
            return softmax_binarize(e, total, row.theta, fmt).astype(np.int64), np.zeros(len(s), np.int64)
        return np.zeros(len(s), np.int64), softmax_probs(e, softmax_reciprocal(total, fmt), fmt)

    async def load_lut(self, lut: np.ndarray) -> None:
        """Write the whole LUT memory: `lut` then random garbage (entries past lut_len are never read)."""
        u, rng = self.u, self.tb.rng
        image = rng.integers(1, 1 << (u.exp_width - 1), u.max_lut)
        image[:len(lut)] = lut
        order = rng.permutation(u.max_lut)
        await self.tb.load(self.lut_wr, [{"addr": int(a), "data": int(image[a])} for a in order])
        self.loaded = lut

    async def rows(self, name: str, rows: list[Row], timed: bool = False, model_cycles: int | None = None) -> None:
        """Stream rows back to back (reloading the LUT, drained, whenever it changes) and compare."""
        groups = []
        for row in rows:
            if not groups or not np.array_equal(groups[-1][0], row.lut):
                groups.append((row.lut, []))
            groups[-1][1].append(row)
        for g, (lut, group) in enumerate(groups):
            if self.loaded is None or not np.array_equal(self.loaded, lut):
                await self.load_lut(lut)
            await self._group(name if len(groups) == 1 else f"{name}.{g}", group, timed, model_cycles)

    async def _group(self, name, rows, timed, model_cycles):
        u, tb = self.u, self.tb
        w = u.width
        pads = [self.padded(r) for r in rows]
        beats = []
        for (s, v), row in zip(pads, rows):
            n = len(s) // w
            for b in range(n):
                lanes = slice(b * w, (b + 1) * w)
                payload = {"score": [int(x) for x in s[lanes]],
                           "valid": sum(int(x) << j for j, x in enumerate(v[lanes])), "last": int(b == n - 1)}
                ports = {"mode": row.mode, "theta": row.theta,
                         "lut_len": len(row.lut) if row.lut_len is None else row.lut_len} if b == 0 else None
                beats.append(Beat(payload, ports))
        budget = sum(u.cycles(len(r.scores), r.mode) for r in rows)
        outs = await tb.transact(name, self.drv, beats, self.mon, len(beats), timed=timed, model_cycles=model_cycles,
                                 budget_cycles=8 * budget + 400 + 12 * len(beats))
        k = 0
        for i, ((s, v), row) in enumerate(zip(pads, rows)):
            n = len(s) // w
            got = outs[k:k + n]
            k += n
            bits, p = self.expected(s, v, row)
            tag = f"{name}.row{i}"
            tb.scoreboard.compare(f"{tag}.bits", bits, [x for o in got for x in bits_of(o.payload["bits"], w)])
            tb.scoreboard.compare(f"{tag}.p", p, [x for o in got for x in o.payload["p"]])
            tb.scoreboard.compare(f"{tag}.last", [0] * (n - 1) + [1], [o.payload["last"] for o in got])


def luts_for(fmt, head_dim: int) -> list[np.ndarray]:
    return [exp_lut(c, fmt, 2 * head_dim) for c in (0.0, 0.05, 0.3, 1.1, 4.0)]


def random_rows(sm: Softmax, rng, count: int) -> list[Row]:
    u = sm.u
    lim = 1 << (u.score_width - 1)
    luts = luts_for(u.numerics, sm.head_dim)
    rows = []
    for _ in range(count):
        length = int(rng.integers(1, u.max_seq + 1))
        spread = int(rng.choice([2, sm.head_dim, lim]))
        s = rng.integers(max(-spread, -lim), min(spread, lim - 1) + 1, length)
        v = rng.random(length) < rng.choice([1.0, 0.8, 0.4])
        v[rng.integers(length)] = True
        theta = int(rng.integers(1, max(2, (2 << u.numerics.theta_frac) // int(v.sum()))))
        rows.append((int(rng.integers(len(luts))), Row(s, v, SoftmaxMode(int(rng.integers(2))), theta, None)))
    rows.sort(key=lambda r: r[0])             # grouped by LUT: fewer reloads
    return [dataclasses.replace(r, lut=luts[i]) for i, r in rows]


def _both(rows: list[Row]) -> list[Row]:
    return [dataclasses.replace(r, mode=m) for r in rows for m in (BINARY, MULTIBIT)]


@bench_test(verify=True)
async def verify_random_and_edges(tb):
    opt = workload_options(DEFAULT_WORKLOAD)
    rng = tb.rng
    sm = Softmax(tb, opt["gap"], opt["backpressure"])
    u, fmt, hd = sm.u, sm.u.numerics, sm.head_dim
    tf, ef = fmt.theta_frac, fmt.exp_frac

    await sm.rows("random", random_rows(sm, rng, opt["random_rows"]))

    # masks and edge rows, both modes
    lut = exp_lut(0.3, fmt, 2 * hd)
    short_lut = exp_lut(2.0, fmt, 2 * hd)
    n = min(23, u.max_seq)
    s = rng.integers(-hd, hd + 1, n)
    end_pad = np.arange(n) < (2 * n) // 3
    scattered = rng.random(n) < 0.5
    scattered[min(3, n - 1)] = True
    single = np.zeros(n, bool)
    single[n - 1 - n // 4] = True
    max_pad_s = s.copy()
    max_pad_s[~scattered] = hd                       # the largest scores are all padding
    max_pad_s[scattered] = np.minimum(max_pad_s[scattered], 5)
    far = np.array([hd, -hd, hd - 1, -hd + 1, 0, 9, -9, hd, 3])[:u.max_seq]
    theta = 3000
    edge = [Row(s, end_pad, BINARY, theta, lut), Row(s, scattered, BINARY, theta, lut),
            Row(s, single, BINARY, theta, lut), Row(np.array([7]), np.array([True]), BINARY, theta, lut),
            Row(max_pad_s, scattered, BINARY, theta, lut),
            Row(np.full(n, -4), np.ones(n, bool), BINARY, theta, lut),                       # all scores equal
            Row(np.full(2 * u.width, 9), np.ones(2 * u.width, bool), BINARY, theta, lut),    # whole beats
            Row(far, np.ones(len(far), bool), BINARY, theta, lut),
            Row(s, np.ones(n, bool), BINARY, theta, lut),
            Row(rng.integers(-hd, hd + 1, u.max_seq), np.ones(u.max_seq, bool), BINARY, theta, lut)]   # full length
    await sm.rows("edges", _both(edge))
    await sm.rows("beyond_lut", _both([Row(far, np.ones(len(far), bool), BINARY, theta, short_lut)]))

    # theta: exact ties e_j / sum = theta / 2^tf fire, theta + 1 does not; extremes
    tie_lut = np.array([1 << ef, 1 << (ef - 1), 1 << (ef - 2)], np.int64)
    s5 = np.array([0, -1, -2, -2, -9])
    v5 = np.ones(5, bool)
    e, total = (x.astype(np.int64) for x in softmax_exp(s5, v5, tie_lut))
    ties = []
    for j in range(3):
        tie = int((e[j] << tf) // total[0])
        assert (int(e[j]) << tf) == tie * int(total[0])
        ties += [Row(s5, v5, BINARY, t, tie_lut) for t in (tie - 1, tie, tie + 1)]
    big, top = (1 << tf) + 1, (1 << u.theta_width) - 1
    for t in (big, top, 1):
        ties += [Row(np.array([3]), np.array([True]), BINARY, t, tie_lut), Row(s5, v5, BINARY, t, tie_lut)]
    await sm.rows("theta_ties", ties)
    eq = []
    for k in (1, 2, 4, 8, 16):                      # k equal keys: p = 1/k exactly, theta = 2^tf / k ties
        if k + 3 <= u.max_seq:
            eq.append(Row(np.full(k + 3, 5), np.arange(k + 3) < k, BINARY, (1 << tf) // k, lut))
    await sm.rows("equal_keys", _both(eq))

    # lut_len above max_lut acts as max_lut; a row with no valid key gives zeros (hardware-defined)
    full = exp_lut(0.0, fmt, u.max_lut - 1)        # max_lut entries, all 2^exp_frac
    sl = rng.integers(-2 * u.max_lut, 2 * u.max_lut, u.max_seq)
    sl[min(5, u.max_seq - 1)] = 2 * u.max_lut - 1
    lim_rows = [Row(sl, np.ones(u.max_seq, bool), BINARY, 1000, full, lut_len=(1 << u.max_lut.bit_length()) - 1),
                Row(sl, np.ones(u.max_seq, bool), MULTIBIT, 1000, full, lut_len=u.max_lut + 1),
                Row(sl[:9], np.zeros(min(9, u.max_seq), bool), BINARY, 100, full),
                Row(sl[:9], np.zeros(min(9, u.max_seq), bool), MULTIBIT, 100, full)]
    await sm.rows("lut_len_and_empty", lim_rows)

    # short rows back to back switching mode and theta, no stalls then heavy output back-pressure
    short = [Row(rng.integers(-hd, hd + 1, ln), np.ones(ln, bool), SoftmaxMode(i % 2),
                 1 if i % 4 in (0, 3) else (1 << tf) + 1, lut) for i, ln in enumerate(rng.integers(1, 9, 12))]
    sm.drv.gap, sm.mon.backpressure = 0.0, 0.0
    await sm.rows("back_to_back", short)
    sm.mon.backpressure = 0.7
    await sm.rows("back_to_back_stalled", short)


@bench_test()
async def timed_operation(tb):
    opt = workload_options(DEFAULT_WORKLOAD)
    sm = Softmax(tb)
    u, hd = sm.u, sm.head_dim
    seq_len, count = int(opt["seq_len"]), int(opt["rows"])
    if not 1 <= seq_len <= u.max_seq or count < 1:
        raise ValueError(f"seq_len must be in [1, {u.max_seq}] and rows >= 1, not {seq_len}, {count}")
    mode = {"binary": BINARY, "multibit": MULTIBIT}[str(opt["mode"]).lower()]
    lut = exp_lut(0.3, u.numerics, 2 * hd)
    await sm.load_lut(lut)
    rows = [Row(tb.rng.integers(-hd, hd + 1, seq_len), np.ones(seq_len, bool), mode, 3000, lut) for _ in range(count)]
    model = u.cycles(seq_len, mode) + (count - 1) * u.interval(seq_len, mode)
    await sm.rows("timed", rows, timed=True, model_cycles=model)
