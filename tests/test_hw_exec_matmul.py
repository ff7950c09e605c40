"""MATMUL execute unit in the Amaranth simulator against the compiler's executor (tests/exec_harness.py).

Every MATMUL kind of a compiled program (q/k/v linears into HEADS / TRANS codes, Q.K^T
scores, P.V into o.in columns, o / ffn2 RESIDUAL, ffn1 codes, the pooler's EXT output),
on arrays from 1x1x8 to 4x4x32 (interleaved activation words, docs/encoder.md §5), at act
bits 1, 2, 4 and mixed widths, with K, M and N not multiples of L, R and C, T = 1 and
T = max_seq; buffers start from random contents, reads stall and the trace back-pressures
at random; every buffer word and the whole external memory (traces in drain order, §6, and
the pooler output) must equal the executor's. Also: ERR_RANGE instructions write nothing, and
consecutive instructions on one unit instance (no state carried over).
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest

from bitaccel.compiler import Target, compile_program
from bitaccel.golden.config import ModelConfig
from bitaccel.golden.random_artifact import random_artifact
from bitaccel.hw.encoder.matmul_exec import MatmulExec
from bitaccel.hw.encoder.regs import ERR_RANGE
from bitaccel.hw.encoder.top import MAX_READ_BEATS
from bitaccel.hw.params import HwParams
from bitaccel.hw.spec.isa import INSTR_BYTES, Instruction, Layout, Op, Post, encode, wide_beats
from tests.exec_harness import _steps_before, _Wrapper, run_instruction
from tests.hwsim import run

#: hidden 40 (K = 40, 56, 20, T: never a multiple of L = 16), 2 heads of 20, FFN 56.
CFG = ModelConfig(vocab_size=50, hidden=40, layers=1, heads=2, ffn=56, max_position=8, type_vocab=2)


def _params(shape: str, bits: int) -> HwParams:
    r, c, l = (int(x) for x in shape.split("x"))
    return HwParams(rows=r, cols=c, lanes=l, max_seq=8, max_hidden=48, max_ffn=64, max_head_dim=24,
                    max_exp_lut=4096, max_act_bits=bits)


#: Mixed code widths: products of unequal plane counts (4 x 2 scores, 2-bit unsigned x 4-bit P.V, 1-bit
#: P.V output, 2-bit unsigned ffn2.in codes).
MIXED = {"layers.0.q.in": 2, "layers.0.k.in": 1, "layers.0.v.in": 2, "layers.0.q.out": 4, "layers.0.k.out": 2,
         "layers.0.v.out": 4, "layers.0.probs": 2, "layers.0.o.in": 1, "layers.0.ffn1.in": 4, "layers.0.ffn2.in": 2,
         "pooler.in": 1}


@functools.cache
def _program(shape: str, bits: int | str, t: int, trace: bool):
    mixed = bits == "mixed"
    target = Target(_params(shape, 4 if mixed else bits))
    art = random_artifact(CFG, seed=11 if mixed else 7 + bits, act_bits=1 if mixed else bits,
                          quant=MIXED if mixed else None)
    ids = [(5 * i + 3) % CFG.vocab_size for i in range(t)]
    mask = [1] * t if t < 3 else [1] * (t - 1) + [0]
    return target, compile_program(art, target, ids=ids, mask=mask, trace=trace)


#: Wide code writes (hw.spec.isa.wide_beats: C divides L, dst_col and the packed width): heads of 12.
CFG_WIDE = ModelConfig(vocab_size=50, hidden=48, layers=1, heads=4, ffn=56, max_position=8, type_vocab=2)
WIDE_CASES = [
    # shape, act bits, T, trace, ffn: 2x4x32: every ROWS / HEADS code write wide, lanes past the packed row
    # cleared (48 and 56 mod 32), 2-bit REQUANT codes (two plane writes a beat), scores serial (T = 7);
    # 2x8x16 with FFN 64: P.V of head 0 wide with a partial last tile (N = 12 = 8 + 4), the other heads and
    # q / k (width 12) serial; scores wide at T = 8 (half a score word of W = 16 a beat), serial at T = 7
    ("2x4x32", 2, 7, True, 56),
    ("2x8x16", 1, 7, True, 64),
    ("2x8x16", 1, 8, False, 64),
    ("4x2x32", 2, 7, True, 56),     # R = 4, C = 2: V's codes (TRANS) two stored rows of one word a beat
]


@functools.cache
def _wide_program(shape: str, bits: int, t: int, trace: bool, ffn: int):
    r, c, l = (int(x) for x in shape.split("x"))
    cfg = dataclasses.replace(CFG_WIDE, ffn=ffn)
    target = Target(HwParams(rows=r, cols=c, lanes=l, max_seq=8, max_hidden=48, max_ffn=64, max_head_dim=12,
                             max_exp_lut=4096, max_act_bits=bits))
    art = random_artifact(cfg, seed=23 + bits, act_bits=bits)
    ids = [(7 * i + 2) % cfg.vocab_size for i in range(t)]
    return target, compile_program(art, target, ids=ids, mask=[1] * (t - 2) + [0, 0], trace=trace)


@pytest.mark.parametrize("shape,bits,t,trace,ffn", WIDE_CASES)
def test_wide_beats_match_executor(shape, bits, t, trace, ffn):
    """Every code-, score- and residual-writing MATMUL, wide beats (hw.spec.isa.wide_beats) and element-serial
    ones; RESIDUAL (O, FFN2) beats are one residual word on all these arrays (C a power of two dividing 48)."""
    target, prog = _wide_program(shape, bits, t, trace, ffn)
    p = target.params
    pcs = [pc for pc, ins in enumerate(prog.instructions) if ins.op == Op.MATMUL
           and Post(ins.fields["post"]) in (Post.THRESHOLD, Post.REQUANT, Post.SCORES, Post.RESIDUAL)]
    trans = [pc for pc in pcs if prog.instructions[pc].fields["layout"] == Layout.TRANS]

    def wide(pc):
        f = prog.instructions[pc].fields
        return wide_beats(f["post"], f["layout"], f["dst"], f["dst_col"], f["dst_width"], p.rows, p.cols, p.lanes)

    kinds = {(Post(prog.instructions[pc].fields["post"]).name, wide(pc)) for pc in pcs}
    assert ("THRESHOLD" if bits == 1 else "REQUANT", True) in kinds, kinds
    assert ("SCORES", t % p.cols == 0) in kinds, kinds          # rows of T scores: wide when C divides T
    assert ("RESIDUAL", True) in kinds and ("RESIDUAL", False) not in kinds, kinds
    assert shape in ("2x4x32", "4x2x32") or ("THRESHOLD", False) in kinds, kinds
    assert trans and all(wide(pc) == (p.rows % p.cols == 0) for pc in trans), trans
    for pc in pcs:
        run_instruction(_unit(target), prog, pc, seed=pc)


def _unit(target):
    return lambda p: MatmulExec(p, 32, target.act_words, target.res_words, target.scr_words, MAX_READ_BEATS)


def _kind(ins) -> str:
    """A name for a MATMUL instruction: post-op, B source and destination layout."""
    f = ins.fields
    post = Post(f["post"]).name
    if post in ("THRESHOLD", "REQUANT"):
        post += "/" + Layout(f["layout"]).name + ("/ACT" if f["b_src"] else "")
    return post


def _matmuls(prog, later_heads: bool = False) -> list[int]:
    """pcs of the first MATMUL of each kind; with `later_heads` also every P.V writing columns past head 0."""
    first, extra = {}, []
    for pc, ins in enumerate(prog.instructions):
        if ins.op == Op.MATMUL:
            if _kind(ins) not in first:
                first[_kind(ins)] = pc
            elif later_heads and ins.fields["dst_col"] > 0:
                extra.append(pc)
    kinds = set(first)
    assert {"SCORES", "RESIDUAL", "EXT"} <= kinds and any("/HEADS" in k for k in kinds) \
        and any("/TRANS" in k for k in kinds) and any("/ACT" in k for k in kinds), kinds
    return sorted(first.values()) + extra


CASES = [
    # shape R x C x L, act bits, T, also the later heads' P.V
    ("1x1x8", 2, 3, False),        # R = 1, C = 1, L = 8: one-byte tile words (the gearbox holds the bus)
    ("2x3x16", 1, 8, False),       # T = max_seq, M = 8 rows in 4 blocks, N = 56 in 19 tiles of 3
    ("3x5x32", 2, 7, True),        # M, N, K not multiples of R, C, L; head 1 at dst_col = 20
    ("2x3x16", 4, 3, False),       # 4-bit codes (4 planes), signed offset binary
    ("4x4x32", 1, 1, False),       # T = 1 (one row block, mostly padding rows), square array
    ("2x3x16", "mixed", 6, False), # unequal plane counts in one product
]


@pytest.mark.parametrize("shape,bits,t,later_heads", CASES)
def test_every_matmul_kind_matches_executor(shape, bits, t, later_heads):
    target, prog = _program(shape, bits, t, True)
    for pc in _matmuls(prog, later_heads):
        run_instruction(_unit(target), prog, pc, seed=pc)


def _patched(prog, pc: int, **fields):
    """`prog` with instruction `pc`'s fields replaced."""
    ins = prog.instructions[pc]
    image = prog.image.copy()
    addr = prog.regions["program"][0] + INSTR_BYTES * pc
    image[addr:addr + INSTR_BYTES] = list(encode(Instruction(ins.op, {**ins.fields, **fields})))
    return type(prog)(prog.target, prog.config, prog.seq_len, image, prog.regions, prog.checkpoints)


