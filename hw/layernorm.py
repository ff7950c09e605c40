"""Residual add + integer LayerNorm over the 16-bit residual stream (docs/numerics.md §5, §6).

Per row of H residual integers (H = the run-time `hidden`, any length in [1, max_hidden]; a row
is ceil(H / width) beats, the lanes of the last beat past H are ignored on input and undefined on
output):

    x_i = sat16(y_i + h_i) if add else y_i                           residual add (§5)
    S1 = sum x,  S2 = sum x^2,  V = max(H*S2 - S1^2 + eps_q, 1)
    d_i = H*x_i - S1,  (r, s) = rsqrt_fixed(V)                      (hw.rsqrt.RsqrtUnit)
    n_i = rshift_round(d_i * r, RSQRT_Q + s - ln_norm_frac)
    out_i = sat16(rshift_round(n_i * gamma_i, ln_norm_frac + gamma_frac - residual_frac) + beta_i)

bit-exact with golden.layernorm.layernorm. Two row stages run concurrently on a two-bank
row buffer: the *ingest* stage takes the H/width input beats of a row, applies the residual
add, stores x and accumulates S1, S2; the *normalize* stage computes V, r, s and streams the
row out of the buffer through a 6-register pipeline. Row k+1 is ingested while row k is
normalized, so back-to-back rows take `interval(hidden)` cycles each.

Widths (R = RESIDUAL_BITS, Hm = max_hidden, f_n = ln_norm_frac; all from golden.formats):

    x, y, h, beta, out        signed(R)
    gamma                     signed(GAMMA_BITS), gamma_frac fractional bits
    hidden                    unsigned(bitlen(Hm))
    S1                        signed: |S1| <= Hm * 2**(R-1)
    S2                        unsigned: S2 <= Hm * 4**(R-1)
    eps_q                     unsigned(layernorm_var_bits(Hm))
    V = H*S2 - S1^2 + eps_q   unsigned(layernorm_var_bits(Hm) + 1)  (the RsqrtUnit input)
    d                         signed: |d| <= (Hm - 1) * (2**R - 1)
    d * r                     signed: |d * r| <= max|d| * 2**RSQRT_Q
    n                         signed: |n| <= isqrt((Hm - 1) * 4**f_n) + 2

The n bound: |d_i| <= sqrt((H-1) * V) (Samuelson's inequality; eps_q >= 0 only grows V) and
r / 2**(RSQRT_Q + s) <= (1 + 2**-29) / sqrt(V) (V_s >= 2**28 whenever s > 0), so
|n| <= sqrt(H-1) * 2**f_n * (1 + 2**-29) + 1/2 — reached by a row with one outlier.
"""
from __future__ import annotations

import math

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from bitaccel.golden.formats import (GAMMA_BITS, RESIDUAL_BITS, RSQRT_Q, NumericFormat, layernorm_var_bits, residual_range,
                            signed_bits_for)

from .params import HwParams
from .rsqrt import RSQRT_LATENCY, RsqrtUnit
from .spec.validate import require_int

#: Registers from a row-buffer read to the output register (x, d, d*r, n, n*gamma, out).
OUT_PIPELINE = 6


def _sat(m: Module, value, lo: int, hi: int, shape):
    """Clamp an Amaranth value to [lo, hi] (saturation) into a new signal of `shape`."""
    out = Signal(shape)
    m.d.comb += out.eq(Mux(value < lo, lo, Mux(value > hi, hi, value)))
    return out


def _rshift_round(value, s: int):
    """bitaccel.golden.formats.rshift_round with a constant shift: (v + 2**(s-1)) >> s; s <= 0 shifts left."""
    if s <= 0:
        return value << -s
    return (value + (1 << (s - 1))) >> s


