"""cocotb bench of the accelerator's top level (hw/encoder/top.py) with cocotbext-axi bus models.

The host side is what an SoC driver does: cocotbext-axi's `AxiLiteMaster` on the register
port (`hw.encoder.regs`), its `AxiRam` behind the AXI4 master port holding the program
(`hw.spec.isa` words). Tests:

* ``registers``: ID, version and array registers; a read-write register round trip; a
  read-only and an unmapped offset answer SLVERR.
* ``end_program``: a program of one END at a base address that is not 4 KiB aligned
  raises DONE and the interrupt; cycles = fetch busy cycles + 2 (decode, END's wait for
  pending writes); retired = 1.
* ``stops_on_errors``: an unknown opcode and an END with a reserved bit set stop with
  ERR_OPCODE, a MATMUL with zero dimensions with ERR_RANGE (pc names the instruction), a
  misaligned program base with ERR_FETCH; CLEAR clears the flags.
* ``embed_program``: real programs compiled from a random tiny artifact (T = 1, a padded
  sequence, T = max_seq) at a data base that is not 4 KiB aligned: EMBED runs, its trace
  (every embedding sum, int32) of programs cut after EMBED equals the compiler's executor
  (`compiler.Machine`) byte for byte; a token id outside the
  vocabulary stops EMBED with ERR_TOKEN before anything is written.
* ``program_run`` (the run `sim.inference.run_program` asks for; the others are verification
  tests, skipped when it runs alone): loads the program file named by the workload
  (``program``) at ``data_base`` (default 0x1040), starts it, waits for the interrupt, and
  writes the external image after the run (``memory_out``, .npy) and the status, cycle and
  busy counters (``counters_out``, JSON) for the host, which compares the image's traces with
  golden. It fails if the run stops with an error.
"""
from __future__ import annotations

import numpy as np
from cocotb.triggers import ClockCycles, First, RisingEdge, SimTimeoutError, Timer
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam
from cocotbext.axi.constants import AxiResp

from bitaccel.compiler import Machine, Target, compile_program
from bitaccel.compiler.memory import token_words
from bitaccel.golden.config import ModelConfig
from bitaccel.golden.random_artifact import random_artifact
from bitaccel.golden.version import __version__
from bitaccel.hw.encoder import regs as R
from bitaccel.hw.spec.isa import FORMATS, INSTR_BYTES, Instruction, Op, decode, encode

import json
import logging
import os

from bitaccel.compiler import load_program

from bitaccel.sim.bench.harness import CLOCK_NS, bench_test, run_config

RAM_BYTES = 1 << 22


class Host:
    """The SoC side: register master, external memory, interrupt wait."""

    def __init__(self, tb, ram_bytes: int = RAM_BYTES):
        dut = tb.dut
        self.tb = tb
        self.regs = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil_"), dut.clk, dut.rst)
        self.ram = AxiRam(AxiBus.from_prefix(dut, "m_axi_"), dut.clk, dut.rst, size=ram_bytes)
        for model in (self.regs, self.ram):       # one log line per burst would dominate a long run
            for part in (getattr(model, "read_if", None), getattr(model, "write_if", None), model):
                if part is not None and hasattr(part, "log"):
                    part.log.setLevel(logging.WARNING)

    async def read(self, name: str) -> int:
        return await self.regs.read_dword(R.offset(name))

    async def write(self, name: str, value: int) -> None:
        await self.regs.write_dword(R.offset(name), value)

    async def run(self, program_base: int, budget_cycles: int = 5000, on_progress=None,
                  every_cycles: int = 250_000) -> int:
        """Start at `program_base`, wait for the interrupt; returns STATUS.

        No Python on every clock: the wait wakes on the interrupt edge, or every `every_cycles`
        cycles (a timer) to hand ``on_progress(pc, cycles)`` the instruction index and cycle count
        (two register reads). More than `budget_cycles` without the interrupt: SimTimeoutError.
        """
        await self.write("program_base_lo", program_base)
        await self.write("irq_enable", 1)
        await self.write("ctrl", R.CTRL_START)
        dut, t0 = self.tb.dut, self.tb.cycle()
        while not int(dut.irq.value):
            left = budget_cycles - (self.tb.cycle() - t0)
            if left <= 0:
                raise SimTimeoutError(f"no interrupt within {budget_cycles} cycles")
            await First(RisingEdge(dut.irq), Timer(min(left, every_cycles) * CLOCK_NS, "ns"))
            if on_progress is not None and not int(dut.irq.value):
                on_progress(await self.read("pc"), await self.read("cycles_lo"))
        return await self.read("status")


