"""`bitaccel simulate` and `bitaccel report`: the sub-commands of the simulation and modeling side.

`add_commands(subparsers)` registers both on the `bitaccel` parser (bitaccel/cli.py calls
it once). The work is done by plain functions, `simulate(...)` and `report(...)`, which
return JSON-ready dicts; the `cmd_*` functions only parse, call and print. Invalid
arguments raise ValueError with the reason (the CLI prints it and exits 2).
"""
from __future__ import annotations

import json
import math
import os
import sys

__all__ = ["add_commands", "simulate", "report", "resolve_model", "format_report", "plot_report", "DEFAULT_ARRAYS"]

DEFAULT_ARRAYS = "8x8x64,16x16x64"


# ----------------------------------------------------------------------------- model resolution
def resolve_model(model: str, act_bits: int = 1) -> dict:
    """A preset name (golden.config.PRESETS) or an artifact path -> {name, config, quant, numerics}."""
    from bitaccel.golden.config import PRESETS
    from bitaccel.golden.formats import ACT_BITS, NumericFormat

    if act_bits not in ACT_BITS:
        raise ValueError(f"--act-bits must be one of {', '.join(map(str, ACT_BITS))}, not {act_bits!r}")
    if model in PRESETS:
        from bitaccel.golden.config import uniform_quant
        cfg = PRESETS[model]
        return {"name": model, "source": "preset", "config": cfg, "quant": uniform_quant(cfg, act_bits),
                "numerics": NumericFormat()}
    if not os.path.isfile(model):
        raise ValueError(f"--model {model!r} is neither a preset ({', '.join(PRESETS)}) nor an artifact file")
    from bitaccel.golden.artifact import load_artifact
    art = load_artifact(model)
    return {"name": os.path.basename(model), "source": "artifact", "config": art.config, "quant": dict(art.quant),
            "numerics": art.numerics, "artifact": art}


def _quant_label(quant: dict) -> str:
    bits = sorted(set(quant.values()))
    return f"W1A{bits[0]}" if len(bits) == 1 else "W1A{" + ",".join(map(str, bits)) + "} (mixed)"


# ----------------------------------------------------------------------------- report
#: `report --seq` default: this, or the model's max_position when that is smaller.
DEFAULT_SEQ = 128


def _cycles(x: float) -> int:
    """A real-valued cycle bound (ideal array cycles) -> whole cycles, up."""
    return int(math.ceil(round(x, 6)))


def design_notes(params, seq: int) -> list[str]:
    """Where the modeled design exceeds the default hardware limits (hw.params.HwParams), one sentence each."""
    from bitaccel.hw.params import HwParams

    d = HwParams()
    notes = []
    for name in ("max_seq", "max_hidden", "max_ffn", "max_head_dim"):
        if getattr(params, name) > getattr(d, name):
            notes.append(f"the modeled design is grown to {name}={getattr(params, name)}, past the default "
                         f"limit {getattr(d, name)} (generate it with --{name.replace('_', '-')} "
                         f"{getattr(params, name)})")
    return notes


