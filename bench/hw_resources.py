"""Resources of the MAC array (drain included): LUT6 per lane-bit, FFs, CARRY4, ECP5 LUT4s and Fmax, ASIC estimate.

What is measured, per array size R x C x L (suffix ``a<bits>`` sets max_act_bits, e.g.
``8x8x64a1`` is a W1A1-only array: 12-bit accumulators, no row popcounts), with the
default generation limits of `HwParams` otherwise (max_hidden 768, max_ffn 3072, max_seq
128, max_head_dim 64, max_act_bits 8):

  * Xilinx 7-series: `synth_xilinx -top mac_array -flatten`, `opt_merge -share_all;
    opt_clean` (see hw.synth.MERGE) then `stat` (Debian Yosys 0.23):
    LUTs = LUT1..LUT6, FFs = FD*, MUXF7/MUXF8 and CARRY4 counted separately;
    LUT6 per lane-bit = LUTs / (R * C * L) of the whole unit (PEs, row/column counts and
    the drain). Goal <= 1.5 at 8x8x64 with all modes;
  * Lattice ECP5: `synth_ecp5 -top mac_array`: LUT4 (and CCU2C carry cells);
  * for the --pnr configurations, nextpnr-ecp5 out of context at a 200 MHz target with every
    port registered by a harness (hw.synth.timing_harness): the maximum frequency;
  * for the --asic configurations, `hw.synth.asic_estimate` (Yosys `synth`, `abc -g cmos2`,
    `stat -tech cmos`): logic transistors, NAND2 equivalents, flip-flops and a 45 nm area;
  * the PE's popcount tree alone (`hw.popcount.XorPopcount(L)`), for the floor.

Each synthesis runs on a fresh generation of the unit. Long runs can be split: each part
with --save, then one --load of all parts (--configs with nothing new) writes the section
with every part's command. `BEFORE` holds the figures of the array before the redesign
(docs/RESULTS.md at commit 7297498) and `PREVIOUS` those of the redesigned array before its
drain and tree-register savings (commit 8d5693d), both from the same flow, for the comparison table.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # for bench.results_md (bitaccel comes from the venv)
    sys.path.insert(0, str(ROOT))

from bitaccel.hw.params import HwParams  # noqa: E402
from bitaccel.hw.synth import NANGATE45_UM2, asic_estimate, synthesize, synthesize_verilog  # noqa: E402
from bitaccel.hw.toolchain import find_yosys  # noqa: E402

import results_md  # noqa: E402  (bench/, beside this script)

SECTION = "## MAC array FPGA resources (bench/hw_resources.py)"
GOAL_LUT6_PER_LANE_BIT = 1.5
GOAL_FMAX_MHZ = 200
CONFIGS = ["8x8x64", "8x4x128", "8x8x64a1", "16x16x64"]
#: The array before the redesign (docs/RESULTS.md at commit 7297498, same Yosys flow):
#: config -> (xilinx LUTs, FFs, CARRY4, ECP5 Fmax MHz or None).
BEFORE = {"8x8x64": (16250, 16154, 2512, None), "4x4x64": (4463, 4778, 696, 144.1)}
#: Xilinx cells that occupy a LUT6 site besides LUT1..LUT6 (shift registers Yosys infers from delay chains).
SRL_CELLS = ("SRL16E", "SRLC32E")
#: The redesigned array before the drain / tree-register savings (docs/RESULTS.md of 2026-11-29T08:53,
#: hw/ at 8d5693d / b995f64, same flow): config -> (xilinx LUTs, SRL16E, FFs).
PREVIOUS = {"8x8x64": (12283, 403, 15744), "8x8x64a1": (8721, 363, 11321), "8x4x128": (10479, 171, 13208),
            "16x16x64": (40888, 1444, 51834), "4x4x64": (3702, 122, 5474)}
#: hw/ commits of the PREVIOUS figures (a row measured on one of them is the previous design itself).
PREVIOUS_DESIGNS = ("8d5693d", "b995f64")
#: What each step of that saving bought at 8x8x64: module figures from a hierarchical `synth_xilinx` (no
#: -flatten, `stat` per submodule, LUTs traced to the registers they feed), totals from the flattened flow.
STEPS = [
    "drain (commit f93305e): the (row, bank) select of the H and P rows as kept 4:1 multiplexer nodes, 5 LUT6 "
    "per bit of the 16:1 select (a case statement before: 1,104 + 138 LUTs for the H and P rows, 6 per bit; "
    "920 + 115 now); rho +- (Q << b_pm1) and 2 offset +- (P << a_pm1) each one subtractor "
    "with the shift and sign in its LUTs (two adders and a multiplexer before); the H << g shift folded into "
    "the final subtractor (a register stage of 185 LUTs before), its H delay chain kept out of "
    "shift-register LUTs by a valid-gated flip-flop reset. Drain (hierarchical top module) 2,332 -> 1,681 "
    "LUTs; flattened array 12,283 LUTs + 403 SRL16E -> 10,864 + 403",
    "popcount trees registered every 2 levels, `TREE_REGISTER_EVERY` (commit 40e9f9b), the counts delayed to "
    "the unchanged `pipe` by valid-gated stages: PE tree 95 LUTs + 5 SRL16E -> 93 LUTs, row/column trees "
    "71 + 5 -> 71; flattened array 10,864 + 403 SRL16E -> 10,743 + 3, FFs 15,732 -> 13,524",
    "row/column enables on the last count-delay stage's flip-flop reset instead of a multiplexer in front "
    "of the P and Q accumulators (commit 77dd7d2): -110 LUTs (hierarchical), and the drain's row-index "
    "chain valid-gated (a83c9ee): the last 3 SRL16E",
]
#: Where the LUTs of 8x8x64 go now (hierarchical `synth_xilinx`, `stat` per submodule, hw/ at a83c9ee).
WHERE = ("Where the LUTs of 8x8x64 go (hierarchical synth_xilinx of the same hw/, `stat` per submodule; "
         "10,624 LUTs against 10,631 flattened): 64 PE xor-popcount trees 93 each (5,952); 64 PE Horner "
         "accumulators 23 each (1,472: one LUT per bit, the carry chain's propagate with the first/step "
         "multiplexer folded in); 16 row/column popcount trees 71 each (1,136) and their 16 accumulators (371); "
         "the drain 1,681 (the 16:1 (row, bank) select of H, 920, and of P, 115; the column-count bank select, "
         "184; the base and final subtractors, 194 + 192; the row term, 47; tile constants and control); the "
         "output FIFO 12 (+ 32 RAM32M). Per PE: tree 93, accumulator 23, row/column share 24, drain share 26.")
#: Said under the table: the rows' 'design' commits that hold the same MAC-array sources.
DESIGN_NOTE = ("a83c9ee, ea1f62d and 8ed2f10 hold the same MAC-array sources (hw/mac_array.py, hw/popcount.py, "
               "hw/schedule.py, hw/params.py; the commits between them changed hw/encoder and bench/ only).")
#: Said after the ECP5 Fmax: the critical path of that run (nextpnr's report, from the same run repeated with
#: hw.synth.synthesize(keep_dir=...): same Fmax).
FMAX_NOTE = ("Critical path at 4x4x64 (nextpnr's report): ctrl6.first, the Horner restart bit that fans out to every "
             "accumulator bit, through one LUT4 into a PE accumulator's carry chain: 7.31 ns, 5.24 ns of it routing. "
             "The accumulators and their control are unchanged by the steps above; replicating the restart/double/"
             "valid bits per PE row would cut that fanout (not tried).")
#: ECP5 Fmax and ASIC figures of the previous design (docs/RESULTS.md of 2026-11-29T08:53).
PREVIOUS_FMAX = {"4x4x64": 142.6}
PREVIOUS_ASIC = {"8x8x64": (537298, 18400, 0.190)}
HEADER = ["config", "design", "lane-bits", "PE acc bits", "row counts", "xilinx LUTs", "SRL16E", "LUT6 / lane-bit", "goal <= 1.5",
          "previous: LUT6 / lane-bit", "before redesign: LUT6 / lane-bit", "FFs", "previous FFs", "RAM32M", "CARRY4", "MUXF7+F8", "tree alone LUT6 / lane-bit",
          "other LUTs per PE", "ECP5 LUT4", "ECP5 CCU2C", "ECP5 FFs", "yosys xilinx s"]


def parse_config(text: str) -> tuple[int, int, int, int]:
    m = re.fullmatch(r"(\d+)x(\d+)x(\d+)(?:a(\d+))?", text.lower())
    if m is None:
        raise argparse.ArgumentTypeError(f"array size must look like 8x8x64 or 8x8x64a1 (R x C x L [a act bits]), "
                                         f"not {text!r}")
    r, c, lanes, bits = m.groups()
    return int(r), int(c), int(lanes), int(bits or 8)


def name(config) -> str:
    r, c, lanes, bits = config
    return f"{r}x{c}x{lanes}" + ("" if bits == 8 else f"a{bits}")


def params(config) -> HwParams:
    r, c, lanes, bits = config
    return HwParams(rows=r, cols=c, lanes=lanes, max_act_bits=bits).validate()


def machine() -> str:
    """CPU, cores, Python, amaranth and Yosys versions of this machine."""
    import amaranth
    yosys = subprocess.run([*find_yosys().argv, "-V"], capture_output=True, text=True).stdout.strip()
    return results_md.machine(f"amaranth {amaranth.__version__}", yosys)


def popcount_tree(lanes: int) -> dict:
    """Xilinx counts of the PE's xor-popcount tree alone, as the MAC array instantiates it."""
    from amaranth.back import verilog

    from bitaccel.hw.mac_array import TREE_REGISTER_EVERY
    from bitaccel.hw.popcount import XNOR_GROUP, XorPopcount

    with tempfile.TemporaryDirectory(prefix="bitaccel-bench-") as tmp:
        path = os.path.join(tmp, "xor_popcount.v")
        tree = XorPopcount(lanes, group=XNOR_GROUP, register_every=TREE_REGISTER_EVERY)
        with open(path, "w") as f:
            f.write(verilog.convert(tree, name="xor_popcount", emit_src=False))
        return synthesize_verilog(path, "xor_popcount", "xilinx")


