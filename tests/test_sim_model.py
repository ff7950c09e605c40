"""sim.cycles, sim.energy and sim.commands: the analytic models against the Amaranth simulator, and their properties.

Unit level: every unit is driven like tests/test_hw_*.py drive it (tests/hwsim.py), with
inputs offered back to back and outputs always taken; the measured cycles (first input
transfer to last output transfer, both included) must agree with `sim.cycles.CycleModel`
within 5 % on every shape (they are in fact equal), and the outputs are checked against
golden/ bit-exactly on the way. Then the energy model's properties, the report JSON / plot, and
argument errors. The per-inference cycle model (sim.program_cycles) is tests/test_program_cycles.py
and, against the RTL, tests/test_sim_accelerator.py. Every random case prints its seed.
"""
from __future__ import annotations

import argparse
import json
import math
import zlib

import numpy as np
import pytest
from hwsim import run

from bitaccel.golden.config import PRESETS
from bitaccel.golden.formats import NumericFormat, acc_bits, code_range, residual_range
from bitaccel.golden.layernorm import layernorm
from bitaccel.golden.matmul import bitserial_matmul
from bitaccel.golden.requant import requantize
from bitaccel.golden.softmax import softmax_binarize, softmax_exp, softmax_probs, softmax_reciprocal
from bitaccel.golden.threshold import threshold
from bitaccel.hw.layernorm import LayerNormUnit
from bitaccel.hw.mac_array import BinaryMacArray
from bitaccel.hw.params import HwParams
from bitaccel.hw.requant import RequantUnit
from bitaccel.hw.schedule import assemble, matmul_beats, pe_acc_bits
from bitaccel.hw.softmax import SoftmaxMode, SoftmaxUnit
from bitaccel.hw.threshold import ThresholdUnit
from bitaccel.sim import commands
from bitaccel.sim.cycles import CycleModel, params_for
from bitaccel.sim.energy import CATEGORIES, ENERGY, ENERGY_TABLE, Counts, inference_energy, popcount_cost, unit_energy
from bitaccel.sim.workload import inference_blocks, parse_array, parse_arrays, unit_workload

TOLERANCE = 0.05
FMT = NumericFormat()


def _rng(tag: str) -> np.random.Generator:
    seed = 7100 + zlib.crc32(tag.encode()) % 100_000
    print(f"seed[{tag}] = {seed}")
    return np.random.default_rng(seed)


def _agree(measured: int, modeled: float, what: str) -> None:
    ratio = measured / modeled
    print(f"{what}: measured {measured}, modeled {modeled}, ratio {ratio:.4f}")
    assert abs(ratio - 1) <= TOLERANCE, f"{what}: measured {measured} vs model {modeled} ({ratio:.3f})"


def _model(rows=2, cols=2, lanes=8, **kw) -> CycleModel:
    """A CycleModel whose unit formulas we compare with a separately built, equally sized unit."""
    return CycleModel(HwParams(rows=rows, cols=cols, lanes=lanes, **kw))


async def _stream(ctx, inp, out, beats, n_out, setup=None, on_out=None):
    """Offer `beats` back to back on `inp` (valid held until ready), take `out` every cycle.

    Returns (cycle of the first input transfer, cycle of the last output transfer, outputs).
    """
    if setup is not None:
        await setup(ctx)
    ctx.set(out.ready, 1)
    i = cycle = 0
    first_in, outs = None, []
    while len(outs) < n_out:
        if i < len(beats):
            if on_out is not None:
                on_out(ctx, i)
            ctx.set(inp.valid, 1)
            ctx.set(inp.payload, beats[i])
        else:
            ctx.set(inp.valid, 0)
        _, _, ready, valid, payload = await ctx.tick().sample(inp.ready, out.valid, out.payload)
        if i < len(beats) and ready:
            first_in = cycle if first_in is None else first_in
            i += 1
        if valid:
            outs.append((cycle, payload))
        cycle += 1
    return first_in, outs[-1][0], [p for _, p in outs]


