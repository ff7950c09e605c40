"""QUANT, LAYERNORM and SOFTMAX execute units in the Amaranth simulator against the compiler's executor.

Each case runs one instruction of a compiled program (tests/exec_harness.py: buffers preloaded
from `compiler.Machine` with random initial contents, read stalls and trace back-pressure) and
compares every buffer word and the external memory (traces) integer for integer.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from amaranth.hdl import Assert, Cat, Format, Module, Signal
from amaranth.lib import memory

from bitaccel.compiler import Machine, Target, compile_program
from bitaccel.compiler import memory as mem
from bitaccel.compiler.execute import ExecError
from bitaccel.compiler.program import View
from bitaccel.golden.config import ModelConfig
from bitaccel.golden.random_artifact import random_artifact
from bitaccel.hw.encoder.layernorm_exec import LayerNormExec
from bitaccel.hw.encoder.quant_exec import CodeWriter, QuantExec
from bitaccel.hw.encoder.regs import ERR_FRAMING, ERR_LENGTH, ERR_MASKED_ROW, ERR_RANGE
from bitaccel.hw.encoder.softmax_exec import SoftmaxExec
from bitaccel.hw.encoder.top import MAX_READ_BEATS
from bitaccel.hw.params import HwParams
from bitaccel.hw.spec.buffers import pad_rows, quant_lanes, residual_lanes
from bitaccel.hw.spec.isa import INSTR_BYTES, Instruction, Layout, Op, decode, encode, wide_layernorm, wide_quant
from tests.exec_harness import act_flat, act_physical, run_instruction
from tests.hwsim import run, stream_put

LIMITS = dict(max_seq=8, max_hidden=64, max_ffn=128, max_head_dim=16)
#: exp LUT entries the random artifacts need (the LUT grows with the code bits)
EXP_LUT = {1: 64, 2: 256, 4: 2048}
CFG = ModelConfig(vocab_size=50, hidden=64, layers=1, heads=4, ffn=128, max_position=8, type_vocab=3)
ARRAYS = {"1x3x16": (1, 3, 16), "2x3x16": (2, 3, 16), "3x5x32": (3, 5, 32),
          "2x3x8": (2, 3, 8),      # 8 lanes: head groups, TRANS token rows and softmax rows span several words
          "2x8x8": (2, 8, 8)}      # W = 8 keys a softmax beat (hw.spec.buffers.score_lanes): rows of 12 keys
                                   # start mid-word and end in a partial beat
INPUTS = {                                                   # ids, mask
    "T1": ([7], [1]),
    "padded": ([1, 49, 3, 0, 5], [1, 1, 1, 0, 0]),
    "Tmax": ([4, 8, 15, 16, 23, 42, 2, 9], [1] * 8),
    "T12": ([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8], [1] * 10 + [0] * 2),     # 8-lane arrays only (max_seq 16)
}


def _params(array: str, act_bits: int) -> HwParams:
    r, c, l = ARRAYS[array]
    limits = dict(LIMITS, max_seq=16) if l == 8 else LIMITS          # T12 runs on the 8-lane arrays
    return HwParams(rows=r, cols=c, lanes=l, max_act_bits=act_bits, max_exp_lut=EXP_LUT[act_bits], **limits)


_PROGRAMS: dict = {}


def program(array: str, act_bits: int, inputs: str, trace: bool = True):
    """A compiled program of the tiny config (cached: several tests run instructions of one program)."""
    key = (array, act_bits, inputs, trace)
    if key not in _PROGRAMS:
        cfg = dataclasses.replace(CFG, max_position=16) if inputs == "T12" else CFG
        art = random_artifact(cfg, seed=5 + act_bits, act_bits=act_bits)
        ids, mask = INPUTS[inputs]
        _PROGRAMS[key] = compile_program(art, Target(_params(array, act_bits)), ids=ids, mask=mask, trace=trace)
    return _PROGRAMS[key]


def instructions(prog) -> list:
    """Decoded instructions of a program, up to END."""
    addr, size = prog.regions["program"]
    out = []
    for pc in range(size // INSTR_BYTES):
        ins = decode(bytes(prog.image[addr + pc * INSTR_BYTES:][:INSTR_BYTES]))
        if ins.op == Op.END:
            break
        out.append(ins)
    return out


def pcs(prog, op: Op) -> list[int]:
    return [pc for pc, ins in enumerate(instructions(prog)) if ins.op == op]


def with_instruction(prog, pc: int, **fields):
    """The program with instruction `pc`'s fields replaced (a crafted variant of a compiled instruction)."""
    ins = instructions(prog)[pc]
    word = encode(Instruction(ins.op, {**ins.fields, **fields}))
    image = prog.image.copy()
    addr = prog.regions["program"][0] + pc * INSTR_BYTES
    image[addr:addr + INSTR_BYTES] = np.frombuffer(word, dtype=np.uint8)
    return dataclasses.replace(prog, image=image)


