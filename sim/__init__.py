"""Simulation of the generated Verilog with cocotb 2.x on Icarus Verilog and Verilator.

* `sim.runner` — builds a unit's generated Verilog with a simulator through
  `cocotb_tools.runner` and runs its cocotb test module (tool checks, build cache,
  waveforms, wall-clock limits).
* `sim.bench` — the cocotb test modules (one per hardware unit) and their shared
  driver / monitor / scoreboard components; every output element is compared with
  golden/ bit-exactly.
* `sim.measure` — `run_unit(...)`: one unit, one workload, returns the measured
  cycles and the bit-exactness result as a dict.
* `sim.workload`, `sim.cycles`, `sim.energy`, `sim.commands` — the analytic inference
  schedule, cycle and energy models and the CLI commands (see their own docstrings).

This package imports neither cocotb nor a simulator at import time.
"""