def report(model: str = "minilm", arrays: str = DEFAULT_ARRAYS, seq: int | None = None, clock_mhz: float = 200.0,
           act_bits: int = 1, sram_kib: float | None = None, synth: bool = False, synth_target: str = "xilinx",
           synth_units: str = "mac_array") -> dict:
    """Sweep over array sizes: cycles, latency, utilization, energy and (optionally) FPGA resources per inference.

    Nothing here is measured: cycles are modeled by `sim.program_cycles` on a program compiled for each
    array (the schedule the sequencer runs; equal to the RTL's measured cycles in
    tests/test_sim_accelerator.py); energy: the activity counters the same model predicts (array beats,
    unit elements, AXI beats; equal to the RTL's counters in those tests) priced like a measured run
    (`sim.energy.activity_energy`), or with ``--sram-kib`` a what-if projection for a design with a weight
    SRAM (`sim.energy.inference_energy`, not the generated design); ``ideal_cycles`` is the MAC array's
    peak bound on the program's products (hw.schedule.ideal_cycles).
    """
    from bitaccel.hw.params import HwParams
    from bitaccel.hw.schedule import ideal_cycles
    from bitaccel.hw.spec.isa import Op

    from .cycles import params_for
    from .energy import activity_energy, design_memory_bits, energy_table_rows, inference_energy
    from .program_cycles import ASSUMPTIONS, model_program, program_cycles
    from .workload import parse_arrays

    sizes = parse_arrays(arrays)
    if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool) or seq < 1):
        raise ValueError(f"--seq must be a positive integer, not {seq!r}")
    if not isinstance(clock_mhz, (int, float)) or isinstance(clock_mhz, bool) or not 0 < clock_mhz < math.inf:
        raise ValueError(f"--clock-mhz must be a positive number, not {clock_mhz!r}")
    if sram_kib is not None and (isinstance(sram_kib, bool) or not 0 <= sram_kib < math.inf):
        raise ValueError(f"--sram-kib must be a finite number >= 0, not {sram_kib!r}")
    units = [u for u in synth_units.replace(" ", "").split(",") if u]
    if synth:
        from bitaccel.hw.spec.units import resolve
        from bitaccel.hw.synth import TARGETS
        if synth_target not in TARGETS:
            raise ValueError(f"--synth-target must be one of {', '.join(TARGETS)}, not {synth_target!r}")
        try:
            resolve(units)
        except ValueError as e:
            raise ValueError(f"--synth-units: {e}") from None
    m = resolve_model(model, act_bits)
    cfg, quant, fmt = m["config"], m["quant"], m["numerics"]
    if seq is None:
        seq = min(DEFAULT_SEQ, cfg.max_position)
    if seq > cfg.max_position:
        raise ValueError(f"--seq {seq} exceeds the model's max_position {cfg.max_position}")
    art = m.get("artifact")            # an artifact file is compiled itself; a preset: one random artifact below
    lut = None if art is None else max([len(art[f"layers.{i}.softmax.exp_lut"]) for i in range(cfg.layers)]
                                       + [HwParams().max_exp_lut])
    # validate every size before any (slow) work
    params = {s: params_for(cfg, seq, *s, quant, fmt, max_exp_lut=lut) for s in sizes}
    notes = design_notes(params[sizes[0]], seq)
    if art is None:
        from bitaccel.golden.random_artifact import random_artifact
        art = random_artifact(cfg, seed=0, numerics=fmt, quant=dict(quant))
    rows = []
    for size in sizes:
        p = params[size]
        prog = model_program(art, seq, p)
        cyc = program_cycles(prog)
        cycles = cyc["cycles"]
        ideal = sum(ideal_cycles(i["m"], i["n"], i["k"], i["a_bits"], i["b_bits"], p.rows, p.cols, p.lanes)
                    for i in prog.instructions if i.op == Op.MATMUL)
        if sram_kib is None:           # the generated design: the program's modeled activity
            en = activity_energy(p, {"busy": cyc["busy"], "beats": cyc["beats"]},
                                 round(ideal * p.rows * p.cols * p.lanes), cycles=cyc)
        else:                          # what-if: a design with a weight SRAM of sram_kib
            en = inference_energy(cfg, seq, *size, quant, sram_kib, fmt, cycles=cyc)
        latency_s = cycles / (clock_mhz * 1e6)
        row = {
            "array": f"{p.rows}x{p.cols}x{p.lanes}", "rows": p.rows, "cols": p.cols, "lanes": p.lanes,
            "peak_macs_per_cycle": p.peak_macs_per_cycle,
            "cycles": cycles, "cycles_source": "modeled (sim.program_cycles)",
            "ideal_cycles": _cycles(ideal), "utilization": ideal / cycles,
            "latency_s": latency_s, "latency_ms": latency_s * 1e3, "inferences_per_s": 1.0 / latency_s,
            "binary_macs": en["binary_macs"], "instructions": len(cyc["instructions"]),
            "energy_pj": en["energy_pj"], "energy_uj": en["energy_uj"],
            "energy_breakdown_pj": en["breakdown_pj"],
            "compute_pj": en["compute_pj"], "sram_pj": en["sram_pj"], "dram_pj": en["dram_pj"],
            "binary_macs_per_joule": en["binary_macs_per_joule"],
            "average_power_w": en["energy_pj"] * 1e-12 / latency_s,
            "memory": en["memory"], "counts": en["counts"],
            # per opcode: the cycles of its instructions (fetch and dispatch included), share of the total
            "cycles_by_kind": {op: {"cycles": v, "share": v / cycles} for op, v in cyc["by_op"].items()},
            "unit_busy_cycles": dict(cyc["busy"]),
            "design_memory_bits": design_memory_bits(p),
            "resources": {"status": "not run (pass --synth)"},
        }
        if synth:
            row["resources"] = _synth(p, units, synth_target)
        rows.append(row)
    return {
        "model": m["name"], "model_source": m["source"], "config": cfg.to_dict(), "quant": _quant_label(quant),
        "seq": seq, "clock_mhz": clock_mhz, "notes": notes,
        "sram_kib": sram_kib, "sram_source": "generated design (no weight buffer: weights streamed from DRAM)"
        if sram_kib is None else "--sram-kib",
        "arrays": rows,
        "assumptions": list(ASSUMPTIONS),
        "energy_table": energy_table_rows(),
    }