@pytest.mark.parametrize("kind,fields", [
    ("RESIDUAL", {"k": 64 + 16}),                     # K past the tile buffer (max_ffn = 64)
    ("SCORES", {"a_bits": 3}),                        # not a code width
    ("SCORES", {"b_bits": 4}),                        # above max_act_bits
    ("THRESHOLD/ROWS", {"out_bits": 2}),              # THRESHOLD writes 1-bit codes
    ("RESIDUAL", {"b_bits": 2}),                      # weights are 1-bit signed
    ("SCORES", {"a": 1}),                             # A does not start a physical word (R = 2)
    ("SCORES", {"dst_width": 1 << 12}),               # rows past the score buffer
])
def test_out_of_range_instruction_stops_with_err_range(kind, fields):
    target, prog = _program("2x3x16", 1, 5, False)
    pc = next(pc for pc, ins in enumerate(prog.instructions) if ins.op == Op.MATMUL and _kind(ins) == kind)
    bad = _patched(prog, pc, **fields)
    got = run_instruction(_unit(target), bad, pc, seed=1, expect_error=ERR_RANGE)
    before = _steps_before(bad, pc, np.random.default_rng(1 + 1))      # the harness's buffers (seed + 1)
    assert (got["act"] == before.act).all() and (got["res"] == before.res).all() and (got["scr"] == before.scr).all()


