"""cocotb bench of the residual-add + LayerNorm unit (hw/layernorm.py) on its Verilog, against golden.layernorm.

Rows of H residual integers, `width` = cols per beat: ``x = sat16(y + h)`` (add = 1) or
``x = y``, then golden.layernorm.layernorm(x, gamma, beta, eps_q). Every output element,
every ``last`` flag, and the sticky ``framing_error`` output (must stay 0) are compared.

Workload options (`DEFAULT_WORKLOAD`):

* ``hidden``, ``rows``: the timed operation, `rows` back-to-back rows of `hidden`
  elements (rounded down to a multiple of cols, at most max_hidden), no stalls, unit
  idle; expected ``LayerNormUnit.cycles(hidden) + (rows - 1) * interval(hidden)``.
* ``random_rows``: rows of the randomized part of the verification test.
* ``gap``, ``backpressure``: stall probabilities of the verification test.

Tests: ``verify_random_and_edges`` (random rows of every length, add on/off, eps from 0
to 2^40; the run-time ports scrambled after each row's first beat, which the unit must
ignore; constant rows, whose output is beta exactly; saturation of the residual add and
of the output; single-outlier rows that reach the bound n_width is sized for; realistic
gamma / beta / eps from golden.fold; random gaps and back-pressure) and ``timed_operation``.
"""
from __future__ import annotations

import numpy as np

from bitaccel.golden.fold import to_fixed
from bitaccel.golden.formats import GAMMA_BITS, RESIDUAL_BITS, residual_range
from bitaccel.golden.layernorm import layernorm, layernorm_eps_q

from bitaccel.sim.bench.harness import Beat, bench_test, workload_options

DEFAULT_WORKLOAD = {"hidden": 48, "rows": 3, "random_rows": 12, "gap": 0.3, "backpressure": 0.3}
LO, HI = residual_range()
G_LO, G_HI = -(1 << (GAMMA_BITS - 1)), (1 << (GAMMA_BITS - 1)) - 1


def _row(y, h=None, add=0, eps=0) -> dict:
    y = np.asarray(y, dtype=np.int64)
    h = np.zeros_like(y) if h is None else np.asarray(h, dtype=np.int64)
    return {"y": y, "h": h, "add": int(add), "eps": int(eps)}


