"""cocotb on the accelerator's generated top level, Icarus and Verilator, with cocotbext-axi bus models.

`sim/bench/tb_accelerator.py` acts as an SoC driver: AxiLiteMaster on the register port,
AxiRam behind the AXI4 master port. Two array shapes (one non-square); every cocotb test
of the bench must run and pass, and both simulators must read the same cycle counts.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from hw.params import HwParams
from sim import runner
from sim.runner import SIMULATORS, SimulatorUnavailable

pytestmark = pytest.mark.sim

LIMITS = dict(max_seq=32, max_hidden=64, max_ffn=128, max_head_dim=16, max_exp_lut=64)
CONFIGS = {"2x3x16": HwParams(rows=2, cols=3, lanes=16, **LIMITS), "4x4x32": HwParams(rows=4, cols=4, lanes=32, **LIMITS)}
BENCH_TESTS = {"registers", "end_program", "stops_on_errors", "embed_program"}


@pytest.fixture(scope="module")
def work_dir() -> Path:
    return Path(os.environ.get("BITACCEL_SIM_BUILD", Path(__file__).resolve().parent.parent / "sim_build"))


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("sim", SIMULATORS)
def test_accelerator_top(sim, config, work_dir):
    try:
        runner.check_simulator(sim)
    except SimulatorUnavailable as e:
        pytest.skip(f"{sim} unavailable: {e}")
    r = runner.run("accelerator", sim, CONFIGS[config], seed=11, work_dir=work_dir)
    failed = [f"{t['name']}: {t['message']}" for t in r["tests"] if not t["passed"]]
    assert r["passed"], f"{failed} (log: {r['sim_log']})"
    assert {t["name"] for t in r["tests"] if not t["skipped"]} == BENCH_TESTS
    assert r["compared"] > 0 and r["mismatches"] == 0, r["first_mismatch"]
