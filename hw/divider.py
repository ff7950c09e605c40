"""Sequential restoring divider: one quotient bit per cycle (used once per softmax row)."""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .spec.validate import require_int


class RestoringDivider(wiring.Component):
    """``quotient = floor(dividend / divisor)`` by restoring division, MSB first.

    Precondition: the quotient fits, i.e. ``dividend < divisor * 2**quotient_width``
    (equivalently ``dividend >> quotient_width < divisor``); the division then takes
    ``quotient_width`` iterations. A zero divisor gives an all-ones quotient (the
    remainder is then meaningless); other violations give an unspecified result.

    Parameters
    ----------
    dividend_width, divisor_width, quotient_width : int
        Unsigned operand widths in bits.

    Members
    -------
    request : ``In(stream.Signature(StructLayout({"dividend": unsigned(dividend_width), "divisor": unsigned(divisor_width)})))``
        Accepted only while idle.
    result : ``Out(stream.Signature(StructLayout({"quotient": unsigned(quotient_width), "remainder": unsigned(divisor_width)})))``
        Valid ``latency`` cycles after the cycle of the request transfer; held until taken.
    """

    def __init__(self, dividend_width: int, divisor_width: int, quotient_width: int):
        self.dividend_width = require_int("dividend_width", dividend_width, 1)
        self.divisor_width = require_int("divisor_width", divisor_width, 1)
        self.quotient_width = require_int("quotient_width", quotient_width, 1)
        super().__init__({
            "request": In(stream.Signature(data.StructLayout({
                "dividend": unsigned(self.dividend_width), "divisor": unsigned(self.divisor_width)}))),
            "result": Out(stream.Signature(data.StructLayout({
                "quotient": unsigned(self.quotient_width), "remainder": unsigned(self.divisor_width)}))),
        })

    @property
    def latency(self) -> int:
        """``result.valid`` rises this many cycles after the request transfer's cycle (quotient_width iterations + 1)."""
        return self.quotient_width + 1

    def elaborate(self, platform):
        m = Module()
        qw, vw = self.quotient_width, self.divisor_width
        divisor = Signal(vw)
        rem = Signal(vw)                 # partial remainder, always < divisor
        quo = Signal(qw)                 # low dividend bits shift out at the top, quotient bits in at the bottom
        count = Signal(range(qw + 1))

        trial = Signal(vw + 1)
        m.d.comb += trial.eq(rem.shift_left(1) | quo[-1])
        fits = Signal()
        m.d.comb += fits.eq(trial >= divisor)
        m.d.comb += [
            self.result.payload.quotient.eq(quo),
            self.result.payload.remainder.eq(rem),
        ]

        with m.FSM(name="div"):
            with m.State("IDLE"):
                m.d.comb += self.request.ready.eq(1)
                with m.If(self.request.valid):
                    req = self.request.payload
                    m.d.sync += [
                        divisor.eq(req.divisor),
                        rem.eq(req.dividend >> qw),
                        quo.eq(req.dividend[:qw]),
                        count.eq(qw),
                    ]
                    m.next = "BUSY"
            with m.State("BUSY"):
                m.d.sync += [
                    rem.eq(Mux(fits, trial - divisor, trial)),
                    quo.eq(Cat(fits, quo[:-1])),
                    count.eq(count - 1),
                ]
                with m.If(count == 1):
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += self.result.valid.eq(1)
                with m.If(self.result.ready):
                    m.next = "IDLE"
        return m

