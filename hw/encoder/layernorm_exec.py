"""LAYERNORM: residual add + LayerNorm of residual rows (docs/compiler.md "LAYERNORM", docs/numerics.md §5, §6).

Per row r < ``rows`` of ``hidden`` (H) 16-bit values: y = res[src + r*H ..], with ``add`` also
h = res[res + r*H ..] and x = sat16(y + h) written to ``sum_dst`` + r*H; the row goes through
`hw.layernorm.LayerNormUnit` (width V = `hw.spec.buffers.residual_lanes`; gamma, beta and eps_q
loaded from the LayerNorm block at start) and its output is written to ``dst`` + r*H. With
``tap`` the trace holds, per row, the sum row (``add`` only) then the normalized row
(docs/encoder.md §6).

Two paces (`hw.spec.isa.wide_layernorm`, the one owner of the rule):

* wide: every row starts on a residual word and nothing is traced: a beat is one word of each
  read port (y, h), its sums one word write, the unit's output beat one word write;
* serial: one value a cycle: each read port's value is gathered into beats of V for the unit
  (the last beat of a row may be partial), and every sum, output and trace value is written
  on its own.

Phases: the one res write port serves the sums (FEED: n + 1 cycles with the read ports'
prefetch) and the outputs (OUT: n cycles once the unit's first output beat is valid) in turn,
n = ceil(H / V) words (wide) or H values (serial). Serial: FEED(r), OUT(r) for each row, so
the trace keeps its per-row order. Wide: FEED(0), FEED(1), OUT(0), FEED(2), OUT(1), ...,
OUT(rows - 1): the next row is fed (into the unit's other row bank) while one waits out the
unit's `latency`, so a row costs about 2n + 1 cycles when n >= latency - 3. Plus the constant
load (1 + 2H bus beats). `sim.program_cycles.layernorm_busy` models the phases exactly.
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, ResetInserter, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from bitaccel.golden.formats import GAMMA_BITS, RESIDUAL_BITS, layernorm_var_bits, residual_range
from bitaccel.hw.layernorm import LayerNormUnit
from bitaccel.hw.params import HwParams
from bitaccel.hw.spec.buffers import residual_lanes
from bitaccel.hw.spec.isa import DIM_BITS, Op
from bitaccel.hw.table import gather_row

from .layouts import instruction_layout
from .ports import (fits_signed, fits_unsigned, rd_signatures, read_element, request_read, res_signatures,
                    trace_signatures, write_element, write_lanes)
from .regs import ERR_FRAMING, ERR_RANGE

__all__ = ["LayerNormExec"]


class LayerNormExec(wiring.Component):
    """Runs one LAYERNORM instruction.

    Parameters
    ----------
    params : HwParams (max_hidden, numerics; C sets V = `hw.spec.buffers.residual_lanes`).
    addr_width : AXI byte-address bits.
    res_words : residual-buffer depth (values; words of V).
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
    ln_element : ``Out(range(V + 1))`` the values entering the LayerNorm unit this cycle (activity
        counts for the busy counters and the energy model).
    """

    def __init__(self, params: HwParams, addr_width: int, res_words: int, max_beats: int):
        if not isinstance(params, HwParams):
            self._MustUse__silence = True
            raise TypeError(f"params must be an HwParams, not {params!r}")
        self.params, self.addr_width = params.validate(), addr_width
        self.res_words, self.res_lanes, self.max_beats = res_words, residual_lanes(params), max_beats
        super().__init__({
            "start": In(1), "ins": In(instruction_layout(Op.LAYERNORM)), "base": In(addr_width),
            "busy": Out(1), "error": Out(8),
            **rd_signatures(addr_width, max_beats),
            **res_signatures(self.res_lanes, res_words, reads=("r0", "r1"), write=True),
            **trace_signatures(addr_width),
            "ln_element": Out(range(self.res_lanes + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        p, ins, V = self.params, self.ins, self.res_lanes
        lv = (V - 1).bit_length()
        unit = LayerNormUnit(V, p.max_hidden, p.numerics)
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
        # the rule of hw.spec.isa.wide_layernorm
        wide = Signal()
        m.d.comb += wide.eq(~tap & ((H | ins.src | ins.res | ins.dst | ins.sum_dst) & (V - 1) == 0))
        step = Mux(wide, V, 1)                   # values a cycle

        def read(addr, beats):
            request_read(m, self.rd_cmd, addr, beats)

        def fail_if(cond):
            with m.If(cond):
                m.d.sync += error.eq(ERR_RANGE)

        def sat(v):
            return Mux(v < lo, lo, Mux(v > hi, hi, v))

        def write_word(addr, values, en):
            """A whole residual word at flat address `addr` (a multiple of V)."""
            write_lanes(m, self.res_w_addr, self.res_w_data, self.res_w_en, addr, [values[i] for i in range(V)], en)

        feed_row, out_row = Signal(DIM_BITS), Signal(DIM_BITS)     # the rows FEED and OUT work on
        off_shape = range(self.res_words + (1 << DIM_BITS) + 1)
        feed_off, out_off = Signal(off_shape), Signal(off_shape)   # their offsets r*H
        # ---- input side: both read ports, a word (wide) or a value (serial) a cycle
        feeding = Signal()
        iss_e = Signal(DIM_BITS + 1)             # row index of the next value addressed
        cur_v = Signal()                         # the read ports hold what was addressed last cycle
        cur_e = Signal(DIM_BITS + 1)             # ... its (first) value's index in the row
        lane = cur_e[:lv]
        beat_end = wide | (lane == V - 1) | (cur_e + 1 == H)      # serial: the beat for the unit is complete
        trace_ok = ~tap | ~add | self.trace_values.ready
        consume = cur_v & trace_ok & (~beat_end | unit.inp.ready)
        can_issue = feeding & (iss_e < H) & (~cur_v | consume)
        addr_e = Mux(can_issue, iss_e, cur_e)
        y_el = read_element(m, self.res_r0_addr, self.res_r0_data, ins.src + feed_off + addr_e, "y")
        h_el = read_element(m, self.res_r1_addr, self.res_r1_data, ins.res + feed_off + addr_e, "h")
        x_el = sat(y_el + h_el)
        y_row = gather_row(m, Signal(data.ArrayLayout(signed(RESIDUAL_BITS), V)), lane, y_el, consume & ~wide)
        h_row = gather_row(m, Signal(data.ArrayLayout(signed(RESIDUAL_BITS), V)), lane, h_el, consume & ~wide)
        m.d.comb += [
            unit.inp.valid.eq(cur_v & beat_end & trace_ok),
            unit.inp.payload.last.eq(cur_e + step >= H),
            self.ln_element.eq(Mux(unit.inp.valid & unit.inp.ready, Mux(wide, V, lane + 1), 0)),
        ]
        for i in range(V):
            m.d.comb += [unit.inp.payload.y[i].eq(Mux(wide, self.res_r0_data[i], y_row[i])),
                         unit.inp.payload.h[i].eq(Mux(wide, self.res_r1_data[i], h_row[i]))]
        with m.If(can_issue):
            m.d.sync += [iss_e.eq(iss_e + step), cur_v.eq(1), cur_e.eq(iss_e)]
        with m.Elif(consume):
            m.d.sync += cur_v.eq(0)
        # ---- output side: a beat a cycle (wide) or its values one a cycle (serial)
        out_e = Signal(DIM_BITS + 1)             # row index of the output beat's first value
        out_l = Signal(range(V))                 # serial: the lane written now
        draining = Signal()
        out_ok = ~tap | self.trace_values.ready
        out_take = draining & unit.out.valid & out_ok                  # a value (serial) or the beat (wide) leaves
        beat_done = wide | (out_l == V - 1) | (out_e + out_l + 1 == H)
        out_value = unit.out.payload.x[out_l] if V > 1 else unit.out.payload.x[0]
        m.d.comb += unit.out.ready.eq(draining & out_ok & beat_done)
        with m.If(draining):
            with m.If(wide):
                write_word(ins.dst + out_off + out_e, unit.out.payload.x, out_take)
            with m.Else():
                write_element(m, self.res_w_addr, self.res_w_data, self.res_w_en, ins.dst + out_off + out_e + out_l,
                              out_value, out_take)
            m.d.comb += [self.trace_values.valid.eq(tap & unit.out.valid),
                         self.trace_values.payload.value.eq(out_value)]
        with m.Else():
            with m.If(wide):
                write_word(ins.sum_dst + feed_off + cur_e,
                           [sat(self.res_r0_data[i] + self.res_r1_data[i]) for i in range(V)], consume & add)
            with m.Else():
                write_element(m, self.res_w_addr, self.res_w_data, self.res_w_en, ins.sum_dst + feed_off + cur_e,
                              x_el, consume & add)
            m.d.comb += [self.trace_values.valid.eq(tap & add & cur_v & (~beat_end | unit.inp.ready)),
                         self.trace_values.payload.value.eq(x_el)]

        # ---- constants: eps_q, then gamma and beta one a bus beat, gathered into rows of V for the unit's tables
        cidx = Signal(DIM_BITS)                  # channel of the gamma / beta value on the bus
        gamma_beat = (beat != 0) & (beat <= H)
        beta_beat = beat > H
        row_full = (cidx[:lv] == V - 1) | (cidx + 1 == H)
        g_row = gather_row(m, Signal(unit.gamma_layout), cidx[:lv], word, take & gamma_beat)
        b_row = gather_row(m, Signal(unit.beat_layout), cidx[:lv], word, take & beta_beat)
        m.d.comb += [unit.gamma_write.payload.addr.eq(cidx >> lv), unit.beta_write.payload.addr.eq(cidx >> lv)]
        for i in range(V):
            m.d.comb += [unit.gamma_write.payload.data[i].eq(g_row[i]), unit.beta_write.payload.data[i].eq(b_row[i])]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [self.busy.eq(1), error.eq(0), beat.eq(0), cidx.eq(0), feed_row.eq(0), out_row.eq(0),
                                 feed_off.eq(0), out_off.eq(0),
                                 cur_v.eq(0), iss_e.eq(0), out_e.eq(0), out_l.eq(0)]
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
                m.d.comb += [
                    unit.gamma_write.valid.eq(self.rd_data.valid & gamma_beat & row_full),
                    unit.beta_write.valid.eq(self.rd_data.valid & beta_beat & row_full),
                    self.rd_data.ready.eq(Mux(gamma_beat & row_full, unit.gamma_write.ready,
                                              Mux(beta_beat & row_full, unit.beta_write.ready, 1))),
                ]
                with m.If(take):
                    m.d.sync += beat.eq(beat + 1)
                    with m.If(beat != 0):
                        m.d.sync += cidx.eq(Mux(cidx + 1 == H, 0, cidx + 1))
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
                with m.If(consume & (cur_e + step >= H)):
                    m.d.sync += [iss_e.eq(0), feed_row.eq(feed_row + 1), feed_off.eq(feed_off + H)]
                    with m.If(wide & (feed_row == out_row) & (feed_row + 1 < ins.rows)):
                        m.next = "FEED"                 # wide: feed one row ahead of the outputs
                    with m.Else():
                        m.next = "OUT"
            with m.State("OUT"):
                m.d.comb += draining.eq(1)
                with m.If(out_take):
                    with m.If(~beat_done):
                        m.d.sync += out_l.eq(out_l + 1)
                    with m.Else():
                        m.d.sync += [out_e.eq(out_e + V), out_l.eq(0)]
                        with m.If(out_e + V >= H):
                            m.d.sync += [out_e.eq(0), out_row.eq(out_row + 1), out_off.eq(out_off + H)]
                            with m.If(out_row == ins.rows - 1):
                                m.next = "FLAGS"
                            with m.Elif(feed_row < ins.rows):
                                m.next = "FEED"
            with m.State("FLAGS"):
                with m.If(unit.framing_error):
                    m.d.sync += error.eq(ERR_FRAMING)
                m.next = "DONE"
            with m.State("DONE"):
                m.d.sync += self.busy.eq(0)
                m.next = "IDLE"
        return m