# ============================================================================ MAC array
MAC_SHAPES = [  # rows, cols, lanes, M, N, K, (a_bits, a_signed), (b_bits, b_signed)
    (2, 3, 8, 5, 7, 21, (1, True), (1, True)),      # K not a multiple of L, partial edge tiles
    (2, 2, 8, 4, 4, 8, (1, True), (1, True)),       # one beat per tile
    (2, 3, 8, 6, 5, 30, (1, False), (1, True)),     # {0,1} activations x +-1 weights, K = 3.75 chunks
    (3, 3, 16, 7, 7, 40, (2, True), (1, True)),     # W1A2: two plane passes, K = 2.5 chunks
    (2, 2, 16, 3, 4, 33, (4, False), (2, True)),    # 4 x 2 plane pairs, K = 33
    (4, 2, 8, 4, 3, 100, (1, True), (1, False)),    # long K (13 chunks), one tile row
]


@pytest.mark.parametrize("shape", MAC_SHAPES, ids=lambda s: "x".join(map(str, s[:6])) + f"-a{s[6][0]}b{s[7][0]}")
def test_matmul_cycles_match_simulation(shape):
    rows, cols, lanes, m, n, k, (ab, asg), (bb, bsg) = shape
    rng = _rng(f"mac-{shape}")
    lo, hi = code_range(ab, asg)
    a = rng.integers(lo, hi + 1, (m, k)) if not (ab == 1 and asg) else rng.choice([-1, 1], (m, k))
    lo, hi = code_range(bb, bsg)
    b = rng.integers(lo, hi + 1, (n, k)) if not (bb == 1 and bsg) else rng.choice([-1, 1], (n, k))
    dut = BinaryMacArray(rows, cols, lanes, max(pe_acc_bits(k, ab, bb), lanes.bit_length()),
                         acc_bits(k, ab, asg, bb, bsg))
    beats = list(matmul_beats(a, ab, asg, b, bb, bsg, dut.spec))
    n_out = sum(bt["last"] for bt in beats) * rows
    got = {}

    async def bench(ctx):
        first, last, outs = await _stream(ctx, dut.operands, dut.results, beats, n_out)
        got.update(cycles=last - first + 1, rows=[[int(x) for x in p.acc] for p in outs])

    run(dut, bench, deadline_cycles=4 * (len(beats) + n_out) + 4 * dut.latency + 50)
    np.testing.assert_array_equal(assemble(got["rows"], m, n, rows, cols), bitserial_matmul(a, ab, asg, b, bb, bsg))
    model = _model(rows, cols, lanes)
    assert (model.array.pipe, model.array.drain) == (dut.pipe, dut.drain)
    assert got["cycles"] == model.matmul_cycles(m, n, k, ab, bb)
    _agree(got["cycles"], model.matmul_cycles(m, n, k, ab, bb), f"matmul {shape}")
    assert model.matmul_beats(m, n, k, ab, bb) == len(beats)


# ============================================================================ threshold / requant
def _post_beats(acc, width, rng, acc_width):
    lo, hi = -(1 << (acc_width - 1)), (1 << (acc_width - 1)) - 1
    beats = []
    for row in acc:
        for c0 in range(0, acc.shape[1], width):
            part = [int(v) for v in row[c0:c0 + width]]
            part += [int(v) for v in rng.integers(lo, hi + 1, width - len(part))]
            beats.append({"acc": part, "channel": c0, "last": int(c0 + width >= acc.shape[1])})
    return beats


