"""Sequencer: fetches the program's instruction words over AXI, decodes them, runs them in order.

Instruction words are `hw.spec.isa` words (INSTR_BITS wide, little-endian in memory: the
first bus beat holds bits 0.. of the word). Fetch reads one instruction (INSTR_BYTES /
bytes-per-beat beats) at ``program_base + pc * INSTR_BYTES``; decode checks the opcode and
the reserved bits with the field offsets of `hw.spec.isa` (the one owner of the format).

An opcode in `executes` is handed to its execute unit (``exec_start`` with ``word``; the
top level routes it by ``exec_op``) and the sequencer waits until ``exec_busy`` falls; a
non-zero ``exec_error`` stops the run with that code. END waits until every external write
(traces, results) has landed (``writes_idle``), then raises DONE. Anything else stops with
ERROR: an unknown opcode or set reserved bits (ERR_OPCODE), a failed or misaligned fetch
(ERR_FETCH), an opcode without an execute unit in this build (ERR_UNSUPPORTED).
"""
from __future__ import annotations

from amaranth.hdl import Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from bitaccel.hw.spec.isa import FORMATS, INSTR_BITS, INSTR_BYTES, OPCODE_BITS, Op, field_offsets

from .regs import ERR_FETCH, ERR_OPCODE, ERR_UNSUPPORTED

__all__ = ["Sequencer", "used_bits"]


def used_bits(op: Op) -> int:
    """Bits of `op`'s instruction word below its reserved bits (opcode + fields)."""
    f, pos = field_offsets(op)[-1]
    return pos + f.width


class Sequencer(wiring.Component):
    """Program fetch, decode and dispatch.

    Parameters
    ----------
    addr_width, data_width : int
        The AXI read port's address bits and data bits per beat (INSTR_BITS must be a
        multiple of data_width).
    max_beats : int
        Longest read command of the `AxiReader` it drives.
    executes : set of Op
        Opcodes that have an execute unit in this build.

    Members
    -------
    start : ``In(1)``
        Pulse: run from ``program_base`` (ignored while busy).
    program_base : ``In(addr_width)``
    fetch : ``Out(stream.Signature({"addr": addr_width, "beats": ...}))``
        Read commands to an `AxiReader`.
    fetch_data : ``In(stream.Signature({"data": data_width, "last": 1}))``
    fetch_error : ``In(1)``
        The reader's sticky error flags (response error or misaligned command).
    busy, done, error : ``Out(1)``
        ``done`` / ``error`` are sticky until `clear` or the next `start`.
    error_code : ``Out(8)`` (`hw.encoder.regs` ERR_*)
    pc : ``Out(32)`` instruction index; ``retired`` : ``Out(32)`` instructions completed.
    cycles : ``Out(64)`` cycles since `start`, frozen at done / error.
    fetching : ``Out(1)`` a fetch is in progress (the `fetch` busy counter).
    exec_start : ``Out(1)`` pulse: run ``word`` (opcode ``exec_op``) on its unit.
    word : ``Out(INSTR_BITS)`` the instruction being executed.
    exec_busy : ``In(1)``; exec_error : ``In(8)`` (0: no error), read when exec_busy falls.
    writes_idle : ``In(1)`` no external write is pending.
    """

    def __init__(self, addr_width: int = 32, data_width: int = 64, max_beats: int = 1 << 20,
                 executes=frozenset()):
        if INSTR_BITS % data_width:
            self._MustUse__silence = True
            raise ValueError(f"data_width {data_width} must divide the {INSTR_BITS}-bit instruction")
        self.addr_width = addr_width
        self.data_width = data_width
        self.beats_per_instr = INSTR_BITS // data_width
        self.executes = frozenset(Op(op) for op in executes)
        super().__init__({
            "start": In(1), "clear": In(1), "program_base": In(addr_width),
            "fetch": Out(stream.Signature(data.StructLayout({"addr": addr_width,
                                                               "beats": range(max_beats + 1)}))),
            "fetch_data": In(stream.Signature(data.StructLayout({"data": data_width, "last": 1}))),
            "fetch_error": In(1),
            "busy": Out(1), "done": Out(1), "error": Out(1), "error_code": Out(8),
            "pc": Out(32), "retired": Out(32), "cycles": Out(64), "fetching": Out(1),
            "exec_start": Out(1), "exec_op": Out(OPCODE_BITS), "word": Out(INSTR_BITS),
            "exec_busy": In(1), "exec_error": In(8), "writes_idle": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        word = self.word                              # the instruction being decoded / executed
        opcode = word[:OPCODE_BITS]
        m.d.comb += self.exec_op.eq(opcode)

        def stop(code=None):
            m.d.sync += self.busy.eq(0)
            if code is None:
                m.d.sync += self.done.eq(1)
            else:
                m.d.sync += [self.error.eq(1), self.error_code.eq(code)]
            m.next = "IDLE"

        with m.If(self.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.If(self.clear):
            m.d.sync += [self.done.eq(0), self.error.eq(0), self.error_code.eq(0)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [self.busy.eq(1), self.done.eq(0), self.error.eq(0), self.error_code.eq(0),
                                 self.pc.eq(0), self.retired.eq(0), self.cycles.eq(0)]
                    m.next = "FETCH"
            with m.State("FETCH"):
                m.d.comb += [
                    self.fetching.eq(1),
                    self.fetch.valid.eq(1),
                    self.fetch.payload.addr.eq(self.program_base + self.pc * INSTR_BYTES),
                    self.fetch.payload.beats.eq(self.beats_per_instr),
                ]
                with m.If(self.fetch.ready):
                    m.next = "RECEIVE"
            with m.State("RECEIVE"):
                m.d.comb += [self.fetching.eq(1), self.fetch_data.ready.eq(1)]
                with m.If(self.fetch_error):
                    stop(ERR_FETCH)
                with m.Elif(self.fetch_data.valid):
                    # beats arrive in address order: beat i holds bits i*W .. of the word
                    m.d.sync += word.eq((word >> self.data_width)
                                        | (self.fetch_data.payload.data << (INSTR_BITS - self.data_width)))
                    with m.If(self.fetch_data.payload.last):
                        m.next = "DECODE"
            with m.State("DECODE"):
                with m.If(self.fetch_error):
                    stop(ERR_FETCH)
                with m.Else():
                    with m.Switch(opcode):
                        for op in FORMATS:
                            with m.Case(int(op)):
                                used = used_bits(op)
                                reserved_set = (word[used:] != 0) if used < INSTR_BITS else 0
                                with m.If(reserved_set):
                                    stop(ERR_OPCODE)
                                with m.Else():
                                    if op == Op.END:
                                        m.next = "END"
                                    elif op in self.executes:
                                        m.next = "EXEC_START"
                                    else:
                                        stop(ERR_UNSUPPORTED)
                        with m.Default():
                            stop(ERR_OPCODE)
            with m.State("EXEC_START"):
                m.d.comb += self.exec_start.eq(1)
                m.next = "EXEC"
            with m.State("EXEC"):
                with m.If(self.fetch_error):                  # a bus error or misaligned transfer: stop now
                    stop(ERR_FETCH)                           # (the unit may wait forever; reset before a rerun)
                with m.Elif(~self.exec_busy):
                    with m.If(self.exec_error != 0):
                        stop(self.exec_error)
                    with m.Else():
                        m.d.sync += [self.pc.eq(self.pc + 1), self.retired.eq(self.retired + 1)]
                        m.next = "FETCH"
            with m.State("END"):
                with m.If(self.writes_idle):
                    m.d.sync += self.retired.eq(self.retired + 1)
                    stop()
        return m
