"""Standalone bench of one execute unit (hw/encoder/*_exec) in the Amaranth simulator, against compiler.Machine.

`run_instruction(make_unit, program, pc)` runs the program's instructions before `pc` in the
compiler's executor (`compiler.Machine`, optionally from random buffer contents), builds the
unit with the on-chip buffers holding exactly the executor's state (act, res, scr, key mask),
runs instruction `pc` on the unit, and compares every buffer word and the external memory
(traces, outputs) with the executor's state after the instruction, integer for integer.

The port convention every execute unit follows (a unit declares only the ports it uses):

* ``start`` In(1) pulse with ``ins`` (`hw.encoder.layouts.instruction_layout`) and ``base``
  (the data base: every external address field is relative to it) valid; ``busy`` Out(1)
  from the cycle after start until done; ``error`` Out(8) (`hw.encoder.regs` ERR_*, 0 = none)
  valid when busy falls.
* ``rd_cmd`` / ``rd_data``: read commands ``{addr, beats}`` and 64-bit data beats
  ``{data, last}`` of the shared `AxiReader` (byte addresses, 8-byte aligned).
* ``trace_start`` / ``trace_values``: the `TraceWriter` (int32 values to consecutive addresses).
* Buffers, synchronous read ports (data the cycle after the address), one write port each:
  ``res_r0_addr``/``res_r0_data``, ``res_r1_addr``/``res_r1_data``, ``res_w_addr``/``res_w_data``/
  ``res_w_en`` (words of V = hw.spec.buffers.residual_lanes signed 16-bit values, one enable per
  value); ``act_r_addr``/``act_r_data``, ``act_w_addr``/
  ``act_w_data``/``act_w_en`` (words of R*L bits: physical word P holds flat words
  P*R .. P*R + R - 1 of the compiler's activation buffer, flat word P*R + s in bits s*L ..;
  ``act_w_en`` is a bit enable per data bit); ``scr_r_addr``/``scr_r_data``, ``scr_w_addr``/
  ``scr_w_data``/``scr_w_en`` (words of W = hw.spec.buffers.score_lanes signed acc_width scores, one
  enable per score).
* ``mask`` In(max_seq): the key mask (bit t = token t valid), for SOFTMAX.
"""
from __future__ import annotations

import numpy as np
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import memory
from amaranth.lib.wiring import In

from bitaccel.compiler import Machine
from bitaccel.hw.spec.buffers import pack_words, residual_lanes, score_lanes, unpack_words
from bitaccel.hw.spec.isa import INSTR_BYTES, decode
from tests.hwsim import run

__all__ = ["run_instruction", "act_physical", "act_flat"]


