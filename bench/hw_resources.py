"""FPGA resources of the MAC array: LUT6 per lane-bit (Yosys synth_xilinx), ECP5 LUT4s and Fmax.

What is measured, per array size (R, C, L), with the default generation limits of
`HwParams` otherwise (BERT-base: max_hidden 768, max_ffn 3072, max_act_bits 8, ...):

  * Xilinx 7-series: `synth_xilinx -top mac_array -flatten`, `opt_merge -share_all;
    opt_clean` (see hw.synth.MERGE) then `stat` (Debian Yosys):
    LUTs = LUT1..LUT6, FFs = FD*, MUXF7/MUXF8 and CARRY4 counted separately;
    LUT6 per lane-bit = LUTs / (R * C * L). The goal is <= 2.5 (BRIEF: ~1-2.5 LUT6 per
    XNOR-popcount input bit is achievable; FINN-R's cost model charges ~7);
  * Lattice ECP5: `synth_ecp5 -top mac_array`: LUT4 (and CCU2C carry cells);
  * for reference, the PE's xnor-popcount tree alone (`hw.popcount.XnorPopcount(L)` as the
    MAC array instantiates it, synthesized the same way): its LUT6 per lane-bit is the floor
    the array approaches as the per-PE add/shift/accumulate and the shared row/column
    corrections are amortized;
  * for one configuration (--pnr, default the first), nextpnr-ecp5 out of context at a
    200 MHz target with every port registered by a harness: the maximum frequency.

Each synthesis runs on a fresh generation of the unit (`hw.synth.synthesize`).
"""
from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benches run from a checkout, installed or not
    sys.path.insert(0, str(ROOT))

from hw.params import HwParams  # noqa: E402
from hw.synth import synthesize, synthesize_verilog  # noqa: E402
from hw.toolchain import find_yosys  # noqa: E402

import results_md  # noqa: E402  (bench/, beside this script)

SECTION = "## MAC array FPGA resources (bench/hw_resources.py)"
GOAL_LUT6_PER_LANE_BIT = 2.5
CONFIGS = ["1x1x64", "2x2x64", "4x4x32", "4x4x64", "2x2x256"]
HEADER = ["R x C x L", "lane-bits", "xilinx LUTs", "LUT6 / lane-bit", "goal <= 2.5 met", "LUTs before merge",
          "FFs", "MUXF7+F8", "CARRY4", "popcount tree alone LUT6 / lane-bit", "other LUTs per PE", "yosys xilinx s",
          "ECP5 LUT4",
          "ECP5 CCU2C", "ECP5 FFs"]


def parse_config(text: str) -> tuple[int, int, int]:
    try:
        r, c, lanes = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"array size must look like 4x4x64 (R x C x L), not {text!r}") from None
    return r, c, lanes


def machine() -> str:
    """CPU, cores, Python, amaranth and Yosys versions of this machine."""
    import amaranth
    yosys = subprocess.run([*find_yosys().argv, "-V"], capture_output=True, text=True).stdout.strip()
    return results_md.machine(f"amaranth {amaranth.__version__}", yosys)


def popcount_tree(lanes: int) -> dict:
    """Xilinx counts of the PE's xnor-popcount tree alone, as the MAC array instantiates it."""
    from amaranth.back import verilog

    from hw.popcount import XNOR_GROUP, XnorPopcount

    with tempfile.TemporaryDirectory(prefix="bitaccel-bench-") as tmp:
        path = os.path.join(tmp, "xnor_popcount.v")
        with open(path, "w") as f:
            f.write(verilog.convert(XnorPopcount(lanes, group=XNOR_GROUP), name="xnor_popcount", emit_src=False))
        return synthesize_verilog(path, "xnor_popcount", "xilinx")


def bench(config: tuple[int, int, int], ecp5: bool, pnr: bool, trees: dict) -> dict:
    r, c, lanes = config
    p = HwParams(rows=r, cols=c, lanes=lanes)
    x = synthesize(p, "mac_array", "xilinx")
    if lanes not in trees:
        trees[lanes] = popcount_tree(lanes)
    row = {"config": config, "lane_bits": r * c * lanes, "xilinx": x, "tree_per_bit": trees[lanes]["luts"] / lanes,
           "other_per_pe": (x["luts"] - r * c * trees[lanes]["luts"]) / (r * c)}
    print(f"{r}x{c}x{lanes}: xilinx {x['luts']} LUTs ({x['luts'] / row['lane_bits']:.2f}/lane-bit), {x['ffs']} FFs, "
          f"{x['synth_s']:.0f} s", file=sys.stderr)
    if ecp5 or pnr:
        e = synthesize(p, "mac_array", "ecp5", pnr=pnr)
        row["ecp5"] = e
        print(f"{r}x{c}x{lanes}: ecp5 {e['luts']} LUT4 + {e['carry']} CCU2C, {e['ffs']} FFs"
              + (f", Fmax {e['pnr']['fmax_mhz']} MHz" if pnr else ""), file=sys.stderr)
    return row