class LayerNorm:
    def __init__(self, tb, gap: float = 0.0, backpressure: float = 0.0, scramble: bool = False):
        self.tb, self.u = tb, tb.component
        self.drv = tb.driver("inp", gap=gap)
        self.g_wr, self.b_wr = tb.driver("gamma_write"), tb.driver("beta_write")
        self.mon = tb.monitor("out", backpressure=backpressure)
        self.scramble = scramble
        self.gamma = self.beta = None

    def sizes(self) -> list[int]:
        """Every legal row length: multiples of width up to max_hidden."""
        return list(range(self.u.width, self.u.max_hidden + 1, self.u.width))

    async def load(self, gamma, beta) -> None:
        u, tb = self.u, self.tb
        pad = u.max_beats * u.width
        g = np.zeros(pad, np.int64)
        b = np.zeros(pad, np.int64)
        g[:len(gamma)], b[:len(beta)] = gamma, beta
        w = u.width
        for port, values in ((self.g_wr, g), (self.b_wr, b)):
            await tb.load(port, [{"addr": k, "data": [int(x) for x in values[k * w:(k + 1) * w]]}
                                 for k in range(u.max_beats)])
        self.gamma, self.beta = np.asarray(gamma, np.int64), np.asarray(beta, np.int64)

    def expected(self, r: dict) -> np.ndarray:
        x = np.clip(r["y"] + r["h"], LO, HI) if r["add"] else r["y"]
        n = len(x)
        return layernorm(x[None], self.gamma[:n], self.beta[:n], r["eps"], self.u.numerics)[0]

    async def rows(self, name: str, rows: list[dict], timed: bool = False, model_cycles: int | None = None) -> list:
        """Stream rows back to back, compare every element with golden; return golden's rows."""
        u, tb, rng = self.u, self.tb, self.tb.rng
        w = u.width
        beats = []
        for r in rows:
            n = len(r["y"])
            assert n % w == 0 and w <= n <= u.max_hidden, n
            nb = n // w
            for k in range(nb):
                ports = {"hidden": n, "add": r["add"], "eps_q": r["eps"]} if k == 0 else None
                if k == 1 and self.scramble:             # only the first beat's port values may count
                    ports = {"hidden": int(rng.integers(0, 1 << u.hidden_width)), "add": int(rng.integers(0, 2)),
                             "eps_q": int(rng.integers(0, 1 << u.eps_width))}
                beats.append(Beat({"y": [int(v) for v in r["y"][k * w:(k + 1) * w]],
                                   "h": [int(v) for v in r["h"][k * w:(k + 1) * w]], "last": int(k == nb - 1)}, ports))
        budget = sum(u.cycles(len(r["y"])) for r in rows)
        outs = await tb.transact(name, self.drv, beats, self.mon, len(beats), timed=timed, model_cycles=model_cycles,
                                 budget_cycles=6 * budget + 400 + 12 * len(beats))
        k, expects = 0, []
        for i, r in enumerate(rows):
            nb = len(r["y"]) // w
            got = outs[k:k + nb]
            k += nb
            e = self.expected(r)
            expects.append(e)
            tb.scoreboard.compare(f"{name}.row{i}.x", e, [x for o in got for x in o.payload["x"]])
            tb.scoreboard.compare(f"{name}.row{i}.last", [0] * (nb - 1) + [1], [o.payload["last"] for o in got])
        err = tb.dut.framing_error.value
        tb.scoreboard.compare(f"{name}.framing_error", [0], [int(err) if err.is_resolvable else None])
        return expects


def random_row(rng, n: int, kind: str) -> np.ndarray:
    if kind == "small":
        y = rng.integers(-40, 40, n)
    elif kind == "full":
        y = rng.integers(LO, HI + 1, n)
    elif kind == "gauss":
        y = np.clip(np.round(rng.normal(rng.normal(0, 300), rng.uniform(1, 2000), n)), LO, HI)
    else:                                     # "narrow": a tiny spread around a large offset
        y = rng.integers(-3, 4, n) + int(rng.integers(-30000, 30000))
    return y.astype(np.int64)


