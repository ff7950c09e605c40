"""FPGA resources of the whole accelerator (hw/encoder/top.py): LUTs, FFs, BRAM, DSPs per array size.

For each array size, the `accelerator` unit is generated with the limits a MiniLM-shaped
W1A1 model needs at `--seq` tokens (`sim.run_command.hw_params_for` of a random `minilm`
artifact: hidden 384, FFN 1536, head size 32, act bits 1, its exp-LUT length) and synthesized
with Yosys (`hw.synth.synthesize`, the flow of bench/hw_resources.py): Xilinx 7-series
`synth_xilinx -flatten` and/or Lattice ECP5 `synth_ecp5`, then `opt_merge -share_all; opt_clean`.
Reported: logic LUTs (Xilinx LUT1..LUT6 / ECP5 LUT4), carry cells, flip-flops, block RAMs
(RAMB18E1 + RAMB36E1 / DP16KD) and DSPs, the Yosys wall time, and the design's memory bits
(every `lib.memory.Memory` of the elaborated top level, `hw.generate.memories`).

    .venv/bin/python bench/encoder_resources.py --arrays 8x8x64 --write-results docs/RESULTS.md

Long runs can be split: each part with --save FILE.json, then --arrays (none) --load the parts
--write-results, which writes one section with every part's command.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # for bench.results_md (bitaccel comes from the venv)
    sys.path.insert(0, str(ROOT))

from amaranth.hdl import Fragment  # noqa: E402

from bitaccel.golden.random_artifact import random_artifact  # noqa: E402
from bitaccel.hw.generate import UNITS, memories  # noqa: E402
from bitaccel.hw.synth import synthesize  # noqa: E402
from bitaccel.sim.run_command import hw_params_for  # noqa: E402
from bitaccel.sim.workload import parse_arrays  # noqa: E402

import results_md  # noqa: E402  (bench/, beside this script)

SECTION = "## Whole-accelerator FPGA resources (bench/encoder_resources.py)"
HEADER = ["array", "target", "LUTs", "carry cells", "FFs", "block RAMs", "DSPs", "design memory bits", "max_seq",
          "yosys s"]


def memory_bits(array: str, seq: int) -> int:
    """Bits of every memory of the accelerator generated for `array` ("RxCxL") at MiniLM limits, `seq` tokens."""
    r, c, lanes = (int(v) for v in array.split("x"))
    params = hw_params_for(random_artifact("minilm", seed=0), seq, r, c, lanes)
    return sum(m["bits"] for m in memories(Fragment.get(UNITS["accelerator"](params), platform=None)))


def measure(arrays, targets, seq: int) -> list[dict]:
    art = random_artifact("minilm", seed=0)
    rows = []
    for r, c, lanes in arrays:
        params = hw_params_for(art, seq, r, c, lanes)
        for target in targets:
            print(f"synthesizing the accelerator {r}x{c}x{lanes} for {target} ...", file=sys.stderr, flush=True)
            res = synthesize(params, "accelerator", target)
            rows.append({"array": f"{r}x{c}x{lanes}", "target": target, "luts": res["luts"], "carry": res["carry"],
                         "ffs": res["ffs"], "bram": res["bram"], "dsp": res["dsp"], "max_seq": params.max_seq,
                         "synth_s": res["synth_s"], "yosys": res["yosys"], "command": res["command"],
                         "cells": {k: v for k, v in res["cells"].items() if k.startswith(("RAMB", "DP16KD"))}})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arrays", type=parse_arrays, nargs="?", const=[], default=[(8, 8, 64)],
                    help="comma-separated R x C x L (default 8x8x64; empty with --load)")
    ap.add_argument("--targets", default="xilinx,ecp5", help="comma-separated: xilinx, ecp5 (default both)")
    ap.add_argument("--seq", type=int, default=128, help="tokens the build must hold (default 128)")
    ap.add_argument("--save", type=Path, metavar="JSON", help="also write this run's rows and command here")
    ap.add_argument("--load", type=Path, nargs="*", default=[], metavar="JSON", help="earlier --save files to add")
    ap.add_argument("--write-results", type=Path, metavar="RESULTS_MD")
    args = ap.parse_args(argv)

    command = results_md.command_line("bench/encoder_resources.py", argv)
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    parts = [json.loads(p.read_text()) for p in args.load]
    if args.arrays:
        part = {"command": command, "date": started, "machine": results_md.machine(),
                "rows": measure(args.arrays, [t for t in args.targets.split(",") if t], args.seq)}
        if args.save:
            args.save.write_text(json.dumps(part, indent=1))
        parts.append(part)
    rows = [r for p in parts for r in p["rows"]]
    if not rows:
        ap.error("nothing to report: give --arrays or --load")
    out = [SECTION, "",
           "Command: " + "; ".join(f"`{p['command']}`" for p in parts) + "  ",
           f"Date: {parts[-1]['date']}  ",
           f"Machine: {parts[-1]['machine']}, Yosys {rows[-1]['yosys']}", "",
           "Unit `accelerator` (hw/encoder/top.py: MAC array, every execute unit, sequencer, AXI4 read/write masters, "
           "AXI4-Lite registers, on-chip buffers) generated with the limits of a MiniLM-shaped W1A1 model (hidden 384, "
           "FFN 1536, head size 32) at max_seq tokens. Flow: " + rows[-1]["command"].replace(" -top accelerator", "")
           + " (per target: synth_xilinx -flatten or synth_ecp5). Block RAMs: RAMB18E1 + RAMB36E1 (Xilinx) or DP16KD "
           "(ECP5) cells; memories Yosys could not map to block RAM are in the LUT and FF counts.", "",
           "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    bits = {key: memory_bits(*key) for key in {(r["array"], r["max_seq"]) for r in rows}}
    for r in rows:
        brams = ", ".join(f"{n} {k}" for k, n in sorted(r["cells"].items())) or "0"
        out.append(f"| {r['array']} | {r['target']} | {r['luts']:,} | {r['carry']:,} | {r['ffs']:,} | {brams} | "
                   f"{r['dsp']} | {bits[r['array'], r['max_seq']]:,} | {r['max_seq']} | {r['synth_s']:.0f} |")
    text = "\n".join(out) + "\n"
    print(text)
    if args.write_results:
        results_md.write_section(args.write_results, SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
