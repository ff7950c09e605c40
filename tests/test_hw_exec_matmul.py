"""MATMUL execute unit in the Amaranth simulator against the compiler's executor (tests/exec_harness.py).

Every MATMUL kind of a compiled program (q/k/v linears into HEADS / TRANS codes, Q.K^T
scores, P.V into o.in columns, o / ffn2 RESIDUAL, ffn1 codes, the pooler's EXT output),
on arrays with R = 1 and R > 1, at act bits 1 and 2, with K, M and N not multiples of L,
R and C, T = 1 and T = max_seq; buffers start from random contents, reads stall and the
trace back-pressures at random.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest

from compiler import Target, compile_program
from golden.config import ModelConfig
from golden.random_artifact import random_artifact
from hw.encoder.matmul_exec import MatmulExec
from hw.encoder.regs import ERR_RANGE
from hw.encoder.top import MAX_READ_BEATS
from hw.params import HwParams
from hw.spec.isa import INSTR_BYTES, Instruction, Layout, Op, Post, encode
from tests.exec_harness import _steps_before, run_instruction

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
    ("1x3x16", 1, 5, False),       # R = 1
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
])
def test_out_of_range_instruction_stops_with_err_range(kind, fields):
    target, prog = _program("2x3x16", 1, 5, False)
    pc = next(pc for pc, ins in enumerate(prog.instructions) if ins.op == Op.MATMUL and _kind(ins) == kind)
    bad = _patched(prog, pc, **fields)
    got = run_instruction(_unit(target), bad, pc, seed=1, expect_error=ERR_RANGE)
    before = _steps_before(bad, pc, np.random.default_rng(1 + 1))      # the harness's buffers (seed + 1)
    assert (got["act"] == before.act).all() and (got["res"] == before.res).all() and (got["scr"] == before.scr).all()