def _zero_instruction(op: Op) -> Instruction:
    return Instruction(op, {f.name: 0 for f in FORMATS[op]})


@bench_test(verify=True)
async def registers(tb):
    host = Host(tb)
    p = tb.params
    major, minor, patch = (int(x) for x in __version__.split(".")[:3])
    got = [await host.read("id"), await host.read("version"), await host.read("array")]
    want = [R.MAGIC, major << 16 | minor << 8 | patch, (p.rows - 1) | (p.cols - 1) << 8 | p.lanes << 16]
    tb.scoreboard.compare("id_version_array", want, got)
    await host.write("data_base_lo", 0xDEADBEE0)
    tb.scoreboard.compare("rw_round_trip", [0xDEADBEE0], [await host.read("data_base_lo")])
    ro = await host.regs.write(R.offset("status"), b"\x01\x00\x00\x00")
    unmapped_w = await host.regs.write(0xFFC, b"\x01\x00\x00\x00")
    unmapped_r = await host.regs.read(0xFFC, 4)
    tb.scoreboard.compare("slverr", [AxiResp.SLVERR] * 3, [ro.resp, unmapped_w.resp, unmapped_r.resp])
    tb.scoreboard.compare("status_idle", [0], [await host.read("status")])


@bench_test(verify=True)
async def end_program(tb):
    host = Host(tb)
    base = 0x1FE0                     # one instruction right below a 4 KiB boundary
    host.ram.write(base, encode(_zero_instruction(Op.END)))
    status = await host.run(base)
    cycles = await host.read("cycles_lo") | (await host.read("cycles_hi")) << 32
    fetch = await host.read("busy_fetch")
    tb.scoreboard.compare("end.status", [R.STATUS_DONE], [status])
    tb.scoreboard.compare("end.retired_pc", [1, 0], [await host.read("retired"), await host.read("pc")])
    tb.scoreboard.compare("end.cycles", [fetch + 2], [cycles])
    tb.scoreboard.compare("end.axi_read_counted", [True], [await host.read("busy_axi_read") >= INSTR_BYTES // 8])
    await host.write("ctrl", R.CTRL_CLEAR)
    await ClockCycles(tb.clk, 2)
    tb.scoreboard.compare("end.cleared", [0, 0], [await host.read("status"), int(tb.dut.irq.value)])


@bench_test(verify=True)
async def stops_on_errors(tb):
    host = Host(tb)
    end = encode(_zero_instruction(Op.END))
    reserved = bytearray(end)
    reserved[-1] = 0x80                                    # the top reserved bit of an END
    unknown = bytes([0x3F]) + bytes(INSTR_BYTES - 1)       # opcode 63
    cases = [
        ("unknown_opcode", 0x100, [unknown], R.ERR_OPCODE, 0),
        ("reserved_bits", 0x200, [bytes(reserved)], R.ERR_OPCODE, 0),
        ("zero_dims", 0x300, [encode(_zero_instruction(Op.MATMUL))], R.ERR_RANGE, 0),
        ("misaligned", 0x404, [end], R.ERR_FETCH, 0),
    ]
    for name, base, words, code, pc in cases:
        for i, w in enumerate(words):
            host.ram.write(base + i * INSTR_BYTES, w)
        status = await host.run(base)
        tb.scoreboard.compare(f"{name}.status", [R.STATUS_ERROR | code << 8], [status])
        tb.scoreboard.compare(f"{name}.pc", [pc], [await host.read("pc")])
        await host.write("ctrl", R.CTRL_CLEAR)
        tb.scoreboard.compare(f"{name}.cleared", [0], [await host.read("status")])


def _tiny_model(p) -> ModelConfig:
    """The largest small model within the bench's limits (head_dim = max_head_dim)."""
    return ModelConfig(vocab_size=90, hidden=p.max_hidden, layers=1, heads=p.max_hidden // p.max_head_dim,
                       ffn=p.max_ffn, max_position=p.max_seq, type_vocab=2)


@bench_test(verify=True)
async def embed_program(tb):
    host = Host(tb)
    p = tb.params
    cfg = _tiny_model(p)
    art = random_artifact(cfg, seed=tb.seed)
    rng = tb.child_rng("inputs")
    base = 0x1040                                          # data base: 64-byte, not 4 KiB aligned
    for name, t in (("t1", 1), ("padded", max(2, p.max_seq // 2 + 1)), ("tmax", p.max_seq)):
        ids = rng.integers(0, cfg.vocab_size, t)
        ids[0] = cfg.vocab_size - 1                        # the last table row
        mask = np.ones(t, dtype=bool)
        mask[t - t // 3:] = False
        types = rng.integers(0, cfg.type_vocab, t)
        prog = compile_program(art, Target(p), ids=ids, mask=mask, types=types)
        image = bytearray(prog.image)                      # the program cut after EMBED: END at pc 1
        at = prog.regions["program"][0] + INSTR_BYTES
        image[at:at + INSTR_BYTES] = encode(_zero_instruction(Op.END))
        host.ram.write(base, bytes(image))
        machine = Machine(prog)
        assert machine.step()
        embed = decode(bytes(image[prog.regions["program"][0]:][:INSTR_BYTES]))
        await host.write("data_base_lo", base)
        status = await host.run(base + prog.regions["program"][0], budget_cycles=4000 + 40 * t * cfg.hidden)
        tb.scoreboard.compare(f"{name}.status", [R.STATUS_DONE], [status])
        tb.scoreboard.compare(f"{name}.pc_retired", [1, 2], [await host.read("pc"), await host.read("retired")])
        n = 4 * t * cfg.hidden
        got = np.frombuffer(host.ram.read(base + embed["trace"], n), dtype="<i4")
        want = np.frombuffer(bytes(machine.ext[embed["trace"]:embed["trace"] + n]), dtype="<i4")
        tb.scoreboard.compare(f"{name}.embed_trace", want.tolist(), got.tolist())
        await host.write("ctrl", R.CTRL_CLEAR)

    # a token id outside the vocabulary: ERR_TOKEN, nothing written
    ids = np.array([1, cfg.vocab_size, 2])
    prog = compile_program(art, Target(p), ids=[1, 1, 2])
    image = bytearray(prog.image)
    tok = prog.regions["tokens"][0]
    image[tok:tok + 12] = token_words(ids, np.zeros(3, np.int64), np.ones(3, bool))
    embed = decode(bytes(image[prog.regions["program"][0]:][:INSTR_BYTES]))
    host.ram.write(base, bytes(image))
    host.ram.write(base + embed["trace"], bytes(16))
    status = await host.run(base + prog.regions["program"][0])
    tb.scoreboard.compare("bad_token.status", [R.STATUS_ERROR | R.ERR_TOKEN << 8], [status])
    tb.scoreboard.compare("bad_token.no_trace", [0] * 16, list(host.ram.read(base + embed["trace"], 16)))


@bench_test()
async def program_run(tb):
    wl = run_config().workload
    if "program" not in wl:
        raise ValueError("program_run needs the workload option 'program' (a program file); "
                         "run it through sim.inference.run_program")
    prog = load_program(wl["program"])
    base = int(wl.get("data_base", 0x1040))
    image = bytes(prog.image)
    host = Host(tb, ram_bytes=max(RAM_BYTES, 1 << (base + len(image)).bit_length()))
    host.ram.write(base, image)
    await host.write("data_base_lo", base)
    t0 = tb.cycle()
    progress_out = wl.get("progress_out")

    def progress(pc: int, cycles: int) -> None:      # for the host's progress line (sim.inference)
        with open(progress_out + ".tmp", "w") as f:
            f.write(f"instruction {pc + 1} of {len(prog.instructions)}, {cycles} cycles")
        os.replace(progress_out + ".tmp", progress_out)

    status = await host.run(base + prog.regions["program"][0], budget_cycles=int(wl.get("budget_cycles", 50_000_000)),
                            on_progress=progress if progress_out else None)
    wall_cycles = tb.cycle() - t0
    counters = {"status": status, "error_code": (status >> 8) & 0xFF, "pc": await host.read("pc"),
                "retired": await host.read("retired"),
                "cycles": await host.read("cycles_lo") | (await host.read("cycles_hi")) << 32,
                "host_cycles": wall_cycles,
                "busy": {name: await host.read(f"busy_{name}") for name in R.BUSY_COUNTERS},
                "beats": {name: await host.read(name) for name in R.BEAT_COUNTERS}}
    if "memory_out" in wl:
        np.save(wl["memory_out"] + ".tmp.npy", np.frombuffer(host.ram.read(base, len(image)), dtype=np.uint8))
        os.replace(wl["memory_out"] + ".tmp.npy", wl["memory_out"])
    if "counters_out" in wl:
        with open(wl["counters_out"] + ".tmp", "w") as f:
            json.dump(counters, f, indent=2)
        os.replace(wl["counters_out"] + ".tmp", wl["counters_out"])
    tb.scoreboard.compare("program.status", [R.STATUS_DONE], [status])
