"""SOFTMAX: score rows -> probability codes (docs/compiler.md "SOFTMAX", docs/numerics.md §4).

Per query row r < ``rows``: the ``keys`` scores scr[src + r*keys ..], with the key mask (bit t =
key t valid), go through `hw.softmax.SoftmaxUnit` (width 1; exp LUT and theta loaded from the
softmax block at start). ``bits`` = 1: BINARY mode, the unit's division-free bits are the
codes. Multi-bit: MULTIBIT mode, p = the unit's fixed-point probability, then
`hw.requant.RequantUnit` (width 1, one channel: M, S, hi, B, lo of the block) to the unsigned
code, exactly `compiler.Machine.softmax`. Codes are written by the `CodeWriter` (ROWS, width
``keys``, unsigned) and, with ``tap``, traced per key: p (multi-bit only) then the code
(docs/encoder.md §6).

Cycles (first version, correctness first): the unit takes one key per cycle in each of its
three passes (ingest, sum, output; the next row is ingested while the previous drains), so
about 3 x keys + 6 cycles per row in BINARY mode and 3 x keys + prob_frac + recip_guard + 8 in
MULTIBIT mode; ``bits`` act writes per key; plus the block load (6 + lut_len beats).
"""
from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, ResetInserter, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from bitaccel.golden.formats import MAX_SHIFT, MULT_BITS, OFFSET_BITS, RESIDUAL_BITS
from bitaccel.hw.params import HwParams
from bitaccel.hw.requant import RequantUnit
from bitaccel.hw.softmax import SoftmaxMode, SoftmaxUnit
from bitaccel.hw.spec.buffers import score_lanes
from bitaccel.hw.spec.isa import DIM_BITS, Layout, Op

from .layouts import instruction_layout
from .ports import fits_signed, fits_unsigned, rd_signatures, request_read, trace_signatures
from .quant_exec import CodeWriter
from .regs import ERR_LENGTH, ERR_MASKED_ROW, ERR_RANGE

__all__ = ["SoftmaxExec"]

#: Header words of a softmax block before the exp LUT (`compiler.memory.SOFTMAX_HEADER`).
HEADER_WORDS = 6