def _synth(params, units: list[str], target: str) -> dict:
    from bitaccel.hw.synth import synthesize

    out = {"status": "run", "target": target, "units": {}}
    for unit in units:
        try:
            r = synthesize(params, unit=unit, target=target)
            out["units"][unit] = {k: r[k] for k in ("luts", "carry", "ffs", "bram", "dsp", "synth_s", "yosys")}
        except (OSError, ValueError) as e:   # hw.toolchain.ToolError is an OSError
            out["units"][unit] = {"error": str(e).splitlines()[0]}
            out["status"] = "failed"
    ok = [u for u in out["units"].values() if "error" not in u]
    for key in ("luts", "ffs", "bram", "dsp"):
        out[key] = sum(u[key] for u in ok) if ok else None
    return out


def _si(x: float, unit: str) -> str:
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.2f} {prefix}{unit}"
    return f"{x:.2f} {unit}"


def format_report(r: dict) -> str:
    """The report as text: a sweep table, then per-array cycle and energy breakdowns."""
    c = r["config"]
    sram = ("parameter SRAM: generated design (no weight buffer; weights streamed from DRAM)" if r["sram_kib"] is None
            else f"parameter SRAM: {r['sram_kib']:g} KiB")
    lines = [f"model {r['model']} ({c['layers']} layers, hidden {c['hidden']}, {c['heads']} heads, ffn {c['ffn']}), "
             f"{r['quant']}, seq {r['seq']}, clock {r['clock_mhz']:g} MHz, {sram}",
             "",
             f"{'array':>10} {'MAC/cyc':>8} {'cycles':>11} {'latency':>10} {'util':>6} {'energy':>11} "
             f"{'compute':>9} {'SRAM':>9} {'DRAM':>10} {'bin.MAC/J':>11} {'power':>8}  resources"]
    for a in r["arrays"]:
        res = a["resources"]
        if res["status"] == "not run (pass --synth)":
            rtext = "not run (--synth)"
        elif res.get("luts") is None:
            rtext = "synthesis failed: " + "; ".join(u.get("error", "") for u in res["units"].values())[:60]
        else:
            rtext = f"{res['luts']} LUT {res['ffs']} FF {res['bram']} BRAM ({res['target']}: {','.join(res['units'])})"
            if res["status"] == "failed":
                rtext += " (some units failed)"
        lines.append(f"{a['array']:>10} {a['peak_macs_per_cycle']:>8} {a['cycles']:>11.0f} "
                     f"{a['latency_ms']:>7.3f} ms {a['utilization']:>6.1%} {a['energy_uj']:>8.1f} uJ "
                     f"{a['compute_pj'] * 1e-6:>6.1f} uJ {a['sram_pj'] * 1e-6:>6.1f} uJ {a['dram_pj'] * 1e-6:>7.1f} uJ "
                     f"{_si(a['binary_macs_per_joule'], ''):>11} {a['average_power_w']:>6.2f} W  {rtext}")
    kinds = list(r["arrays"][0]["cycles_by_kind"]) if r["arrays"] else []
    lines += ["", "modeled cycles by instruction (share of the inference):"]
    lines.append(f"{'opcode':>12} " + " ".join(f"{a['array']:>18}" for a in r["arrays"]))
    for k in kinds:
        cells = [f"{a['cycles_by_kind'][k]['cycles']:>11} {a['cycles_by_kind'][k]['share']:>6.1%}" for a in r["arrays"]]
        lines.append(f"{k:>12} " + " ".join(f"{x:>18}" for x in cells))
    cats = list(r["arrays"][0]["energy_breakdown_pj"]) if r["arrays"] else []
    lines += ["", "energy by category (uJ per inference):"]
    lines.append(f"{'category':>17} " + " ".join(f"{a['array']:>12}" for a in r["arrays"]))
    for k in cats:
        lines.append(f"{k:>17} " + " ".join(f"{a['energy_breakdown_pj'][k] * 1e-6:>12.2f}" for a in r["arrays"]))
    mem = r["arrays"][0]["memory"] if r["arrays"] else None
    if mem and "axi_read_bytes" in mem:
        lines += ["", f"external memory per inference: {mem['axi_read_bytes'] / 1024:.0f} KiB read (weights, "
                      f"constants, tables, embedding rows, program), {mem['axi_write_bytes'] / 1024:.1f} KiB written "
                      "(no weight buffer on chip: every weight tile streams in once per matmul)"]
    elif mem:
        lines += ["", f"parameters: {mem['weight_bits'] / 8 / 1024:.0f} KiB of binary weights + "
                      f"{mem['const_bits'] / 8 / 1024:.0f} KiB of per-site constants; regime '{mem['regime']}' "
                      f"(resident / fetched once / streamed per row block: docs/sim.md)"]
    lines += ["", "all figures modeled, none measured: cycles by sim.program_cycles on the compiled program (the "
                  "sequencer's schedule; equal to the RTL's measured cycles on the tiny encoder runs), energy from "
                  "the activity counters it predicts, priced like a measured run (sim.energy.activity_energy; "
                  "with --sram-kib: a what-if projection, sim.energy.inference_energy); assumptions: docs/sim.md "
                  "or --json"]
    return "\n".join(lines)


