"""Trace writer: a stream of int32 values -> consecutive little-endian words in external memory.

An instruction with ``tap`` = 1 writes what it computed (docs/compiler.md "Trace") as int32
values, row-major, one stream after another, starting at its trace address: exactly
`compiler.memory.write_i32`'s format. The writer packs data_width / 32 values per bus word
(value i of a word in bits 32i..32i+31, so memory order = stream order) and drives an
`hw.encoder.axi.AxiWriter`; a last, partial word is padded with zeros (trace regions are
64-byte aligned and sized in whole bus words, so padding stays inside the region).
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["TraceWriter", "MAX_TRACE_VALUES", "trace_start_layout"]

#: Largest value count of one instruction's trace (2**24: a T x FFN accumulator tensor and its codes fit).
MAX_TRACE_VALUES = 1 << 24


def trace_start_layout(addr_width: int) -> data.StructLayout:
    """The `TraceWriter.start` payload: byte address and value count."""
    return data.StructLayout({"addr": addr_width, "count": range(MAX_TRACE_VALUES + 1)})


class TraceWriter(wiring.Component):
    """Packs int32 trace values into bus words for an `AxiWriter`.

    Parameters
    ----------
    addr_width, data_width : int
        As the AxiWriter's (data_width a multiple of 32).

    Members
    -------
    start : ``In(stream.Signature(trace_start_layout(addr_width)))``
        Begin a trace of `count` values at byte address `addr` (a multiple of data_width / 8).
    values : ``In(stream.Signature({"value": signed(32)}))``
        Exactly `count` values follow.
    cmd, words : ``Out`` streams to the AxiWriter's ``cmd`` and ``data``.
    busy : ``Out(1)`` a trace has started and not all its words are handed to the writer
        (or its command is not yet taken).
    """

    def __init__(self, addr_width: int = 32, data_width: int = 64):
        if data_width % 32:
            self._MustUse__silence = True
            raise ValueError(f"data_width must be a multiple of 32, not {data_width}")
        self.addr_width, self.data_width = addr_width, data_width
        self.per_word = data_width // 32
        self.max_beats = -(-MAX_TRACE_VALUES // self.per_word)
        super().__init__({
            "start": In(stream.Signature(trace_start_layout(addr_width))),
            "values": In(stream.Signature(data.StructLayout({"value": signed(32)}))),
            "cmd": Out(stream.Signature(data.StructLayout({"addr": addr_width, "beats": range(self.max_beats + 1)}))),
            "words": Out(stream.Signature(data.StructLayout({"data": data_width}))),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        n = self.per_word
        left = Signal(range(MAX_TRACE_VALUES + 1))        # values still to come
        slot = Signal(range(n))                          # next value's position in the word
        held = [Signal(32, name=f"held{i}") for i in range(n - 1)]
        cmd_pending = Signal()
        active = Signal()                                # values of a started trace still to come
        shift = (n - 1).bit_length()

        m.d.comb += [
            self.start.ready.eq(~active & ~cmd_pending),
            self.busy.eq(active | cmd_pending),
            self.cmd.valid.eq(cmd_pending),
        ]
        with m.If(self.start.valid & self.start.ready & (self.start.payload.count != 0)):
            count = self.start.payload.count
            m.d.sync += [
                active.eq(1), cmd_pending.eq(1), left.eq(count), slot.eq(0),
                self.cmd.payload.addr.eq(self.start.payload.addr),
                self.cmd.payload.beats.eq((count + (n - 1)) >> shift),
            ]
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += cmd_pending.eq(0)

        # a value completes a word when it fills the last slot or is the trace's last value
        completes = (slot == n - 1) | (left == 1)
        word = Signal(self.data_width)
        parts = []
        value = self.values.payload.value.as_unsigned()
        for i in range(n):                               # slot i: this value, a held one, or 0 (padding)
            here = Signal(32, name=f"part{i}")
            with m.If(slot == i):
                m.d.comb += here.eq(value)
            if i < n - 1:
                with m.Elif(slot > i):
                    m.d.comb += here.eq(held[i])
            parts.append(here)
        m.d.comb += [
            word.eq(Cat(*parts)),
            self.words.payload.data.eq(word),
            self.words.valid.eq(active & self.values.valid & completes),
            self.values.ready.eq(active & (~completes | self.words.ready)),
        ]
        with m.If(self.values.valid & self.values.ready):
            m.d.sync += left.eq(left - 1)
            with m.If(completes):
                m.d.sync += slot.eq(0)
                with m.If(left == 1):
                    m.d.sync += active.eq(0)
            with m.Else():
                m.d.sync += slot.eq(slot + 1)
                with m.Switch(slot):
                    for i in range(n - 1):
                        with m.Case(i):
                            m.d.sync += held[i].eq(value)
        return m
