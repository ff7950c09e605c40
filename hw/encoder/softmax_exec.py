"""SOFTMAX: score rows -> probability codes (docs/compiler.md "SOFTMAX", docs/numerics.md §4).

Per query row r < ``rows``: the ``keys`` scores scr[src + r*keys ..], with the key mask (bit t =
key t valid), go through `hw.softmax.SoftmaxUnit` W keys a beat (W = `hw.spec.buffers.score_lanes`,
the scores per score word; exp LUT and theta loaded from the softmax block at start). A row's
beats are read as its words w0 .. w0 + ceil(keys/W) (w0 = its first score's word; word 0 primes,
beat b is W lanes from the row's start lane across words w0 + b and w0 + b + 1), so a row need
not start on a word. ``bits`` = 1: BINARY mode, the unit's division-free bits are the codes.
Multi-bit: MULTIBIT mode, p = the unit's fixed-point probability, then `hw.requant.RequantUnit`
(W wide, one channel: M, S, hi, B, lo of the block in every lane) to the unsigned code, exactly
`compiler.Machine.softmax`. Codes are written by the `CodeWriter` (ROWS, width ``keys``,
unsigned, a beat's W codes in one write per plane) and, with ``tap``, traced per key: p
(multi-bit only) then the code (docs/encoder.md §6).

Cycles: the unit's three passes (ingest, sum, output) take ceil(keys/W) beats each, and the
next row is ingested while one is summed and output, so back-to-back rows take
`SoftmaxUnit.interval`: 2 ceil(keys/W) + 5 cycles each in BINARY mode, 2 ceil(keys/W) +
prob_frac + recip_guard + 6 in MULTIBIT mode; a beat's codes
take ``bits`` act writes, its trace one cycle per value (which back-pressures the unit when a
row's trace outlasts its passes); plus the block load (6 + lut_len beats). `sim.program_cycles`.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, ResetInserter, Signal
from amaranth.lib import data, wiring
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
    sm_element, req_element : ``Out(range(W + 1))`` the keys entering the softmax unit / the
        probabilities entering the requant unit this cycle (activity counts for the busy counters
        and the energy model).
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
            "sm_element": Out(range(self.scr_lanes + 1)), "req_element": Out(range(self.scr_lanes + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        p, ins = self.params, self.ins
        fmt = p.numerics
        W = self.scr_lanes                      # keys per beat (= scores per score word)
        lw = ceil_log2(W)
        aw = p.acc_width
        unit = SoftmaxUnit.from_params(p, width=W)
        m.submodules.softmax = ResetInserter({"sync": self.start})(unit)   # clears its sticky flags
        # two table rows, not one: a one-row ChannelTable has a zero-width address ([-1:0] in the Verilog)
        m.submodules.rq = rq = RequantUnit(W, fmt.prob_frac + 2, RESIDUAL_BITS, 2 * W)
        m.submodules.writer = writer = CodeWriter(p.rows, p.lanes, self.act_words, p.max_act_bits, beat=W)
        m.submodules.p_fifo = p_fifo = SyncFIFOBuffered(width=W * unit.prob_width, depth=8)
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
        nb = Signal(DIM_BITS)                   # beats of a row: ceil(keys / W)
        m.d.comb += nb.eq((keys + (W - 1)) >> lw)

        def read(addr, beats):
            request_read(m, self.rd_cmd, addr, beats)

        def fail_if(cond):
            with m.If(cond):
                m.d.sync += error.eq(ERR_RANGE)

        def lanes_below(count):
            """W bits: lanes 0 .. count - 1 (count >= W: all)."""
            return Mux(count >= W, (1 << W) - 1, (Const(1, W + 1) << count[:lw + 1]) - 1)[:W]

        running = Signal()
        # ---- feed: per row the score words w0 .. w0 + nb (w0 = row start div W); word 0 only fills `prev`,
        # beat b is lanes o .. o + W - 1 of (word w0 + b, word w0 + b + 1), o = row start mod W
        phys = -(-self.scr_words // W)
        i_row = Signal(DIM_BITS + 1)            # issue side: row, its flat start, its next word
        i_start = Signal(range(self.scr_words + p.max_seq + 1))
        i_wi = Signal(DIM_BITS + 1)
        i_addr = Signal(range(phys + p.max_seq + 2))
        last_addr = Signal(range(phys))
        cur_v = Signal()                        # scr_r_data holds the word issued last (kept while held)
        cur_wi = Signal(DIM_BITS + 1)           # ... its index in its row
        cur_o = Signal(max(lw, 1))              # ... its row's start lane
        prev = Signal(W * aw)
        feed_t = Signal(DIM_BITS)               # key of lane 0 of the beat on offer
        prime = cur_wi == 0
        offer = cur_v & ~prime
        consume_word = cur_v & (prime | unit.scores.ready)
        can_issue = running & (i_row < rows) & (~cur_v | consume_word)
        i_word = Signal.like(last_addr)         # i_addr inside the buffer (a word past it holds only masked lanes)
        m.d.comb += [i_addr.eq((i_start >> lw) + i_wi), i_word.eq(Mux(i_addr >= phys, phys - 1, i_addr)),
                     self.scr_r_addr.eq(Mux(can_issue, i_word, last_addr))]
        with m.If(can_issue):
            m.d.sync += [last_addr.eq(i_word), cur_v.eq(1), cur_wi.eq(i_wi),
                         cur_o.eq(i_start[:lw] if lw else 0)]
            with m.If(i_wi == nb):
                m.d.sync += [i_wi.eq(0), i_start.eq(i_start + keys), i_row.eq(i_row + 1)]
            with m.Else():
                m.d.sync += i_wi.eq(i_wi + 1)
        with m.Elif(consume_word):
            m.d.sync += cur_v.eq(0)
        with m.If(consume_word):
            m.d.sync += prev.eq(self.scr_r_data)
        pair = Cat(prev, self.scr_r_data)
        lanes = Signal(W * aw)
        m.d.comb += lanes.eq(pair.bit_select(cur_o[:lw] * aw, W * aw) if lw else prev)
        need = Signal(DIM_BITS)                 # the row's keys from feed_t on
        m.d.comb += need.eq(keys - feed_t)
        in_row = lanes_below(need)
        mask_ext = Cat(self.mask, Const(0, W))
        score_bad = Signal()
        m.d.comb += score_bad.eq(offer & Cat(*(in_row[j] & ~fits_signed(lanes.word_select(j, aw).as_signed(),
                                                                         unit.score_width)
                                               for j in range(W))).any())
        m.d.comb += [
            unit.scores.valid.eq(offer),
            unit.scores.payload.valid.eq(in_row & mask_ext.bit_select(feed_t, W)),
            unit.scores.payload.last.eq(cur_wi == nb),
            self.sm_element.eq(Mux(offer & unit.scores.ready, Mux(need >= W, W, need), 0)),
        ]
        q_t = Signal(DIM_BITS)                  # key of lane 0 of the beat entering the requant unit
        q_left = keys - q_t
        with m.If(rq.inp.valid & rq.inp.ready):
            m.d.comb += self.req_element.eq(Mux(q_left >= W, W, q_left))
            m.d.sync += q_t.eq(Mux(q_left <= W, 0, q_t + W))
        m.d.comb += [unit.scores.payload.score[j].eq(lanes.word_select(j, aw)) for j in range(W)]
        with m.If(offer & unit.scores.ready):
            m.d.sync += feed_t.eq(Mux(cur_wi == nb, 0, feed_t + W))
        with m.If(score_bad):
            m.d.sync += error.eq(ERR_RANGE)

        # ---- multi-bit: p -> requant unit, p kept in a FIFO beside it for the trace
        m.d.comb += [
            rq.inp.payload.channel.eq(0), rq.inp.payload.last.eq(1),
            rq.inp.valid.eq(multi & unit.probs.valid & p_fifo.w_rdy),
            p_fifo.w_data.eq(unit.probs.payload.p.as_value()),
            p_fifo.w_en.eq(multi & unit.probs.valid & rq.inp.ready & p_fifo.w_rdy),
        ]
        m.d.comb += [rq.inp.payload.acc[j].eq(unit.probs.payload.p[j]) for j in range(W)]

        # ---- drain: a beat's codes (+ p) -> trace (per key: p if multi-bit, then the code) and writer
        d_v, d_written = Signal(), Signal()
        d_traced = Signal(range(2 * W + 1))
        d_u = Signal(data.ArrayLayout(p.max_act_bits, W))
        d_p = Signal(data.ArrayLayout(unit.prob_width, W))
        d_n = Signal(range(W + 1))              # keys of the row in the beat
        d_bad = Signal()
        d_t, d_r = Signal(DIM_BITS), Signal(DIM_BITS)
        needed = Mux(multi, d_n << 1, d_n)      # trace values of the beat
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
        left = Signal(DIM_BITS)                 # the row's keys from the next beat on
        m.d.comb += left.eq(keys - Mux(complete, Mux(d_t + W >= keys, 0, d_t + W), d_t))
        n_next = Mux(left >= W, W, left)
        next_in_row = lanes_below(left)
        with m.If(load):
            m.d.sync += [d_v.eq(src_valid), d_traced.eq(0), d_written.eq(0), d_n.eq(n_next)]
            with m.If(multi):
                out_of_range = Cat(*(next_in_row[j] & ((rq.out.payload.value[j] < 0)
                                                       | (rq.out.payload.value[j] >= (Const(1, 10) << bits)))
                                     for j in range(W)))
                m.d.sync += [d_p.eq(p_fifo.r_data), d_bad.eq(out_of_range.any())]
                m.d.sync += [d_u[j].eq(rq.out.payload.value[j]) for j in range(W)]
            with m.Else():
                m.d.sync += [d_p.eq(0), d_bad.eq(0)]
                m.d.sync += [d_u[j].eq(unit.probs.payload.bits[j]) for j in range(W)]
        with m.Else():
            with m.If(t_fire):
                m.d.sync += d_traced.eq(d_traced + 1)
            with m.If(w_fire):
                m.d.sync += d_written.eq(1)
        with m.If(d_v & d_bad):
            m.d.sync += error.eq(ERR_RANGE)
        t_lane = Mux(multi, d_traced >> 1, d_traced)
        m.d.comb += [
            self.trace_values.valid.eq(d_v & tap & (d_traced != needed)),
            self.trace_values.payload.value.eq(Mux(multi & ~d_traced[0], d_p[t_lane], d_u[t_lane])),
            writer.codes.valid.eq(d_v & ~d_written), writer.codes.payload.u.eq(d_u), writer.codes.payload.n.eq(d_n),
            self.act_w_addr.eq(writer.act_w_addr), self.act_w_data.eq(writer.act_w_data),
            self.act_w_en.eq(Mux((error == 0) & ~(d_v & d_bad) & ~score_bad, writer.act_w_en, 0)),
        ]
        with m.If(complete):
            with m.If(d_t + W >= keys):
                m.d.sync += [d_t.eq(0), d_r.eq(d_r + 1)]
            with m.Else():
                m.d.sync += d_t.eq(d_t + W)

        # ---- control
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [self.busy.eq(1), error.eq(0), beat.eq(0), d_t.eq(0), d_r.eq(0), d_v.eq(0),
                                 cur_v.eq(0), feed_t.eq(0), i_row.eq(0), i_wi.eq(0), q_t.eq(0)]
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
                    rq.offset_write.valid.eq(self.rd_data.valid & (beat == 3) & both_ready),
                    # the one channel's B and lo in every lane of table row 0
                    rq.lo_write.valid.eq(self.rd_data.valid & (beat == 4) & both_ready),
                    self.rd_data.ready.eq(Mux(lut_beat, unit.lut_write.ready,
                                              Mux((beat == 3) | (beat == 4), both_ready, 1))),
                ]
                m.d.comb += [rq.offset_write.payload.data[j].eq(word) for j in range(W)]
                m.d.comb += [rq.lo_write.payload.data[j].eq(word) for j in range(W)]
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
                    m.d.sync += [running.eq(1), i_start.eq(ins.src)]
                    m.next = "RUN"
            with m.State("RUN"):
                with m.If(complete & (d_t + W >= keys) & (d_r == rows - 1)):
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
