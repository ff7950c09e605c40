"""Cycle measurement of one hardware unit in cocotb: `run_unit`.

`run_unit` builds the unit's generated Verilog for an `HwParams` with Icarus Verilog or
Verilator (`sim.runner`), runs the unit's cocotb bench (``sim/bench/tb_<unit>.py``) and
returns what it measured. The timed operation runs with inputs offered back to back, the
output always ready and the unit idle; its cycles are counted from the first input beat's
transfer to the last output beat's transfer, both included (the definition of the
units' ``cycles()`` formulas and of sim.cycles). Every output element of every operation
is compared with golden/ bit-exactly.

Returned dict (results.json of the run, also left in the build directory):

==================  ==========================================================================
``unit``            unit name (hw.spec.units.UNITS)
``config``          `sim.runner.config_name(params)`
``sim``             "icarus" or "verilator"
``seed``            the seed of every random choice
``params``          the `HwParams` fields; ``workload`` the options given
``cycles``          cycles of the timed operation (first input to last output transfer)
``beats``           input beats of the timed operation; ``out_beats`` its output beats
``model_cycles``    the unit's own formula for the timed operation (mac_array:
                    ``hw.schedule.array_cycles``; threshold / requant ``beats + latency``;
                    ``SoftmaxUnit.cycles`` / ``interval``, ``LayerNormUnit.cycles`` / ``interval``)
``bit_exact``       every compared element equal to golden (and at least one compared)
``compared``        output elements compared over all operations (count > 0)
``mismatches``      how many differed; ``first_mismatch`` the first (check, index, expected, got)
``ops``             every operation: name, cycles, in/out beats, stalls, model_cycles, test
``passed``          every cocotb test passed; ``tests`` name / passed / skipped / message per test
``build``           build dir, whether it was rebuilt, build and generation seconds
``run_s``           wall-clock seconds of the simulator run; ``sim_log``; ``waves_file``
==================  ==========================================================================
"""
from __future__ import annotations

import os

from . import runner

__all__ = ["run_unit"]


def run_unit(unit: str, sim: str, params, workload=None, seed: int = 0, waves: bool = False, *,
             work_dir=None, verify: bool = False, timeout_s: float = 600.0, progress=None) -> dict:
    """Simulate `unit` on `sim` for `params` and return the measured cycles and the bit-exactness result.

    Parameters
    ----------
    unit : str
        A unit of `hw.spec.units.UNITS` with a bench: "mac_array", "threshold_unit",
        "requant_unit", "softmax_unit", "layernorm_unit".
    sim : str
        "icarus" or "verilator".
    params : hw.params.HwParams
        The configuration (array size, limits); the Verilog is generated from it.
    workload : dict, path or None
        Options of the unit's bench (``DEFAULT_WORKLOAD`` in ``sim/bench/tb_<unit>.py``):
        mac_array m, n, k, a_bits, a_signed, b_bits, b_signed; threshold / requant rows,
        channels; softmax rows, seq_len, mode; layernorm rows, hidden.
    seed : int
        Seeds the operands and every other random choice (logged).
    waves : bool
        Write an FST waveform (``<work_dir>/<sim>/<unit>/<config>/<unit>.fst``); the
        environment variable BITACCEL_WAVES=1 also turns it on.
    work_dir : path, optional
        Build root; default the environment variable BITACCEL_SIM_BUILD, else ``sim_build``.
    verify : bool
        Also run the unit's randomized and edge-case verification test (random gaps and
        back-pressure) before the timed operation.
    timeout_s : float
        Wall-clock limit of the simulator run.
    progress : callable(str), optional
        Hears build / run progress (sim.runner.run).

    Raises `sim.runner.SimulatorUnavailable` (what to install), `sim.runner.SimulationError`
    or `sim.runner.SimulationTimeout`. A mismatch is not raised: check ``bit_exact`` and
    ``passed``.
    """
    if work_dir is None:
        work_dir = os.environ.get("BITACCEL_SIM_BUILD", "sim_build")
    return runner.run(unit, sim, params, workload=workload, seed=seed, work_dir=work_dir,
                      waves=True if waves else None, verify=verify, timeout_s=timeout_s, progress=progress)
