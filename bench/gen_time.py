"""Wall time to generate the Verilog of every unit for a large array (default 16 x 16 x 64).

One run of `hw.generate.generate(params, tmp_dir)` with the default limits otherwise, timed
with time.perf_counter as a whole (parameter check, every unit, description, file writes);
per unit, the times `generate` records: construction + `amaranth.back.verilog.convert`
("convert s"), and the second elaboration that lists the unit's memories ("inspect s").
The goal is < 60 s in total.
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

from bitaccel.hw.generate import generate  # noqa: E402
from bitaccel.hw.params import HwParams  # noqa: E402

import results_md  # noqa: E402
from hw_resources import machine, parse_config  # noqa: E402

SECTION = "## Verilog generation time (bench/gen_time.py)"
GOAL_S = 60.0
HEADER = ["unit", "convert s", "inspect s", "Verilog KiB", "memories", "memory bits", "latency"]


def markdown_table(d: dict) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for name, u in d["units"].items():
        lines.append(f"| {name} | {u['generation_s']:.2f} | {u['inspection_s']:.2f} | {u['verilog_bytes'] / 1024:.0f} "
                     f"| {len(u['memories'])} | {u['memory_bits']} | {u['latency']} |")
    return "\n".join(lines)


def section(config, d: dict, wall: float, command: str) -> str:
    r, c, lanes = config
    return "\n".join([
        SECTION, "",
        f"Command: `{command}`  ",
        f"Date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}  ",
        f"Machine: {machine()}", "",
        f"Array {r}x{c}x{lanes} ({d['peak_macs_per_cycle']} binary MACs/cycle), default limits otherwise; "
        f"units: {', '.join(d['units'])}. One run, time.perf_counter.", "",
        f"**Total wall time {wall:.1f} s** (goal < {GOAL_S:.0f} s: {'met' if wall < GOAL_S else 'NOT met'}), "
        f"{sum(u['verilog_bytes'] for u in d['units'].values()) / 2**20:.1f} MiB of Verilog, "
        f"{d['total_memory_bits']} on-chip memory bits.", "",
        markdown_table(d), ""])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=parse_config, default=(16, 16, 64), metavar="RxCxL",
                    help="array size (default 16x16x64)")
    ap.add_argument("--write-results", type=Path, metavar="MD", help="create/replace this bench's section in MD")
    args = ap.parse_args(argv)

    r, c, lanes = args.config
    params = HwParams(rows=r, cols=c, lanes=lanes)
    with tempfile.TemporaryDirectory(prefix="bitaccel-gen-") as out:
        t0 = time.perf_counter()
        d = generate(params, out)
        wall = time.perf_counter() - t0
    print(f"{r}x{c}x{lanes}: {wall:.1f} s total")
    print(markdown_table(d))
    if args.write_results:
        results_md.write_section(args.write_results, SECTION, section(args.config, d, wall, results_md.command_line("bench/gen_time.py", argv)))
        print(f"wrote {args.write_results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
