"""Threshold unit: accumulators -> one bit per element, ``bit = acc >= thr[channel]``.

Bit-exact with `golden.threshold.threshold` (a tie at the threshold gives 1). The
per-channel thresholds T_c are the folded binarizations of docs/numerics.md §3, clamped
to [-A, A + 1] (A the site's largest |acc|), so they need ``acc_width + 1`` signed bits.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from bitaccel.golden.formats import RESIDUAL_BITS

from .params import HwParams
from .spec.validate import require_int
from .table import ChannelTable, beat_layout, write_signature

__all__ = ["ThresholdUnit"]


class ThresholdUnit(wiring.Component):
    """Compare `width` accumulators per cycle against per-channel thresholds.

    Parameters
    ----------
    width : elements per beat (the MAC array's column count).
    acc_width : signed accumulator bits; thresholds have ``acc_width + 1`` signed bits.
    max_channels : largest channel count (table depth = ceil(max_channels / width) rows).

    Members
    -------
    inp : ``In(stream.Signature({"acc": width x signed(acc_width),
        "channel": unsigned(max(1, ceil_log2(max_channels))), "last": 1}))``
        Element ``i`` belongs to channel ``channel + i``; ``channel`` is a multiple of
        `width`. In the last beat of a row, elements past the model's channel count are
        don't-care (their output bits too). ``last`` is passed through.
    out : ``Out(stream.Signature({"bits": unsigned(width), "last": 1}))``
        ``bits[i] = acc[i] >= thr[channel + i]``.
    thr_write : ``In(stream.Signature({"addr": row, "data": width x signed(acc_width + 1)}))``
        Loads row ``addr`` (channels ``addr*width ..``) of the threshold table. Refused
        (ready = 0) while a row is in flight (from its first input beat until its last
        output beat has left), so a row never sees a half-written table.

    Pipeline: stall-all, full throughput. ``inp.ready = ~out.valid | out.ready``
    (combinational from ``out.ready``); ``out`` is registered. See `latency`.
    """

    def __init__(self, width: int, acc_width: int, max_channels: int):
        self.width = require_int("width", width, 1)
        self.acc_width = require_int("acc_width", acc_width, 2)
        self.max_channels = require_int("max_channels", max_channels, 1)
        self.thr_shape = signed(acc_width + 1)
        super().__init__({
            "inp": In(stream.Signature(beat_layout(signed(acc_width), width, max_channels, "acc"))),
            "out": Out(stream.Signature(data.StructLayout({"bits": width, "last": 1}))),
            "thr_write": In(write_signature(self.thr_shape, width, max_channels)),
        })

    @classmethod
    def from_params(cls, p: HwParams) -> "ThresholdUnit":
        """Unit sized for an accelerator: width = cols, max(max_hidden, max_ffn) channels, and
        acc_width = max(p.acc_width, RESIDUAL_BITS) so the same unit also binarizes the residual
        stream (sites q/k/v/ffn1/pooler ``.in``, whose thresholds reach +-2**15 + 1).
        """
        if not isinstance(p, HwParams):
            raise TypeError(f"p must be an HwParams, not {p!r}")
        p.validate()
        return cls(p.cols, max(p.acc_width, RESIDUAL_BITS), max(p.max_hidden, p.max_ffn))

    @property
    def latency(self) -> int:
        """Cycles from a beat presented (and accepted) on `inp` to its result valid on `out`, no stalls."""
        return 2

    def elaborate(self, platform):
        m = Module()
        m.submodules.table = table = ChannelTable(self.thr_shape, self.width, self.max_channels)
        wiring.connect(m, wiring.flipped(self.thr_write), table.write)

        advance = Signal()                      # the whole pipeline moves this cycle
        in_row = Signal()                       # a row's first beat is in, its last is not yet
        # stage 1: accumulators (the table row arrives in the same cycle)
        acc1 = Signal(data.ArrayLayout(signed(self.acc_width), self.width), reset_less=True)
        last1 = Signal(reset_less=True)
        valid1 = Signal()
        m.d.comb += [
            advance.eq(~self.out.valid | self.out.ready),
            self.inp.ready.eq(advance),
            table.channel.eq(self.inp.payload.channel),
            table.en.eq(advance),
            table.busy.eq(in_row | valid1 | self.out.valid),
        ]
        with m.If(self.inp.valid & self.inp.ready):
            m.d.sync += in_row.eq(~self.inp.payload.last)
        bits = Cat(acc1[i] >= table.data[i] for i in range(self.width))
        with m.If(advance):
            m.d.sync += [
                valid1.eq(self.inp.valid),
                acc1.eq(self.inp.payload.acc),
                last1.eq(self.inp.payload.last),
                # stage 2: registered output
                self.out.valid.eq(valid1),
                self.out.payload.bits.eq(bits),
                self.out.payload.last.eq(last1),
            ]
        return m