@bench_test(verify=True)
async def verify_random_and_edges(tb):
    opt = workload_options(DEFAULT_WORKLOAD)
    rng = tb.rng
    ln = LayerNorm(tb, opt["gap"], opt["backpressure"], scramble=True)
    u = ln.u
    hm = u.max_hidden
    sizes = ln.sizes()
    fmt = u.numerics

    # random rows of every length, add on/off, eps from 0 to 2^40
    await ln.load(rng.integers(G_LO, G_HI + 1, hm), rng.integers(LO, HI + 1, hm))
    rows = []
    for i in range(opt["random_rows"]):
        n = int(sizes[-1] if i == 0 else sizes[0] if i == 1 else rng.choice(sizes))
        eps = int(rng.choice([0, 1, int(rng.integers(0, 1 << 20)), int(rng.integers(0, 1 << 40))]))
        rows.append(_row(random_row(rng, n, ["small", "full", "gauss", "narrow"][i % 4]), random_row(rng, n, "gauss"),
                         add=i % 3 != 0, eps=eps))
    await ln.rows("random", rows)

    # constant rows: d = 0, so the output is beta exactly (V from eps only, or clamped to 1)
    n = sizes[-1]
    rows = [_row(np.full(n, c), eps=e) for c in (0, 1234, LO, HI) for e in (0, 7)]
    rows.append(_row(np.full(n, 100), np.full(n, -300), add=1, eps=3))
    for e in await ln.rows("constant", rows):
        assert np.array_equal(e, ln.beta[:n])

    # saturation of the residual add (both directions) and of the output (large gamma, extreme beta)
    await ln.load(np.resize([G_HI, G_LO], hm), np.resize([HI, LO, 0, -1], hm))
    rows = []
    for _ in range(3):
        y = rng.integers(20000, HI + 1, n) * rng.choice([-1, 1], n)
        rows.append(_row(y, np.sign(y) * rng.integers(15000, HI + 1, n), add=1))
    rows.append(_row(rng.integers(LO, HI + 1, n), rng.integers(LO, HI + 1, n), add=1, eps=1))
    rows.append(_row(rng.integers(LO, HI + 1, n), rng.integers(LO, HI + 1, n)))       # add = 0: h ignored
    exp = np.concatenate(await ln.rows("saturation", rows))
    assert np.any(exp == HI) and np.any(exp == LO)

    # one outlier per row: |n| reaches ~sqrt(H - 1) * 2^ln_norm_frac, the bound n_width is sized for
    await ln.load(rng.integers(G_LO, G_HI + 1, hm), rng.integers(-1000, 1000, hm))
    rows = []
    for i, (base, out) in enumerate([(0, HI), (LO, HI), (HI, LO), (5, -7), (-100, 30000)]):
        y = np.full(n, base)
        y[int(rng.integers(0, n))] = out
        rows.append(_row(y, eps=0 if i < 3 else 1))
    await ln.rows("outliers", rows)

    # realistic gamma / beta (golden.fold.to_fixed of floats) and eps from layernorm_eps_q, no scrambling
    await ln.load(to_fixed(rng.normal(1.0, 0.2, hm), fmt.gamma_frac, GAMMA_BITS, "gamma"),
                  to_fixed(rng.normal(0.0, 0.2, hm), fmt.residual_frac, RESIDUAL_BITS, "beta"))
    ln.scramble = False
    rows = []
    for i in range(4):
        m = sizes[-1] if i % 2 else sizes[len(sizes) // 2]
        y = to_fixed(np.clip(rng.normal(0, rng.uniform(0.1, 4), m), -100, 100), fmt.residual_frac, RESIDUAL_BITS, "y")
        h = to_fixed(np.clip(rng.normal(0, 1, m), -100, 100), fmt.residual_frac, RESIDUAL_BITS, "h")
        rows.append(_row(y, h, add=1, eps=layernorm_eps_q(1e-12 if i % 3 else 1e-5, m, fmt)))
    await ln.rows("realistic", rows)

    # back to back without stalls, then heavy back-pressure
    ln.drv.gap, ln.mon.backpressure = 0.0, 0.0
    rows = [_row(random_row(rng, int(rng.choice(sizes)), "gauss"), eps=1) for _ in range(4)]
    await ln.rows("back_to_back", rows)
    ln.drv.gap, ln.mon.backpressure = 0.5, 0.7
    await ln.rows("heavy_stalls", rows)


@bench_test()
async def timed_operation(tb):
    opt = workload_options(DEFAULT_WORKLOAD)
    ln = LayerNorm(tb)
    u = ln.u
    hidden = min(int(opt["hidden"]), u.max_hidden) // u.width * u.width
    count = int(opt["rows"])
    if hidden < u.width or count < 1:
        raise ValueError(f"hidden must be in [{u.width}, {u.max_hidden}] and rows >= 1, not {opt['hidden']}, {count}")
    if hidden != opt["hidden"]:
        tb.dut._log.info("hidden %s rounded to %d (a multiple of %d lanes)", opt["hidden"], hidden, u.width)
    await ln.load(tb.rng.integers(G_LO, G_HI + 1, u.max_hidden), tb.rng.integers(LO, HI + 1, u.max_hidden))
    rows = [_row(random_row(tb.rng, hidden, "gauss"), random_row(tb.rng, hidden, "small"), add=1, eps=1)
            for _ in range(count)]
    model = u.cycles(hidden) + (count - 1) * u.interval(hidden)
    await ln.rows("timed", rows, timed=True, model_cycles=model)
