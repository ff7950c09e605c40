"""MAC-array utilization on transformer matmul shapes, measured in the Amaranth simulator.

Utilization = ideal cycles / measured cycles, where ideal = M*N*K*(plane pairs) / (R*C*L)
(hw.schedule.ideal_cycles) and measured = cycles from the first beat offered to the last
drain beat taken, with `results.ready` always high, on hw.mac_array.BinaryMacArray fed by
hw.schedule.matmul_beats (the array drains each tile in R beats of C results, overlapped
with the next tile; a tile shorter than R beats waits for the drain). Every simulated
result is checked against golden.matmul.

Shapes (W1A1, sequence length 128): Q/K/V/O linears (128 x H x H), FFN1 (128 x H -> F),
FFN2 (128 x F -> H), Q.K^T per head (128 x 64 x 128, +-1 x +-1), P.V per head
(P 128 x 128 {0,1} times V 128 x 64 +-1, mode B01_PM1). The Python simulator is slow: a
matmul whose schedule exceeds --max-beats is simulated as a contiguous run of its first
whole tiles (row-major tile order), and the table says exactly how many. Nothing is
extrapolated: every number in the table is from the simulated beats.

Usage: .venv/bin/python bench/mac_utilization.py [--rows 8 --cols 8 --lanes 64]
       [--max-beats 9216] [--write-results docs/RESULTS.md]
"""
from __future__ import annotations

import argparse
import datetime
import itertools
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import amaranth  # noqa: E402
from amaranth.sim import Simulator  # noqa: E402

from bitaccel.golden.formats import acc_bits  # noqa: E402
from bitaccel.hw.schedule import pe_acc_bits  # noqa: E402
from bitaccel.golden.matmul import blas_matmul  # noqa: E402
from bitaccel.hw.mac_array import BinaryMacArray  # noqa: E402
from bitaccel.hw.schedule import beats_count, ideal_cycles, matmul_beats, tile_grid  # noqa: E402

import results_md  # noqa: E402  (bench/, beside this script)

SECTION = "## MAC array utilization (bench/mac_utilization.py)"
MODELS = {"MiniLM": dict(hidden=384, ffn=1536, heads=12, head_dim=64),
          "BERT-base": dict(hidden=768, ffn=3072, heads=12, head_dim=64)}
SEQ = 128


def _pm1(rng, shape):
    return np.where(rng.random(shape) < 0.5, -1, 1).astype(np.int64)


def _b01(rng, shape):
    return (rng.random(shape) < 0.5).astype(np.int64)


def simulate(dut: BinaryMacArray, beats, n_beats: int) -> tuple[int, list, float]:
    """Offer `n_beats` beats back to back (results always ready).

    Returns (cycles from the first beat offered to the last drain beat taken, drain beats, wall s).
    """
    out, stats = [], {}
    layout = dut.operands_layout

    async def bench(ctx):
        ctx.set(dut.results.ready, 1)
        it = iter(beats)
        current = next(it)
        sent = tiles = cycle = 0
        ctx.set(dut.operands.payload, layout.const(current))
        ctx.set(dut.operands.valid, 1)
        while True:
            _, _, ready, r_valid, r_payload = await ctx.tick().sample(
                dut.operands.ready, dut.results.valid, dut.results.payload)
            cycle += 1
            if r_valid:
                out.append([int(x) for x in r_payload.acc])
            if current is not None and ready:
                sent += 1
                tiles += current["last"]
                current = next(it, None) if sent < n_beats else None
                if current is None:
                    ctx.set(dut.operands.valid, 0)
                else:
                    ctx.set(dut.operands.payload, layout.const(current))
            if current is None and len(out) == tiles * dut.rows:
                break
        stats["cycles"] = cycle

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    t0 = time.perf_counter()
    sim.run()
    return stats["cycles"], out, time.perf_counter() - t0


