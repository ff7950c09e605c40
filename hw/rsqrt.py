"""Defined reciprocal square root (golden.layernorm.rsqrt_fixed), one result bit per cycle.

For an integer V >= 1:

    s   = max(0, ceil((bitlen(V) - RSQRT_IN_BITS) / 2))
    V_s = V >> 2s                                   (V_s < 2**RSQRT_IN_BITS; >= 2**(RSQRT_IN_BITS-2) when s > 0)
    r   = the largest integer with r**2 * V_s <= 2**(2*RSQRT_Q)          (1 <= r <= 2**RSQRT_Q)

The normalization (s, V_s) is combinational on the input transfer. r is then found MSB
first, bit b = RSQRT_Q ... 0, with no multiplier: for the bits r accepted so far keep

    Q = r**2 * V_s,   A = r * V_s * 2**(b+1),   C = V_s * 4**b

so that (r + 2**b)**2 * V_s = Q + A + C. Bit b is set when Q + A + C <= 2**(2*RSQRT_Q);
then Q += A + C, A = A/2 + C, else A = A/2; always C = C/4. Every update is an add and a
constant shift; Q and A never exceed 2**(2*RSQRT_Q) (Q by the test, A because
A/2 + C <= Q + A + C), and C, which starts at V_s * 2**(2*RSQRT_Q), only needs its
bits above 2*RSQRT_Q to say "too big".
"""
from __future__ import annotations

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from bitaccel.golden.formats import RSQRT_IN_BITS, RSQRT_Q

from .spec.validate import require_int

#: Largest input width: golden computes V in int64 (bitlen(V) <= 63).
MAX_IN_WIDTH = 63
#: Cycles from an input transfer to the earliest output transfer: one per result bit, plus one.
RSQRT_LATENCY = RSQRT_Q + 2


def rsqrt_shift_max(in_width: int) -> int:
    """Largest normalization shift s for an `in_width`-bit V: max(0, ceil((in_width - RSQRT_IN_BITS) / 2))."""
    return max(0, -(-(in_width - RSQRT_IN_BITS) // 2))


class RsqrtUnit(wiring.Component):
    """Bit-serial fixed-point reciprocal square root, bit-exact with golden.layernorm.rsqrt_fixed.

    One V at a time: the input transfers when the unit is idle (or its result is being
    taken in the same cycle); the result can transfer `latency` cycles later and is
    held until taken. V = 0 is outside the contract (golden raises); the unit then returns
    r = 2**(RSQRT_Q + 1) - 1, s = 0.

    Parameters
    ----------
    in_width : int
        Unsigned bits of V, 1 .. 63 (e.g. layernorm_var_bits(max_hidden) + 1).

    Members
    -------
    inp : ``In(stream.Signature(unsigned(in_width)))``
        V, an unsigned integer >= 1.
    out : ``Out(stream.Signature(StructLayout({"r": unsigned(RSQRT_Q + 1), "s": unsigned(s_width)})))``
        r (1 .. 2**RSQRT_Q) and the normalization shift s (0 .. shift_max);
        r / 2**(RSQRT_Q + s) ~ 1 / sqrt(V).
    """

    def __init__(self, in_width: int):
        self.in_width = require_int("in_width", in_width, 1, MAX_IN_WIDTH)
        #: Largest normalization shift s.
        self.shift_max = rsqrt_shift_max(in_width)
        #: Bits of the result r (r <= 2**RSQRT_Q).
        self.r_width = RSQRT_Q + 1
        #: Bits of the shift s.
        self.s_width = max(1, self.shift_max.bit_length())
        self.out_layout = data.StructLayout({"r": unsigned(self.r_width), "s": unsigned(self.s_width)})
        super().__init__({
            "inp": In(stream.Signature(unsigned(in_width))),
            "out": Out(stream.Signature(self.out_layout)),
        })

    @property
    def latency(self) -> int:
        """Cycles from the input transfer to the earliest output transfer: one per result bit, plus one
        (RSQRT_Q + 2). The next V transfers in the cycle the result is taken, so with a ready sink the
        unit accepts one V every `latency` cycles."""
        return RSQRT_LATENCY

    def elaborate(self, platform):
        m = Module()
        lim_bits = 2 * RSQRT_Q + 1                  # Q, A <= 2**(2*RSQRT_Q)
        limit = 1 << (2 * RSQRT_Q)
        vs_width = min(self.in_width, RSQRT_IN_BITS)

        # ---- normalization of the input (combinational): s counts the thresholds V crosses
        v = self.inp.payload
        s_in = Signal(self.s_width)
        vs_in = Signal(vs_width)
        # bitlen(V) > RSQRT_IN_BITS + 2(k-1)  <=>  V >= 2**(RSQRT_IN_BITS - 2 + 2k)
        m.d.comb += s_in.eq(sum(v[RSQRT_IN_BITS - 2 + 2 * k:].any() for k in range(1, self.shift_max + 1)))
        with m.Switch(s_in):
            for k in range(self.shift_max + 1):
                with m.Case(k):
                    m.d.comb += vs_in.eq(v[2 * k:])
            with m.Default():                        # unreachable (s_in <= shift_max)
                m.d.comb += vs_in.eq(0)

        # ---- digit recurrence
        q = Signal(lim_bits)
        a = Signal(lim_bits)
        c = Signal(vs_width + 2 * RSQRT_Q)         # V_s * 4**b, b = RSQRT_Q .. 0
        r = Signal(self.r_width)
        s = Signal(self.s_width)
        step = Signal(range(self.r_width + 1))      # result bits still to find
        done = Signal()

        trial = Signal(lim_bits + 2)
        accept = Signal()
        m.d.comb += [
            trial.eq(q + a + c[:lim_bits]),
            accept.eq(~c[lim_bits:].any() & (trial <= limit)),
        ]

        take = self.out.valid & self.out.ready
        m.d.comb += [
            self.inp.ready.eq((step == 0) & (~done | self.out.ready)),
            self.out.valid.eq(done),
            self.out.payload.r.eq(r),
            self.out.payload.s.eq(s),
        ]
        with m.If(take):
            m.d.sync += done.eq(0)
        with m.If(self.inp.valid & self.inp.ready):
            m.d.sync += [
                q.eq(0), a.eq(0), r.eq(0), s.eq(s_in),
                c.eq(vs_in << (2 * RSQRT_Q)),
                step.eq(self.r_width),
            ]
        with m.Elif(step != 0):
            m.d.sync += [
                r.eq(Mux(accept, (r << 1) | 1, r << 1)),
                q.eq(Mux(accept, trial, q)),
                a.eq(Mux(accept, (a >> 1) + c, a >> 1)),
                c.eq(c >> 2),
                step.eq(step - 1),
            ]
            with m.If(step == 1):
                m.d.sync += done.eq(1)
        return m
