"""Whole-encoder inference on the generated RTL: measured cycles, MAC utilization, AXI traffic, simulator speed.

For each array size, one MiniLM-shaped W1A1 artifact (random, seeded: the hardware's work does
not depend on the weights' values) is compiled for `--tokens` tokens without traces, built with
Verilator and run in cocotb (`sim.inference.run_program`). Reported per array:

  * cycles: the accelerator's START -> DONE counter; per-unit busy cycles from its counters;
  * utilization: ideal array cycles (binary MACs of every product / R*C*L, hw.schedule.ideal_cycles
    summed over the program's MATMULs) / measured cycles;
  * AXI read bytes / the model's binary weight bytes (1.0 = every weight read once);
  * Verilog generation and Verilator build seconds, simulated cycles per wall-clock second;
  * bit_exact: the pooler accumulators read back from the RTL equal golden's;
  * the cycle model (`sim.program_cycles`) of the same program beside the measurement, and its
    split of the cycles by instruction kind (where the cycles go).
"""
from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # for bench.results_md (bitaccel comes from the venv)
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bitaccel.compiler import Target, compile_program  # noqa: E402
from bitaccel.golden.model import IntegerModel  # noqa: E402
from bitaccel.golden.random_artifact import random_artifact  # noqa: E402
from bitaccel.hw.schedule import ideal_cycles  # noqa: E402
from bitaccel.hw.spec.isa import BSource, Op  # noqa: E402
from bitaccel.sim.inference import run_program  # noqa: E402
from bitaccel.sim.program_cycles import program_cycles  # noqa: E402
from bitaccel.sim.run_command import hw_params_for  # noqa: E402
from bitaccel.sim.workload import parse_arrays  # noqa: E402

import results_md  # noqa: E402  (bench/, beside this script)

SECTION = "## Whole-encoder inference on the RTL (bench/encoder_run.py)"


def ideal_array_cycles(prog) -> tuple[float, int]:
    """(sum of hw.schedule.ideal_cycles over the program's MATMULs, their binary weight bytes)."""
    p = prog.target.params
    total, weight_bits = 0.0, 0
    for ins in prog.instructions:
        if ins.op != Op.MATMUL:
            continue
        total += ideal_cycles(ins["m"], ins["n"], ins["k"], ins["a_bits"], ins["b_bits"], p.rows, p.cols, p.lanes)
        if ins["b_src"] == BSource.WEIGHTS:
            weight_bits += ins["n"] * ins["k"]
    return total, weight_bits // 8


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arrays", type=parse_arrays, default=[(8, 8, 64)],
                    help="comma-separated R x C x L (default 8x8x64)")
    ap.add_argument("--config", default="minilm", help="random_artifact preset (default minilm)")
    ap.add_argument("--tokens", type=int, default=16, help="sequence length T (default 16)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write-results", type=Path, metavar="RESULTS_MD")
    args = ap.parse_args(argv)

    art = random_artifact(args.config, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    ids = np.concatenate([[101], rng.integers(1000, art.config.vocab_size, args.tokens - 2), [102]])
    golden = IntegerModel(art).forward(ids, keep_intermediates=True)["intermediates"]["pooler.acc"]
    rows = []
    for r, c, lanes in args.arrays:
        params = hw_params_for(art, args.tokens, r, c, lanes)
        prog = compile_program(art, Target(params), ids=ids, trace=False)
        ideal, weight_bytes = ideal_array_cycles(prog)
        model = program_cycles(prog)
        with tempfile.TemporaryDirectory(prefix="bitaccel-encoder-run-") as work:
            t0 = time.perf_counter()
            res = run_program(prog, "verilator", work_dir=work, progress=lambda m: print(m, file=sys.stderr))
            wall = time.perf_counter() - t0
        run = res["run"]
        build = run["build"]
        ok = res["passed"] and np.array_equal(res["checkpoints"]["pooler.acc"], golden)
        row = {"array": f"{r}x{c}x{lanes}", "cycles": res["cycles"], "ideal": ideal,
               "utilization": ideal / res["cycles"], "busy": res["busy"],
               "axi_read_bytes": 8 * res["beats"]["axi_read_beats"], "weight_bytes": weight_bytes,
               "generate_s": build["generate_s"], "build_s": build["build_s"], "run_s": run["run_s"],
               "cycles_per_s": res["cycles"] / run["run_s"], "wall_s": wall, "bit_exact": ok,
               "model_cycles": model["cycles"], "model_by_op": model["by_op"],
               "model_read_beats": model["beats"]["axi_read_beats"],
               "weight_read_bytes": 8 * model["weight_read_beats"]}
        rows.append(row)
        print(row, flush=True)

    lines = [SECTION, "",
             f"Command: `{results_md.command_line('bench/encoder_run.py', argv)}`  ",
             f"Date: {datetime.date.today().isoformat()}; machine: {results_md.machine()}  ",
             f"Model: random `{args.config}` artifact (seed {args.seed}), W1A1, T = {args.tokens}, no traces; "
             "Verilator; the pooler output compared with golden.", "",
             "| array | bit-exact | cycles | modeled cycles | ideal array cycles | utilization | MAC array busy | "
             "threshold busy | AXI read / weight bytes | weight-tile reads / weight bytes | Verilog gen s | "
             "Verilator build s | sim s | cycles/s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for w in rows:
        b = w["busy"]
        err = 100 * (w["model_cycles"] - w["cycles"]) / w["cycles"]
        lines.append(f"| {w['array']} | {w['bit_exact']} | {w['cycles']:,} | {w['model_cycles']:,} ({err:+.2f} %) | "
                     f"{w['ideal']:,.0f} | "
                     f"{100 * w['utilization']:.1f} % | {b['mac_array']:,} | {b['threshold_unit']:,} | "
                     f"{w['axi_read_bytes'] / w['weight_bytes']:.2f} | {w['weight_read_bytes'] / w['weight_bytes']:.3f} | "
                     f"{w['generate_s']:.0f} | {w['build_s']:.0f} | "
                     f"{w['run_s']:.0f} | {w['cycles_per_s']:,.0f} |")
    lines += ["", "Where the cycles go (the cycle model's split of the same program by instruction kind; its total "
              "is in the table beside the measurement):", ""]
    for w in rows:
        total = sum(w["model_by_op"].values())
        lines.append(f"* {w['array']}: " + ", ".join(f"{op} {100 * n / total:.1f} %" for op, n in
                                                   sorted(w["model_by_op"].items(), key=lambda kv: -kv[1])))
    lines += ["", "Goals (issue 9): utilization >= 80 % at T = 128, >= 50 k simulated cycles/s, AXI read / weight "
              "bytes = 1.0, Verilator build < 2 min. AXI reads include constants (one 64-bit word per threshold, "
              "two per requant channel), LayerNorm and softmax tables, embedding rows and the program, not only "
              "weights; 'weight-tile reads' is the weight tiles' part of the measured reads (the cycle model's split; "
              "its total read beats equal the measured ones in the tests), above 1.0 only by the partial bus words "
              "at tile edges."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write_results:
        results_md.write_section(args.write_results, SECTION, text)
    return 0 if all(w["bit_exact"] for w in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