def _run_back_to_back(target, prog, pcs: list[int], seed: int = 0) -> None:
    """Run consecutive instructions `pcs` on ONE unit instance (as the sequencer does); compare with the executor.

    The bench of tests/exec_harness.py for a sequence: buffers preloaded from the executor's
    state before pcs[0], reads and trace served from the external image, every buffer word and
    the external memory compared after the last instruction.
    """
    assert pcs == list(range(pcs[0], pcs[0] + len(pcs)))
    rng = np.random.default_rng(seed)
    params = target.params
    machine = _steps_before(prog, pcs[0], np.random.default_rng(seed + 1))
    ext_before = machine.ext.copy()
    words = [bytes(machine.ext[machine.program_addr + pc * INSTR_BYTES:][:INSTR_BYTES]) for pc in pcs]
    wrapper = _Wrapper(_unit(target)(params), machine, params)
    for _ in pcs:
        machine.step()
        machine.pc += 1
    u, ext, got = wrapper.unit, ext_before.copy(), {}

    async def reader(ctx):
        while True:
            ctx.set(u.rd_cmd.ready, 1)
            *_, valid, cmd = await ctx.tick().sample(u.rd_cmd.valid, u.rd_cmd.payload)
            if not valid:
                continue
            ctx.set(u.rd_cmd.ready, 0)
            addr, beats, b = int(cmd.addr), int(cmd.beats), 0
            while b < beats:
                offer = rng.random() >= 0.2
                ctx.set(u.rd_data.payload.data, int.from_bytes(ext_before[addr + 8 * b:addr + 8 * b + 8].tobytes(),
                                                               "little"))
                ctx.set(u.rd_data.payload.last, int(b == beats - 1))
                ctx.set(u.rd_data.valid, int(offer))
                *_, ready = await ctx.tick().sample(u.rd_data.ready)
                b += int(offer and ready)
            ctx.set(u.rd_data.valid, 0)

    async def tracer(ctx):
        addr, left, i = 0, 0, 0
        while True:
            ctx.set(u.trace_start.ready, int(left == 0))
            ready = left > 0 and rng.random() >= 0.2
            ctx.set(u.trace_values.ready, int(ready))
            *_, s_valid, start, valid, v = await ctx.tick().sample(u.trace_start.valid, u.trace_start.payload,
                                                                   u.trace_values.valid, u.trace_values.payload.value)
            if left == 0 and s_valid:
                addr, left, i = int(start.addr), int(start.count), 0
            elif ready and valid:
                ext[addr + 4 * i:addr + 4 * i + 4] = np.frombuffer(int(v).to_bytes(4, "little", signed=True), np.uint8)
                i, left = i + 1, left - 1

    async def host(ctx):
        ctx.set(u.base, 0)
        for word in words:
            ctx.set(u.ins.as_value(), int.from_bytes(word, "little"))
            ctx.set(u.start, 1)
            await ctx.tick()
            ctx.set(u.start, 0)
            while ctx.get(u.busy):
                await ctx.tick()
            assert ctx.get(u.error) == 0
        for _ in range(4):
            await ctx.tick()
        got.update(wrapper.contents(ctx))

    run(wrapper, host, background=[reader, tracer], deadline_cycles=100_000)
    for name, want in (("res", machine.res.astype(np.int64)), ("scr", machine.scr), ("act", machine.act)):
        diff = np.argwhere(got[name] != want)
        assert not diff.size, f"pcs {pcs}: {name} differs first at {tuple(diff[0])} ({len(diff)} differences)"
    diff = np.flatnonzero(ext != machine.ext)
    assert not diff.size, f"pcs {pcs}: external memory differs first at byte {diff[0]} ({len(diff)} bytes)"


def test_back_to_back_instructions_on_one_unit():
    """ffn1 (codes into act.f) then ffn2 (reads them, RESIDUAL), and v (TRANS) then scores: no state leaks."""
    target, prog = _program("2x3x16", 2, 5, True)
    kinds = [_kind(ins) if ins.op == Op.MATMUL else None for ins in prog.instructions]
    pairs = [[pc, pc + 1] for pc in range(len(kinds) - 1) if kinds[pc] and kinds[pc + 1]]
    chosen = [p for p in pairs if kinds[p[0]] == "REQUANT/ROWS" and kinds[p[1]] == "RESIDUAL"][:1] + \
             [p for p in pairs if kinds[p[0]] == "REQUANT/TRANS" and kinds[p[1]] == "SCORES"][:1]
    assert len(chosen) == 2, pairs
    for pcs in chosen:
        _run_back_to_back(target, prog, pcs, seed=pcs[0])