def run_matmul(name, products, a_bits, b_bits, args, acc_width, pe_width):
    """Simulate one or more products streamed back to back; products = [(a, a_signed, b, b_signed)]."""
    R, C, L = args.rows, args.cols, args.lanes
    dut = BinaryMacArray(R, C, L, pe_width, acc_width, row_counts=False)      # W1A1: every b operand is +-1
    gens, n_beats_total, ideal_total_full = [], 0, 0.0
    for a, asg, b, bsg in products:
        gens.append(matmul_beats(a, a_bits, asg, b, b_bits, bsg, dut.spec))
        n_beats_total += beats_count(a.shape[0], b.shape[0], a.shape[1], a_bits, b_bits, R, C, L)
        ideal_total_full += ideal_cycles(a.shape[0], b.shape[0], a.shape[1], a_bits, b_bits, R, C, L)
    a0, _, b0, _ = products[0]
    (m, k), n = a0.shape, b0.shape[0]
    tm, tn = tile_grid(m, n, R, C)
    per_tile = beats_count(min(m, R), min(n, C), k, a_bits, b_bits, R, C, L)
    tiles_total = tm * tn * len(products)
    tiles_sim = min(tiles_total, max(1, args.max_beats // per_tile))
    n_sim = tiles_sim * per_tile
    cycles, out, wall = simulate(dut, itertools.chain(*gens), n_sim)
    assert len(out) == tiles_sim * R, (len(out), tiles_sim * R)

    # check every simulated tile against golden, and count the MACs it covers
    macs = 0
    for t in range(tiles_sim):
        acc = [v for row in out[t * R:(t + 1) * R] for v in row]
        p, rest = divmod(t, tm * tn)
        i, j = divmod(rest, tn)
        a, _, b, _ = products[p]
        rows = slice(i * R, min((i + 1) * R, m))
        cols = slice(j * C, min((j + 1) * C, n))
        ref = blas_matmul(a[rows], b[cols])
        got = np.array(acc, dtype=np.int64).reshape(R, C)[:ref.shape[0], :ref.shape[1]]
        if not np.array_equal(got, ref):
            raise AssertionError(f"{name}: tile {t} differs from golden")
        macs += ref.size * k * a_bits * b_bits
    ideal = macs / (R * C * L)
    simulated = "all" if tiles_sim == tiles_total else _describe_prefix(tiles_sim, tiles_total, tm, tn, R, C, len(products))
    return dict(name=name, beats=n_sim, beats_total=n_beats_total, ideal=ideal, cycles=cycles,
                util=ideal / cycles, simulated=simulated, latency=dut.latency, wall=wall,
                ideal_full=ideal_total_full)


def _describe_prefix(tiles_sim, tiles_total, tm, tn, R, C, n_products) -> str:
    """Words for the first `tiles_sim` tiles in schedule order (products, then row-major tiles)."""
    per_product = tm * tn
    done_products, rest = divmod(tiles_sim, per_product)
    full_rows, extra = divmod(rest, tn)
    parts = []
    if n_products > 1 and done_products:
        parts.append(f"heads 0-{done_products - 1} complete")
    where = f"head {done_products}: " if n_products > 1 else ""
    if full_rows:
        parts.append(f"{where}output rows 0-{full_rows * R - 1} (all columns)")
    if extra:
        parts.append(f"{where}rows {full_rows * R}-{full_rows * R + R - 1}, columns 0-{extra * C - 1}")
    return f"first {tiles_sim} of {tiles_total} tiles ({100 * tiles_sim / tiles_total:.1f} %): " + "; ".join(parts)


def machine() -> str:
    return results_md.machine(f"amaranth {amaranth.__version__}", f"numpy {np.__version__}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=8, help="array rows R")
    ap.add_argument("--cols", type=int, default=8, help="array columns C")
    ap.add_argument("--lanes", type=int, default=64, help="lanes L per PE")
    ap.add_argument("--max-beats", type=int, default=9216,
                    help="simulate at most this many beats per matmul (whole tiles, contiguous)")
    ap.add_argument("--models", default="MiniLM,BERT-base", help="comma-separated: " + ",".join(MODELS))
    ap.add_argument("--seed", type=int, default=20261122)
    ap.add_argument("--write-results", type=Path, default=None, help="update this RESULTS.md section")
    args = ap.parse_args(argv)
    args.load_start = os.getloadavg()[0]
    rng = np.random.default_rng(args.seed)
    print(f"seed={args.seed}  array {args.rows}x{args.cols}x{args.lanes}  max_beats={args.max_beats}")

    rows_out = []
    head_rows = None
    t_start = time.perf_counter()
    for model in args.models.split(","):
        cfg = MODELS[model]
        h, f, nh, d = cfg["hidden"], cfg["ffn"], cfg["heads"], cfg["head_dim"]
        acc_w = max(acc_bits(max(h, f), 1, True), acc_bits(SEQ, 1, False))
        pe_w = pe_acc_bits(max(h, f, SEQ), 1, 1)
        x_h, x_f = _pm1(rng, (SEQ, h)), _pm1(rng, (SEQ, f))
        linears = [
            ("Q/K/V/O linear (each)", [(x_h, True, _pm1(rng, (h, h)), True)]),
            ("FFN1", [(x_h, True, _pm1(rng, (f, h)), True)]),
            ("FFN2", [(x_f, True, _pm1(rng, (h, f)), True)]),
        ]
        mine = []
        for name, prods in linears:
            mine.append(run_matmul(name, prods, 1, 1, args, acc_w, pe_w))
            print(model, _fmt(mine[-1]), flush=True)
        if head_rows is None:       # per-head shapes are the same for both models (d = 64, seq 128)
            head_rows = []
            q = [(_pm1(rng, (SEQ, d)), True, _pm1(rng, (SEQ, d)), True) for _ in range(nh)]
            pv = [(_b01(rng, (SEQ, SEQ)), False, _pm1(rng, (d, SEQ)), True) for _ in range(nh)]
            for name, prods in [("Q.K^T, 1 head", q[:1]), (f"Q.K^T, {nh} heads back to back", q),
                                ("P.V, 1 head", pv[:1]), (f"P.V, {nh} heads back to back", pv)]:
                head_rows.append(run_matmul(name, prods, 1, 1, args, acc_w, pe_w))
                print(model, _fmt(head_rows[-1]), flush=True)
            mine += head_rows
            head_model = model
        else:
            mine += [dict(r, simulated=f"same shape as {head_model}: that run") for r in head_rows]
        rows_out.append((model, mine))
    total_wall = time.perf_counter() - t_start
    print(f"total wall {total_wall:.0f} s")

    if args.write_results:
        write_results(args, rows_out, total_wall, argv)
    return 0


def _fmt(r) -> str:
    return (f"{r['name']:<32} beats {r['beats']:>6}/{r['beats_total']:<6} ideal {r['ideal']:>9.1f} "
            f"cycles {r['cycles']:>7} util {100 * r['util']:6.2f}%  ({r['wall']:.1f} s, {r['simulated']})")


def write_results(args, rows_out, total_wall, argv) -> None:
    cmd = results_md.command_line("bench/mac_utilization.py", argv)
    peak = args.rows * args.cols * args.lanes
    lines = [
        SECTION, "",
        f"Command: `{cmd}`  ",
        f"Date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}  ",
        f"Machine: {machine()}  ",
        f"Simulator wall time: {total_wall:.0f} s (Amaranth Python simulator; 1-minute load average "
        f"{args.load_start:.1f} at start, {os.getloadavg()[0]:.1f} at end on this shared machine)", "",
        f"Array {args.rows} x {args.cols} x {args.lanes} (peak {peak} binary MACs/cycle), W1A1, sequence "
        f"length {SEQ}, random seeded operands (seed {args.seed}); every simulated result checked "
        "against golden.matmul. Ideal cycles = M·N·K·(plane pairs)/(R·C·L) of the simulated tiles; "
        "measured = cycles from the first beat offered to the last drain beat taken, results always "
        f"ready; the array's latency ({rows_out[0][1][0]['latency']} cycles) is paid once per "
        "simulated run. Matmuls with more than "
        f"{args.max_beats} beats are simulated as a contiguous run of their first whole tiles "
        "(stated per row); nothing is extrapolated. Q/K/V/O have the same shape: one linear was "
        "simulated. The array's timing does not depend on the operand values. The testbench is an "
        "ideal feeder (a beat is offered every cycle, results are always taken): this measures the "
        "array's own pipeline and flow control, not the memory system that must supply "
        f"{args.rows} + {args.cols} words of {args.lanes} bits per cycle. All these shapes have K a "
        f"multiple of L and M, N multiples of R, C; the losses are the pipeline latency and, for tiles "
        f"of fewer than R = {args.rows} beats (short K), the drain (R beats per tile).", "",
        "| model | matmul | shape (M×K·N) | beats simulated / schedule | ideal cycles | measured cycles | utilization | simulated |",
        "|---|---|---|---|---|---|---|---|",
    ]
    shapes = {"Q/K/V/O linear (each)": lambda c: f"{SEQ}×{c['hidden']}·{c['hidden']}",
              "FFN1": lambda c: f"{SEQ}×{c['hidden']}·{c['ffn']}",
              "FFN2": lambda c: f"{SEQ}×{c['ffn']}·{c['hidden']}"}
    for model, rs in rows_out:
        cfg = MODELS[model]
        for r in rs:
            shape = shapes[r["name"]](cfg) if r["name"] in shapes else (
                f"{SEQ}×{cfg['head_dim']}·{SEQ}" if r["name"].startswith("Q.K") else f"{SEQ}×{SEQ}·{cfg['head_dim']}")
            lines.append(f"| {model} | {r['name']} | {shape} | {r['beats']} / {r['beats_total']} | "
                         f"{r['ideal']:.1f} | {r['cycles']} | {100 * r['util']:.2f} % | {r['simulated']} |")
    lines += ["", "Goal ≥ 95 %: " + ", ".join(
        f"{model} met on {sum(r['util'] >= 0.95 for r in rs)} of {len(rs)} rows" for model, rs in rows_out), ""]
    section = "\n".join(lines) + "\n"

    results_md.write_section(args.write_results, SECTION, section)
    print(f"wrote section to {args.write_results}")


if __name__ == "__main__":
    raise SystemExit(main())