def plot_report(r: dict, path: str) -> str:
    """Bar charts (Agg backend) comparing the arrays: latency, energy by kind of cost, utilization."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [a["array"] for a in r["arrays"]]
    x = range(len(names))
    fig, axes = plt.subplots(1, 3, figsize=(4 + 2.2 * len(names), 4.2))
    ax = axes[0]
    ax.bar(x, [a["latency_ms"] for a in r["arrays"]], color="tab:blue")
    ax.set_title(f"latency per inference @ {r['clock_mhz']:g} MHz")
    ax.set_ylabel("ms")
    ax = axes[1]
    bottom = [0.0] * len(names)
    for key, label, color in (("compute_pj", "compute", "tab:green"), ("sram_pj", "SRAM", "tab:orange"),
                              ("dram_pj", "DRAM", "tab:red")):
        vals = [a[key] * 1e-6 for a in r["arrays"]]
        ax.bar(x, vals, bottom=bottom, label=label, color=color)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_title("energy per inference")
    ax.set_ylabel("uJ")
    ax.legend(fontsize=8)
    ax = axes[2]
    ax.bar(x, [100 * a["utilization"] for a in r["arrays"]], color="tab:purple")
    ax.set_title("MAC array utilization")
    ax.set_ylabel("% of peak")
    for ax in axes:
        ax.set_xticks(list(x))
        ax.set_xticklabels(names, rotation=20)
    fig.suptitle(f"{r['model']} {r['quant']}, seq {r['seq']} (modeled: compiled program, sim.program_cycles)",
                 fontsize=10)
    fig.tight_layout()
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- simulate
def simulate(unit: str, sim: str = "icarus", array: str = "2x2x8", workload=None, seed: int = 0,
             work_dir: str = "sim_build", progress=None) -> dict:
    """Run one unit workload in cocotb (sim.measure.run_unit), compare with the cycle model, add its energy.

    `progress`: optional callable(str) that hears about the build and a long run (sim.runner.run).
    """
    from bitaccel.hw.params import HwParams
    from bitaccel.hw.spec.units import UNITS, simulated_units

    from .cycles import CycleModel
    from .energy import unit_energy
    from .workload import parse_array, unit_workload

    if unit not in simulated_units():
        raise ValueError(f"--unit must be one of {', '.join(simulated_units())}, not {unit!r}")
    key = UNITS[unit].model_key            # the cycle / energy models' tag of this unit
    if sim not in ("icarus", "verilator"):
        raise ValueError(f"--sim must be icarus or verilator, not {sim!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"--seed must be a non-negative integer, not {seed!r}")
    rows, cols, lanes = parse_array(array)
    if isinstance(workload, str) and (os.path.isfile(workload) or workload.lower().endswith(".json")):
        workload = read_workload_file(workload)
    w = unit_workload(key, workload)
    d = HwParams()
    params = HwParams(rows=rows, cols=cols, lanes=lanes, max_seq=max(d.max_seq, w.get("seq_len", 1)),
                      max_hidden=max(d.max_hidden, w.get("hidden", 1)),
                      max_act_bits=max(d.max_act_bits, w.get("a_bits", 1), w.get("b_bits", 1))).validate()
    if key == "layernorm" and w["hidden"] % cols:
        raise ValueError(f"layernorm workload: hidden {w['hidden']} must be a multiple of cols={cols}")
    cm = CycleModel(params)
    model = cm.unit_cycles(key, w)             # validates the workload against the unit (ValueError)
    energy = unit_energy(cm, key, w)
    from .measure import run_unit

    try:
        measured = run_unit(unit, sim, params, w, seed, work_dir=work_dir, progress=progress)
    except RuntimeError as e:       # sim.runner's SimulatorUnavailable / SimulationError: one line, exit 2
        raise SimulationFailed(str(e)) from e
    if not isinstance(measured.get("cycles"), int):
        raise SimulationFailed(f"the {unit} bench measured no cycles (tests: "
                               f"{[t['message'] for t in measured.get('tests', []) if not t['passed']]}); "
                               f"see {measured.get('sim_log')}")
    cycles = measured["cycles"]
    return {
        "unit": unit, "sim": sim, "array": f"{rows}x{cols}x{lanes}", "seed": seed, "workload": w,
        "cycles": cycles, "bit_exact": bool(measured["bit_exact"]),
        "model_cycles": model["cycles"], "ratio": cycles / model["cycles"] if model["cycles"] else None,
        "model": model, "energy_pj": energy["energy_pj"], "energy_breakdown_pj": energy["breakdown_pj"],
        "binary_macs": energy["binary_macs"],
        "measure": {k: v for k, v in measured.items() if k not in ("cycles", "bit_exact")},
    }


def read_workload_file(path: str) -> dict:
    """A JSON workload file -> its object; ValueError naming the file for every problem."""
    try:
        with open(path) as f:
            w = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"--workload {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"--workload {path}: cannot read it ({e})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"--workload {path}: not JSON ({e}); give key=value,... or a JSON object file") from None
    if not isinstance(w, dict):
        raise ValueError(f"--workload {path}: expected a JSON object of workload keys, not a {type(w).__name__}")
    return w


class SimulationFailed(OSError):
    """The simulator is missing, or a build or run failed (the message says which; the CLI exits 2)."""


# ----------------------------------------------------------------------------- CLI
def cmd_report(args) -> int:
    if args.plot:
        from bitaccel.cli import check_output_file
        check_output_file(args.plot, "--plot")
    r = report(model=args.model, arrays=args.arrays, seq=args.seq, clock_mhz=args.clock_mhz, act_bits=args.act_bits,
               sram_kib=args.sram_kib, synth=args.synth, synth_target=args.synth_target, synth_units=args.synth_units)
    if args.plot:
        plot_report(r, args.plot)
    for note in r["notes"]:
        print(f"bitaccel report: note: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps(r))
    else:
        print(format_report(r))
        if args.plot:
            print(f"plot written to {args.plot}")
    return 0


def cmd_simulate(args) -> int:
    def progress(message: str) -> None:
        print(f"bitaccel simulate: {message}", file=sys.stderr, flush=True)

    r = simulate(args.unit, args.sim, args.array, args.workload, args.seed, args.work_dir, progress=progress)
    if args.json:
        print(json.dumps(r))
    else:
        print(f"{r['unit']} on {r['sim']}, array {r['array']}, seed {r['seed']}, workload "
              + ", ".join(f"{k}={v}" for k, v in r["workload"].items()))
        print(f"  bit-exact: {'yes' if r['bit_exact'] else 'NO'}")
        print(f"  cycles: measured {r['cycles']}, modeled {r['model_cycles']}, ratio {r['ratio']:.4f}")
        print(f"  energy of this workload: {r['energy_pj']:.1f} pJ"
              + (f" ({r['binary_macs']} binary MACs)" if r["binary_macs"] else ""))
    return 0 if r["bit_exact"] else 1


def add_commands(subparsers) -> None:
    """Register `simulate` and `report` on the `bitaccel` sub-command parsers."""
    from bitaccel.hw.spec.units import UNITS, simulated_units

    from .workload import UNIT_WORKLOAD_KEYS

    s = subparsers.add_parser("simulate", help="run one unit in cocotb, check it bit-exactly, compare cycles with the "
                                               "model, estimate its energy")
    s.add_argument("--unit", required=True, choices=simulated_units(), help="unit to simulate")
    s.add_argument("--sim", choices=["icarus", "verilator"], default="icarus")
    s.add_argument("--array", required=True, help="array size RxCxL, e.g. 4x4x16")
    s.add_argument("--workload", help="key=value,... or a JSON file; keys per unit: "
                   + "; ".join(f"{u}: {','.join(UNIT_WORKLOAD_KEYS[UNITS[u].model_key])}" for u in simulated_units()))
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--work-dir", default="sim_build", help="simulator build folder (default sim_build)")
    s.add_argument("--json", action="store_true", help="print one JSON object (cycles, bit_exact, energy_pj, ...)")
    s.set_defaults(func=cmd_simulate)

    s = subparsers.add_parser("report", help="sweep array sizes: modeled cycles (the compiled program on the "
                                             "sequencer's schedule), latency, utilization, energy per inference")
    s.add_argument("--model", default="minilm", help="preset (minilm, bert-base, tiny) or an artifact file")
    s.add_argument("--arrays", default=DEFAULT_ARRAYS, help=f"comma-separated RxCxL sizes (default {DEFAULT_ARRAYS})")
    s.add_argument("--seq", type=int, default=None,
                   help=f"sequence length (default {DEFAULT_SEQ}, or the model's max_position when smaller)")
    s.add_argument("--clock-mhz", type=float, default=200.0, help="clock for the latency (default 200)")
    s.add_argument("--act-bits", type=int, default=1, help="activation bits of a preset, 1/2/4/8 (default 1: W1A1)")
    s.add_argument("--sram-kib", type=float, default=None,
                   help="on-chip parameter SRAM in KiB (default: the generated design, which has no weight buffer)")
    s.add_argument("--synth", action="store_true", help="synthesize each array with Yosys for resources (slow)")
    s.add_argument("--synth-target", default="xilinx", help="xilinx, ecp5 or ice40 (default xilinx)")
    s.add_argument("--synth-units", default="mac_array",
                   help=f"comma-separated units to synthesize (default mac_array; known: {', '.join(UNITS)})")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.add_argument("--plot", metavar="FILE.png", help="write a PNG comparing the arrays")
    s.set_defaults(func=cmd_report)