def executor_refuses(prog, pc: int) -> None:
    """The compiler's executor stops with ExecError at instruction `pc` (the unit must flag the same case)."""
    machine = Machine(prog)
    while machine.pc < pc:
        assert machine.step()
        machine.pc += 1
    with pytest.raises(ExecError):
        machine.step()


def quant_unit(target):
    return lambda p: QuantExec(p, 32, target.res_words, target.act_words, MAX_READ_BEATS)


def counting(make_unit, ports: tuple[str, ...], expected: int):
    """`make_unit` whose unit also asserts (in simulation) that its activity outputs `ports` (element
    counts, 0 or 1 for width-1 units) add up to exactly `expected` between start and busy falling."""
    def make(p):
        unit = make_unit(p)
        elaborate = unit.elaborate

        def counted(platform):
            m = elaborate(platform)
            count, was_busy = Signal(32), Signal()
            m.d.sync += was_busy.eq(unit.busy)
            with m.If(unit.start):
                m.d.sync += count.eq(0)
            with m.Elif(Cat(*(getattr(unit, name) for name in ports)).any()):
                m.d.sync += count.eq(count + sum(getattr(unit, name) for name in ports))
            with m.If(was_busy & ~unit.busy):
                m.d.comb += Assert(count == expected, Format("activity {} != " + str(expected), count))
            return m
        unit.elaborate = counted
        return unit
    return make