class LayerNormUnit(wiring.Component):
    """Streaming residual add + LayerNorm of rows of H residual integers, bit-exact with golden.

    Parameters
    ----------
    width : int
        Elements per stream beat (lanes), >= 1. A row of H elements is ceil(H/width) beats.
    max_hidden : int
        Largest row length H (1 .. 4096); sets the table/buffer depth and every width.
    numerics : NumericFormat
        Fixed-point format (residual_frac, gamma_frac, ln_norm_frac).

    Members
    -------
    inp : ``In(stream.Signature(StructLayout({"y": ArrayLayout(signed(16), width), "h": ..., "last": 1})))``
        Row beats, channels [k*width, (k+1)*width) in beat k. ``last`` must be set on beat
        ceil(H/width) - 1 of every row and only there (else `framing_error`). ``h`` is ignored when
        add = 0; the lanes of a partial last beat past H are ignored (they enter S1 and S2 as 0).
    out : ``Out(stream.Signature(StructLayout({"x": ArrayLayout(signed(16), width), "last": 1})))``
        The normalized row, same beat order; ``last`` on the row's final beat (its lanes past H
        are undefined).
    hidden : ``In(unsigned(bitlen(max_hidden)))``
        Row length H in [1, max_hidden].
    add : ``In(1)``
        1: x = sat16(y + h) (residual add); 0: x = y.
    eps_q : ``In(unsigned(layernorm_var_bits(max_hidden)))``
        eps in units of V (golden.layernorm.layernorm_eps_q).
    gamma_write, beta_write : ``In(stream.Signature(StructLayout({"addr": unsigned(bitlen(beats - 1)), "data": ArrayLayout(signed(16), width)})))``
        Table writes, one beat (channels [addr*width, (addr+1)*width)) per transfer. Refused
        (ready = 0) while a row is in flight, from its first input beat to its last output
        beat: a write waits until the unit is idle, so no row sees a half-written table.
    framing_error : ``Out(1)``
        Sticky: an input ``last`` did not match the row length, or a row's ``hidden`` was
        outside [1, max_hidden]. Cleared by reset.

    `hidden`, `add` and `eps_q` are sampled with the first beat of each row and may
    change afterwards (they belong to the row being ingested, not to the one in flight).
    """

    def __init__(self, width: int, max_hidden: int, numerics: NumericFormat | None = None, *, src_loc_at: int = 0):
        require_int("width", width, 1)
        require_int("max_hidden", max_hidden, 1, 4096)
        if width > max_hidden:
            raise ValueError(f"width {width} exceeds max_hidden {max_hidden}")
        numerics = NumericFormat() if numerics is None else numerics
        if not isinstance(numerics, NumericFormat):
            raise TypeError(f"numerics must be a NumericFormat, not {numerics!r}")
        numerics.validate()
        if RSQRT_Q - numerics.ln_norm_frac < 1:
            raise ValueError(f"ln_norm_frac must be < RSQRT_Q = {RSQRT_Q}, not {numerics.ln_norm_frac}")

        self.width = width
        self.max_hidden = max_hidden
        self.numerics = numerics
        #: Beats of the longest row; depth of the gamma/beta tables and of one buffer bank.
        self.max_beats = -(-max_hidden // width)
        r = RESIDUAL_BITS
        self.hidden_width = max_hidden.bit_length()
        self.s1_max = max_hidden << (r - 1)            # |S1| <= H * 2**(R-1)
        self.s2_max = max_hidden << (2 * (r - 1))      # S2 <= H * 4**(R-1)
        self.s1_width = signed_bits_for(self.s1_max)
        self.s2_width = self.s2_max.bit_length()
        self.eps_width = layernorm_var_bits(max_hidden)
        self.var_width = self.eps_width + 1
        d_max = (max_hidden - 1) * ((1 << r) - 1)
        self.d_width = signed_bits_for(d_max)
        self.prod_width = signed_bits_for(d_max << RSQRT_Q)
        self.n_width = signed_bits_for(math.isqrt((max_hidden - 1) << (2 * numerics.ln_norm_frac)) + 2)

        lane = signed(r)
        self.beat_layout = data.ArrayLayout(lane, width)
        self.gamma_layout = data.ArrayLayout(signed(GAMMA_BITS), width)
        addr = unsigned(max(1, (self.max_beats - 1).bit_length()))
        super().__init__({
            "inp": In(stream.Signature(data.StructLayout({"y": self.beat_layout, "h": self.beat_layout, "last": 1}))),
            "out": Out(stream.Signature(data.StructLayout({"x": self.beat_layout, "last": 1}))),
            "hidden": In(self.hidden_width),
            "add": In(1),
            "eps_q": In(self.eps_width),
            "gamma_write": In(stream.Signature(data.StructLayout({"addr": addr, "data": self.gamma_layout}))),
            "beta_write": In(stream.Signature(data.StructLayout({"addr": addr, "data": self.beat_layout}))),
            "framing_error": Out(1),
        }, src_loc_at=1 + src_loc_at)

    @classmethod
    def from_params(cls, p: HwParams, width: int | None = None) -> "LayerNormUnit":
        """Unit for generation parameters `p` (width defaults to p.cols lanes per beat)."""
        p.validate()
        return cls(p.cols if width is None else width, p.max_hidden, p.numerics, src_loc_at=1)

    # ------------------------------------------------------------------ timing
    @property
    def latency(self) -> int:
        """Cycles from the transfer of a row's last input beat to the transfer of its first output beat.

        2 (last S1/S2 accumulate, hand-off) + 2 (H*S2 and S1^2, V) + 1 (V to the rsqrt unit)
        + RsqrtUnit.latency (RSQRT_Q + 2, up to taking r and s) + OUT_PIPELINE + 1 (output transfer),
        with no stalls: 44 with the golden.formats constants.
        """
        return 2 + 2 + 1 + RSQRT_LATENCY + OUT_PIPELINE + 1

    def _beats(self, hidden: int) -> int:
        if not isinstance(hidden, int) or not 1 <= hidden <= self.max_hidden:
            raise ValueError(f"hidden must be in [1, {self.max_hidden}], not {hidden!r}")
        return -(-hidden // self.width)

    def cycles(self, hidden: int) -> int:
        """Cycles from the first input-beat transfer to the last output-beat transfer of one row, both
        included, with no stalls and an idle unit: 2*beats + latency - 1, beats = ceil(hidden/width)."""
        b = self._beats(hidden)
        return 2 * b + self.latency - 1

    def interval(self, hidden: int) -> int:
        """Cycles per row for back-to-back rows with no stalls: beats + latency - 2.

        The normalize stage is the bottleneck: it is busy from a row's hand-off to its last
        output transfer (latency - 2 + beats - 1 cycles) and takes the next row, already
        ingested into the other buffer bank, in the following cycle."""
        return self._beats(hidden) + self.latency - 2

    # ------------------------------------------------------------------ hardware
    def elaborate(self, platform):
        m = Module()
        m.submodules.rsqrt = rsqrt = RsqrtUnit(self.var_width)
        fmt, w = self.numerics, self.width
        lo, hi = residual_range()
        beat_bits = max(1, (self.max_beats - 1).bit_length())

        m.submodules.rowbuf = rowbuf = memory.Memory(shape=self.beat_layout, depth=2 * self.max_beats, init=[])
        m.submodules.gamma = gamma = memory.Memory(shape=self.gamma_layout, depth=self.max_beats, init=[])
        m.submodules.beta = beta = memory.Memory(shape=self.beat_layout, depth=self.max_beats, init=[])
        buf_w = rowbuf.write_port()
        buf_r = rowbuf.read_port(transparent_for=())
        busy = Signal()                        # a row is in flight (first input beat .. last output beat)
        for mem, port in ((gamma, self.gamma_write), (beta, self.beta_write)):
            wp = mem.write_port()
            m.d.comb += [wp.addr.eq(port.payload.addr), wp.data.eq(port.payload.data),
                         wp.en.eq(port.valid & ~busy), port.ready.eq(~busy)]
        gamma_r = gamma.read_port(transparent_for=())
        beta_r = beta.read_port(transparent_for=())

        # ============================================================ ingest stage
        a_full = Signal()                      # whole row received, waiting for the hand-off
        a_bank = Signal()
        a_beat = Signal(beat_bits)
        a_elems = Signal(self.hidden_width)    # elements received in this row
        a_hidden = Signal(self.hidden_width)
        a_add = Signal()
        a_eps = Signal(self.eps_width)
        a_beats = Signal(range(self.max_beats + 1))   # beats of the received row
        x_r = Signal(self.beat_layout)         # x of the previous beat, for S1/S2
        x_v = Signal()
        s1 = Signal(signed(self.s1_width))
        s2 = Signal(self.s2_width)

        first = a_elems == 0
        hid = Mux(first, self.hidden, a_hidden)
        use_add = Mux(first, self.add, a_add)
        is_last = a_elems + w >= hid
        take_in = self.inp.valid & self.inp.ready
        x_in = Signal(self.beat_layout)
        for i in range(w):                     # lanes past the row's end (a partial last beat) enter as 0
            y_i, h_i = self.inp.payload.y[i], self.inp.payload.h[i]
            x_i = Mux(use_add, _sat(m, y_i + h_i, lo, hi, signed(RESIDUAL_BITS)), y_i)
            m.d.comb += x_in[i].eq(x_i if i == 0 else Mux(a_elems + i < hid, x_i, 0))
        m.d.comb += [
            self.inp.ready.eq(~a_full),
            buf_w.addr.eq(Mux(a_bank, self.max_beats, 0) + a_beat),
            buf_w.data.eq(x_in),
            buf_w.en.eq(take_in),
        ]
        m.d.sync += [x_r.eq(x_in), x_v.eq(take_in)]
        with m.If(take_in):
            with m.If(first):
                m.d.sync += [a_hidden.eq(self.hidden), a_add.eq(self.add), a_eps.eq(self.eps_q)]
            with m.If((self.inp.payload.last != is_last)
                      | (first & ((self.hidden == 0) | (self.hidden > self.max_hidden)))):
                m.d.sync += self.framing_error.eq(1)
            with m.If(is_last):
                m.d.sync += [a_full.eq(1), a_elems.eq(0), a_beat.eq(0), a_beats.eq(a_beat + 1)]
            with m.Else():
                m.d.sync += [a_elems.eq(a_elems + w), a_beat.eq(a_beat + 1)]
        with m.If(x_v):
            m.d.sync += [s1.eq(s1 + sum(x_r[i] for i in range(w))),
                         s2.eq(s2 + sum(x_r[i] * x_r[i] for i in range(w)))]

        # ============================================================ normalize stage
        b_h = Signal(self.hidden_width)
        b_s1 = Signal(signed(self.s1_width))
        b_s2 = Signal(self.s2_width)
        b_eps = Signal(self.eps_width)
        b_bank = Signal()
        b_beats = Signal(range(self.max_beats + 1))
        hs2 = Signal((self.max_hidden * self.s2_max).bit_length())
        s1sq = Signal((self.s1_max * self.s1_max).bit_length())
        var_raw = Signal(self.var_width)
        var = Signal(self.var_width)
        r_q = Signal(rsqrt.r_width)
        s_q = Signal(rsqrt.s_width)
        norm_shift = RSQRT_Q - fmt.ln_norm_frac            # constant part of RSQRT_Q + s - ln_norm_frac
        rnd = Signal(norm_shift + rsqrt.shift_max)         # 2**(RSQRT_Q + s - ln_norm_frac - 1)
        issue = Signal(range(self.max_beats + 1))          # beats read out of the buffer so far
        issuing = Signal()
        adv = Signal()                                     # the whole output pipeline moves
        m.d.comb += adv.eq(~self.out.valid | self.out.ready)

        with m.FSM(name="norm") as norm:
            with m.State("IDLE"):
                with m.If(a_full & ~x_v):                  # hand-off once the last S1/S2 add is done
                    m.d.sync += [b_h.eq(a_hidden), b_s1.eq(s1), b_s2.eq(s2), b_eps.eq(a_eps), b_bank.eq(a_bank),
                                 b_beats.eq(a_beats), s1.eq(0), s2.eq(0), a_full.eq(0), a_bank.eq(~a_bank)]
                    m.next = "SQUARES"
            with m.State("SQUARES"):
                m.d.sync += [hs2.eq(b_h * b_s2), s1sq.eq(b_s1 * b_s1)]
                m.next = "VAR"
            with m.State("VAR"):
                # H*S2 - S1^2 >= 0 (Cauchy-Schwarz) and < 2**eps_width, so the sum with eps_q fits var_width
                m.d.comb += var_raw.eq(hs2 - s1sq + b_eps)
                m.d.sync += var.eq(Mux(var_raw == 0, 1, var_raw))
                m.next = "RSQRT_IN"
            with m.State("RSQRT_IN"):
                m.d.comb += [rsqrt.inp.valid.eq(1), rsqrt.inp.payload.eq(var)]
                with m.If(rsqrt.inp.ready):
                    m.next = "RSQRT_OUT"
            with m.State("RSQRT_OUT"):
                m.d.comb += rsqrt.out.ready.eq(1)
                with m.If(rsqrt.out.valid):
                    m.d.sync += [r_q.eq(rsqrt.out.payload.r), s_q.eq(rsqrt.out.payload.s),
                                 rnd.eq((1 << (norm_shift - 1)) << rsqrt.out.payload.s), issue.eq(0)]
                    m.next = "OUTPUT"
            with m.State("OUTPUT"):
                m.d.comb += issuing.eq(issue != b_beats)
                with m.If(adv & issuing):
                    m.d.sync += issue.eq(issue + 1)
                with m.If(self.out.valid & self.out.ready & self.out.payload.last):
                    m.next = "IDLE"

        # ---- output pipeline (OUT_PIPELINE registers), all enabled by `adv`
        lanes = range(w)
        v = [Signal(name=f"v{k}") for k in range(1, OUT_PIPELINE)]
        last = [Signal(name=f"last{k}") for k in range(1, OUT_PIPELINE)]
        beat = [Signal(beat_bits, name=f"beat{k}") for k in range(1, OUT_PIPELINE - 1)]
        d2 = Signal(data.ArrayLayout(signed(self.d_width), w))
        p3 = Signal(data.ArrayLayout(signed(self.prod_width), w))
        n4 = Signal(data.ArrayLayout(signed(self.n_width), w))
        m5 = Signal(data.ArrayLayout(signed(self.n_width + GAMMA_BITS), w))
        x1, g4, b5 = buf_r.data, gamma_r.data, beta_r.data    # read ports: registers of stages 1, 4, 5
        y6 = Signal(self.beat_layout)
        m.d.comb += busy.eq((a_elems != 0) | a_full | ~norm.ongoing("IDLE") | Cat(*v).any() | self.out.valid)
        out_shift = fmt.ln_norm_frac + fmt.gamma_frac - fmt.residual_frac
        for i in lanes:
            m.d.comb += y6[i].eq(_sat(m, _rshift_round(m5[i], out_shift) + b5[i], lo, hi, signed(RESIDUAL_BITS)))
        m.d.comb += [
            buf_r.addr.eq(Mux(b_bank, self.max_beats, 0) + issue), buf_r.en.eq(adv),
            gamma_r.addr.eq(beat[2]), gamma_r.en.eq(adv),
            beta_r.addr.eq(beat[3]), beta_r.en.eq(adv),
        ]
        with m.If(adv):
            m.d.sync += [
                v[0].eq(issuing), last[0].eq(issue == b_beats - 1), beat[0].eq(issue),
                v[1].eq(v[0]), last[1].eq(last[0]), beat[1].eq(beat[0]),
                v[2].eq(v[1]), last[2].eq(last[1]), beat[2].eq(beat[1]),
                v[3].eq(v[2]), last[3].eq(last[2]), beat[3].eq(beat[2]),
                v[4].eq(v[3]), last[4].eq(last[3]),
                self.out.valid.eq(v[4]), self.out.payload.last.eq(last[4]), self.out.payload.x.eq(y6),
            ]
            for i in lanes:
                m.d.sync += [
                    d2[i].eq(b_h * x1[i] - b_s1),
                    p3[i].eq(d2[i] * r_q),
                    n4[i].eq(((p3[i] + rnd) >> norm_shift) >> s_q),   # exact: |n| fits n_width
                    m5[i].eq(n4[i] * g4[i]),
                ]
        return m
