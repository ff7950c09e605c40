"""sim.program_cycles: the per-inference cycle model read from a compiled program (no simulator here).

The model against the RTL's measured cycles is tests/test_sim_accelerator.py (every whole tiny
encoder run) and, for MiniLM, the measurement bench/encoder_run.py recorded in docs/RESULTS.md.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from bitaccel.compiler import Target, compile_program
from bitaccel.golden.config import ModelConfig
from bitaccel.golden.random_artifact import random_artifact
from bitaccel.hw.params import HwParams
from bitaccel.hw.schedule import beats_count
from bitaccel.hw.spec.isa import BSource, Op, Post
from bitaccel.sim.program_cycles import MEM_LATENCY, UNIT_COUNTERS, program_cycles

TINY = dict(vocab_size=60, hidden=64, layers=2, heads=2, ffn=128, max_position=8)
PARAMS = HwParams(rows=2, cols=3, lanes=16, max_seq=8, max_hidden=64, max_ffn=128, max_head_dim=32,
                  max_exp_lut=512, max_act_bits=2)


def _program(act_bits: int = 1, t: int = 8, trace: bool = True, params: HwParams = PARAMS):
    art = random_artifact(ModelConfig(**TINY), seed=3, act_bits=act_bits)
    ids = np.random.default_rng(t).integers(0, TINY["vocab_size"], t)
    return compile_program(art, Target(params), ids=ids, trace=trace)


def _reads(ins, params: HwParams) -> int:
    """Read commands an instruction's unit issues (docs/encoder.md §4), counted from its fields."""
    if ins.op == Op.EMBED:
        return 1 + 3 * ins["rows"]                         # tokens; per token word, position, type rows
    if ins.op in (Op.LAYERNORM, Op.SOFTMAX):
        return 1
    if ins.op == Op.QUANT:
        return 1 if ins["bits"] == 1 else 2
    if ins.op == Op.MATMUL:
        post = Post(ins["post"])
        consts = 1 if post == Post.THRESHOLD else 2 if post in (Post.REQUANT, Post.RESIDUAL) else 0
        tiles = -(-ins["n"] // params.cols) if ins["b_src"] == BSource.WEIGHTS else 0
        return consts + tiles
    return 0


def test_one_row_per_instruction_and_the_totals_add_up():
    prog = _program()
    m = program_cycles(prog)
    ins = prog.instructions
    assert [r["op"] for r in m["instructions"]] == [i.op.name for i in ins]
    assert m["cycles"] == sum(r["cycles"] for r in m["instructions"]) == sum(m["by_op"].values())
    # every instruction: fetch (1 + latency + 4 beats), decode, dispatch, the unit's busy cycles, a cycle to see it end
    fetch = 1 + MEM_LATENCY + 4
    for r in m["instructions"][:-1]:
        assert r["cycles"] == fetch + 3 + r["busy"] and r["busy"] > 0
    assert m["instructions"][-1]["cycles"] == fetch + 2 and m["busy"]["fetch"] == fetch * len(ins)


def test_work_counters_follow_the_program():
    """Array beats (hw.schedule.beats_count per MATMUL) and elements into each post-processing unit."""
    for act_bits in (1, 2):
        prog = _program(act_bits)
        p = prog.target.params
        m = program_cycles(prog)
        mm = [i for i in prog.instructions if i.op == Op.MATMUL]
        assert m["busy"]["mac_array"] == sum(beats_count(i["m"], i["n"], i["k"], i["a_bits"], i["b_bits"],
                                                         p.rows, p.cols, p.lanes) for i in mm)
        thr = sum(i["m"] * i["n"] for i in mm if i["post"] == Post.THRESHOLD) \
            + sum(i["rows"] * i["channels"] for i in prog.instructions if i.op == Op.QUANT and i["bits"] == 1)
        assert m["busy"]["threshold_unit"] == thr
        ln = sum(i["rows"] * i["hidden"] for i in prog.instructions if i.op == Op.LAYERNORM)
        assert m["busy"]["layernorm_unit"] == ln
        sm = sum(i["rows"] * i["keys"] for i in prog.instructions if i.op == Op.SOFTMAX)
        assert m["busy"]["softmax_unit"] == sm
        assert set(m["busy"]) == set(UNIT_COUNTERS)


def test_memory_latency_costs_each_read_command_once():
    """One more cycle of memory latency adds one cycle per read command, fetches included, except inside a
    MATMUL whose tile loads overlap post-processing (there: at most one per command)."""
    prog = _program(2)
    a, b = program_cycles(prog, mem_latency=MEM_LATENCY), program_cycles(prog, mem_latency=MEM_LATENCY + 1)
    for ins, ra, rb in zip(prog.instructions, a["instructions"], b["instructions"]):
        reads = 1 + _reads(ins, prog.target.params)
        if ins.op == Op.MATMUL:
            assert 1 <= rb["cycles"] - ra["cycles"] <= reads, ins
        else:
            assert rb["cycles"] - ra["cycles"] == reads, ins


def test_traces_and_longer_sequences_cost_cycles():
    base = program_cycles(_program(1, 8, trace=False))["cycles"]
    assert program_cycles(_program(1, 8, trace=True))["cycles"] > base
    assert program_cycles(_program(1, 4, trace=False))["cycles"] < base
    assert program_cycles(_program(2, 8, trace=False))["cycles"] > base       # 2-bit codes: two planes each


def test_matmul_is_bounded_by_its_array_beats_and_its_post_processing():
    """A MATMUL takes at least its array beats and at least one write-back cycle per output element."""
    prog = _program(1, 8, trace=False)
    p = prog.target.params
    m = program_cycles(prog)
    for ins, r in zip(prog.instructions, m["instructions"]):
        if ins.op == Op.MATMUL:
            beats = beats_count(ins["m"], ins["n"], ins["k"], ins["a_bits"], ins["b_bits"], p.rows, p.cols, p.lanes)
            assert r["busy"] > max(beats, ins["m"] * ins["n"])


def _measured_minilm() -> tuple[int, int]:
    """(T, cycles) that bench/encoder_run.py recorded for MiniLM on 8x8x64 (docs/RESULTS.md)."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "RESULTS.md").read_text()
    section = text.split("## Whole-encoder inference on the RTL", 1)
    assert len(section) == 2, "docs/RESULTS.md has no 'Whole-encoder inference on the RTL' section"
    tokens = re.search(r"W1A1, T = (\d+),", section[1])
    row = re.search(r"^\| 8x8x64 \| True \| ([\d,]+) \|", section[1], re.M)
    assert tokens and row, "docs/RESULTS.md: no T = ... or no 8x8x64 row in the whole-encoder section"
    return int(tokens.group(1)), int(row.group(1).replace(",", ""))


def test_minilm_model_agrees_with_the_measured_rtl_run():
    """The program of bench/encoder_run.py (random MiniLM seed 0, W1A1, no traces, 8x8x64, the T it recorded):
    the model within 2 % of the cycles docs/RESULTS.md records (equal today: 3,593,023 at T = 128)."""
    from bitaccel.sim.run_command import hw_params_for

    t, measured = _measured_minilm()
    art = random_artifact("minilm", seed=0)
    rng = np.random.default_rng(0)
    ids = np.concatenate([[101], rng.integers(1000, art.config.vocab_size, t - 2), [102]])
    prog = compile_program(art, Target(hw_params_for(art, t, 8, 8, 64)), ids=ids, trace=False)
    model = program_cycles(prog)["cycles"]
    assert abs(model - measured) <= 0.02 * measured, (model, measured)