class SoftmaxExec(wiring.Component):
    """Runs one SOFTMAX instruction.

    Parameters
    ----------
    params : HwParams (R, L, max_seq, max_exp_lut, max_head_dim, max_act_bits, numerics).
    addr_width : AXI byte-address bits.
    scr_words : score-buffer depth; act_words : flat activation-buffer depth (a multiple of R).
    max_beats : longest read command of the shared AXI reader.

    Members (docs/encoder.md §4)
    -------
    start, ins, base, busy, error : the execute-unit convention. ``error`` (nothing is written
        unless said otherwise): ERR_LENGTH for ``keys`` > max_seq or ``lut_len`` > max_exp_lut
        (or the unit's `length_error`); ERR_MASKED_ROW when none of the first ``keys`` mask bits
        is set (or the unit's `masked_row_error`); ERR_RANGE for a block constant outside the
        units' widths, a LUT length word different from ``lut_len``, ``lut_len`` = 0, ``dst`` not
        a multiple of R, or — found while running, the codes from there on are not written — a
        score outside the unit's score width or a code outside ``bits`` bits.
    rd_cmd, rd_data : the softmax block.
    scr_r_addr, scr_r_data : the score rows (physical words of W = `hw.spec.buffers.score_lanes` scores;
        the score at flat address a is lane a mod W of word a div W).
    mask : ``In(max_seq)`` the key mask.
    act_w_addr, act_w_data, act_w_en : the probability codes.
    trace_start, trace_values : with ``tap``, per key p (multi-bit) then the code.
    sm_element, req_element : ``Out(1)`` high in each cycle a key enters the softmax unit / a
        probability enters the requant unit (activity counts for the busy counters and the energy
        model).
    """

    def __init__(self, params: HwParams, addr_width: int, scr_words: int, act_words: int, max_beats: int):
        if not isinstance(params, HwParams):
            self._MustUse__silence = True
            raise TypeError(f"params must be an HwParams, not {params!r}")
        self.params, self.addr_width = params.validate(), addr_width
        self.scr_words, self.act_words, self.max_beats = scr_words, act_words, max_beats
        self.scr_lanes = score_lanes(params)
        R, L = params.rows, params.lanes
        super().__init__({
            "start": In(1), "ins": In(instruction_layout(Op.SOFTMAX)), "base": In(addr_width),
            "busy": Out(1), "error": Out(8),
            **rd_signatures(addr_width, max_beats),
            "scr_r_addr": Out(range(-(-scr_words // self.scr_lanes))), "scr_r_data": In(self.scr_lanes * params.acc_width),
            "mask": In(params.max_seq),
            "act_w_addr": Out(range(act_words // R)), "act_w_data": Out(R * L), "act_w_en": Out(R * L),
            **trace_signatures(addr_width),
            "sm_element": Out(1), "req_element": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p, ins = self.params, self.ins
        fmt = p.numerics
        unit = SoftmaxUnit.from_params(p, width=1)
        m.submodules.softmax = ResetInserter({"sync": self.start})(unit)   # clears its sticky flags
        # two table rows, not one: a one-row ChannelTable has a zero-width address ([-1:0] in the Verilog)
        m.submodules.rq = rq = RequantUnit(1, fmt.prob_frac + 2, RESIDUAL_BITS, 2)
        m.submodules.writer = writer = CodeWriter(p.rows, p.lanes, self.act_words, p.max_act_bits)
        m.submodules.p_fifo = p_fifo = SyncFIFOBuffered(width=unit.prob_width, depth=8)
        rows, keys, bits, tap = ins.rows, ins.keys, ins.bits, ins.tap
        multi = bits != 1
        error = Signal(8)
        m.d.comb += self.error.eq(error)
        m.d.comb += [writer.dst.eq(ins.dst), writer.layout.eq(Layout.ROWS), writer.rows.eq(rows),
                     writer.channels.eq(keys), writer.width.eq(keys), writer.col.eq(0), writer.bits.eq(bits)]
        word = self.rd_data.payload.data.as_signed()
        take = self.rd_data.valid & self.rd_data.ready
        beat = Signal(DIM_BITS + 2)
        theta = Signal(unit.theta_width)
        m.d.comb += [unit.lut_len.eq(ins.lut_len), unit.theta.eq(theta),
                     unit.mode.eq(Mux(multi, SoftmaxMode.MULTIBIT, SoftmaxMode.BINARY))]
        valid_keys = Signal(p.max_seq)          # the mask's first `keys` bits
        m.d.comb += valid_keys.eq(self.mask & Mux(keys >= p.max_seq, (1 << p.max_seq) - 1,
                                                  (Const(1, p.max_seq + 1) << keys[:p.max_seq.bit_length()]) - 1))

        def read(addr, beats):
            request_read(m, self.rd_cmd, addr, beats)

        def fail_if(cond):
            with m.If(cond):
                m.d.sync += error.eq(ERR_RANGE)

        running = Signal()
        # ---- feed: scores -> unit, one key per cycle
        issue_left = Signal(2 * DIM_BITS)
        issue_addr = Signal(range(self.scr_words + 1))
        cur_v = Signal()
        feed_t = Signal(DIM_BITS)                # key of the element on scr_r_data
        consume = cur_v & unit.scores.ready
        can_issue = running & (issue_left != 0) & (~cur_v | consume)
        lw = ceil_log2(self.scr_lanes)
        read_flat = Signal.like(issue_addr)      # flat score address presented to the read port
        data_lane = Signal(max(lw, 1))           # its lane, a cycle later (when its word is on scr_r_data)
        score = Signal(signed(p.acc_width))
        m.d.comb += [read_flat.eq(Mux(can_issue, issue_addr, issue_addr - 1)),
                     score.eq(self.scr_r_data.word_select(data_lane[:lw], p.acc_width) if lw else self.scr_r_data)]
        m.d.sync += data_lane.eq(read_flat[:lw] if lw else 0)
        score_bad = cur_v & ~fits_signed(score, unit.score_width)
        m.d.comb += [
            self.scr_r_addr.eq(read_flat >> lw),
            unit.scores.valid.eq(cur_v),
            unit.scores.payload.score[0].eq(score),
            unit.scores.payload.valid.eq(self.mask.bit_select(feed_t, 1)),
            unit.scores.payload.last.eq(feed_t == keys - 1),
            self.sm_element.eq(unit.scores.valid & unit.scores.ready),
            self.req_element.eq(rq.inp.valid & rq.inp.ready),
        ]
        with m.If(can_issue):
            m.d.sync += [issue_addr.eq(issue_addr + 1), issue_left.eq(issue_left - 1), cur_v.eq(1)]
        with m.Elif(consume):
            m.d.sync += cur_v.eq(0)
        with m.If(consume):
            m.d.sync += feed_t.eq(Mux(feed_t == keys - 1, 0, feed_t + 1))
        with m.If(score_bad):
            m.d.sync += error.eq(ERR_RANGE)

        # ---- multi-bit: p -> requant unit, p kept in a FIFO beside it for the trace
        m.d.comb += [
            rq.inp.payload.acc[0].eq(unit.probs.payload.p[0]), rq.inp.payload.channel.eq(0),
            rq.inp.payload.last.eq(1),
            rq.inp.valid.eq(multi & unit.probs.valid & p_fifo.w_rdy),
            p_fifo.w_data.eq(unit.probs.payload.p[0]),
            p_fifo.w_en.eq(multi & unit.probs.valid & rq.inp.ready & p_fifo.w_rdy),
        ]

        # ---- drain: code (+ p) -> trace and writer
        d_v, d_written = Signal(), Signal()
        d_traced = Signal(2)
        d_u = Signal(p.max_act_bits)
        d_p = Signal(unit.prob_width)
        d_code = Signal(signed(RESIDUAL_BITS))
        d_bad = Signal()
        d_t, d_r = Signal(DIM_BITS), Signal(DIM_BITS)
        needed = Mux(multi, 2, 1)
        t_fire = self.trace_values.valid & self.trace_values.ready
        w_fire = writer.codes.valid & writer.codes.ready
        complete = d_v & (~tap | (d_traced == needed) | (t_fire & (d_traced + 1 == needed))) & (d_written | w_fire)
        load = running & (~d_v | complete)
        src_valid = Mux(multi, rq.out.valid & p_fifo.r_rdy, unit.probs.valid)
        m.d.comb += [
            rq.out.ready.eq(load & multi & p_fifo.r_rdy),
            p_fifo.r_en.eq(load & multi & rq.out.valid),
            unit.probs.ready.eq(Mux(multi, rq.inp.ready & p_fifo.w_rdy, load)),
        ]
        value = rq.out.payload.value[0]
        with m.If(load):
            m.d.sync += [d_v.eq(src_valid), d_traced.eq(0), d_written.eq(0)]
            with m.If(multi):
                m.d.sync += [d_u.eq(value), d_code.eq(value), d_p.eq(p_fifo.r_data),
                             d_bad.eq((value < 0) | (value >= (Const(1, 10) << bits)))]
            with m.Else():
                bit = unit.probs.payload.bits[0]
                m.d.sync += [d_u.eq(bit), d_code.eq(bit), d_p.eq(0), d_bad.eq(0)]
        with m.Else():
            with m.If(t_fire):
                m.d.sync += d_traced.eq(d_traced + 1)
            with m.If(w_fire):
                m.d.sync += d_written.eq(1)
        with m.If(d_v & d_bad):
            m.d.sync += error.eq(ERR_RANGE)
        m.d.comb += [
            self.trace_values.valid.eq(d_v & tap & (d_traced != needed)),
            self.trace_values.payload.value.eq(Mux(multi & (d_traced == 0), d_p, d_code)),
            writer.codes.valid.eq(d_v & ~d_written), writer.codes.payload.u.eq(d_u),
            self.act_w_addr.eq(writer.act_w_addr), self.act_w_data.eq(writer.act_w_data),
            self.act_w_en.eq(Mux((error == 0) & ~(d_v & d_bad) & ~score_bad, writer.act_w_en, 0)),
        ]
        with m.If(complete):
            with m.If(d_t == keys - 1):
                m.d.sync += [d_t.eq(0), d_r.eq(d_r + 1)]
            with m.Else():
                m.d.sync += d_t.eq(d_t + 1)

        # ---- control
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [self.busy.eq(1), error.eq(0), beat.eq(0), d_t.eq(0), d_r.eq(0), d_v.eq(0),
                                 cur_v.eq(0), feed_t.eq(0)]
                    with m.If((keys > p.max_seq) | (ins.lut_len > p.max_exp_lut)):
                        m.d.sync += error.eq(ERR_LENGTH)
                        m.next = "DONE"
                    with m.Elif(valid_keys == 0):
                        m.d.sync += error.eq(ERR_MASKED_ROW)
                        m.next = "DONE"
                    with m.Elif(ins.lut_len == 0):
                        m.d.sync += error.eq(ERR_RANGE)
                        m.next = "DONE"
                    with m.Elif(rows == 0):
                        m.next = "DONE"
                    with m.Else():
                        m.d.comb += writer.start.eq(1)
                        m.next = "CONSTS_CMD"
            with m.State("CONSTS_CMD"):
                read(self.base + ins.consts, HEADER_WORDS + ins.lut_len)
                with m.If(self.rd_cmd.ready):
                    m.next = "CONSTS"
            with m.State("CONSTS"):                     # theta or M, S, hi, B, lo; lut_len; the exp LUT
                lut_beat = beat >= HEADER_WORDS
                both_ready = rq.offset_write.ready & rq.lo_write.ready
                m.d.comb += [
                    unit.lut_write.payload.addr.eq(beat - HEADER_WORDS), unit.lut_write.payload.data.eq(word),
                    unit.lut_write.valid.eq(self.rd_data.valid & lut_beat),
                    rq.offset_write.payload.addr.eq(0), rq.lo_write.payload.addr.eq(0),
                    rq.lo_write.payload.data[0].eq(word),
                    rq.offset_write.valid.eq(self.rd_data.valid & (beat == 3) & both_ready),
                    rq.offset_write.payload.data[0].eq(word),
                    rq.lo_write.valid.eq(self.rd_data.valid & (beat == 4) & both_ready),
                    self.rd_data.ready.eq(Mux(lut_beat, unit.lut_write.ready,
                                              Mux((beat == 3) | (beat == 4), both_ready, 1))),
                ]
                with m.If(take):
                    m.d.sync += beat.eq(beat + 1)
                    with m.Switch(beat):
                        with m.Case(0):
                            with m.If(multi):
                                fail_if(~fits_unsigned(word, MULT_BITS - 1))
                                m.d.sync += rq.mult.eq(word)
                            with m.Else():
                                fail_if(~fits_unsigned(word, unit.theta_width))
                                m.d.sync += theta.eq(word)
                        with m.Case(1):
                            fail_if(multi & (~fits_unsigned(word, MAX_SHIFT.bit_length()) | (word > MAX_SHIFT)))
                            m.d.sync += rq.shift.eq(word)
                        with m.Case(2):
                            fail_if(multi & ~fits_signed(word, RESIDUAL_BITS))
                            m.d.sync += rq.hi.eq(word)
                        with m.Case(3):
                            fail_if(multi & ~fits_signed(word, OFFSET_BITS))
                        with m.Case(4):
                            fail_if(multi & ~fits_signed(word, RESIDUAL_BITS))
                        with m.Case(5):
                            fail_if(word != ins.lut_len)
                        with m.Default():
                            fail_if(~fits_unsigned(word, unit.exp_width))
                    with m.If(self.rd_data.payload.last):
                        m.next = "CHECK"
            with m.State("CHECK"):
                with m.If((error != 0) | writer.misaligned):
                    m.d.sync += error.eq(ERR_RANGE)
                    m.next = "DONE"
                with m.Else():
                    m.next = "TRACE"
            with m.State("TRACE"):
                m.d.comb += [self.trace_start.valid.eq(tap),
                             self.trace_start.payload.addr.eq(self.base + ins.trace),
                             self.trace_start.payload.count.eq(Mux(multi, (rows * keys) << 1, rows * keys))]
                with m.If(~tap | self.trace_start.ready):
                    m.d.sync += [running.eq(1), issue_addr.eq(ins.src), issue_left.eq(rows * keys)]
                    m.next = "RUN"
            with m.State("RUN"):
                with m.If(complete & (d_t == keys - 1) & (d_r == rows - 1)):
                    m.d.sync += running.eq(0)
                    m.next = "FLAGS"
            with m.State("FLAGS"):
                with m.If(error != 0):
                    pass
                with m.Elif(unit.masked_row_error):
                    m.d.sync += error.eq(ERR_MASKED_ROW)
                with m.Elif(unit.length_error):
                    m.d.sync += error.eq(ERR_LENGTH)
                m.next = "DONE"
            with m.State("DONE"):
                m.d.sync += self.busy.eq(0)
                m.next = "IDLE"
        return m
