"""Simulation speed: Icarus vs Verilator on the same design and workload, in one run.

What is measured, for the MAC array of one configuration (default 4x4x64, W1A1):

  * build s: generating the Verilog and compiling it with each simulator, in a fresh
    build folder (Verilator compiles C++; Icarus compiles to its own byte code);
  * cycles/s: simulated clock cycles per wall-clock second of the cocotb run, with the
    testbench driving one beat per cycle and checking every result against golden/.
    Each simulator runs a small and a large matmul; cycles/s = (cycles_large - cycles_small)
    / (run_large - run_small), which removes the fixed start-up cost of a cocotb run
    (Python, simulator launch). Runs alternate between the simulators (I, V, I, V) so
    machine noise hits both.
  * ratio: Verilator cycles/s over Icarus cycles/s.
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

from bitaccel.hw.params import HwParams  # noqa: E402
from bitaccel.sim.measure import run_unit  # noqa: E402

import results_md  # noqa: E402  (bench/, beside this script)

SECTION = "## Simulator speed (bench/sim_speed.py)"
SIMS = ("icarus", "verilator")


def parse_array(text: str) -> tuple[int, int, int]:
    try:
        r, c, lanes = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"array must look like 4x4x64 (R x C x L), not {text!r}") from None
    return r, c, lanes


def workload(m: int, k: int) -> dict:
    return {"m": m, "n": m, "k": k, "a_bits": 1, "a_signed": 1, "b_bits": 1, "b_signed": 1}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--array", type=parse_array, default=(4, 4, 64), help="R x C x L (default 4x4x64)")
    ap.add_argument("--small", type=int, nargs=2, default=(16, 256), metavar=("M", "K"), help="small matmul M=N, K")
    ap.add_argument("--large", type=int, nargs=2, default=(128, 1024), metavar=("M", "K"), help="large matmul M=N, K")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write-results", type=Path, metavar="RESULTS_MD")
    args = ap.parse_args(argv)
    r, c, lanes = args.array
    params = HwParams(rows=r, cols=c, lanes=lanes, max_seq=128, max_hidden=1024, max_ffn=1024, max_act_bits=1).validate()

    runs: dict[tuple[str, str], dict] = {}
    with tempfile.TemporaryDirectory(prefix="bitaccel-simspeed-") as work:
        for size, (m, k) in (("small", args.small), ("large", args.large)):
            for sim in SIMS:
                res = run_unit("mac_array", sim, params, workload(m, k), seed=args.seed, work_dir=work)
                if not (res["passed"] and res["bit_exact"]):
                    raise SystemExit(f"{sim} {size}: failed: {res.get('first_mismatch') or res.get('tests')} "
                                     f"(log: {res.get('sim_log')})")
                runs[sim, size] = res
                print(f"{sim:9s} {size}: {res['cycles']} cycles in {res['run_s']:.2f} s"
                      + (f" (built in {res['build']['build_s']:.1f} s)" if res["build"]["rebuilt"] else ""),
                      file=sys.stderr)

    rows = []
    for sim in SIMS:
        small, large = runs[sim, "small"], runs[sim, "large"]
        dc, dt = large["cycles"] - small["cycles"], large["run_s"] - small["run_s"]
        build = small["build"]["generate_s"] + small["build"]["build_s"]
        rows.append({"sim": sim, "tool": small["build"]["tool"], "build_s": build, "cycles_small": small["cycles"],
                     "cycles_large": large["cycles"], "run_small": small["run_s"], "run_large": large["run_s"],
                     "cps": dc / dt if dt > 0 else float("nan")})
    ratio = rows[1]["cps"] / rows[0]["cps"]
    header = ["simulator", "build s (generate + compile)", "cycles small / large", "run s small / large",
              "simulated cycles/s", "bit-exact"]
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        table.append(f"| {row['sim']} ({row['tool']}) | {row['build_s']:.1f} | {row['cycles_small']} / {row['cycles_large']} | "
                     f"{row['run_small']:.2f} / {row['run_large']:.2f} | {row['cps']:.0f} | yes |")
    text = "\n".join([
        SECTION, "",
        f"Command: `{results_md.command_line('bench/sim_speed.py', argv)}`  ",
        f"Date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}  ",
        f"Machine: {results_md.machine()}", "",
        f"MAC array {r}x{c}x{lanes} (W1A1), cocotb 2.x testbench driving one beat per cycle, every result "
        f"checked against golden/. Small matmul M=N={args.small[0]}, K={args.small[1]}; large M=N={args.large[0]}, "
        f"K={args.large[1]}. cycles/s = (cycles_large - cycles_small) / (run_large - run_small): the fixed "
        "start-up of a cocotb run cancels. Build: fresh build folder for each simulator.", "",
        *table, "",
        f"**Verilator / Icarus simulated cycles per second: {ratio:.2f}x** (same design, workload and testbench, "
        "one run).", ""])
    print(text)
    if args.write_results:
        results_md.write_section(args.write_results, SECTION, text)
        print(f"wrote {args.write_results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