# ---------------------------------------------------------------------------------------------- CodeWriter
def _random_view(rng, machine, lanes: int, block: int, max_bits: int) -> View:
    """A random code tensor that fits the activation buffer: layout, bits, rows, group width, first channel."""
    while True:
        layout = int(rng.choice([Layout.ROWS, Layout.HEADS, Layout.TRANS]))
        bits = int(rng.choice([b for b in (1, 2, 4, 8) if b <= max_bits]))
        rows = int(rng.integers(1, 14))
        width = int(rng.integers(1, 3 * lanes))
        if layout == Layout.ROWS:
            col = int(rng.integers(0, width))
            cols = int(rng.integers(1, width - col + 1))
        else:
            col = int(rng.integers(0, 3 * width))
            cols = int(rng.integers(1, 3 * width))
        words, _ = mem.act_address(layout, 0, rows, width, bits, lanes, block, np.arange(rows)[:, None, None],
                                   col + np.arange(cols)[None, :, None], np.arange(bits)[None, None, :])
        span = -(-(int(words.max()) + 1) // block) * block
        if span <= len(machine.act):
            dst = block * int(rng.integers(0, (len(machine.act) - span) // block + 1))
            return View("act", dst, rows, cols, width, col, layout, bits, bool(rng.integers(0, 2)), rows)


def _random_rows_view(rng, machine, lanes: int, block: int, max_bits: int):
    """A ROWS view of whole rows from channel 0 (the SOFTMAX probability rows), unsigned, placed in the buffer."""
    while True:
        rows, width = int(rng.integers(1, 6)), int(rng.integers(1, 3 * lanes))
        bits = int(rng.choice([b for b in (1, 2, 4, 8) if b <= max_bits]))
        span = pad_rows(rows, block) * bits * -(-width // lanes)
        if span <= len(machine.act):
            dst = block * int(rng.integers(0, (len(machine.act) - span) // block + 1))
            return View("act", dst, rows, width, width, 0, Layout.ROWS, bits, False, rows)


@pytest.mark.parametrize("array,seed,beat", [("1x3x16", 0, 1), ("2x3x8", 1, 1), ("3x5x32", 2, 1), ("2x3x8", 3, 1),
                                             ("2x3x8", 4, 4), ("3x5x32", 5, 8)])
def test_code_writer_equals_machine_write_codes(array, seed, beat):
    """Random code tensors (every layout, 1..8 bits, widths across lane words, first channels in any
    group) written by the CodeWriter equal `compiler.Machine.write_codes` on random buffer contents;
    with `beat` codes a stream beat (whole ROWS rows, the last beat of a row partial)."""
    act_bits = 4 if array != "2x3x8" else 2
    prog = program(array, act_bits, "T12" if array == "2x3x8" else "padded")
    p, rng = prog.target.params, np.random.default_rng(seed)
    for case in range(4):
        machine = Machine(prog, np.random.default_rng(100 * seed + case))
        if beat == 1:
            v = _random_view(rng, machine, p.lanes, p.rows, p.max_act_bits)
        else:
            v = _random_rows_view(rng, machine, p.lanes, p.rows, p.max_act_bits)
        lo, hi = (-(1 << (v.bits - 1)), 1 << (v.bits - 1)) if v.signed and v.bits > 1 else (0, 1 << v.bits)
        codes = rng.integers(lo, hi, (v.rows, v.cols))
        if v.signed and v.bits == 1:
            codes = 2 * codes - 1
        before = machine.act.copy()
        machine.write_codes(v, codes)
        writer = CodeWriter(p.rows, p.lanes, len(machine.act), p.max_act_bits, beat=beat)
        act = memory.Memory(shape=p.rows * p.lanes, depth=len(before) // p.rows, init=act_physical(before, p.rows))
        top = Module()
        top.submodules.writer, top.submodules.act = writer, act
        wp = act.write_port(granularity=1)
        top.d.comb += [wp.addr.eq(writer.act_w_addr), wp.data.eq(writer.act_w_data), wp.en.eq(writer.act_w_en)]
        stored = mem.to_stored(codes, v.bits, v.signed)
        beats = [list(row[k:k + beat]) for row in stored for k in range(0, v.cols, beat)]
        got = {}

        async def bench(ctx):
            for name, value in (("dst", v.addr), ("layout", v.layout), ("rows", v.rows), ("channels", v.cols),
                                ("width", v.width), ("col", v.col), ("bits", v.bits)):
                ctx.set(getattr(writer, name), value)
            ctx.set(writer.start, 1)
            await ctx.tick()
            ctx.set(writer.start, 0)
            for lanes in beats:
                await stream_put(ctx, writer.codes, {"u": [int(u) for u in lanes] + [0] * (beat - len(lanes)),
                                                     "n": len(lanes)}, rng, 0.3)
            await ctx.tick()
            got["misaligned"] = ctx.get(writer.misaligned)
            got["act"] = act_flat([ctx.get(act.data[i]) for i in range(act.depth)], p.rows, p.lanes)

        run(top, bench)
        assert not got["misaligned"]
        diff = np.argwhere(got["act"] != machine.act)
        assert not diff.size, f"{v}: act differs first at {tuple(diff[0])} ({len(diff)} bits)"


# ---------------------------------------------------------------------------------------------- QUANT
@pytest.mark.parametrize("array,act_bits,inputs", [
    ("1x3x16", 1, "padded"), ("2x3x16", 1, "T1"), ("3x5x32", 1, "Tmax"),
    ("1x3x16", 2, "padded"), ("2x3x16", 4, "Tmax"), ("3x5x32", 2, "padded"), ("2x3x8", 2, "T12"),
    ("2x8x8", 1, "T12"), ("2x8x8", 2, "padded"),
])
def test_quant_matches_executor(array, act_bits, inputs):
    """Every QUANT of a program (q/k/v.in, ffn1.in, the pooler's one-row QUANT), 1-bit and multi-bit; Q =
    2, 4 and 8 channels a beat (hw.spec.buffers.quant_lanes) on the wide path."""
    prog = program(array, act_bits, inputs)
    found = pcs(prog, Op.QUANT)
    assert len(found) >= 3
    q = quant_lanes(prog.target.params)
    wide = [wide_quant(i["layout"], i["src"], i["channels"], i["dst_col"], i["dst_width"], q)
            for i in map(instructions(prog).__getitem__, found)]
    assert wide.count(True) >= 2
    for pc in found:
        run_instruction(quant_unit(prog.target), prog, pc, seed=pc)


@pytest.mark.parametrize("array,act_bits,inputs", [("2x3x16", 1, "padded"), ("3x5x32", 2, "padded"),
                                                   ("2x3x8", 1, "T12")])
@pytest.mark.parametrize("layout,skip,short", [(Layout.HEADS, 3, 3), (Layout.TRANS, 3, 3), (Layout.HEADS, 2, 4),
                                               (Layout.HEADS, 0, 0)])
def test_quant_heads_and_trans_destinations(array, act_bits, inputs, layout, skip, short):
    """A QUANT re-targeted to a HEADS / TRANS tensor (the q and vt regions) from channel d + skip, rows of
    hidden - d - short channels: odd (one channel a beat, hw.spec.isa.wide_quant), even but not a
    multiple of Q (Q = hw.spec.buffers.quant_lanes >= 4 here: one channel a beat), or whole head
    groups (Q channels a beat)."""
    prog = program(array, act_bits, inputs)
    pc = pcs(prog, Op.QUANT)[0]
    ins = instructions(prog)[pc]
    mm = next(i for i in instructions(prog) if i.op == Op.MATMUL and i["layout"] == layout)
    d = CFG.hidden // CFG.heads
    crafted = with_instruction(prog, pc, layout=int(layout), dst=mm["dst"], dst_width=d, dst_col=d + skip,
                               channels=CFG.hidden - d - short)
    assert ins["channels"] == CFG.hidden
    q = quant_lanes(prog.target.params)
    wide = wide_quant(layout, ins["src"], CFG.hidden - d - short, d + skip, d, q)
    assert q >= 4 and wide == (layout == Layout.HEADS and skip == 0)
    run_instruction(quant_unit(prog.target), crafted, pc, seed=7)


def test_quant_refuses_a_requant_bound_outside_16_bits():
    prog = program("2x3x16", 2, "padded")
    pc = pcs(prog, Op.QUANT)[0]
    consts = instructions(prog)[pc]["consts"]
    image = prog.image.copy()
    image[consts + 16:consts + 24] = np.frombuffer(np.int64(1 << 20).tobytes(), np.uint8)   # hi
    bad = dataclasses.replace(prog, image=image)
    run_instruction(quant_unit(prog.target), bad, pc, expect_error=ERR_RANGE)


# ---------------------------------------------------------------------------------------------- LAYERNORM
def layernorm_unit(target):
    return lambda p: LayerNormExec(p, 32, target.res_words, MAX_READ_BEATS)


def _wide_layernorm(ins, params) -> bool:
    return wide_layernorm(ins["hidden"], ins["src"], ins["res"], ins["dst"], ins["sum_dst"], ins["tap"],
                          residual_lanes(params))


@pytest.mark.parametrize("array,act_bits,inputs,trace", [
    ("1x3x16", 1, "padded", True), ("2x3x16", 2, "T1", True), ("3x5x32", 1, "Tmax", True),
    ("2x3x16", 1, "padded", False), ("3x5x32", 2, "Tmax", False), ("2x8x8", 1, "T1", False)])
def test_layernorm_matches_executor(array, act_bits, inputs, trace):
    """The embedding LayerNorm (no add) and both residual add + LayerNorm of a layer. Traced: one value a
    cycle; untraced: a residual word of V values a cycle (hw.spec.isa.wide_layernorm)."""
    prog = program(array, act_bits, inputs, trace)
    found = pcs(prog, Op.LAYERNORM)
    inss = [instructions(prog)[pc] for pc in found]
    assert [ins["add"] for ins in inss] == [0, 1, 1]
    assert [_wide_layernorm(ins, prog.target.params) for ins in inss] == [not trace] * 3
    for pc in found:
        run_instruction(layernorm_unit(prog.target), prog, pc, seed=pc)


@pytest.mark.parametrize("array,change", [
    ("3x5x32", dict(hidden=62)),      # V = 4: rows of 15 words and a partial beat of 2, rows start mid-word
    ("3x5x32", dict(hidden=60)),      # whole beats, every row on a word: the wide path with an unused tail
    ("2x3x16", dict(hidden=62, shift=1)),     # V = 2: whole words, but every base one value off a word
    ("2x8x8", dict(hidden=61, shift=3)),
])
def test_layernorm_unaligned_rows_and_partial_beats(array, change):
    """Crafted residual add + LayerNorms, untraced: a row length that is not whole words (the unit's
    partial last beat) or row bases off a word take the serial path; bit-exact either way. Shorter rows
    keep the shifted regions inside their own (T x 64 values each)."""
    prog = program(array, 1, "Tmax", trace=False)
    pc = pcs(prog, Op.LAYERNORM)[1]
    ins = instructions(prog)[pc]
    shift = change.get("shift", 0)
    fields = {k: ins[k] + shift for k in ("src", "res", "dst", "sum_dst")}
    crafted = with_instruction(prog, pc, hidden=change.get("hidden", ins["hidden"]), **fields)
    wide = _wide_layernorm(instructions(crafted)[pc], prog.target.params)
    assert wide == (change.get("hidden", 64) % residual_lanes(prog.target.params) == 0 and not shift)
    run_instruction(layernorm_unit(prog.target), crafted, pc, seed=11)


def test_layernorm_refuses_a_row_above_max_hidden():
    prog = program("1x3x16", 1, "T1")
    pc = pcs(prog, Op.LAYERNORM)[0]
    run_instruction(layernorm_unit(prog.target), with_instruction(prog, pc, hidden=LIMITS["max_hidden"] + 4), pc,
                    expect_error=ERR_FRAMING)


# ---------------------------------------------------------------------------------------------- SOFTMAX
def softmax_unit(target):
    return lambda p: SoftmaxExec(p, 32, target.scr_words, target.act_words, MAX_READ_BEATS)


@pytest.mark.parametrize("array,act_bits,inputs", [
    ("1x3x16", 1, "padded"), ("2x3x16", 1, "T1"), ("3x5x32", 1, "Tmax"),
    ("1x3x16", 2, "Tmax"), ("2x3x16", 2, "padded"), ("3x5x32", 2, "T1"), ("2x3x16", 4, "Tmax"),
    ("2x3x8", 1, "T12"), ("2x8x8", 1, "T12"), ("2x8x8", 2, "T12"), ("2x8x8", 2, "padded"),
])
def test_softmax_matches_executor(array, act_bits, inputs):
    """Binary (1-bit) and multi-bit (MULTIBIT + requant) probabilities, padded masks, T = 1 and T = max_seq."""
    prog = program(array, act_bits, inputs)
    found = pcs(prog, Op.SOFTMAX)
    assert len(found) == CFG.heads
    for pc in found[:2]:
        run_instruction(softmax_unit(prog.target), prog, pc, seed=pc)


def _all_tokens_masked(prog):
    image = prog.image.copy()
    addr, _ = prog.regions["tokens"]
    words = image[addr:addr + 4 * prog.seq_len].view("<u4") & np.uint32(0x7FFFFFFF)
    image[addr:addr + 4 * prog.seq_len] = words.view(np.uint8)
    return dataclasses.replace(prog, image=image)


@pytest.mark.parametrize("act_bits", [1, 2])
def test_softmax_refuses_a_fully_masked_row(act_bits):
    prog = _all_tokens_masked(program("2x3x16", act_bits, "padded"))
    pc = pcs(prog, Op.SOFTMAX)[0]
    executor_refuses(prog, pc)
    run_instruction(softmax_unit(prog.target), prog, pc, expect_error=ERR_MASKED_ROW)


def test_softmax_refuses_rows_longer_than_max_seq():
    prog = program("1x3x16", 1, "Tmax")
    pc = pcs(prog, Op.SOFTMAX)[0]
    run_instruction(softmax_unit(prog.target), with_instruction(prog, pc, keys=LIMITS["max_seq"] + 1), pc,
                    expect_error=ERR_LENGTH)


@pytest.mark.parametrize("act_bits", [1, 4])
def test_quant_unsigned_codes(act_bits):
    """QUANT with signed = 0: 1-bit codes 0/1 (traced as such); 4-bit: the requant bounds of a signed
    site put negative codes out of the unsigned range, which is ERR_RANGE (the executor raises)."""
    prog = program("2x3x16", act_bits, "padded")
    pc = pcs(prog, Op.QUANT)[1]
    crafted = with_instruction(prog, pc, signed=0)
    if act_bits == 1:
        run_instruction(quant_unit(prog.target), crafted, pc, seed=11)
    else:
        executor_refuses(crafted, pc)
        run_instruction(quant_unit(prog.target), crafted, pc, expect_error=ERR_RANGE)


def test_quant_refuses_a_destination_off_a_row_block():
    prog = program("3x5x32", 1, "padded")
    pc = pcs(prog, Op.QUANT)[0]
    dst = instructions(prog)[pc]["dst"]
    run_instruction(quant_unit(prog.target), with_instruction(prog, pc, dst=dst + 1), pc, expect_error=ERR_RANGE)


def test_activity_outputs_count_elements():
    """thr/req_element (QUANT), ln_element (LAYERNORM), sm/req_element (SOFTMAX): one per element."""
    prog = program("2x3x16", 2, "padded")
    ins = instructions(prog)
    t = prog.seq_len
    pc = pcs(prog, Op.QUANT)[0]
    run_instruction(counting(quant_unit(prog.target), ("thr_element", "req_element"), t * CFG.hidden), prog, pc)
    pc = pcs(prog, Op.LAYERNORM)[1]
    run_instruction(counting(layernorm_unit(prog.target), ("ln_element",), t * CFG.hidden), prog, pc)
    pc = pcs(prog, Op.SOFTMAX)[0]
    assert ins[pc]["bits"] == 2
    run_instruction(counting(softmax_unit(prog.target), ("sm_element", "req_element"), 2 * t * t), prog, pc)