def act_physical(act: np.ndarray, rows: int) -> list[int]:
    """Flat activation words (words, L) {0,1} -> physical R*L-bit words (flat word P*R + s at bits s*L)."""
    words, lanes = act.shape
    assert words % rows == 0, "the activation buffer depth must be a multiple of R"
    bits = act.reshape(words // rows, rows * lanes)
    return [int.from_bytes(np.packbits(b, bitorder="little").tobytes(), "little") for b in bits]


def act_flat(physical: list[int], rows: int, lanes: int) -> np.ndarray:
    """Inverse of `act_physical`."""
    n = rows * lanes
    out = np.zeros((len(physical) * rows, lanes), dtype=np.uint8)
    for p, word in enumerate(physical):
        bits = np.unpackbits(np.frombuffer(word.to_bytes(-(-n // 8), "little"), dtype=np.uint8), bitorder="little")
        out[p * rows:(p + 1) * rows] = bits[:n].reshape(rows, lanes)
    return out


class _Wrapper(Elaboratable):
    """The unit plus the buffers its ports name, initialized from the executor's state."""

    def __init__(self, unit, machine: Machine, params):
        self.unit, self.params = unit, params
        ports = unit.signature.members
        self.has = {name: name in ports for name in ("res_r0_addr", "res_r1_addr", "res_w_addr", "act_r_addr",
                                                       "act_w_addr", "scr_r_addr", "scr_w_addr", "mask")}
        r = params.rows
        # residual and score buffers: words of V values / W scores (hw.spec.buffers.pack_words)
        self.res_lanes, self.res_len = residual_lanes(params), len(machine.res)
        self.res = memory.Memory(shape=self.res_lanes * 16, depth=-(-self.res_len // self.res_lanes),
                                 init=pack_words(machine.res, self.res_lanes, 16))
        self.act = memory.Memory(shape=r * params.lanes, depth=len(machine.act) // r,
                                 init=act_physical(machine.act, r))
        self.scr_lanes, self.scr_len = score_lanes(params), len(machine.scr)
        self.scr = memory.Memory(shape=self.scr_lanes * params.acc_width, depth=-(-self.scr_len // self.scr_lanes),
                                 init=pack_words(machine.scr, self.scr_lanes, params.acc_width))
        self.mask = int(sum(1 << i for i, v in enumerate(machine.mask) if v))

    def elaborate(self, platform):
        m = Module()
        u = self.unit
        m.submodules.unit = u
        m.submodules.res, m.submodules.act, m.submodules.scr = self.res, self.act, self.scr
        for buf, port in (("res", "r0"), ("res", "r1"), ("act", "r"), ("scr", "r")):
            if self.has[f"{buf}_{port}_addr"]:
                rp = getattr(self, buf).read_port()
                m.d.comb += [rp.addr.eq(getattr(u, f"{buf}_{port}_addr")), getattr(u, f"{buf}_{port}_data").eq(rp.data)]
        for buf in ("res", "act", "scr"):
            if self.has[f"{buf}_w_addr"]:
                wp = getattr(self, buf).write_port(granularity={"act": 1, "scr": self.params.acc_width, "res": 16}[buf])
                m.d.comb += [wp.addr.eq(getattr(u, f"{buf}_w_addr")), wp.data.eq(getattr(u, f"{buf}_w_data")),
                             wp.en.eq(getattr(u, f"{buf}_w_en"))]
        if self.has["mask"] and u.signature.members["mask"].flow == In:
            m.d.comb += u.mask.eq(self.mask)
        return m

    def contents(self, ctx) -> dict:
        """The buffers' flat contents as the executor holds them (res, scr signed; act flat words), read in a
        testbench."""
        out = {}
        for buf, bits in (("res", 16), ("scr", self.params.acc_width)):
            mem, lanes, count = getattr(self, buf), getattr(self, f"{buf}_lanes"), getattr(self, f"{buf}_len")
            words = [ctx.get(mem.data[i]) for i in range(mem.depth)]
            out[buf] = np.array(unpack_words(words, lanes, bits, count), dtype=np.int64)
        out["act"] = act_flat([ctx.get(self.act.data[i]) for i in range(self.act.depth)], self.params.rows,
                              self.params.lanes)
        return out


def _steps_before(program, pc: int, rng) -> Machine:
    machine = Machine(program, rng)
    while machine.pc < pc:
        if not machine.step():
            raise ValueError(f"the program ends before pc {pc}")
        machine.pc += 1
    return machine


def run_instruction(make_unit, program, pc: int, *, seed: int = 0, random_buffers: bool = True,
                    stall: float = 0.2, expect_error: int = 0, deadline_cycles: int = 400_000) -> dict:
    """Run instruction `pc` of `program` on `make_unit(params)`; assert it equals the executor. Returns counts."""
    rng = np.random.default_rng(seed)
    params = program.target.params
    machine = _steps_before(program, pc, np.random.default_rng(seed + 1) if random_buffers else None)
    before_ext = machine.ext.copy()
    word = bytes(machine.ext[machine.program_addr + pc * INSTR_BYTES:][:INSTR_BYTES])
    ins = decode(word)
    wrapper = _Wrapper(make_unit(params), machine, params)
    if expect_error == 0:
        machine.step()                              # the executor's state after the instruction
    u = wrapper.unit
    ext = before_ext.copy()
    got = {}

    # background benches loop on plain ticks (no `until`), so nothing is left suspended at the end
    async def take(ctx, stream):
        """One transfer from an output stream of the unit (ready held high until it comes)."""
        ctx.set(stream.ready, 1)
        while True:
            *_, valid, payload = await ctx.tick().sample(stream.valid, stream.payload)
            if valid:
                ctx.set(stream.ready, 0)
                return payload

    async def reader(ctx):
        """Serves read commands from the external image, 8 bytes a beat, with random stalls."""
        while True:
            cmd = await take(ctx, u.rd_cmd)
            addr, beats = int(cmd.addr), int(cmd.beats)
            assert addr % 8 == 0 and beats >= 1 and addr + 8 * beats <= len(before_ext), (addr, beats)
            b = 0
            while b < beats:
                offer = rng.random() >= stall
                if offer:
                    ctx.set(u.rd_data.payload.data,
                            int.from_bytes(before_ext[addr + 8 * b:addr + 8 * b + 8].tobytes(), "little"))
                    ctx.set(u.rd_data.payload.last, int(b == beats - 1))
                ctx.set(u.rd_data.valid, int(offer))
                *_, ready = await ctx.tick().sample(u.rd_data.ready)
                b += int(offer and ready)
            ctx.set(u.rd_data.valid, 0)

    async def tracer(ctx):
        """Takes trace starts and values (int32 to consecutive addresses), with random back-pressure."""
        if "trace_start" not in u.signature.members:
            return
        while True:
            start = await take(ctx, u.trace_start)
            addr, i = int(start.addr), 0
            assert addr % 8 == 0, f"trace at {addr}: not on a 64-bit bus word (the AXI writer refuses it)"
            while i < int(start.count):
                ready = rng.random() >= stall
                ctx.set(u.trace_values.ready, int(ready))
                *_, valid, v = await ctx.tick().sample(u.trace_values.valid, u.trace_values.payload.value)
                if valid and ready:
                    ext[addr + 4 * i:addr + 4 * i + 4] = np.frombuffer(int(v).to_bytes(4, "little", signed=True),
                                                                     np.uint8)
                    i += 1
            ctx.set(u.trace_values.ready, 0)

    async def host(ctx):
        ctx.set(u.ins.as_value(), int.from_bytes(word, "little"))
        ctx.set(u.base, 0)
        ctx.set(u.start, 1)
        await ctx.tick()
        ctx.set(u.start, 0)
        cycles = 1
        while ctx.get(u.busy):
            await ctx.tick()
            cycles += 1
        got["cycles"] = cycles
        got["error"] = ctx.get(u.error)
        for _ in range(4):                          # let the last trace values land
            await ctx.tick()
        got.update(wrapper.contents(ctx))
        if "mask" in u.signature.members and u.signature.members["mask"].flow != In:
            got["mask"] = ctx.get(u.mask)

    run(wrapper, host, background=[reader, tracer], deadline_cycles=deadline_cycles)
    assert got["error"] == expect_error, f"{ins.op.name} at pc {pc}: error code {got['error']}, expected {expect_error}"
    if expect_error:
        return got
    where = f"{ins.op.name} at pc {pc}"
    for name, want in (("res", machine.res.astype(np.int64)), ("scr", machine.scr), ("act", machine.act)):
        diff = np.argwhere(got[name] != want)
        assert not diff.size, f"{where}: {name} buffer differs first at {tuple(diff[0])}: " \
                              f"{got[name][tuple(diff[0])]} != {want[tuple(diff[0])]} ({len(diff)} differences)"
    if "mask" in got:
        want_mask = sum(1 << i for i, v in enumerate(machine.mask) if v)
        assert got["mask"] == want_mask, f"{where}: key mask {got['mask']:#x} != {want_mask:#x}"
    diff = np.flatnonzero(ext != machine.ext)
    assert not diff.size, f"{where}: external memory differs first at byte {diff[0]} ({len(diff)} bytes)"
    return got
