"""LAYERNORM: residual add + LayerNorm of residual rows (docs/compiler.md "LAYERNORM", docs/numerics.md §5, §6).

Per row r < ``rows`` of ``hidden`` (H) 16-bit words: y = res[src + r*H ..], with ``add`` also
h = res[res + r*H ..] and x = sat16(y + h) written to ``sum_dst`` + r*H; the row goes through
`hw.layernorm.LayerNormUnit` (width 1; gamma, beta and eps_q loaded from the LayerNorm block
at start) and its output is written to ``dst`` + r*H. With ``tap`` the trace holds, per row,
the sum row (``add`` only) then the normalized row (docs/encoder.md §6).

Cycles (first version, correctness first): rows are serialized so the trace keeps its per-row
order and the one res write port serves the sums and the outputs in turn: per row H cycles in
(two read ports, one element each per cycle), the unit's `latency` (44), H cycles out; plus
the constant load (1 + 2H beats). Overlapping row r + 1's input with row r's output (the
unit's two row banks allow it) needs a second write port or a buffer of the sums.
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, ResetInserter, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from bitaccel.golden.formats import GAMMA_BITS, RESIDUAL_BITS, layernorm_var_bits, residual_range
from bitaccel.hw.layernorm import LayerNormUnit
from bitaccel.hw.params import HwParams
from bitaccel.hw.spec.isa import DIM_BITS, Op

from .layouts import instruction_layout
from .ports import fits_signed, fits_unsigned, rd_signatures, request_read, trace_signatures
from .regs import ERR_FRAMING, ERR_RANGE

__all__ = ["LayerNormExec"]


class LayerNormExec(wiring.Component):
    """Runs one LAYERNORM instruction.

    Parameters
    ----------
    params : HwParams (max_hidden, numerics).
    addr_width : AXI byte-address bits.
    res_words : residual-buffer depth.
    max_beats : longest read command of the shared AXI reader.

    Members (docs/encoder.md §4)
    -------
    start, ins, base, busy, error : the execute-unit convention. ``error``: ERR_FRAMING for
        ``hidden`` = 0 or above max_hidden (nothing is read or written) or the unit's
        `framing_error`; ERR_RANGE for a constant outside the unit's widths (eps_q, gamma,
        beta; nothing is written).
    rd_cmd, rd_data : the LayerNorm block (eps_q, gamma[H], beta[H]).
    res_r0_addr/_data : the ``src`` rows; res_r1_addr/_data : the ``res`` rows (``add``).
    res_w_addr, res_w_data, res_w_en : sums and normalized rows.
    trace_start, trace_values : with ``tap``, per row the sums (``add``) then the outputs.
    ln_element : ``Out(1)`` high in each cycle an element enters the LayerNorm unit (activity
        counts for the busy counters and the energy model).
    """

    def __init__(self, params: HwParams, addr_width: int, res_words: int, max_beats: int):
        if not isinstance(params, HwParams):
            self._MustUse__silence = True
            raise TypeError(f"params must be an HwParams, not {params!r}")
        self.params, self.addr_width = params.validate(), addr_width
        self.res_words, self.max_beats = res_words, max_beats
        super().__init__({
            "start": In(1), "ins": In(instruction_layout(Op.LAYERNORM)), "base": In(addr_width),
            "busy": Out(1), "error": Out(8),
            **rd_signatures(addr_width, max_beats),
            "res_r0_addr": Out(range(res_words)), "res_r0_data": In(signed(RESIDUAL_BITS)),
            "res_r1_addr": Out(range(res_words)), "res_r1_data": In(signed(RESIDUAL_BITS)),
            "res_w_addr": Out(range(res_words)), "res_w_data": Out(signed(RESIDUAL_BITS)), "res_w_en": Out(1),
            **trace_signatures(addr_width),
            "ln_element": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p, ins = self.params, self.ins
        unit = LayerNormUnit(1, p.max_hidden, p.numerics)
        m.submodules.ln = ResetInserter({"sync": self.start})(unit)    # clears its sticky flag per instruction
        H, add, tap = ins.hidden, ins.add, ins.tap
        lo, hi = residual_range()
        error = Signal(8)
        m.d.comb += self.error.eq(error)
        word = self.rd_data.payload.data.as_signed()
        take = self.rd_data.valid & self.rd_data.ready
        beat = Signal(DIM_BITS + 2)
        eps = Signal(layernorm_var_bits(p.max_hidden))
        m.d.comb += [unit.hidden.eq(H), unit.add.eq(add), unit.eps_q.eq(eps)]

        def read(addr, beats):
            request_read(m, self.rd_cmd, addr, beats)

        def fail_if(cond):
            with m.If(cond):
                m.d.sync += error.eq(ERR_RANGE)

        row = Signal(DIM_BITS)
        row_off = Signal(range(self.res_words + (1 << DIM_BITS) + 1))   # r*H
        # ---- input side: both read ports, one element per cycle
        feeding = Signal()
        iss_i = Signal(DIM_BITS + 1)             # elements of the row addressed
        cur_v = Signal()                         # the read ports hold the element addressed last cycle
        cur_i = Signal(DIM_BITS)                 # its index in the row
        total = Signal(signed(RESIDUAL_BITS + 2))
        m.d.comb += total.eq(self.res_r0_data + self.res_r1_data)
        x = Mux(total < lo, lo, Mux(total > hi, hi, total))
        trace_ok = ~tap | ~add | self.trace_values.ready
        consume = cur_v & unit.inp.ready & trace_ok
        can_issue = feeding & (iss_i != H) & (~cur_v | consume)
        addr_i = Mux(can_issue, iss_i, iss_i - 1)
        m.d.comb += [
            self.res_r0_addr.eq(ins.src + row_off + addr_i),
            self.res_r1_addr.eq(ins.res + row_off + addr_i),
            unit.inp.valid.eq(cur_v & trace_ok),
            unit.inp.payload.y[0].eq(self.res_r0_data), unit.inp.payload.h[0].eq(self.res_r1_data),
            unit.inp.payload.last.eq(cur_i == H - 1),
            self.ln_element.eq(unit.inp.valid & unit.inp.ready),
        ]
        with m.If(can_issue):
            m.d.sync += [iss_i.eq(iss_i + 1), cur_v.eq(1), cur_i.eq(iss_i)]
        with m.Elif(consume):
            m.d.sync += cur_v.eq(0)
        # ---- output side
        out_i = Signal(DIM_BITS)
        draining = Signal()
        out_ok = ~tap | self.trace_values.ready
        out_take = draining & unit.out.valid & out_ok
        m.d.comb += unit.out.ready.eq(draining & out_ok)
        with m.If(draining):
            m.d.comb += [self.res_w_addr.eq(ins.dst + row_off + out_i), self.res_w_data.eq(unit.out.payload.x[0]),
                         self.res_w_en.eq(out_take),
                         self.trace_values.valid.eq(tap & unit.out.valid),
                         self.trace_values.payload.value.eq(unit.out.payload.x[0])]
        with m.Else():
            m.d.comb += [self.res_w_addr.eq(ins.sum_dst + row_off + cur_i), self.res_w_data.eq(x),
                         self.res_w_en.eq(consume & add),
                         self.trace_values.valid.eq(tap & add & cur_v & unit.inp.ready),
                         self.trace_values.payload.value.eq(x)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [self.busy.eq(1), error.eq(0), beat.eq(0), row.eq(0), row_off.eq(0),
                                 cur_v.eq(0), iss_i.eq(0), out_i.eq(0)]
                    with m.If((H == 0) | (H > p.max_hidden)):
                        m.d.sync += error.eq(ERR_FRAMING)
                        m.next = "DONE"
                    with m.Elif(ins.rows == 0):
                        m.next = "DONE"
                    with m.Else():
                        m.next = "CONSTS_CMD"
            with m.State("CONSTS_CMD"):
                read(self.base + ins.consts, 1 + (H << 1))
                with m.If(self.rd_cmd.ready):
                    m.next = "CONSTS"
            with m.State("CONSTS"):                     # eps_q, gamma[H], beta[H]
                gamma_beat = (beat != 0) & (beat <= H)
                beta_beat = beat > H
                m.d.comb += [
                    unit.gamma_write.payload.addr.eq(beat - 1), unit.gamma_write.payload.data[0].eq(word),
                    unit.beta_write.payload.addr.eq(beat - 1 - H), unit.beta_write.payload.data[0].eq(word),
                    unit.gamma_write.valid.eq(self.rd_data.valid & gamma_beat),
                    unit.beta_write.valid.eq(self.rd_data.valid & beta_beat),
                    self.rd_data.ready.eq(Mux(gamma_beat, unit.gamma_write.ready,
                                              Mux(beta_beat, unit.beta_write.ready, 1))),
                ]
                with m.If(take):
                    m.d.sync += beat.eq(beat + 1)
                    with m.If(beat == 0):
                        fail_if(~fits_unsigned(word, len(eps)))
                        m.d.sync += eps.eq(word)
                    with m.Elif(gamma_beat):
                        fail_if(~fits_signed(word, GAMMA_BITS))
                    with m.Else():
                        fail_if(~fits_signed(word, RESIDUAL_BITS))
                    with m.If(self.rd_data.payload.last):
                        m.next = "CHECK"
            with m.State("CHECK"):
                with m.If(error != 0):
                    m.next = "DONE"
                with m.Else():
                    m.next = "TRACE"
            with m.State("TRACE"):
                m.d.comb += [self.trace_start.valid.eq(tap),
                             self.trace_start.payload.addr.eq(self.base + ins.trace),
                             self.trace_start.payload.count.eq(Mux(add, ins.rows * (H << 1), ins.rows * H))]
                with m.If(~tap | self.trace_start.ready):
                    m.next = "FEED"
            with m.State("FEED"):
                m.d.comb += feeding.eq(1)
                with m.If(consume & (cur_i == H - 1)):
                    m.d.sync += [iss_i.eq(0), out_i.eq(0)]
                    m.next = "OUT"
            with m.State("OUT"):
                m.d.comb += draining.eq(1)
                with m.If(out_take):
                    m.d.sync += out_i.eq(out_i + 1)
                    with m.If(out_i == H - 1):
                        m.d.sync += [row.eq(row + 1), row_off.eq(row_off + H)]
                        with m.If(row == ins.rows - 1):
                            m.next = "FLAGS"
                        with m.Else():
                            m.next = "FEED"
            with m.State("FLAGS"):
                with m.If(unit.framing_error):
                    m.d.sync += error.eq(ERR_FRAMING)
                m.next = "DONE"
            with m.State("DONE"):
                m.d.sync += self.busy.eq(0)
                m.next = "IDLE"
        return m
