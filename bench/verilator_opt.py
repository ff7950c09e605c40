"""Verilator's C++ optimization level for the accelerator model: build time against simulation speed, in one run.

The whole-encoder accelerator for a MiniLM-shaped random W1A1 artifact is compiled for `--tokens`
tokens and run on Verilator (`sim.inference.run_program`, fresh build folders) once per level in
`--levels` (the make variable OPT_FAST that `sim.runner.VERILATOR_OPT_FAST` sets), in the order
given and then once more in reverse, so machine noise hits every level. Reported per run: the
Verilator build seconds, the simulation seconds and simulated cycles per second; per level the
mean and its ratio to the first level's.
"""
from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # for bench.results_md (bitaccel comes from the venv)
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bitaccel.compiler import Target, compile_program  # noqa: E402
from bitaccel.golden.random_artifact import random_artifact  # noqa: E402
from bitaccel.sim import runner  # noqa: E402
from bitaccel.sim.inference import run_program  # noqa: E402
from bitaccel.sim.run_command import hw_params_for  # noqa: E402
from bitaccel.sim.workload import parse_arrays  # noqa: E402

from bench import results_md  # noqa: E402

SECTION = "## Verilator optimization level (bench/verilator_opt.py)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--array", type=parse_arrays, default=[(8, 8, 64)], help="R x C x L (default 8x8x64)")
    ap.add_argument("--tokens", type=int, default=32, help="sequence length T (default 32)")
    ap.add_argument("--levels", default="-O0,-O1,-O2", help="comma-separated OPT_FAST values (default -O0,-O1,-O2)")
    ap.add_argument("--write-results", type=Path, metavar="RESULTS_MD")
    args = ap.parse_args(argv)
    levels = [lv.strip() for lv in args.levels.split(",") if lv.strip()]
    if not levels or any(not lv.startswith("-O") for lv in levels):
        ap.error(f"--levels must be comma-separated -O... flags, not {args.levels!r}")
    if len(args.array) != 1:
        ap.error("--array takes one R x C x L")
    (r, c, lanes), = args.array
    default = runner.VERILATOR_OPT_FAST

    art = random_artifact("minilm", seed=0)
    ids = np.concatenate([[101], np.random.default_rng(0).integers(1000, art.config.vocab_size, args.tokens - 2),
                          [102]])
    prog = compile_program(art, Target(hw_params_for(art, args.tokens, r, c, lanes)), ids=ids, trace=False)
    runs = []
    for level in levels + levels[::-1]:
        runner.VERILATOR_OPT_FAST = level
        with tempfile.TemporaryDirectory(prefix="bitaccel-verilator-opt-") as work:
            res = run_program(prog, "verilator", work_dir=work, progress=lambda m: print(m, file=sys.stderr))
        run = res["run"]
        runs.append({"level": level, "passed": res["passed"] and res["bit_exact"], "cycles": res["cycles"],
                     "build_s": run["build"]["build_s"], "run_s": run["run_s"],
                     "cycles_per_s": res["cycles"] / run["run_s"]})
        print(runs[-1], flush=True)

    def mean(level: str, key: str) -> float:
        return float(np.mean([x[key] for x in runs if x["level"] == level]))

    base = levels[0]
    lines = [SECTION, "",
             f"Command: `{results_md.command_line('bench/verilator_opt.py', argv)}`  ",
             f"Date: {datetime.date.today().isoformat()}; machine: {results_md.machine()}  ",
             f"Design: the accelerator at {r}x{c}x{lanes} running a random `minilm` W1A1 program, T = {args.tokens} "
             f"({runs[0]['cycles']:,} cycles), no traces; each level built and run twice (order "
             f"{', '.join(levels + levels[::-1])}).", "",
             "| OPT_FAST | passed, bit-exact | Verilator build s | sim s | cycles/s | build vs " + base
             + " | cycles/s vs " + base + " |",
             "|---|---|---|---|---|---|---|"]
    for level in levels:
        ok = all(x["passed"] for x in runs if x["level"] == level)
        lines.append(f"| {level} | {ok} | {mean(level, 'build_s'):.0f} | {mean(level, 'run_s'):.1f} | "
                     f"{mean(level, 'cycles_per_s'):,.0f} | {mean(level, 'build_s') / mean(base, 'build_s'):.2f}x | "
                     f"{mean(level, 'cycles_per_s') / mean(base, 'cycles_per_s'):.2f}x |")
    lines += ["", f"The default (`sim.runner.VERILATOR_OPT_FAST`) is {default}."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write_results:
        results_md.write_section(args.write_results, SECTION, text)
    return 0 if all(x["passed"] for x in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
