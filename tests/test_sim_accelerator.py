"""cocotb on the accelerator's generated top level, Icarus and Verilator, with cocotbext-axi bus models.

`sim/bench/tb_accelerator.py` acts as an SoC driver: AxiLiteMaster on the register port,
AxiRam behind the AXI4 master port. Two array shapes (one non-square); every cocotb test
of the bench must run and pass, and both simulators must read the same cycle counts.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from hw.params import HwParams
from sim import runner
from sim.runner import SIMULATORS, SimulatorUnavailable

pytestmark = pytest.mark.sim

LIMITS = dict(max_seq=32, max_hidden=64, max_ffn=128, max_head_dim=16, max_exp_lut=64)
CONFIGS = {"2x3x16": HwParams(rows=2, cols=3, lanes=16, **LIMITS), "4x4x32": HwParams(rows=4, cols=4, lanes=32, **LIMITS)}
BENCH_TESTS = {"registers", "end_program", "stops_on_errors", "embed_program", "program_run"}


@pytest.fixture(scope="module")
def work_dir() -> Path:
    return Path(os.environ.get("BITACCEL_SIM_BUILD", Path(__file__).resolve().parent.parent / "sim_build"))


def _embed_only_program(p: HwParams):
    """A program compiled from a random tiny artifact, cut after EMBED (END at pc 1) — the units
    after EMBED are not connected yet. Returns (program, artifact, ids, mask)."""
    import dataclasses

    from compiler import Target, compile_program
    from golden.config import ModelConfig
    from golden.random_artifact import random_artifact
    from hw.spec.isa import INSTR_BYTES, Instruction, Op, encode

    cfg = ModelConfig(vocab_size=60, hidden=p.max_hidden, layers=1, heads=p.max_hidden // p.max_head_dim,
                      ffn=p.max_ffn, max_position=p.max_seq)
    art = random_artifact(cfg, seed=4)
    ids, mask = [5, 59, 7, 1, 0], [1, 1, 1, 1, 0]
    prog = compile_program(art, Target(p), ids=ids, mask=mask)
    image = prog.image.copy()
    at = prog.regions["program"][0] + INSTR_BYTES
    image[at:at + INSTR_BYTES] = np.frombuffer(encode(Instruction(Op.END, {})), dtype=np.uint8)
    return dataclasses.replace(prog, image=image), art, ids, mask


def _need(sim: str) -> None:
    try:
        runner.check_simulator(sim)
    except SimulatorUnavailable as e:
        pytest.skip(f"{sim} unavailable: {e}")


@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("sim", SIMULATORS)
def test_accelerator_top(sim, config, work_dir, tmp_path):
    _need(sim)
    prog_file = tmp_path / "embed_only.bitprog"
    _embed_only_program(CONFIGS[config])[0].save(prog_file)
    r = runner.run("accelerator", sim, CONFIGS[config], workload={"program": str(prog_file)}, seed=11,
                   work_dir=work_dir, verify=True)
    failed = [f"{t['name']}: {t['message']}" for t in r["tests"] if not t["passed"]]
    assert r["passed"], f"{failed} (log: {r['sim_log']})"
    assert {t["name"] for t in r["tests"] if not t["skipped"]} == BENCH_TESTS
    assert r["compared"] > 0 and r["mismatches"] == 0, r["first_mismatch"]

@pytest.mark.parametrize("sim", SIMULATORS)
def test_program_run_plumbing(sim, work_dir):
    """sim.inference.run_program end to end on a program cut after EMBED: DONE, two instructions
    retired, the embedding sum read back from the RTL's memory equals golden."""
    from golden.model import IntegerModel
    from hw.encoder import regs
    from sim.inference import run_program

    _need(sim)
    prog, art, ids, mask = _embed_only_program(CONFIGS["2x3x16"])
    r = run_program(prog, sim, work_dir=work_dir)
    assert r["passed"] and r["status"] == regs.STATUS_DONE and r["retired"] == 2, r
    assert r["bit_exact"] and r["compared"] > 0, r["first_mismatch"]
    golden = IntegerModel(art).forward(ids, mask, keep_intermediates=True)["intermediates"]["embeddings.sum"]
    assert np.array_equal(r["checkpoints"]["embeddings.sum"], golden)
    assert r["cycles"] > 0 and r["busy"]["fetch"] > 0 and r["busy"]["axi_write"] > 0