def table_rows(results: list[dict]) -> list[list[str]]:
    rows = []
    for row in results:
        x, e = row["xilinx"], row.get("ecp5")
        per_bit = x["luts"] / row["lane_bits"]
        rows.append(["x".join(map(str, row["config"])), str(row["lane_bits"]), str(x["luts"]), f"{per_bit:.2f}",
                     "yes" if per_bit <= GOAL_LUT6_PER_LANE_BIT else "no", str(x["luts_unmerged"]), str(x["ffs"]),
                     str(x["cells"].get("MUXF7", 0) + x["cells"].get("MUXF8", 0)), str(x["carry"]),
                     f"{row['tree_per_bit']:.2f}", f"{row['other_per_pe']:.0f}", f"{x['synth_s']:.0f}",
                     str(e["luts"]) if e else "-", str(e["carry"]) if e else "-", str(e["ffs"]) if e else "-"])
    return rows


def markdown_table(results: list[dict]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in table_rows(results)])


def section(results: list[dict], command: str) -> str:
    p = HwParams()
    pnr = [row for row in results if "pnr" in row.get("ecp5", {})]
    lines = [
        SECTION, "",
        f"Command: `{command}`  ",
        f"Date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}  ",
        f"Machine: {machine()}", "",
        f"Unit `mac_array` generated with the default limits otherwise (max_hidden {p.max_hidden}, max_ffn "
        f"{p.max_ffn}, max_seq {p.max_seq}, max_act_bits {p.max_act_bits}: accumulator {p.acc_width} bits). "
        "Xilinx: `synth_xilinx -flatten`, then `opt_merge -share_all; opt_clean` (Yosys 0.23 leaves one identical "
        "clock-enable LUT per flip-flop; the count before merging is the column 'LUTs before merge'); "
        "LUTs = LUT1..LUT6 (MUXF7/F8 and CARRY4 not counted as LUTs), "
        f"LUT6 / lane-bit = LUTs / (R*C*L); goal <= {GOAL_LUT6_PER_LANE_BIT}. ECP5: `synth_ecp5` and the same merge, LUT4 "
        "(CCU2C carry cells separate; each occupies two LUT4 sites). 'popcount tree alone': the PE's "
        "`XnorPopcount(L)` synthesized by itself (same flow); 'other LUTs per PE' = (array LUTs - R*C * tree LUTs) "
        "/ (R*C): the per-PE correction add, shift and accumulate plus each PE's share of the input masking and "
        "the row/column popcounts. The gap to the goal is that part.", "",
        markdown_table(results), ""]
    for row in pnr:
        q = row["ecp5"]["pnr"]
        lines += [f"ECP5 place and route of {'x'.join(map(str, row['config']))}: nextpnr-ecp5 --{q['device']} "
                  f"--package {q['package']} --out-of-context --freq {q['target_mhz']}, every port registered "
                  f"({q['harness_ffs']} harness FFs): **Fmax {q['fmax_mhz']:.1f} MHz** ({q['pnr_s']:.0f} s).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="+", type=parse_config, default=[parse_config(c) for c in CONFIGS],
                    metavar="RxCxL", help=f"array sizes (default {' '.join(CONFIGS)})")
    ap.add_argument("--no-ecp5", action="store_true", help="skip the ECP5 LUT4 counts")
    ap.add_argument("--pnr", type=parse_config, metavar="RxCxL",
                    help="configuration to place and route on ECP5 (default: the first)")
    ap.add_argument("--write-results", type=Path, metavar="MD", help="create/replace this bench's section in MD")
    args = ap.parse_args(argv)

    pnr_config = args.pnr or args.configs[0]
    configs = args.configs + ([pnr_config] if pnr_config not in args.configs else [])
    trees = {}
    results = [bench(c, not args.no_ecp5, c == pnr_config, trees) for c in configs]
    print(markdown_table(results))
    if args.write_results:
        results_md.write_section(args.write_results, SECTION, section(results, results_md.command_line("bench/hw_resources.py", argv)))
        print(f"wrote {args.write_results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
