"""QUANT: residual rows -> activation codes (docs/compiler.md "QUANT"), and the activation-buffer code writer.

`QuantExec` runs one QUANT instruction: ``rows`` x ``channels`` residual values (res read
port, row-major from ``src``) go through the threshold unit (``bits`` = 1: bit = x >= T[c],
`hw.threshold.ThresholdUnit`) or the requant unit (multi-bit, `hw.requant.RequantUnit`),
both Q wide, with the constants of the destination channels ``dst_col`` .. loaded from
the constant block at start; the codes are written by a `CodeWriter` exactly as
`compiler.Machine.write_codes` and, with ``tap``, traced row-major (int32 codes).

`CodeWriter` owns the activation buffer's word format (docs/encoder.md §5): physical word
P holds flat words P*R .. P*R + R - 1 (flat word P*R + s in bits s*L ..); a code of stored
row rho, plane j, packed element k is flat word ``base + ((rho // R * bits + j) * wpr + k // L)
* R + rho % R``, lane ``k % L`` (`compiler.memory.act_address`). It walks the rows x channels
tensor in row-major order with counters only (no divider): the part of the address that
follows the channel and the part that follows the row are stepped separately.

Cycles: a beat a cycle through the unit (Q = `hw.spec.buffers.quant_lanes` channels when
`hw.spec.isa.wide_quant` holds, else one), ``bits`` act writes per beat (one per plane; with
``tap`` at least one cycle per traced code), plus the constant load (``channels`` beats, or 4 +
2 x ``channels`` for requant), a few cycles of address set-up (ceil(rows / R) or
ceil(width / R)), and ``dst_col`` cycles to walk the writer to the first channel.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from bitaccel.golden.formats import MAX_SHIFT, MULT_BITS, OFFSET_BITS, RESIDUAL_BITS
from bitaccel.hw.params import HwParams
from bitaccel.hw.requant import RequantUnit
from bitaccel.hw.spec.buffers import quant_lanes, residual_lanes
from bitaccel.hw.spec.isa import DIM_BITS, Layout, Op
from bitaccel.hw.table import gather_row, row_of_channel
from bitaccel.hw.threshold import ThresholdUnit

from .layouts import instruction_layout
from .ports import fits_signed, fits_unsigned, rd_signatures, read_lanes, request_read, res_signatures, trace_signatures
from .regs import ERR_RANGE

__all__ = ["QuantExec", "CodeWriter"]

class CodeWriter(wiring.Component):
    """Writes a row-major stream of stored code values into the activation buffer.

    Parameters
    ----------
    block : R, rows of one physical word.
    lanes : L (a power of two).
    act_words : flat depth of the activation buffer (a multiple of R).
    max_bits : widest code (bits of a stored value).
    beat : codes per stream beat (a power of two dividing L; default 1). With beat > 1 a beat holds
        ``n`` <= beat consecutive channels of one group, the first at a multiple of `beat` inside
        it, written in one act write per plane (ROWS / HEADS only; the SOFTMAX probability rows).

    Members
    -------
    start : ``In(1)`` pulse: latch ``dst`` (flat word, a multiple of R), ``layout`` (ROWS / HEADS
        / TRANS), ``rows`` (the tensor's rows), ``channels`` (per row, written), ``width``
        (ROWS: packed row length; HEADS / TRANS: channel group size), ``col`` (first channel),
        ``bits`` (1, 2, 4 or 8); these inputs are read during the set-up, so hold them until
        ``codes`` is ready. ``misaligned`` is set (and held until the next start) when ``dst`` is
        not a multiple of R.
    codes : ``In(stream.Signature({"u": beat x max_bits, "n": range(beat + 1)}))`` rows x channels
        stored values (`compiler.memory.to_stored`), row r's channels col .. in order, ``n`` of them
        in a beat (lanes 0 .. n - 1); one beat every ``bits`` cycles (plane j written in the j-th
        cycle; taken on the last).
    act_w_addr, act_w_data, act_w_en : the activation buffer's write port (physical words of
        R*L bits, one enable per bit). A write of a stored row's last packed element (ROWS /
        HEADS: channel width - 1 of its group; TRANS: row rows - 1) also clears the word's lanes
        past it, as `compiler.Machine.write_codes`.
    """

    def __init__(self, block: int, lanes: int, act_words: int, max_bits: int, beat: int = 1):
        if act_words % block:
            self._MustUse__silence = True
            raise ValueError(f"act_words {act_words} is not a multiple of R = {block}")
        if beat & (beat - 1) or lanes % beat:
            self._MustUse__silence = True
            raise ValueError(f"beat {beat} is not a power of two dividing L = {lanes}")
        self.block, self.lanes, self.act_words, self.max_bits, self.beat = block, lanes, act_words, max_bits, beat
        self.phys_words = act_words // block
        super().__init__({
            "start": In(1),
            "dst": In(24), "layout": In(2), "rows": In(DIM_BITS), "channels": In(DIM_BITS),
            "width": In(DIM_BITS), "col": In(DIM_BITS), "bits": In(4),
            "misaligned": Out(1),
            "codes": In(stream.Signature(data.StructLayout({"u": data.ArrayLayout(max_bits, beat),
                                                            "n": range(beat + 1)}))),
            "act_w_addr": Out(range(self.phys_words)),
            "act_w_data": Out(block * lanes), "act_w_en": Out(block * lanes),
        })

    def elaborate(self, platform):
        m = Module()
        R, L, B = self.block, self.lanes, self.beat
        log_l = ceil_log2(L)
        n = self.codes.payload.n
        off_bits = ceil_log2(self.phys_words + 1) + DIM_BITS + 4    # address offsets (wide enough for any walk)

        trans = Signal()
        bits = Signal(4)
        rows, channels, width, col = (Signal(DIM_BITS, name=n) for n in ("rows", "channels", "width", "col"))
        base_p = Signal(off_bits)
        wpr = Signal(DIM_BITS)                  # physical words of one packed stored row and plane
        bstride = Signal(off_bits)              # bits * wpr: one row block
        gjump = Signal(off_bits)                # one channel group: ceil((TRANS ? width : rows) / R) blocks
        count = Signal(DIM_BITS + 1)            # set-up loop counter
        # channel part of the address (steps with the channel)
        n_off, n_slot, n_kw, n_lane, c, gstart = (Signal(off_bits, name="n_off"), Signal(range(R), name="n_slot"),
                                                  Signal(DIM_BITS, name="n_kw"), Signal(log_l, name="n_lane"),
                                                  Signal(DIM_BITS, name="c"), Signal(off_bits, name="gstart"))
        first = [Signal.like(s, name=f"first_{s.name}") for s in (n_off, n_slot, n_kw, n_lane, c, gstart)]
        # row part (steps with the row)
        r_off, r_slot, r_kw, r_lane, r = (Signal(off_bits, name="r_off"), Signal(range(R), name="r_slot"),
                                          Signal(DIM_BITS, name="r_kw"), Signal(log_l, name="r_lane"),
                                          Signal(DIM_BITS, name="r"))
        n_done = Signal(DIM_BITS)               # channels of the current row written
        plane = Signal(3)
        plane_off = Signal(off_bits)

        def step_channel(step):
            with m.If(trans):
                with m.If(c + 1 == width):      # next group starts a row block
                    m.d.sync += [c.eq(0), n_slot.eq(0), gstart.eq(gstart + gjump), n_off.eq(gstart + gjump)]
                with m.Else():
                    m.d.sync += c.eq(c + 1)
                    with m.If(n_slot == R - 1):
                        m.d.sync += [n_slot.eq(0), n_off.eq(n_off + bstride)]
                    with m.Else():
                        m.d.sync += n_slot.eq(n_slot + 1)
            with m.Else():                      # n channels on (FIRST: one; WRITE: the beat's n)
                with m.If(c + step == width):
                    m.d.sync += [c.eq(0), n_lane.eq(0), n_kw.eq(0), n_off.eq(n_off + gjump)]
                with m.Else():
                    m.d.sync += [c.eq(c + step), n_lane.eq(n_lane + step)]
                    with m.If(n_lane + step >= L):
                        m.d.sync += n_kw.eq(n_kw + 1)

        def step_row():
            m.d.sync += r.eq(r + 1)
            with m.If(trans):
                m.d.sync += r_lane.eq(r_lane + 1)
                with m.If(r_lane == L - 1):
                    m.d.sync += r_kw.eq(r_kw + 1)
            with m.Else():
                with m.If(r_slot == R - 1):
                    m.d.sync += [r_slot.eq(0), r_off.eq(r_off + bstride)]
                with m.Else():
                    m.d.sync += r_slot.eq(r_slot + 1)

        # element address and lane
        slot = Signal(range(R))
        lane = Signal(log_l)
        end = Signal()                          # the beat holds its stored row's last packed element
        m.d.comb += [
            slot.eq(n_slot | r_slot), lane.eq(n_lane | r_lane),
            end.eq(Mux(trans, r == rows - 1, c + n == width)),
            self.act_w_addr.eq(base_p + n_off + r_off + plane_off + n_kw + r_kw),
        ]
        writing = Signal()                      # in WRITE: a valid code is written this cycle
        lane_one = Const(1, L) << lane
        valid = Signal(B)                       # the beat's lanes 0 .. n - 1
        m.d.comb += valid.eq((Const(1, B + 1) << n) - 1)
        # the beat's lanes, or (the row's last element in it) them and all above
        lane_mask = Mux(end, Const((1 << L) - 1, L) & ~(lane_one - 1), valid << lane)
        bits_now = Cat(*(self.codes.payload.u[i].bit_select(plane, 1) for i in range(B))) & valid
        m.d.comb += [
            self.act_w_data.eq((bits_now << lane) << (slot * L)),
            self.act_w_en.eq(Mux(self.codes.valid & writing, lane_mask << (slot * L), 0)),
        ]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.next = "SETUP"
            with m.State("SETUP"):
                packed = Mux(self.layout == Layout.TRANS, self.rows, self.width)
                quotient = row_of_channel(self.dst, R, self.act_words) if R > 1 else self.dst
                m.d.sync += [
                    trans.eq(self.layout == Layout.TRANS), bits.eq(self.bits), rows.eq(self.rows),
                    channels.eq(self.channels), width.eq(self.width), col.eq(self.col),
                    base_p.eq(quotient), self.misaligned.eq(quotient * R != self.dst),
                    wpr.eq((packed + L - 1) >> log_l), bstride.eq(((packed + L - 1) >> log_l) * self.bits),
                    gjump.eq(0), count.eq(0),
                    n_off.eq(0), n_slot.eq(0), n_kw.eq(0), n_lane.eq(0), c.eq(0), gstart.eq(0),
                    r_off.eq(0), r_slot.eq(0), r_kw.eq(0), r_lane.eq(0), r.eq(0),
                    n_done.eq(0), plane.eq(0), plane_off.eq(0),
                ]
                m.next = "GROUP"
            with m.State("GROUP"):                      # gjump = ceil(extent / R) * bstride
                with m.If(count < Mux(trans, width, rows)):
                    m.d.sync += [gjump.eq(gjump + bstride), count.eq(count + R)]
                with m.Else():
                    m.d.sync += count.eq(0)
                    m.next = "FIRST"
            with m.State("FIRST"):                      # walk the channel part to channel `col`
                with m.If(count < col):
                    m.d.sync += count.eq(count + 1)
                    step_channel(1)
                with m.Else():
                    m.d.sync += [f.eq(s) for f, s in zip(first, (n_off, n_slot, n_kw, n_lane, c, gstart))]
                    m.next = "WRITE"
            with m.State("WRITE"):
                m.d.comb += writing.eq(1)
                with m.If(self.codes.valid):
                    with m.If(plane + 1 == bits):
                        m.d.comb += self.codes.ready.eq(1)
                        m.d.sync += [plane.eq(0), plane_off.eq(0)]
                        with m.If(n_done + n == channels):
                            m.d.sync += n_done.eq(0)
                            m.d.sync += [s.eq(f) for f, s in zip(first, (n_off, n_slot, n_kw, n_lane, c, gstart))]
                            step_row()
                            with m.If(r + 1 == rows):
                                m.next = "IDLE"
                        with m.Else():
                            m.d.sync += n_done.eq(n_done + n)
                            step_channel(n)
                    with m.Else():
                        m.d.sync += [plane.eq(plane + 1), plane_off.eq(plane_off + wpr)]
                with m.If(self.start):                  # a new instruction always restarts the walk
                    m.next = "SETUP"
        return m


class QuantExec(wiring.Component):
    """Runs one QUANT instruction (docs/compiler.md "QUANT").

    Parameters
    ----------
    params : HwParams (R, L, max_hidden / max_ffn channels, max_act_bits).
    addr_width : AXI byte-address bits.
    res_words : residual-buffer depth; act_words : flat activation-buffer depth (a multiple of R).
    max_beats : longest read command of the shared AXI reader.

    Members (docs/encoder.md §4)
    -------
    start, ins, base, busy, error : the execute-unit convention; ``error`` is ERR_RANGE when a
        constant does not fit its unit (requant M, S, hi, B, lo; channels past the requant
        block), when ``dst`` is not a multiple of R, or when a code leaves its ``bits``-bit range
        (that code and the ones after it are not written; the trace still completes).
    rd_cmd, rd_data : the constant block (thresholds, or the requant header and pairs).
    res_r0_addr, res_r0_data, res_r1_addr, res_r1_data : the residual rows (r1: the second word of a
        beat of Q = 2V values).
    act_w_addr, act_w_data, act_w_en : the codes.
    trace_start, trace_values : with ``tap``, the codes row-major.
    thr_element, req_element : ``Out(range(Q + 1))`` the elements entering the threshold / requant
        unit this cycle (activity counts for the busy counters and the energy model).

    Thresholds are 64-bit words in the block; they are saturated to the table's 17 bits,
    which keeps ``x >= T`` exact for every 16-bit x.
    """

    def __init__(self, params: HwParams, addr_width: int, res_words: int, act_words: int, max_beats: int):
        if not isinstance(params, HwParams):
            self._MustUse__silence = True
            raise TypeError(f"params must be an HwParams, not {params!r}")
        self.params, self.addr_width = params.validate(), addr_width
        self.res_words, self.act_words, self.max_beats = res_words, act_words, max_beats
        self.max_channels = max(params.max_hidden, params.max_ffn)
        self.beat = Q = quant_lanes(params)
        R, L = params.rows, params.lanes
        super().__init__({
            "start": In(1), "ins": In(instruction_layout(Op.QUANT)), "base": In(addr_width),
            "busy": Out(1), "error": Out(8),
            **rd_signatures(addr_width, max_beats),
            **res_signatures(residual_lanes(params), res_words, reads=("r0", "r1")),
            "act_w_addr": Out(range(act_words // R)), "act_w_data": Out(R * L), "act_w_en": Out(R * L),
            **trace_signatures(addr_width),
            "thr_element": Out(range(Q + 1)), "req_element": Out(range(Q + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        p, ins, QW = self.params, self.ins, self.beat
        lq = (QW - 1).bit_length()
        m.submodules.thr = thr = ThresholdUnit(QW, RESIDUAL_BITS, self.max_channels)
        m.submodules.rq = rq = RequantUnit(QW, RESIDUAL_BITS, RESIDUAL_BITS, self.max_channels)
        m.submodules.writer = writer = CodeWriter(p.rows, p.lanes, self.act_words, p.max_act_bits, beat=QW)
        rows, ch, bits, signed_codes = ins.rows, ins.channels, ins.bits, ins.signed
        multi = bits != 1
        wide = Signal()                          # Q channels a beat (hw.spec.isa.wide_quant), set at start
        m.d.comb += [writer.dst.eq(ins.dst), writer.layout.eq(ins.layout), writer.rows.eq(rows),
                     writer.channels.eq(ch), writer.width.eq(ins.dst_width), writer.col.eq(ins.dst_col),
                     writer.bits.eq(bits)]
        word = self.rd_data.payload.data.as_signed()
        take = self.rd_data.valid & self.rd_data.ready
        beat = Signal(DIM_BITS + 2)
        thr_row = Signal(data.ArrayLayout(thr.thr_shape, QW))          # constant rows being gathered
        off_row = Signal(data.ArrayLayout(signed(OFFSET_BITS), QW))
        lo_row = Signal(data.ArrayLayout(signed(RESIDUAL_BITS), QW))
        error = Signal(8)
        m.d.comb += self.error.eq(error)

        def read(addr, beats):
            request_read(m, self.rd_cmd, addr, beats)

        def fail_if(cond):
            with m.If(cond):
                m.d.sync += error.eq(ERR_RANGE)

        # ---- feed: res rows -> unit, a beat of Q channels a cycle (Q values of one residual word, or of
        # two adjacent words on ports r0 and r1) when hw.spec.isa.wide_quant holds, else one channel a beat
        issue_left = Signal(2 * DIM_BITS)        # elements not yet addressed
        issue_addr = Signal(range(self.res_words + 1))
        issue_c = Signal(DIM_BITS)               # row-relative channel of the next element addressed
        cur_v = Signal()                         # res_r0/r1_data hold the beat addressed last cycle
        cur_n = Signal(range(QW + 1))            # ... its elements
        feed_n = Signal(DIM_BITS)                # channel (row-relative) of that beat's first element
        step = Signal(range(QW + 1))             # elements of the beat addressed now
        m.d.comb += step.eq(Mux(wide, QW, 1))
        unit_ready = Mux(multi, rq.inp.ready, thr.inp.ready)
        consume = cur_v & unit_ready
        running = Signal()
        can_issue = running & (issue_left != 0) & (~cur_v | consume)
        last_r0 = Signal.like(issue_addr)        # held addresses: the data stays on the ports
        addr = Mux(can_issue, issue_addr, last_r0)
        V = residual_lanes(p)
        beat_in, e0 = read_lanes(m, self.res_r0_addr, self.res_r0_data, addr, min(QW, V), "e")
        if QW > V:                               # Q = 2V: the beat's upper half is the next word (port r1)
            upper, _ = read_lanes(m, self.res_r1_addr, self.res_r1_data, addr + V, V, "e1")
            beat_in = data.ArrayLayout(signed(RESIDUAL_BITS), QW)(Cat(beat_in.as_value(), upper.as_value()))
        # the units take the beat's channel group (feed_n rounded down to a multiple of Q): wide, its Q
        # values; serial, the value in every lane (the drain picks lane feed_n mod Q)
        group = Cat(Const(0, lq), feed_n[lq:])
        for unit in (thr, rq):
            m.d.comb += [unit.inp.payload.channel.eq(group), unit.inp.payload.last.eq(feed_n + cur_n >= ch)]
            m.d.comb += [unit.inp.payload.acc[j].eq(Mux(wide, beat_in[j], e0)) for j in range(QW)]
        m.d.comb += [thr.inp.valid.eq(cur_v & ~multi), rq.inp.valid.eq(cur_v & multi),
                     self.thr_element.eq(Mux(thr.inp.valid & thr.inp.ready, cur_n, 0)),
                     self.req_element.eq(Mux(rq.inp.valid & rq.inp.ready, cur_n, 0))]
        with m.If(can_issue):
            m.d.sync += [issue_addr.eq(issue_addr + step), issue_left.eq(issue_left - step), cur_v.eq(1),
                         cur_n.eq(step), last_r0.eq(issue_addr),
                         issue_c.eq(Mux(issue_c + step >= ch, 0, issue_c + step))]
        with m.Elif(consume):
            m.d.sync += cur_v.eq(0)
        with m.If(consume):
            m.d.sync += feed_n.eq(Mux(feed_n + cur_n >= ch, 0, feed_n + cur_n))

        # ---- drain: unit -> codes, trace (per element) and writer (a beat's codes in one write per plane)
        d_v, d_written = Signal(), Signal()
        d_traced = Signal(range(QW + 1))
        d_u = Signal(data.ArrayLayout(p.max_act_bits, QW))
        d_code = Signal(data.ArrayLayout(signed(RESIDUAL_BITS + 1), QW))
        d_bad = Signal()
        d_cnt = Signal(range(QW + 1))            # elements of the beat
        d_n, d_r = Signal(DIM_BITS), Signal(DIM_BITS)
        complete = Signal()                      # the beat in the drain is traced and written
        # the beat leaving the unit: its first channel `off` (the one after the beat in the drain, if that
        # completes now), its elements (wide: Q; serial: 1) and its lane (serial: off mod Q)
        off = Signal(DIM_BITS)
        m.d.comb += off.eq(Mux(complete, Mux(d_n + d_cnt >= ch, 0, d_n + d_cnt), d_n))
        b_n = Mux(wide, QW, 1)
        b_lane = off[:lq]
        unit_valid = Mux(multi, rq.out.valid, thr.out.valid)
        t_fire = self.trace_values.valid & self.trace_values.ready
        w_fire = writer.codes.valid & writer.codes.ready
        m.d.comb += complete.eq(d_v & ((d_traced == d_cnt) | (t_fire & (d_traced + 1 == d_cnt)) | ~ins.tap)
                                & (d_written | w_fire))
        load = running & (~d_v | complete)
        m.d.comb += [rq.out.ready.eq(load & multi), thr.out.ready.eq(load & ~multi)]
        for j in range(QW):
            src = Mux(wide, j, b_lane)             # the unit lane of the beat's element j
            value = rq.out.payload.value[src]
            bit = thr.out.payload.bits.bit_select(src, 1)
            u_multi = Signal(signed(RESIDUAL_BITS + 2), name=f"u_multi{j}")
            m.d.comb += u_multi.eq(value + Mux(signed_codes, Const(1, RESIDUAL_BITS + 2) << (bits - 1)[:4], 0))
            with m.If(load):
                with m.If(multi):
                    m.d.sync += [d_u[j].eq(u_multi), d_code[j].eq(value)]
                with m.Else():
                    m.d.sync += [d_u[j].eq(bit), d_code[j].eq(Mux(signed_codes, Mux(bit, 1, -1), bit))]
            if j == 0:
                bad = (u_multi < 0) | (u_multi >= (Const(1, 10) << bits))
            else:
                bad = bad | ((j < b_n) & ((u_multi < 0) | (u_multi >= (Const(1, 10) << bits))))
        with m.If(load):
            m.d.sync += [d_v.eq(unit_valid), d_traced.eq(0), d_written.eq(0), d_cnt.eq(b_n),
                         d_bad.eq(multi & bad)]
        with m.Else():
            with m.If(t_fire):
                m.d.sync += d_traced.eq(d_traced + 1)
            with m.If(w_fire):
                m.d.sync += d_written.eq(1)
        with m.If(d_v & d_bad):
            m.d.sync += error.eq(ERR_RANGE)
        m.d.comb += [
            self.trace_values.valid.eq(d_v & ins.tap & (d_traced != d_cnt)),
            self.trace_values.payload.value.eq(d_code[d_traced[:lq]] if QW > 1 else d_code[0]),
            writer.codes.valid.eq(d_v & ~d_written), writer.codes.payload.u.eq(d_u),
            writer.codes.payload.n.eq(d_cnt),
            self.act_w_addr.eq(writer.act_w_addr), self.act_w_data.eq(writer.act_w_data),
            self.act_w_en.eq(Mux((error == 0) & ~(d_v & d_bad), writer.act_w_en, 0)),
        ]
        with m.If(complete):
            with m.If(d_n + d_cnt >= ch):
                m.d.sync += [d_n.eq(0), d_r.eq(d_r + 1)]
            with m.Else():
                m.d.sync += d_n.eq(d_n + d_cnt)

        # ---- control
        thr_sat_hi, thr_sat_lo = (1 << RESIDUAL_BITS) - 1, -(1 << RESIDUAL_BITS)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [self.busy.eq(1), error.eq(0), beat.eq(0), d_n.eq(0), d_r.eq(0), d_v.eq(0),
                                 cur_v.eq(0), feed_n.eq(0), issue_c.eq(0), d_cnt.eq(0),
                                 wide.eq((ins.layout != Layout.TRANS)
                                         & ((ins.src | ins.channels | ins.dst_col) & (QW - 1) == 0)
                                         & ((ins.layout == Layout.ROWS) | (ins.dst_width & (QW - 1) == 0)))]
                    with m.If((ins.rows == 0) | (ins.channels == 0)):
                        m.next = "DONE"
                    with m.Else():
                        m.d.comb += writer.start.eq(1)
                        m.next = "CONSTS_CMD"
            with m.State("CONSTS_CMD"):
                with m.If(multi):
                    read(self.base + ins.consts, 4)
                    with m.If(self.rd_cmd.ready):
                        m.next = "RQ_HEAD"
                with m.Else():
                    read(self.base + ins.consts + (ins.dst_col << 3), ch)
                    with m.If(self.rd_cmd.ready):
                        m.next = "THRESHOLDS"
            with m.State("THRESHOLDS"):                 # channel k: table row k div Q, slot k mod Q
                sat = Mux(word > thr_sat_hi, thr_sat_hi, Mux(word < thr_sat_lo, thr_sat_lo, word))
                row_done = (beat[:lq] == QW - 1) | self.rd_data.payload.last
                row = gather_row(m, thr_row, beat[:lq], sat, take)
                m.d.comb += [thr.thr_write.valid.eq(self.rd_data.valid & row_done),
                             thr.thr_write.payload.addr.eq(beat >> lq),
                             self.rd_data.ready.eq(~row_done | thr.thr_write.ready)]
                m.d.comb += [thr.thr_write.payload.data[i].eq(row[i]) for i in range(QW)]
                with m.If(take):
                    m.d.sync += beat.eq(beat + 1)
                    with m.If(self.rd_data.payload.last):
                        m.next = "CHECK"
            with m.State("RQ_HEAD"):                    # M, S, hi, channels
                m.d.comb += self.rd_data.ready.eq(1)
                with m.If(take):
                    m.d.sync += beat.eq(beat + 1)
                    with m.Switch(beat):
                        with m.Case(0):
                            fail_if(~fits_unsigned(word, MULT_BITS - 1))
                            m.d.sync += rq.mult.eq(word)
                        with m.Case(1):
                            fail_if(~fits_unsigned(word, MAX_SHIFT.bit_length()) | (word > MAX_SHIFT))
                            m.d.sync += rq.shift.eq(word)
                        with m.Case(2):
                            fail_if(~fits_signed(word, RESIDUAL_BITS))
                            m.d.sync += rq.hi.eq(word)
                        with m.Case(3):
                            fail_if(word < ins.dst_col + ch)
                    with m.If(self.rd_data.payload.last):
                        m.next = "PAIRS_CMD"
            with m.State("PAIRS_CMD"):
                read(self.base + ins.consts + ((4 + (ins.dst_col << 1)) << 3), ch << 1)
                with m.If(self.rd_cmd.ready):
                    m.d.sync += beat.eq(0)
                    m.next = "PAIRS"
            with m.State("PAIRS"):                      # (B, lo) per channel k: table row k div Q, slot k mod Q
                odd = beat[0]                           # the lo word completes channel beat >> 1
                both_ready = rq.offset_write.ready & rq.lo_write.ready
                slot = beat[1:1 + lq]
                write = odd & ((slot == QW - 1) | self.rd_data.payload.last)
                gather_row(m, off_row, slot, word, take & ~odd)
                lo = gather_row(m, lo_row, slot, word, take & odd)
                m.d.comb += [
                    rq.offset_write.payload.addr.eq(beat >> (1 + lq)), rq.lo_write.payload.addr.eq(beat >> (1 + lq)),
                    rq.offset_write.valid.eq(self.rd_data.valid & write & both_ready),
                    rq.lo_write.valid.eq(self.rd_data.valid & write & both_ready),
                    self.rd_data.ready.eq(~write | both_ready),
                ]
                m.d.comb += [rq.offset_write.payload.data[i].eq(off_row[i]) for i in range(QW)]
                m.d.comb += [rq.lo_write.payload.data[i].eq(lo[i]) for i in range(QW)]
                with m.If(take):
                    m.d.sync += beat.eq(beat + 1)
                    with m.If(odd):
                        fail_if(~fits_signed(word, RESIDUAL_BITS))
                    with m.Else():
                        fail_if(~fits_signed(word, OFFSET_BITS))
                    with m.If(self.rd_data.payload.last):
                        m.next = "CHECK"
            with m.State("CHECK"):                      # constants and destination usable?
                with m.If((error != 0) | writer.misaligned):
                    m.d.sync += error.eq(ERR_RANGE)
                    m.next = "DONE"
                with m.Else():
                    m.next = "TRACE"
            with m.State("TRACE"):
                m.d.comb += [self.trace_start.valid.eq(ins.tap),
                             self.trace_start.payload.addr.eq(self.base + ins.trace),
                             self.trace_start.payload.count.eq(rows * ch)]
                with m.If(~ins.tap | self.trace_start.ready):
                    m.d.sync += [running.eq(1), issue_addr.eq(ins.src), issue_left.eq(rows * ch)]
                    m.next = "RUN"
            with m.State("RUN"):
                with m.If(complete & (d_n + d_cnt >= ch) & (d_r == rows - 1)):
                    m.d.sync += running.eq(0)
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.sync += self.busy.eq(0)
                m.next = "IDLE"
        return m