def _table(values, width, fill=0):
    n = len(values)
    rows = []
    for r in range(-(-n // width)):
        part = [int(v) for v in values[r * width:(r + 1) * width]]
        rows.append({"addr": r, "data": part + [fill] * (width - len(part))})
    return rows


async def _load(ctx, port, rows):
    for row in rows:
        ctx.set(port.valid, 1)
        ctx.set(port.payload, row)
        await ctx.tick()
    ctx.set(port.valid, 0)


def _unpack(outs, field, width, rows, n):
    per_row = -(-n // width)
    res = np.empty((rows, per_row * width), dtype=np.int64)
    for i, p in enumerate(outs):
        v = getattr(p, field)
        vals = [(int(v) >> j) & 1 for j in range(width)] if field == "bits" else [int(v[j]) for j in range(width)]
        res[i // per_row, (i % per_row) * width:(i % per_row + 1) * width] = vals
    return res[:, :n]


@pytest.mark.parametrize("unit", ["threshold", "requant"])
@pytest.mark.parametrize("width,rows,channels", [(4, 3, 16), (4, 5, 13), (3, 2, 10), (8, 1, 8)])
def test_post_processing_cycles_match_simulation(unit, width, rows, channels):
    rng = _rng(f"{unit}-{width}-{rows}-{channels}")
    acc_width = 12
    acc = rng.integers(-(1 << 11), 1 << 11, (rows, channels))
    beats = _post_beats(acc, width, rng, acc_width)
    got = {}
    if unit == "threshold":
        dut = ThresholdUnit(width, acc_width, 32)
        thr = rng.integers(-(1 << 11), (1 << 11) + 2, channels)
        expect = threshold(acc, thr)

        async def setup(ctx):
            await _load(ctx, dut.thr_write, _table(thr, width))
    else:
        dut = RequantUnit(width, acc_width, 16, 32)
        m_, s_, hi = 23000, 20, 32767
        b = rng.integers(-(1 << 30), 1 << 30, channels)
        lo = rng.integers(-32768, 0, channels)
        expect = requantize(acc, m_, b, s_, lo, hi)

        async def setup(ctx):
            ctx.set(dut.mult, m_)
            ctx.set(dut.shift, s_)
            ctx.set(dut.hi, hi)
            await _load(ctx, dut.offset_write, _table(b, width))
            await _load(ctx, dut.lo_write, _table(lo, width))

    async def bench(ctx):
        first, last, outs = await _stream(ctx, dut.inp, dut.out, beats, len(beats), setup)
        got.update(cycles=last - first + 1, outs=outs)

    run(dut, bench, deadline_cycles=len(beats) + 3 * 32 + 50)
    field = "bits" if unit == "threshold" else "value"
    np.testing.assert_array_equal(_unpack(got["outs"], field, width, rows, channels), expect)
    model = _model(2, width, 8)
    assert model.stream_beats(rows, channels) == len(beats)
    assert model.stream_cycles(unit, len(beats)) - len(beats) == dut.latency
    _agree(got["cycles"], model.stream_cycles(unit, len(beats)), f"{unit} {rows}x{channels} width {width}")


# ============================================================================ softmax
HEAD_DIM = 16


@pytest.mark.parametrize("mode,seq_len,rows", [
    ("binary", 13, 3), ("binary", 37, 2), ("binary", 4, 3), ("binary", 3, 4),   # 4 and 3 keys: one-beat rows
    ("multibit", 13, 2), ("multibit", 21, 3),
])
def test_softmax_cycles_match_simulation(mode, seq_len, rows):
    rng = _rng(f"softmax-{mode}-{seq_len}-{rows}")
    width, max_seq, max_lut = 4, 37, 40
    dut = SoftmaxUnit(width, acc_bits(HEAD_DIM, 1, True, 1, True), max_seq, max_lut, FMT)
    lut = np.array([round(2 ** FMT.exp_frac * math.exp(-0.4 * t)) for t in range(2 * HEAD_DIM + 1)])
    lut = lut[lut > 0]
    theta = 1 << (FMT.theta_frac - 3)
    smode = SoftmaxMode.BINARY if mode == "binary" else SoftmaxMode.MULTIBIT
    n_beats = -(-seq_len // width)
    scores = rng.integers(-HEAD_DIM, HEAD_DIM + 1, (rows, n_beats * width))
    valid = np.zeros_like(scores, dtype=bool)
    valid[:, :seq_len] = True
    beats = [{"score": [int(x) for x in scores[r, b * width:(b + 1) * width]],
              "valid": int(sum(int(v) << j for j, v in enumerate(valid[r, b * width:(b + 1) * width]))),
              "last": int(b == n_beats - 1)} for r in range(rows) for b in range(n_beats)]
    got = {}

    async def setup(ctx):
        for a, v in enumerate(lut):
            ctx.set(dut.lut_write.valid, 1)
            ctx.set(dut.lut_write.payload, {"addr": a, "data": int(v)})
            await ctx.tick().until(dut.lut_write.ready)
        ctx.set(dut.lut_write.valid, 0)
        ctx.set(dut.lut_len, len(lut))
        ctx.set(dut.theta, theta)
        ctx.set(dut.mode, smode)

    async def bench(ctx):
        first, last, outs = await _stream(ctx, dut.scores, dut.probs, beats, len(beats), setup)
        got.update(cycles=last - first + 1, outs=outs)

    run(dut, bench, deadline_cycles=rows * dut.cycles(seq_len, smode) + len(lut) + 200)
    e, total = softmax_exp(scores, valid, lut)
    if mode == "binary":
        expect = softmax_binarize(e, total, theta, FMT)
        hw = _unpack(got["outs"], "bits", width, rows, n_beats * width)
    else:
        expect = softmax_probs(e, softmax_reciprocal(total, FMT), FMT)
        hw = _unpack(got["outs"], "p", width, rows, n_beats * width)
    np.testing.assert_array_equal(hw[:, :seq_len], expect[:, :seq_len])
    model = _model(2, width, 8, max_seq=max_seq, max_head_dim=HEAD_DIM, max_act_bits=1, max_exp_lut=max_lut)
    assert model.softmax.cycles(seq_len, smode) == dut.cycles(seq_len, smode)
    _agree(got["cycles"], model.softmax_cycles(rows, seq_len, mode), f"softmax {mode} {rows} rows of {seq_len}")


# ============================================================================ LayerNorm
@pytest.mark.parametrize("hidden,rows,add", [(32, 3, True), (8, 4, False), (16, 2, True), (4, 3, True)])
def test_layernorm_cycles_match_simulation(hidden, rows, add):
    rng = _rng(f"ln-{hidden}-{rows}-{add}")
    width, max_hidden = 4, 32
    dut = LayerNormUnit(width, max_hidden, FMT)
    lo, hi = residual_range()
    gamma = rng.integers(-(1 << 13), 1 << 13, max_hidden)
    beta = rng.integers(-2000, 2000, max_hidden)
    y = rng.integers(-3000, 3000, (rows, hidden))
    h = rng.integers(-3000, 3000, (rows, hidden))
    eps = 5
    nb = hidden // width
    beats = [{"y": [int(v) for v in y[r, b * width:(b + 1) * width]],
              "h": [int(v) for v in h[r, b * width:(b + 1) * width]], "last": int(b == nb - 1)}
             for r in range(rows) for b in range(nb)]
    got = {}

    async def setup(ctx):
        await _load(ctx, dut.gamma_write, _table(gamma, width))
        await _load(ctx, dut.beta_write, _table(beta, width))
        ctx.set(dut.hidden, hidden)
        ctx.set(dut.add, int(add))
        ctx.set(dut.eps_q, eps)

    async def bench(ctx):
        first, last, outs = await _stream(ctx, dut.inp, dut.out, beats, len(beats), setup)
        got.update(cycles=last - first + 1, outs=outs)

    run(dut, bench, deadline_cycles=rows * dut.cycles(hidden) + 100)
    x = np.clip(y + h, lo, hi) if add else y
    expect = layernorm(x, gamma[:hidden], beta[:hidden], eps, FMT)
    hw = np.array([[int(v) for v in p.x] for p in got["outs"]]).reshape(rows, hidden)
    np.testing.assert_array_equal(hw, expect)
    model = _model(2, width, 8, max_hidden=max_hidden, max_ffn=32, max_head_dim=16)
    _agree(got["cycles"], model.layernorm_cycles(rows, hidden), f"layernorm {rows} rows of {hidden}")


# ============================================================================ cocotb on the generated Verilog
@pytest.mark.sim
@pytest.mark.parametrize("unit,array,workload", [
    ("mac_array", "2x3x8", "m=5,n=7,k=21"),                      # K not a multiple of L, edge tiles
    ("softmax_unit", "2x4x8", "rows=3,seq_len=13,mode=binary"),
])
def test_model_matches_cocotb_measurement(unit, array, workload, tmp_path_factory):
    """`simulate` (sim.measure.run_unit on Icarus): bit-exact, and the model within 5 % of the measured cycles."""
    pytest.importorskip("bitaccel.sim.measure", reason="bitaccel.sim.measure (cocotb benches) not in this checkout")
    from bitaccel.sim.commands import SimulationFailed
    try:
        r = commands.simulate(unit, "icarus", array, workload, seed=3,
                              work_dir=str(tmp_path_factory.getbasetemp() / "sim_build"))
    except SimulationFailed as e:
        if "install" in str(e):
            pytest.skip(str(e))
        raise
    assert r["bit_exact"] and {"cycles", "bit_exact", "energy_pj"} <= set(r)
    _agree(r["cycles"], r["model_cycles"], f"cocotb {unit} {workload}")
    assert r["energy_pj"] > 0


# ============================================================================ energy model
def test_energy_table_rows_have_sources_and_derivations():
    names = set()
    for row in ENERGY_TABLE:
        assert row.source and row.node == "45 nm" and row.unit == "pJ" and row.value > 0, row
        assert row.name not in names
        names.add(row.name)
        if row.derivation != "published":
            assert "derived" in row.source or "estimate" in row.source
            assert len(row.derivation) > 20
    assert {"add8", "add32", "mult8", "mult32", "sram_read32", "dram_read32"} <= names
    assert ENERGY["add8"].value == 0.03 and ENERGY["dram_read32"].value == 640.0
    assert ENERGY["sram_bit"].value == pytest.approx(5.0 / 32)
    assert ENERGY["dram_bit"].value == pytest.approx(20.0)
    assert ENERGY["xnor_bit"].value < ENERGY["fa_bit"].value


def test_popcount_cost_structure():
    add, regs = popcount_cost(64, 3)
    # a popcount removes every input bit but the 7 of its count: at least 64 - 7 full adders
    assert 64 - 7 <= add <= 2 * 64 and regs > 0
    assert popcount_cost(128, 3)[0] > 2 * popcount_cost(64, 3)[0] - 1


def test_energy_counts_scale_with_sequence_length():
    cfg = PRESETS["minilm"]
    params = params_for(cfg, 128, 8, 8, 64)
    cm = CycleModel(params)
    from bitaccel.sim.energy import block_counts

    def xnor_by_kind(seq):
        out = {}
        for blk in inference_blocks(cfg, seq):
            c = block_counts(cm, blk)
            out[blk.kind] = out.get(blk.kind, 0) + c.bits("xnor")
            out[blk.kind + ".softmax"] = out.get(blk.kind + ".softmax", 0) + c.count("softmax", "row max compares")
            out[blk.kind + ".macs"] = out.get(blk.kind + ".macs", 0) + blk.macs
        return out

    a, b = xnor_by_kind(64), xnor_by_kind(128)
    for kind in ("qk_softmax", "pv"):                  # attention: quadratic in the sequence
        assert b[kind] == 4 * a[kind] and b[kind + ".macs"] == 4 * a[kind + ".macs"]
    assert b["qk_softmax.softmax"] == 4 * a["qk_softmax.softmax"]
    for kind in ("q", "k", "v", "ffn1"):               # linears: linear in the sequence
        assert b[kind] == 2 * a[kind] and b[kind + ".macs"] == 2 * a[kind + ".macs"]


def test_dram_term_vanishes_when_weights_fit_on_chip():
    cfg = PRESETS["minilm"]
    default = inference_energy(cfg, 32, 8, 8, 64)                      # generated design: no weight buffer
    assert default["memory"]["regime"] == "streamed" and default["dram_pj"] > 0
    fetched = inference_energy(cfg, 32, 8, 8, 64, sram_kib=256)        # one linear fits, not the model
    assert fetched["memory"]["regime"] == "fetched"
    assert fetched["dram_pj"] < default["dram_pj"]
    total_kib = fetched["memory"]["total_bits"] / 8192
    resident = inference_energy(cfg, 32, 8, 8, 64, sram_kib=total_kib)
    assert resident["memory"]["regime"] == "resident"
    assert resident["dram_pj"] == 0 and resident["counts"]["dram_bits"] == 0
    assert resident["energy_pj"] < fetched["energy_pj"] < default["energy_pj"]
    # weights fetched once: DRAM bits = all weights + constants
    assert fetched["counts"]["dram_bits"] == fetched["memory"]["weight_bits"] + fetched["memory"]["const_bits"]
    assert set(resident["breakdown_pj"]) == set(CATEGORIES)
    assert resident["energy_uj"] == pytest.approx(resident["energy_pj"] * 1e-6)
    assert resident["binary_macs_per_joule"] == pytest.approx(resident["binary_macs"] / (resident["energy_pj"] * 1e-12))
    with pytest.raises(ValueError, match="SRAM"):
        inference_energy(cfg, 32, 8, 8, 64, sram_kib=-1)


def test_counts_accumulate_energy_from_the_table():
    c = Counts()
    c.add("xnor", "xnor bit-op", 1000, 1, "xnor_bit")
    c.add("dram_weights", "w", 10, 32, "dram_bit")
    assert c.total_pj() == pytest.approx(1000 * ENERGY["xnor_bit"].value + 10 * 640.0)
    with pytest.raises(ValueError, match="category"):
        c.add("nonsense", "x", 1, 1, "fa_bit")
    with pytest.raises(ValueError, match="row"):
        c.add("xnor", "x", 1, 1, "nonsense")


def test_unit_energy_and_workloads():
    cm = _model(2, 3, 8)
    w = unit_workload("mac_array", "m=5,n=7,k=21")
    e = unit_energy(cm, "mac_array", w)
    assert e["binary_macs"] == 5 * 7 * 21 and e["energy_pj"] > 0
    assert e["counts"]["xnor_bit_ops"] == cm.matmul_beats(5, 7, 21) * 2 * 3 * 8
    for unit in ("threshold", "requant", "softmax", "layernorm"):
        w = unit_workload(unit, {"hidden": 24} if unit == "layernorm" else None)
        assert unit_energy(cm, unit, w)["energy_pj"] > 0
        assert cm.unit_cycles(unit, w)["cycles"] > 0
    for bad, word in [("m=0", "positive"), ("q=3", "unknown"), ("m", "key=value"), ("a_bits=3", "a_bits")]:
        with pytest.raises(ValueError, match=word):
            unit_workload("mac_array", bad)
    with pytest.raises(ValueError, match="unit"):
        unit_workload("gpu")


# ============================================================================ commands
def _cli(argv):
    p = argparse.ArgumentParser(prog="bitaccel")
    sub = p.add_subparsers(dest="command", required=True)
    commands.add_commands(sub)
    args = p.parse_args(argv)
    return args.func(args)


def test_report_json_and_plot(tmp_path, capsys):
    png = tmp_path / "sweep.png"
    assert _cli(["report", "--model", "tiny", "--arrays", "2x2x8,4x4x16", "--seq", "16", "--json",
                 "--plot", str(png)]) == 0
    r = json.loads(capsys.readouterr().out)
    assert {"model", "config", "seq", "clock_mhz", "arrays", "assumptions", "energy_table", "sram_kib"} <= set(r)
    assert [a["array"] for a in r["arrays"]] == ["2x2x8", "4x4x16"]
    for a in r["arrays"]:
        assert {"cycles", "latency_ms", "utilization", "energy_pj", "energy_uj", "energy_breakdown_pj",
                "binary_macs_per_joule", "resources", "cycles_by_kind", "memory"} <= set(a)
        assert a["resources"]["status"].startswith("not run")
        assert a["latency_ms"] == pytest.approx(a["cycles"] / 200e6 * 1e3)
        assert 0 < a["utilization"] <= 1
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert _cli(["report", "--model", "tiny", "--arrays", "2x2x8", "--seq", "16", "--sram-kib", "64"]) == 0
    text = capsys.readouterr().out
    assert "2x2x8" in text and "not run" in text and "none measured" in text and "MATMUL" in text


def test_report_from_artifact_and_synth_column(tmp_path, monkeypatch, tiny_artifacts):
    from bitaccel.golden.artifact import save_artifact
    path = tmp_path / "tiny.safetensors"
    save_artifact(tiny_artifacts[2], path)
    r = commands.report(str(path), "2x2x8", seq=8)
    assert r["model_source"] == "artifact" and r["quant"] == "W1A2"
    calls = []

    def fake_synth(params, unit="mac_array", target="xilinx", pnr=False, keep_dir=None):
        calls.append((params.rows, params.cols, params.lanes, unit, target))
        return {"luts": 100, "carry": 1, "ffs": 50, "bram": 0, "dsp": 0, "synth_s": 0.1, "yosys": "test"}

    from bitaccel.hw import synth as hw_synth
    monkeypatch.setattr(hw_synth, "synthesize", fake_synth)
    r = commands.report("tiny", "2x2x8,4x4x8", seq=8, synth=True)
    assert calls == [(2, 2, 8, "mac_array", "xilinx"), (4, 4, 8, "mac_array", "xilinx")]
    assert r["arrays"][0]["resources"]["luts"] == 100
    assert "100 LUT" in commands.format_report(r)


@pytest.mark.parametrize("argv,word", [
    (["--arrays", "8x8"], "ROWSxCOLSxLANES"),
    (["--arrays", "8x8x64,,4x4x8"], "empty"),
    (["--arrays", "8x8x12"], "lanes"),
    (["--arrays", "0x8x64"], ">= 1"),
    (["--arrays", "8x8x64,8x8x64"], "twice"),
    (["--arrays", "8x7x64"], "multiple of cols"),
    (["--seq", "0"], "seq"),
    (["--seq", "100000"], "max_position"),
    (["--clock-mhz", "-5"], "clock"),
    (["--sram-kib", "-1"], "sram"),
    (["--act-bits", "3"], "act-bits"),
    (["--model", "no-such-model"], "neither a preset"),
    (["--synth", "--synth-units", "gpu"], "synth-units"),
])
def test_report_argument_errors(argv, word):
    with pytest.raises(ValueError, match=word):
        _cli(["report", "--model", "tiny", "--seq", "16"] + argv)      # a later option wins


def test_parse_arrays_and_simulate_errors():
    assert parse_arrays("8x8x64, 16X16x64") == [(8, 8, 64), (16, 16, 64)]
    assert parse_array("2x3x8") == (2, 3, 8)
    with pytest.raises(ValueError):
        parse_arrays("")
    with pytest.raises(ValueError, match="unit"):
        commands.simulate("gpu", "icarus", "2x2x8")
    with pytest.raises(ValueError, match="sim"):
        commands.simulate("mac_array", "modelsim", "2x2x8")
    with pytest.raises(ValueError, match="ROWSxCOLSxLANES"):
        commands.simulate("mac_array", "icarus", "2x2")
    with pytest.raises(ValueError, match="multiple of cols"):
        commands.simulate("layernorm_unit", "icarus", "2x3x8", "hidden=16")