def design() -> str:
    """The commit the measured hw/ comes from (short hash, '+modified' when hw/ differs from it)."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "hw"], cwd=ROOT).returncode != 0
    return (head.stdout.strip() or "unknown") + ("+modified" if dirty else "")


def lut_sites(x: dict) -> int:
    """LUT6 sites of a Xilinx result: LUT1..LUT6 plus the shift-register LUTs."""
    return x["luts"] + sum(x["cells"].get(c, 0) for c in SRL_CELLS)


def bench(config, ecp5: bool, pnr: bool, asic: bool, trees: dict) -> dict:
    r, c, lanes, _ = config
    p = params(config)
    x = synthesize(p, "mac_array", "xilinx")
    if lanes not in trees:
        trees[lanes] = popcount_tree(lanes)
    row = {"config": config, "design": design(), "lane_bits": r * c * lanes, "pe_width": p.pe_acc_width, "row_counts": p.array_row_counts,
           "xilinx": x, "tree_per_bit": lut_sites(trees[lanes]) / lanes,
           "other_per_pe": (lut_sites(x) - r * c * lut_sites(trees[lanes])) / (r * c)}
    print(f"{name(config)}: xilinx {lut_sites(x)} LUT sites ({lut_sites(x) / row['lane_bits']:.2f}/lane-bit), "
          f"{x['ffs']} FFs, "
          f"{x['carry']} CARRY4, {x['synth_s']:.0f} s", file=sys.stderr, flush=True)
    if asic:
        row["asic"] = asic_estimate(p, "mac_array")
        a = row["asic"]
        print(f"{name(config)}: asic {a['logic_transistors']} logic transistors, {a['ffs']} FFs, "
              f"{a['area_um2']} um2", file=sys.stderr, flush=True)
    if ecp5 or pnr:
        e = synthesize(p, "mac_array", "ecp5", pnr=pnr)
        row["ecp5"] = e
        print(f"{name(config)}: ecp5 {e['luts']} LUT4 + {e['carry']} CCU2C, {e['ffs']} FFs"
              + (f", Fmax {e['pnr']['fmax_mhz']} MHz on {e['pnr']['device']}" if pnr else ""),
              file=sys.stderr, flush=True)
    return row


def table_rows(results: list[dict]) -> list[list[str]]:
    rows = []
    for row in results:
        x, e = row["xilinx"], row.get("ecp5")
        per_bit = lut_sites(x) / row["lane_bits"]
        before = BEFORE.get(name(row["config"]))
        prev = None if row.get("design", "-").startswith(PREVIOUS_DESIGNS) else PREVIOUS.get(name(row["config"]))
        rows.append([name(row["config"]), row.get("design", "-"), str(row["lane_bits"]), str(row["pe_width"]),
                     "yes" if row["row_counts"] else "no", str(x["luts"]),
                     str(sum(x["cells"].get(c, 0) for c in SRL_CELLS)), f"{per_bit:.2f}",
                     "yes" if per_bit <= GOAL_LUT6_PER_LANE_BIT else "no",
                     f"{(prev[0] + prev[1]) / row['lane_bits']:.2f}" if prev else "-",
                     f"{before[0] / row['lane_bits']:.2f}" if before else "-", str(x["ffs"]),
                     str(prev[2]) if prev else "-", str(x["cells"].get("RAM32M", 0)), str(x["carry"]),
                     str(x["cells"].get("MUXF7", 0) + x["cells"].get("MUXF8", 0)), f"{row['tree_per_bit']:.2f}",
                     f"{row['other_per_pe']:.0f}", str(e["luts"]) if e else "-", str(e["carry"]) if e else "-",
                     str(e["ffs"]) if e else "-", f"{x['synth_s']:.0f}"])
    return rows


def markdown_table(results: list[dict]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in table_rows(results)])


def section(results: list[dict], command: str) -> str:
    lines = [
        SECTION, "",
        f"Command: `{command}`  ",
        f"Date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}  ",
        f"Machine: {machine()}", "",
        "Unit `mac_array` (hw/mac_array.py: PEs that only count and accumulate, R row and C column counts, the "
        "R-beat drain; 'design' = the commit of hw/ that was measured) generated with the default limits (max_hidden 768, max_ffn 3072, max_seq 128, max_head_dim "
        "64) and max_act_bits 8 unless the config ends in `a<bits>`; 'PE acc bits' = HwParams.pe_acc_width (23 for "
        "8-bit x 8-bit planes at 128 keys, 12 for W1A1 up to K = 3072). Xilinx: `synth_xilinx -flatten`, then "
        "`opt_merge -share_all; opt_clean`; 'xilinx LUTs' = LUT1..LUT6 of the whole unit, drain included; 'SRL16E' = "
        "shift-register LUTs Yosys infers from the register chains of the popcount trees' pass-through bits and the "
        "control delay line (each takes a LUT6 site, so they are counted in LUT6 / lane-bit = (LUTs + SRL16E) / "
        f"(R*C*L)); MUXF7/F8 and CARRY4 are not LUTs; goal <= {GOAL_LUT6_PER_LANE_BIT} at 8x8x64. "
        "'previous' = this array before the drain and tree-register savings listed below (hw/ at 8d5693d, "
        "docs/RESULTS.md of 2026-11-29T08:53, same flow: (LUTs + SRL16E) / lane-bits); 'before redesign' = the "
        "array before the count-and-accumulate redesign (docs/RESULTS.md at commit 7297498, same flow: 16,250 LUTs "
        "at 8x8x64, without a drain). 'RAM32M' = LUT-RAM cells of the output FIFO (each takes 4 LUT sites, "
        "counted in neither column: +0.03 / lane-bit at 8x8x64, the same FIFO before). 'tree alone': the PE's `XorPopcount(L)` synthesized by itself, registered as the array builds it (every "
        "`TREE_REGISTER_EVERY` = 2 levels); 'other LUTs per PE' = "
        "(array LUTs - R*C * tree LUTs) / (R*C): the accumulator, the drain registers' share of the row "
        "multiplexers and drain adders, and each PE's share of the row/column counts. ECP5: `synth_ecp5` and the "
        "same merge, LUT4 (CCU2C carry cells separate; each occupies two LUT4 sites).", "",
        markdown_table(results), "", DESIGN_NOTE, "",
        "What each step bought (8x8x64):", ""] + [f"{i}. {step}" for i, step in enumerate(STEPS, 1)] + ["", WHERE, ""]
    for row in results:
        if name(row["config"]) == "8x8x64":
            per_bit = lut_sites(row["xilinx"]) / row["lane_bits"]
            excess = lut_sites(row["xilinx"]) - GOAL_LUT6_PER_LANE_BIT * row["lane_bits"]
            lines += [f"Goal <= {GOAL_LUT6_PER_LANE_BIT} LUT6 / lane-bit at 8x8x64: "
                      + ("met." if excess <= 0 else f"**missed by {per_bit - GOAL_LUT6_PER_LANE_BIT:.2f}** "
                         f"({excess:,.0f} LUT sites over {GOAL_LUT6_PER_LANE_BIT * row['lane_bits']:,.0f}); the PE "
                         "tree and accumulator alone take 116 of the 96 LUTs per PE the goal allows."), ""]
    for row in results:
        q = row.get("ecp5", {}).get("pnr")
        if q:
            met = "met" if q["fmax_mhz"] >= GOAL_FMAX_MHZ else f"missed by {GOAL_FMAX_MHZ - q['fmax_mhz']:.1f} MHz"
            lines += [f"ECP5 place and route of {name(row['config'])}: nextpnr-ecp5 --{q['device']} "
                      f"--package {q['package']} --out-of-context --freq {q['target_mhz']}, every port registered "
                      f"({q['harness_ffs']} harness FFs): **Fmax {q['fmax_mhz']:.1f} MHz** (goal >= {GOAL_FMAX_MHZ}: "
                      f"{met}; previous design: {PREVIOUS_FMAX.get(name(row['config']), '-')} MHz; before the "
                      f"redesign: 144.1 MHz at 4x4x64) ({q['pnr_s']:.0f} s).", ""]
            if name(row["config"]) == "4x4x64" and not row.get("design", "-").startswith(PREVIOUS_DESIGNS):
                lines += [FMAX_NOTE, ""]
    for row in results:
        a = row.get("asic")
        if a:
            lines += [f"ASIC estimate of {name(row['config'])}: `{a['command']}`: **{a['logic_transistors']:,} logic "
                      f"transistors** ({a['gate_equivalents']:,} NAND2 equivalents at 4 transistors each, "
                      f"{a['gate_equivalents'] / row['lane_bits']:.1f} per lane-bit) and {a['ffs']:,} flip-flops; at "
                      f"45 nm (NanGate FreePDK45 Open Cell Library: NAND2_X1 {NANGATE45_UM2['NAND2_X1']} um2, DFF_X1 "
                      f"{NANGATE45_UM2['DFF_X1']} um2) about **{a['area_um2'] / 1e6:.3f} mm2** of cells (a lower bound: "
                      "no enable multiplexers in the flip-flop area, no wiring or placement density)."
                      + (" Previous design: {:,} logic transistors, {:,} flip-flops, {:.3f} mm2.".format(
                          *PREVIOUS_ASIC[name(row["config"])]) if name(row["config"]) in PREVIOUS_ASIC
                         and not row.get("design", "-").startswith(PREVIOUS_DESIGNS) else ""), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", nargs="*", type=parse_config, default=[parse_config(c) for c in CONFIGS],
                    metavar="RxCxL[aB]", help=f"array sizes (default {' '.join(CONFIGS)})")
    ap.add_argument("--no-ecp5", action="store_true", help="skip the ECP5 LUT4 counts")
    ap.add_argument("--pnr", nargs="*", type=parse_config, metavar="RxCxL[aB]",
                    help="configurations to place and route on ECP5 (default: the first)")
    ap.add_argument("--asic", nargs="*", type=parse_config, metavar="RxCxL[aB]",
                    help="configurations to estimate as ASIC (default: the first)")
    ap.add_argument("--write-results", type=Path, metavar="MD", help="create/replace this bench's section in MD")
    ap.add_argument("--save", type=Path, metavar="JSON", help="also save the measured rows (for --load)")
    ap.add_argument("--load", type=Path, nargs="+", default=[], metavar="JSON",
                    help="rows saved by earlier runs (--save), placed first in the table; with --configs none, "
                         "nothing new is synthesized")
    args = ap.parse_args(argv)

    pnr = args.pnr if args.pnr is not None else args.configs[:1]
    asic = args.asic if args.asic is not None else args.configs[:1]
    configs = list(dict.fromkeys(args.configs + pnr + asic))
    results, commands = [], []
    for path in args.load:
        saved = json.loads(path.read_text())
        results += [dict(r, config=tuple(r["config"])) for r in saved["rows"]]
        commands.append(saved["command"])
    trees = {}
    results += [bench(c, not args.no_ecp5, c in pnr, c in asic, trees) for c in configs]
    command = results_md.command_line("bench/hw_resources.py", argv)
    if args.save:
        args.save.write_text(json.dumps({"command": command, "rows": results[len(results) - len(configs):]},
                                        default=str))
    print(markdown_table(results))
    if args.write_results:
        results_md.write_section(args.write_results, SECTION, section(results, "`; `".join(commands + [command])))
        print(f"wrote {args.write_results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
