"""Requantization unit: ``out = clamp(rshift_round(acc * M + B_c, S), lo_c, hi)``.

Bit-exact with `golden.requant.requantize` (docs/numerics.md §3, §5): M, S and hi are
scalars of a run, B_c and lo_c per channel (lo_c carries a folded ReLU). Used for the
16-bit residual stream (lo = -32768, hi = 32767) and for multi-bit codes.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from bitaccel.golden.formats import MAX_SHIFT, MULT_BITS, OFFSET_BITS

from .params import HwParams
from .spec.validate import require_int
from .table import ChannelTable, beat_layout, write_signature

__all__ = ["RequantUnit"]


class RequantUnit(wiring.Component):
    """Fixed-point multiply, per-channel offset, round-half-up shift and clamp of `width` accumulators per cycle.

    Parameters
    ----------
    width : elements per beat (the MAC array's column count).
    acc_width : signed accumulator bits (a).
    out_width : signed output bits (16 for the residual stream; 9 for unsigned 8-bit codes,
        8 for signed 8-bit codes, ...).
    max_channels : largest channel count (table depth = ceil(max_channels / width) rows).

    Widths (never overflow): M is unsigned ``MULT_BITS - 1`` = 15 bits, so
    ``prod_width = a + MULT_BITS - 1`` signed bits hold acc * M (|acc * M| < 2^(a-1) * 2^15);
    B_c is signed ``OFFSET_BITS`` = 48 bits, so ``sum_width = max(prod_width, OFFSET_BITS) + 1``
    signed bits hold acc * M + B_c (49 bits for a <= 33). The round-half-up shift is
    ``(((x << 1) >> S) + 1) >> 1`` on ``sum_width + 1`` bits: an arithmetic shift is exact
    for every S in 0 .. 2^bitlen(MAX_SHIFT) - 1, with no 2^(S-1) constant of 62 bits.

    Members
    -------
    inp : ``In(stream.Signature({"acc": width x signed(acc_width),
        "channel": unsigned(max(1, ceil_log2(max_channels))), "last": 1}))``
        Element ``i`` belongs to channel ``channel + i``; ``channel`` is a multiple of
        `width`. In the last beat of a row, elements past the model's channel count are
        don't-care (their outputs too). ``last`` is passed through.
    out : ``Out(stream.Signature({"value": width x signed(out_width), "last": 1}))``
    mult : ``In(unsigned(MULT_BITS - 1))`` — M; held constant during a run.
    shift : ``In(unsigned(bitlen(MAX_SHIFT)))`` — S (contract: 0 .. MAX_SHIFT); held constant.
    hi : ``In(signed(out_width))`` — upper clamp; held constant.
    offset_write : ``In(stream.Signature({"addr": row, "data": width x signed(OFFSET_BITS)}))`` — B_c table.
    lo_write : ``In(stream.Signature({"addr": row, "data": width x signed(out_width)}))`` — lo_c table.
        One row per cycle; both refused (ready = 0) while a row is in flight (from its
        first input beat until its last output beat has left).

    Clamping is ``min(max(r, lo_c), hi)``, exactly `numpy.clip`. Pipeline: stall-all, full
    throughput, ``inp.ready = ~out.valid | out.ready`` (combinational from ``out.ready``);
    ``out`` is registered. Stages: input | acc * M | + B_c | shift and round | clamp (5 = `latency`).
    """

    def __init__(self, width: int, acc_width: int, out_width: int, max_channels: int):
        self.width = require_int("width", width, 1)
        self.acc_width = require_int("acc_width", acc_width, 2)
        self.out_width = require_int("out_width", out_width, 2)
        self.max_channels = require_int("max_channels", max_channels, 1)
        self.prod_width = acc_width + MULT_BITS - 1
        self.sum_width = max(self.prod_width, OFFSET_BITS) + 1
        super().__init__({
            "inp": In(stream.Signature(beat_layout(signed(acc_width), width, max_channels, "acc"))),
            "out": Out(stream.Signature(data.StructLayout({
                "value": data.ArrayLayout(signed(out_width), width), "last": 1}))),
            "mult": In(unsigned(MULT_BITS - 1)),
            "shift": In(unsigned(MAX_SHIFT.bit_length())),
            "hi": In(signed(out_width)),
            "offset_write": In(write_signature(signed(OFFSET_BITS), width, max_channels)),
            "lo_write": In(write_signature(signed(out_width), width, max_channels)),
        })

    @classmethod
    def from_params(cls, p: HwParams, out_width: int | None = None) -> "RequantUnit":
        """The accelerator's one requant unit: width = cols, max(max_hidden, max_ffn, max_seq) channels.

        Its input holds both of its sources: signed accumulators (``p.acc_width`` bits) and
        the softmax's unsigned multi-bit probabilities, 0 .. 2^prob_frac inclusive
        (``prob_frac + 1`` unsigned, so ``prob_frac + 2`` signed bits). `out_width` defaults
        to the residual stream's width, which also holds every activation code.
        """
        if not isinstance(p, HwParams):
            raise TypeError(f"p must be an HwParams, not {p!r}")
        p.validate()
        in_width = max(p.acc_width, p.numerics.prob_frac + 2)
        return cls(p.cols, in_width, p.residual_width if out_width is None else out_width,
                   max(p.max_hidden, p.max_ffn, p.max_seq))

    @property
    def latency(self) -> int:
        """Cycles from a beat presented (and accepted) on `inp` to its result valid on `out`, no stalls."""
        return 5

    def elaborate(self, platform):
        m = Module()
        m.submodules.offsets = offsets = ChannelTable(signed(OFFSET_BITS), self.width, self.max_channels)
        m.submodules.lows = lows = ChannelTable(signed(self.out_width), self.width, self.max_channels)
        wiring.connect(m, wiring.flipped(self.offset_write), offsets.write)
        wiring.connect(m, wiring.flipped(self.lo_write), lows.write)

        advance = Signal()                      # the whole pipeline moves this cycle
        in_row = Signal()                       # a row's first beat is in, its last is not yet
        m.d.comb += [
            advance.eq(~self.out.valid | self.out.ready),
            self.inp.ready.eq(advance),
            offsets.en.eq(advance),
            lows.en.eq(advance),
        ]
        with m.If(self.inp.valid & self.inp.ready):
            m.d.sync += in_row.eq(~self.inp.payload.last)

        def stage(k, shape):
            return Signal(data.ArrayLayout(shape, self.width), name=f"stage{k}", reset_less=True)

        # Stage registers; the tables are read just in time from a delayed channel (a row
        # read from stage k's channel is valid beside stage k + 1), so only the channel index
        # travels down the pipeline, not whole rows of constants.
        acc1 = stage(1, signed(self.acc_width))
        prod2 = stage(2, signed(self.prod_width))
        sum3 = stage(3, signed(self.sum_width))
        rnd4 = stage(4, signed(self.sum_width))
        n = self.latency - 1
        valid = [Signal(name=f"valid{k}") for k in range(1, n + 1)]
        last = [Signal(name=f"last{k}", reset_less=True) for k in range(1, n + 1)]
        channel = [Signal.like(self.inp.payload.channel, name=f"channel{k}", reset_less=True) for k in range(1, 4)]
        m.d.comb += [offsets.channel.eq(channel[0]),     # B_c beside stage 2
                     lows.channel.eq(channel[2])]        # lo_c beside stage 4
        busy = in_row | self.out.valid | Cat(*valid).any()
        m.d.comb += [offsets.busy.eq(busy), lows.busy.eq(busy)]

        with m.If(advance):
            m.d.sync += [valid[0].eq(self.inp.valid), last[0].eq(self.inp.payload.last),
                         channel[0].eq(self.inp.payload.channel), acc1.eq(self.inp.payload.acc)]
            m.d.sync += [valid[k].eq(valid[k - 1]) for k in range(1, n)]
            m.d.sync += [last[k].eq(last[k - 1]) for k in range(1, n)]
            m.d.sync += [channel[k].eq(channel[k - 1]) for k in range(1, len(channel))]
            m.d.sync += [self.out.valid.eq(valid[-1]), self.out.payload.last.eq(last[-1])]
            for i in range(self.width):
                doubled = sum3[i].shift_left(1)                   # (x << 1) >> S = floor(x / 2^(S-1))
                r, lo_c, hi = rnd4[i], lows.data[i], self.hi
                # min(max(r, lo_c), hi): both compares on r in parallel, out_width-bit muxes
                clamped = Mux(r < lo_c, Mux(lo_c > hi, hi, lo_c), Mux(r > hi, hi, r[:self.out_width].as_signed()))
                m.d.sync += [
                    prod2[i].eq(acc1[i] * self.mult),
                    sum3[i].eq(prod2[i] + offsets.data[i]),
                    rnd4[i].eq(((doubled >> self.shift) + 1).shift_right(1)),
                    self.out.payload.value[i].eq(clamped),
                ]
        return m
