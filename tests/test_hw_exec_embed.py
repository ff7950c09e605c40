"""EMBED execute unit in the Amaranth simulator against the compiler's executor (tests/exec_harness.py)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bitaccel.compiler import Target, compile_program
from bitaccel.golden.config import ModelConfig
from bitaccel.golden.random_artifact import random_artifact
from bitaccel.hw.encoder.embed import EmbedExec
from bitaccel.hw.encoder.regs import ERR_TOKEN
from bitaccel.hw.encoder.top import MAX_READ_BEATS
from bitaccel.hw.params import HwParams
from bitaccel.hw.spec.buffers import residual_lanes
from bitaccel.hw.spec.isa import INSTR_BYTES, Instruction, Op, embed_beat, encode
from tests.exec_harness import run_instruction

P = HwParams(rows=2, cols=3, lanes=16, max_seq=8, max_hidden=64, max_ffn=128, max_head_dim=16, max_exp_lut=64)
CFG = ModelConfig(vocab_size=50, hidden=64, layers=1, heads=4, ffn=128, max_position=8, type_vocab=3)
ART = random_artifact(CFG, seed=3)


def _unit(target):
    return lambda p: EmbedExec(32, p.max_seq, p.max_hidden, target.res_words, residual_lanes(p), MAX_READ_BEATS)


@pytest.mark.parametrize("ids,mask,types", [
    ([7], [1], [2]),                                                    # T = 1
    ([1, 49, 3, 0, 5], [1, 1, 1, 1, 0], [0, 2, 0, 1, 1]),               # last table rows, a padded token
    ([49] * 8, [1] * 8, [2] * 8),                                       # T = max_seq, all-equal tokens
])
def test_embed_matches_executor(ids, mask, types):
    target = Target(P)
    prog = compile_program(ART, target, ids=ids, mask=mask, types=types)
    run_instruction(_unit(target), prog, 0, seed=len(ids))


def test_embed_refuses_a_token_outside_the_vocabulary():
    target = Target(P)
    prog = compile_program(ART, target, ids=[1, 2, 3])
    image = prog.image.copy()
    tok = prog.regions["tokens"][0]
    image[tok + 4:tok + 8] = list((CFG.vocab_size | 1 << 31).to_bytes(4, "little"))   # id = vocab, valid
    bad = type(prog)(prog.target, prog.config, prog.seq_len, image, prog.regions, prog.checkpoints)
    run_instruction(_unit(target), bad, 0, expect_error=ERR_TOKEN)


@pytest.mark.parametrize("shape,trace,shift", [
    ("2x3x16", False, 0),    # V = 2: E = 2 values a cycle, a bus word in two
    ("4x4x32", False, 0),    # V = 4: a bus word's 4 values in one write
    ("2x8x8", False, 0),     # V = 8: 4 values in half a residual word
    ("2x8x8", False, 2),     # dst off an E-group: one value a cycle
    ("4x4x32", True, 0),     # traced: one value a cycle
])
def test_embed_wide_and_serial_writes(shape, trace, shift):
    """E = hw.spec.isa.embed_beat values a cycle where the rule allows it, else one; bit-exact either way."""
    r, c, l = (int(x) for x in shape.split("x"))
    p = dataclasses.replace(P, rows=r, cols=c, lanes=l)
    target = Target(p)
    prog = compile_program(ART, target, ids=[1, 49, 3, 0, 5], mask=[1, 1, 1, 1, 0], types=[0, 2, 0, 1, 1],
                           trace=trace)
    ins = prog.instructions[0]
    assert ins.op == Op.EMBED
    if shift:
        image = prog.image.copy()
        word = encode(Instruction(Op.EMBED, {**ins.fields, "dst": ins["dst"] + shift}))
        addr = prog.regions["program"][0]
        image[addr:addr + INSTR_BYTES] = np.frombuffer(word, dtype=np.uint8)
        prog = dataclasses.replace(prog, image=image)
    want = 1 if trace or shift else min(4, residual_lanes(p))
    assert embed_beat(ins["dst"] + shift, ins["tap"], residual_lanes(p)) == want
    run_instruction(_unit(target), prog, 0, seed=3)
