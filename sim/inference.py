"""Whole-encoder inference on the generated RTL: run a compiled program in cocotb and check it bit-exactly.

`run_program(program, sim)` builds the accelerator's top level (`hw.encoder.top`) for the
program's target with Icarus Verilog or Verilator (`sim.runner`, cached builds), runs the
cocotb bench's ``program_run`` test (`sim/bench/tb_accelerator.py`: cocotbext-axi AxiRam
holding the program and model image, AxiLiteMaster on the registers, the host waits for
the interrupt), and reads back the external memory. Every checkpoint the program leaves in
external memory (every traced intermediate and the output, `compiler.read_external`) is
compared with the reference (default: the compiler's executor, itself equal to
golden.model.IntegerModel at every checkpoint) integer for integer.

Returned dict:

==================  ============================================================================
``passed``          the run reached DONE and every cocotb test passed
``status``          STATUS register (`hw.encoder.regs`); ``error_code``, ``pc``, ``retired``
``cycles``          cycles from START to DONE measured by the accelerator's counter
``busy``            per-unit busy cycles (hw.encoder.regs.BUSY_COUNTERS)
``bit_exact``       every compared checkpoint element equal to the reference (and > 0 compared)
``compared``        elements compared; ``checked`` the checkpoint names compared
``first_mismatch``  None, or {name, index (row, column, ...), expected, got}
``checkpoints``     {name: int64 array} read from the RTL's external memory
``run``             `sim.runner.run`'s dict (build, logs, wall-clock seconds)
==================  ============================================================================
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from bitaccel.compiler import execute, read_external

from . import runner

__all__ = ["run_program", "compare_checkpoints"]


def compare_checkpoints(got: dict, reference: dict) -> dict:
    """Compare every checkpoint of `got` with `reference`: {bit_exact, compared, checked, first_mismatch}."""
    compared, first = 0, None
    checked = sorted(name for name in got if name in reference)
    for name in checked:
        want, have = np.asarray(reference[name]), np.asarray(got[name])
        if want.shape != have.shape:
            first = first or {"name": name, "index": None, "expected": list(want.shape), "got": list(have.shape)}
            continue
        compared += want.size
        diff = np.argwhere(want != have)
        if diff.size and first is None:
            idx = tuple(int(i) for i in diff[0])
            first = {"name": name, "index": idx, "expected": int(want[idx]), "got": int(have[idx])}
    return {"bit_exact": compared > 0 and first is None, "compared": compared, "checked": checked,
            "first_mismatch": first}


def run_program(program, sim: str, *, reference: dict | None = None, work_dir=None, seed: int = 0,
                timeout_s: float = 3600.0, progress=None) -> dict:
    """Run `program` (a compiler.Program) on the RTL with `sim`; see the module docstring for the result."""
    params = program.target.params
    work = Path(work_dir or os.environ.get("BITACCEL_SIM_BUILD", "sim_build")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work, prefix="run-") as tmp:
        prog_path, mem_path, cnt_path, prog_out = (os.path.join(tmp, n) for n in (
            "program.bitprog", "memory.npy", "counters.json", "progress.txt"))
        program.save(prog_path)
        workload = {"program": prog_path, "memory_out": mem_path, "counters_out": cnt_path, "progress_out": prog_out}

        def with_position(message: str) -> None:      # "... running for 30 s: instruction 120 of 400, ..."
            try:
                where = ": " + Path(prog_out).read_text()
            except OSError:                           # not simulating yet (building), or no report so far
                where = ""
            progress(message + where)

        r = runner.run("accelerator", sim, params, workload=workload, seed=seed, work_dir=work, verify=False,
                       timeout_s=timeout_s, progress=None if progress is None else with_position)
        if not os.path.exists(cnt_path):
            failed = "; ".join(f"{t['name']}: {t['message']}" for t in r["tests"] if not t["passed"])
            raise runner.SimulationError(f"the accelerator run left no results ({failed}); log: {r['sim_log']}")
        counters = json.loads(Path(cnt_path).read_text())
        ext = np.load(mem_path, allow_pickle=False)
    got = read_external(program, ext)
    check = compare_checkpoints(got, execute(program) if reference is None else reference)
    return {"passed": r["passed"], **counters, **check, "checkpoints": got, "run": r}
