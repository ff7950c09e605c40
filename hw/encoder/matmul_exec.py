"""MATMUL: one product ``acc (M x N) = A . B^T`` over K on the MAC array, then its post-op (docs/compiler.md).

Schedule (weight-stationary, docs/encoder.md §6): for each column tile j (C rows of B),
the tile is loaded once into one bank of a two-bank local tile buffer (one word of C*L bits
per (B plane, K chunk)), then every row block i (R rows of A) runs against it:

* B from ``b_src`` WEIGHTS: the weight block at external ``base + b``, tile j at byte
  ``j * ceil(K/L) * C*L/8`` (`compiler.memory.weight_block`). The tile is read with one
  command from the 8-byte-aligned address below it; a byte gearbox re-assembles the
  C*L-bit words from the 64-bit beats (a tile need not start or end on a beat).
* B from ``b_src`` ACT: codes at ``b`` (ROWS, width K): row n, plane p, chunk c is slot
  n mod R of physical word ``b/R + ((n div R)*b_bits + p)*ceil(K/L) + c`` (§5), read one
  word per cycle into column n mod C of the tile buffer (rows past N: zero words).
* A's beat operand is one physical activation word: row block i, plane p, chunk c at
  ``a/R + (i*a_bits + p)*ceil(K/L) + c`` (R rows' L-bit words, slot = row mod R).

Beats follow `hw.schedule.tile_plan` (plane pairs in falling weight, A's plane descending
inside a weight, then K chunks), one per cycle while the array takes them. The array's
drain (R beats of C accumulators per tile; rows < M and columns < N only, in drain order:
tile j, block i, row, column) is post-processed a beat at a time when `hw.spec.isa.wide_beats`
holds, else one element per cycle (docs/encoder.md §4a):

* SCORES: scr[dst + r*dst_width + dst_col + n] (score words of W; a wide beat is C lanes of one
  word); RESIDUAL: 16-bit requant (`RequantUnit`) into res at the same address (residual words of
  V; a wide beat, C = V, is one word);
  EXT: the int32 accumulator to the trace port at ``ext_out`` (the pooler output);
* THRESHOLD (`ThresholdUnit`) / REQUANT (`RequantUnit`): codes of channel dst_col + n written
  like `compiler.Machine.write_codes` (stored value: 1-bit as its bit, multi-bit signed as
  offset binary; one write per plane; layouts ROWS / HEADS / TRANS as
  `compiler.memory.act_address`; the write of a packed row's last element also clears that
  word's lanes past the packed length). A wide beat's C codes are C lanes (ROWS / HEADS) or C
  slots (TRANS) of one physical word.

The threshold and requant units are C wide: a wide beat enters whole, a serial element enters
in every lane of its channel group and the write-back picks its lane. Per-channel constants
(thresholds, or the requant block's header and channel pairs) are loaded into the units'
tables at the start, channel dst_col + n at table row n div C, lane n mod C. With ``tap``,
each element's accumulator then its post value (SCORES: the accumulator only) go to the trace
(§6). Cycles: one beat per cycle in the array; post-processing per serial element one cycle
without a trace, two with one (the trace port takes one value per cycle), plus one per extra
code plane; per wide beat its trace values, then one write (scores, residual values) or one per
code plane.
Weight tiles are double-buffered: a loader
(ceil((skip + tile bytes) / 8) bus beats per tile) fills the bank the issue stage is not
reading, so tile j + 1 streams in while tile j is issued; a bank is free again once the array
has taken its tile's last beat. ACT tiles (C * b_bits * ceil(K/L) reads through the activation
buffer's one read port, which the issue stage also uses) load between the tiles' issues. The
drain and post-processing overlap both, and the array stalls (drain back-pressure) when
post-processing falls behind.

An instruction outside this unit's generated limits (K, code bits, channel count, widths)
stops with ERR_RANGE before anything is written.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, memory, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from bitaccel.golden.formats import MAX_SHIFT, MULT_BITS, OFFSET_BITS, RESIDUAL_BITS
from bitaccel.hw.mac_array import BinaryMacArray
from bitaccel.hw.params import HwParams
from bitaccel.hw.requant import RequantUnit
from bitaccel.hw.spec.buffers import residual_lanes, score_lanes
from bitaccel.hw.spec.isa import BSource, Layout, Op, Post
from bitaccel.hw.table import gather_row
from bitaccel.hw.threshold import ThresholdUnit

from .layouts import instruction_layout
from .ports import rd_signatures, request_read, res_signatures, trace_signatures, write_element, write_lanes
from .regs import ERR_RANGE

__all__ = ["MatmulExec"]

#: Elements in flight between the serializer and the write-back (>= the requant unit's latency + 1).
POST_DEPTH = 8


def _exact_div(value, divisor: int, bits: int):
    """``value // divisor`` for a `value` that is a multiple of the constant `divisor`, as `bits` bits.

    divisor = 2**t * q (q odd): (value >> t) * q^-1 mod 2**bits (a shift when q = 1).
    """
    t = (divisor & -divisor).bit_length() - 1
    q = divisor >> t
    shifted = value.shift_right(t)
    if q == 1:
        return shifted[:bits]
    return (shifted * pow(q, -1, 1 << bits))[:bits]


def _multiple_of(value, divisor: int):
    """``value`` is a multiple of the constant `divisor` (the exact quotient times `divisor`, unwrapped)."""
    return _exact_div(value, divisor, len(value)) * divisor == value


def _saturate(value, shape):
    """`value` (a wide signed Value) clamped into the signed `shape`."""
    lo, hi = -(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1
    return Mux(value < lo, lo, Mux(value > hi, hi, value))[:shape.width].as_signed()


class MatmulExec(wiring.Component):
    """Runs one MATMUL instruction on its own `BinaryMacArray` and post-processing units.

    Parameters
    ----------
    params : HwParams (R, C, L, limits, numerics).
    addr_width : AXI byte-address bits.
    act_words : activation-buffer depth in flat L-bit words (a multiple of R; physical words = act_words / R).
    res_words, scr_words : residual- and score-buffer depths.
    max_beats : largest beat count of one read command (the AxiReader's).

    Members
    -------
    start : ``In(1)`` pulse with ``ins`` (the MATMUL instruction) and ``base`` (data base) valid;
        both are latched.
    busy : ``Out(1)``; ``error`` : ``Out(8)``: ERR_RANGE for an instruction outside the limits
        (nothing written), else 0; held until the next start.
    rd_cmd, rd_data : read commands ``{addr, beats}`` / 64-bit data beats ``{data, last}``.
    act_r_addr, act_r_data : activation-buffer read port (physical words of R*L bits).
    act_w_addr, act_w_data, act_w_en : its write port (``act_w_en``: one enable per bit).
    res_w_addr, res_w_data, res_w_en : residual-buffer write port (words of V =
        `hw.spec.buffers.residual_lanes` signed 16-bit values, one enable per value).
    scr_w_addr, scr_w_data, scr_w_en : score-buffer write port: physical words of W =
        `hw.spec.buffers.score_lanes` signed acc_width-bit scores, one enable per score.
    trace_start, trace_values : to the `TraceWriter` (int32 values).
    array_beat : ``Out(1)`` high in each cycle the MAC array accepts an operand beat.
    thr_element, req_element : ``Out(range(C + 1))`` the elements entering the threshold / requant
        unit this cycle (activity counts for the busy counters and the energy model).
    """

    def __init__(self, params: HwParams, addr_width: int, act_words: int, res_words: int, scr_words: int,
                 max_beats: int):
        if not isinstance(params, HwParams):
            raise TypeError(f"params must be an HwParams, not {params!r}")
        params.validate()
        if act_words % params.rows:
            raise ValueError(f"act_words must be a multiple of R = {params.rows}, not {act_words}")
        p = self.params = params
        self.addr_width, self.max_beats = addr_width, max_beats
        self.act_words, self.res_words, self.scr_words = act_words, res_words, scr_words
        self.act_phys = act_words // p.rows
        self.max_channels = max(p.max_hidden, p.max_ffn)
        self.max_width = max(p.max_hidden, p.max_ffn, p.max_seq)
        lin_chunks = -(-max(p.max_hidden, p.max_ffn) // p.lanes)
        dyn_chunks = -(-max(p.max_head_dim, p.max_seq) // p.lanes)
        #: tile-buffer words (B plane x K chunk): the larger of a weight tile and a dynamic operand's tile
        self.tile_depth = max(lin_chunks, p.max_act_bits * dyn_chunks)
        self.acc_width = p.acc_width
        self.scr_lanes = score_lanes(p)
        self.res_lanes = residual_lanes(p)
        rl = p.rows * p.lanes
        super().__init__({
            "start": In(1), "ins": In(instruction_layout(Op.MATMUL)), "base": In(addr_width),
            "busy": Out(1), "error": Out(8),
            **rd_signatures(addr_width, max_beats),
            "act_r_addr": Out(range(self.act_phys)), "act_r_data": In(rl),
            "act_w_addr": Out(range(self.act_phys)), "act_w_data": Out(rl), "act_w_en": Out(rl),
            **res_signatures(self.res_lanes, res_words, write=True),
            "scr_w_addr": Out(range(-(-scr_words // self.scr_lanes))), "scr_w_data": Out(self.scr_lanes * p.acc_width),
            "scr_w_en": Out(self.scr_lanes),
            **trace_signatures(addr_width),
            "array_beat": Out(1), "thr_element": Out(range(p.cols + 1)), "req_element": Out(range(p.cols + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        R, C, L = p.rows, p.cols, p.lanes
        lb = ceil_log2(L)
        aw = self.acc_width
        W = self.scr_lanes                     # scores per score-buffer word (C divides W when SCORES beats go wide)
        V = self.res_lanes                     # values per residual-buffer word (V = C when RESIDUAL beats go wide)
        lw = ceil_log2(W)
        pbits = max(1, ceil_log2(self.act_phys))

        m.submodules.array = array = BinaryMacArray.from_params(p)
        m.submodules.thr = thr = ThresholdUnit(C, aw, self.max_channels)
        m.submodules.req = req = RequantUnit(C, aw, RESIDUAL_BITS, self.max_channels)
        td = self.tile_depth
        # two banks of td words: bank b at words b*td ..; the weight loader fills one while the other is issued
        m.submodules.tile = tile = memory.Memory(shape=C * L, depth=2 * td, init=[])
        tile_w = tile.write_port(granularity=L)
        tile_r = tile.read_port(domain="sync")

        # ------------------------------------------------------------------ instruction fields (latched)
        ins = Signal(instruction_layout(Op.MATMUL))
        base = Signal(self.addr_width)
        M, N, K = ins.m, ins.n, ins.k
        post = ins.post
        tap = ins.tap
        is_codes = (post == Post.THRESHOLD) | (post == Post.REQUANT)
        uses_req = (post == Post.REQUANT) | (post == Post.RESIDUAL)
        wide = Signal()                 # each drain beat written whole (hw.spec.isa.wide_beats)
        chunks = Signal(16)                                     # ceil(K / L)
        a_stride = Signal(20)                                   # a_bits * chunks: one row block of A
        b_stride = Signal(20)                                   # b_bits * chunks: one row block of B (ACT)
        a_p = Signal(pbits)                                     # physical word of A's row block 0
        b_p = Signal(pbits)
        dst_p = Signal(pbits)
        m.d.comb += [chunks.eq((K + (L - 1)) >> lb), a_stride.eq(ins.a_bits * chunks),
                     b_stride.eq(ins.b_bits * chunks)]

        # operand kinds (hw.schedule.operand_encoding): 1-bit signed (+-1), signed multi-bit, unsigned
        a_pm1 = (ins.a_bits == 1) & ins.a_signed
        b_pm1 = (ins.b_bits == 1) & ins.b_signed
        a_neg = ins.a_signed & (ins.a_bits != 1)              # c = -1
        b_neg = ins.b_signed & (ins.b_bits != 1)
        a_pos = ~ins.a_signed                                 # c = 2**bits - 1
        b_pos = ~ins.b_signed
        offset = Signal(signed(aw))                           # K * o_a * o_b
        a_sh = Mux(a_pm1, 0, ins.a_bits - 1)[:3]
        b_sh = Mux(b_pm1, 0, ins.b_bits - 1)[:3]
        k_shifted = Signal(unsigned(16 + 14))
        m.d.comb += k_shifted.eq(K << (a_sh + b_sh))
        m.d.comb += offset.eq(Mux(ins.a_signed & ins.b_signed, k_shifted, 0))
        with m.If(self.start):
            m.d.sync += [ins.eq(self.ins), base.eq(self.base)]

        # ------------------------------------------------------------------ limits (ERR_RANGE)
        def bits_ok(b):
            return ((b == 1) | (b == 2) | (b == 4) | (b == 8)) & (b <= p.max_act_bits)

        def code_max(bits, signed_):
            """Largest |code|: 1 for +-1, 2**(b-1) signed, 2**b - 1 unsigned."""
            one = Const(1, 9)
            return Mux(signed_, Mux(bits == 1, 1, one << (bits - 1)[:3]), (one << bits) - 1)

        pe_need = Signal(16 + 16)
        out_need = Signal(16 + 16)
        m.d.comb += [
            pe_need.eq(K * ((Const(1, 9) << ins.a_bits) - 1) * ((Const(1, 9) << ins.b_bits) - 1)),
            out_need.eq(K * code_max(ins.a_bits, ins.a_signed) * code_max(ins.b_bits, ins.b_signed)),
        ]
        def starts_word(flat):
            """A flat activation address that is the first slot of a physical word inside the buffer."""
            return (_exact_div(flat, R, pbits) * R)[:len(flat)] == flat

        last_elem = Signal(48)                 # SCORES / RESIDUAL: the highest buffer address written
        m.d.comb += last_elem.eq(ins.dst + (M - 1) * ins.dst_width + ins.dst_col + N - 1)
        bad = Signal()
        m.d.comb += bad.eq(
            (M == 0) | (N == 0) | (K == 0) | (post > Post.EXT) | (ins.layout > Layout.TRANS)
            | ~bits_ok(ins.a_bits) | ~bits_ok(ins.b_bits)
            | ((ins.b_src == BSource.WEIGHTS) & ~b_pm1)
            | (pe_need >= (1 << array.pe_width)) | (out_need >= (1 << (aw - 1)))
            | (b_stride > self.tile_depth)
            | ((post == Post.THRESHOLD) & (ins.out_bits != 1))
            | ((post == Post.REQUANT) & ((ins.out_bits == 1) | ~bits_ok(ins.out_bits)))
            | ((post != Post.SCORES) & (post != Post.EXT) & (N > self.max_channels))
            | (is_codes & ((ins.dst_width == 0) | (ins.dst_width > self.max_width)))
            | ~starts_word(ins.a) | ((ins.b_src == BSource.ACT) & ~starts_word(ins.b)) | (is_codes & ~starts_word(ins.dst))
            | ((post == Post.SCORES) & (last_elem >= self.scr_words))
            | ((post == Post.RESIDUAL) & (last_elem >= self.res_words))
        )

        # ------------------------------------------------------------------ shared read-command helper
        def read(addr, beats):
            request_read(m, self.rd_cmd, addr, beats)

        data_in = self.rd_data.payload.data
        take = self.rd_data.valid & self.rd_data.ready

        # ------------------------------------------------------------------ issue stage (array operands)
        ops = array.operands
        v1 = Signal()                          # stage 1 (memory data) holds a beat
        advance = Signal()
        m.d.comb += [advance.eq(~v1 | ops.ready), ops.valid.eq(v1), self.array_beat.eq(v1 & ops.ready)]
        ctrl1 = Signal(data.StructLayout({"first": 1, "step": 1, "row_en": 1, "col_en": 1, "last": 1,
                                          "tile_end": 1, "bank": 1}))
        addr1_a = Signal(pbits)
        addr1_t = Signal(range(2 * td))
        m.d.comb += [
            ops.payload.a.eq(self.act_r_data), ops.payload.w.eq(tile_r.data),
            ops.payload.first.eq(ctrl1.first), ops.payload.step.eq(ctrl1.step),
            ops.payload.row_en.eq(ctrl1.row_en), ops.payload.col_en.eq(ctrl1.col_en),
            ops.payload.last.eq(ctrl1.last),
            ops.payload.a_pm1.eq(a_pm1), ops.payload.b_pm1.eq(b_pm1),
            ops.payload.row_neg.eq(b_neg), ops.payload.col_neg.eq(a_neg),
            ops.payload.offset.eq(offset),
        ]
        # stage 0 counters: plane weight w, A plane ip, chunk ch; row block base ab
        w = Signal(4)
        ip = Signal(3)
        jp = Signal(4)
        ch = Signal(range(self.tile_depth + 1))
        ab = Signal(pbits)
        blk_first = Signal()
        new_w = Signal()
        rb0 = Signal(16)                       # first row of the row block being issued
        colbase_i = Signal(16)                 # first column (B row) of the tile being issued / loaded
        m.d.comb += jp.eq(w - ip)
        issuing = Signal()
        last0 = (w == 0) & (ip == 0) & (ch == chunks - 1)
        addr0_a = Signal(pbits)
        addr0_t = Signal(range(2 * td + 8 * td))
        ibank = Signal()                       # tile bank the issue stage reads
        m.d.comb += [addr0_a.eq(ab + ip * chunks + ch), addr0_t.eq(Mux(ibank, td, 0) + jp * chunks + ch)]

        # ------------------------------------------------------------------ tile loader state
        full = Signal(2)                       # bank b holds a loaded weight tile not yet wholly issued
        lbank = Signal()                       # bank the weight loader fills next
        lcol = Signal(16)                      # first column (B row) of the next weight tile to load
        wl_go = Signal()                       # the main FSM starts the weight loader (first LOAD)
        loaded = Signal()                      # the loader writes its tile's last word this cycle
        release = Signal()                     # the array takes the last beat of a tile (its bank is free)
        m.d.comb += release.eq(v1 & ops.ready & ctrl1.tile_end)
        t_addr = Signal(self.addr_width)       # absolute byte address of the weight tile
        tile_bytes = Signal(range(self.tile_depth * C * L // 8 + 1))
        m.d.comb += tile_bytes.eq(chunks * (C * L // 8))
        widx = Signal(range(self.tile_depth + 1))     # tile words written
        wb = C * L // 8                               # bytes per tile word
        cap = wb + 8                                  # gearbox capacity (bytes)
        gear = Signal(8 * cap)
        fill = Signal(range(cap + 1))
        skip = Signal(3)                              # leading bytes of the first beat not in the tile
        first_beat = Signal()
        # ACT loader: B row n = colbase + cc in slot nr of the row block at rbb
        cc = Signal(range(C + 1))
        q = Signal(range(8 * self.tile_depth + 1))
        nr = Signal(range(R))
        rbb = Signal(pbits)
        n_load = Signal(16)
        lv = Signal()                                 # a read is in flight (data next cycle)
        l_q = Signal.like(q)
        l_cc = Signal(range(C))
        l_slot = Signal(range(R))
        l_valid = Signal()
        loading_act = Signal()

        # act read port: the loader's address while loading B, else the issue stage's
        rd_addr_load = Signal(pbits)
        m.d.comb += self.act_r_addr.eq(Mux(loading_act, rd_addr_load, Mux(advance, addr0_a, addr1_a)))
        m.d.comb += tile_r.addr.eq(Mux(advance, addr0_t, addr1_t))

        # ACT loader write (data of the read issued last cycle)
        slot_word = self.act_r_data.word_select(l_slot, L)
        m.d.comb += [
            tile_w.addr.eq(Mux(ibank, td, 0) + l_q), tile_w.data.eq(Cat(*([Mux(l_valid, slot_word, 0)] * C))),
            tile_w.en.eq(Mux(lv, 1 << l_cc, 0)),
        ]

        # ------------------------------------------------------------------ column/row bookkeeping (post side)
        # Column state of channel n = dst_col + rel: cm = n mod width; (cw, cl) = cm div/mod L;
        # (cq, cr) = cm div/mod R; goff = n div width * group stride (HEADS: ceil(M/R); TRANS: ceil(width/R)).
        wmax = self.max_width
        col_layout = data.StructLayout({
            "goff": pbits, "cm": range(wmax + 1), "cw": range(wmax // L + 2), "cl": lb if lb else 1,
            "cq": range(wmax // R + 2), "cr": range(R),
        })
        width = ins.dst_width
        nblk = Signal(16)                      # ceil(M / R)
        gw = Signal(16)                        # ceil(width / R)
        gstep = Mux(ins.layout == Layout.HEADS, nblk, gw)

        def col_next(s):
            """The column state of the next channel (n + 1)."""
            nxt = Signal(col_layout, name="col_next")
            with m.If(s.cm + 1 == width):
                m.d.comb += [nxt.goff.eq(s.goff + gstep), nxt.cm.eq(0), nxt.cw.eq(0), nxt.cl.eq(0), nxt.cq.eq(0),
                             nxt.cr.eq(0)]
            with m.Else():
                m.d.comb += [nxt.goff.eq(s.goff), nxt.cm.eq(s.cm + 1)]
                if L > 1:
                    m.d.comb += [nxt.cl.eq(s.cl + 1), nxt.cw.eq(s.cw + (s.cl == L - 1))]
                else:
                    m.d.comb += nxt.cw.eq(s.cw + 1)
                with m.If(s.cr == R - 1):
                    m.d.comb += [nxt.cr.eq(0), nxt.cq.eq(s.cq + 1)]
                with m.Else():
                    m.d.comb += [nxt.cr.eq(s.cr + 1), nxt.cq.eq(s.cq)]
            return nxt

        def col_next_beat(s):
            """The column state C channels on (wide beats: C divides the width and L (ROWS / HEADS) or R
            (TRANS), so no lane or slot wraps inside a beat). Only the layout's own fields are meaningful."""
            nxt = Signal(col_layout, name="col_next_beat")
            with m.If(s.cm + C == width):
                m.d.comb += [nxt.goff.eq(s.goff + gstep), nxt.cm.eq(0), nxt.cw.eq(0), nxt.cl.eq(0), nxt.cq.eq(0),
                             nxt.cr.eq(0)]
            with m.Else():
                m.d.comb += [nxt.goff.eq(s.goff), nxt.cm.eq(s.cm + C)]
                if L > C:
                    m.d.comb += [nxt.cl.eq(s.cl + C), nxt.cw.eq(s.cw + (s.cl == L - C))]
                else:
                    m.d.comb += nxt.cw.eq(s.cw + 1)
                if R > C:
                    m.d.comb += [nxt.cr.eq(Mux(s.cr == R - C, 0, s.cr + C)), nxt.cq.eq(s.cq + (s.cr == R - C))]
                else:
                    m.d.comb += nxt.cq.eq(s.cq + 1)
            return nxt

        # seek: nblk, gw, then the column state of channel dst_col (one step per cycle, beside the loads)
        seek_done = Signal()
        seek_n = Signal(16)
        seek_cnt = Signal(17)
        col_start = Signal(col_layout)         # column state of the tile's first column
        seek_next = col_next(col_start)

        # ------------------------------------------------------------------ serializer (drain -> elements)
        # nb_*: the next drain beat's row, block, tile; s_*: the beat being serialized.
        res = array.results
        nb_r = Signal(16)                      # row r = i*R + rho of the next beat
        nb_i = Signal(16)                      # its row block
        nb_rw = Signal(16)                     # r div L
        nb_rl = Signal(max(lb, 1))             # r mod L
        nb_rowaddr = Signal(24)                # dst + dst_col + r*dst_width
        nb_colbase = Signal(16)                # j*C of the next beat's tile
        nb_newtile = Signal()                  # the next beat is its tile's first
        s_acc = Signal(data.ArrayLayout(signed(aw), C))
        s_have = Signal()                      # elements of a drained beat are left
        s_c = Signal(range(C + 1))
        s_ncols = Signal(range(C + 1))
        s_r = Signal(16)
        s_rho = Signal(range(R))
        s_i = Signal(16)
        s_rw = Signal(16)
        s_rl = Signal(max(lb, 1))
        s_colbase = Signal(16)
        s_rowaddr = Signal(24)
        s_col = Signal(col_layout)             # column state of the element
        s_col_end = Signal(col_layout)         # column state after the last row's last element
        s_done = Signal()                      # the last tile's last drain beat was taken
        dst_wpr = Signal(16)                   # words per packed row of the destination
        dst_stride = Signal(20)                # out_bits * dst_wpr: one row block of the destination
        tail = Signal(max(lb, 1))              # packed length mod L (lanes from it on are cleared)
        packed_len = Mux(ins.layout == Layout.TRANS, M, width)
        m.d.comb += tail.eq(packed_len[:lb] if lb else 0)

        # accs: the beat's accumulators from the offered element on (serial: accs[0] is the element);
        # sel: the element's position in its beat (its lane in the units); ncols: a wide beat's columns
        meta_layout = data.StructLayout({
            "accs": data.ArrayLayout(signed(aw), C), "addr": 24, "slot": range(max(R, 2)), "lane": max(lb, 1),
            "clear": 1, "sel": range(max(C, 2)), "ncols": range(C + 1),
        })
        m.submodules.meta = meta = fifo.SyncFIFO(width=meta_layout.size, depth=POST_DEPTH)
        e = Signal(meta_layout)                # the element offered this cycle
        e_rel = Signal(16)                     # its channel relative to dst_col (table row)
        m.d.comb += [e_rel.eq(s_colbase + s_c), e.accs.eq(s_acc), e.sel.eq(s_c), e.ncols.eq(s_ncols)]
        # the packed row's last element is written with this element (wide: with this beat, which then
        # holds all C columns, the last at cm + C - 1)
        row_last = Mux(wide, (s_col.cm + C == width) & (s_ncols == C), s_col.cm == width - 1)   # ROWS / HEADS
        blk = Signal(pbits)                    # destination row block (stored row div R)
        kword = Signal(16)                     # packed element div L
        with m.Switch(ins.layout):
            with m.Case(Layout.ROWS):
                m.d.comb += [blk.eq(s_i), e.slot.eq(s_rho), kword.eq(s_col.cw), e.lane.eq(s_col.cl),
                             e.clear.eq(row_last)]
            with m.Case(Layout.HEADS):
                m.d.comb += [blk.eq(s_col.goff + s_i), e.slot.eq(s_rho), kword.eq(s_col.cw), e.lane.eq(s_col.cl),
                             e.clear.eq(row_last)]
            with m.Default():   # TRANS: stored row = channel, packed along the rows
                m.d.comb += [blk.eq(s_col.goff + s_col.cq), e.slot.eq(s_col.cr), kword.eq(s_rw), e.lane.eq(s_rl),
                             e.clear.eq(s_r == M - 1)]
        with m.If(is_codes):
            m.d.comb += e.addr.eq(dst_p + blk * dst_stride + kword)
        with m.Else():
            m.d.comb += e.addr.eq(s_rowaddr + e_rel)

        to_thr = post == Post.THRESHOLD
        unit_ready = Mux(to_thr, thr.inp.ready, Mux(uses_req, req.inp.ready, 1))
        entering = Mux(wide, s_ncols, 1)      # elements entering a unit with a push
        m.d.comb += [self.thr_element.eq(Mux(thr.inp.valid & thr.inp.ready, entering, 0)),
                     self.req_element.eq(Mux(req.inp.valid & req.inp.ready, entering, 0))]
        push = Signal()
        row_end = Signal()
        m.d.comb += [
            push.eq(s_have & meta.w_rdy & unit_ready),
            row_end.eq(push & (wide | (s_c + 1 == s_ncols))),
            meta.w_data.eq(e), meta.w_en.eq(push),
            # the units take the beat's channel group (s_colbase, a multiple of C): wide, the whole beat;
            # serial, the offered element in every lane (the write-back picks lane `sel`)
            thr.inp.valid.eq(s_have & meta.w_rdy & to_thr),
            thr.inp.payload.channel.eq(s_colbase), thr.inp.payload.last.eq(1),
            req.inp.valid.eq(s_have & meta.w_rdy & uses_req),
            req.inp.payload.channel.eq(s_colbase), req.inp.payload.last.eq(1),
        ]
        for i in range(C):
            m.d.comb += [thr.inp.payload.acc[i].eq(Mux(wide, s_acc[i], s_acc[0])),
                         req.inp.payload.acc[i].eq(Mux(wide, s_acc[i], s_acc[0]))]
        col_after = Signal(col_layout)
        m.d.comb += col_after.eq(Mux(wide, col_next_beat(s_col), col_next(s_col)))
        end_now = Signal(col_layout)           # the column state after the last row, including this cycle's
        m.d.comb += end_now.eq(Mux(row_end, col_after, s_col_end))
        with m.If(push):
            m.d.sync += [s_c.eq(s_c + 1), s_col.eq(col_after)]
            m.d.sync += [s_acc[i].eq(s_acc[i + 1]) for i in range(C - 1)]
        with m.If(row_end):
            m.d.sync += [s_have.eq(0), s_col_end.eq(col_after)]
        m.d.comb += res.ready.eq(seek_done & ~s_done & (~s_have | row_end))
        with m.If(res.valid & res.ready):
            m.d.sync += [s_acc.eq(res.payload.acc), s_have.eq(nb_r < M), s_c.eq(0), s_rho.eq(res.payload.row),
                         s_r.eq(nb_r), s_i.eq(nb_i), s_rw.eq(nb_rw), s_rl.eq(nb_rl), s_rowaddr.eq(nb_rowaddr),
                         s_colbase.eq(nb_colbase), s_ncols.eq(Mux(nb_colbase + C > N, N - nb_colbase, C)),
                         nb_newtile.eq(0)]
            with m.If(nb_newtile):
                m.d.sync += [s_col.eq(end_now), col_start.eq(end_now)]
            with m.Else():
                m.d.sync += s_col.eq(col_start)
            with m.If(res.payload.last & (nb_r + 1 >= M)):
                # the tile's last beat: rows restart, the next tile's columns follow this one's
                m.d.sync += [nb_r.eq(0), nb_i.eq(0), nb_rw.eq(0), nb_rl.eq(0), nb_rowaddr.eq(ins.dst + ins.dst_col),
                             nb_colbase.eq(nb_colbase + C), nb_newtile.eq(1)]
                with m.If(nb_colbase + C >= N):
                    m.d.sync += s_done.eq(1)
            with m.Else():
                m.d.sync += [nb_r.eq(nb_r + 1), nb_rowaddr.eq(nb_rowaddr + ins.dst_width),
                             nb_i.eq(nb_i + res.payload.last)]
                if L > 1:
                    m.d.sync += [nb_rl.eq(nb_rl + 1), nb_rw.eq(nb_rw + (nb_rl == L - 1))]
                else:
                    m.d.sync += nb_rw.eq(nb_rw + 1)

        # ------------------------------------------------------------------ write-back (per element: trace, writes)
        head = Signal(meta_layout)
        m.d.comb += head.eq(meta.r_data)
        post_valid = Mux(to_thr, thr.out.valid, Mux(uses_req, req.out.valid, 1))
        ready_el = meta.r_rdy & post_valid
        wk = Signal(range(C + 1))              # wide beat with a tap: the element being traced
        sel = Signal(range(max(C, 2)))         # the element's lane in the units' output
        m.d.comb += sel.eq(Mux(wide, wk, head.sel))
        code_bit = thr.out.payload.bits.bit_select(sel, 1)
        req_val = req.out.payload.value[sel]
        code_offset = Mux(ins.out_signed, Const(1, 9) << (ins.out_bits - 1)[:3], 0)

        def stored_code(bit, value):
            """A code's stored value (8 bits): its bit, or the multi-bit code in offset binary if signed."""
            return Mux(to_thr, bit, (value + code_offset)[:8])

        stored = Signal(8)
        m.d.comb += stored.eq(stored_code(code_bit, req_val))
        post_val = Signal(signed(32))
        m.d.comb += post_val.eq(Mux(to_thr, Mux(ins.out_signed, Mux(code_bit, 1, -1), code_bit), req_val))
        phase = Signal(2)                      # 0: accumulator; 1: post value and plane 0; 2: planes 1..
        plane = Signal(3)
        plane_off = Signal(20)                 # plane * dst_wpr
        retire = Signal()
        scr_write = Signal()                   # SCORES: the element (or a wide beat) is written this cycle
        res_write = Signal()                   # RESIDUAL: the element is written this cycle
        res_wide = Signal()                    # RESIDUAL: the wide beat is written this cycle
        tv = self.trace_values
        two_phase = (post != Post.SCORES) & (post != Post.EXT)
        need_acc = tap | (post == Post.EXT)
        one_hot = Signal(R * L)
        lane_mask = Signal(L)
        clear_mask = Signal(R * L)
        pos = Cat(head.lane[:lb], head.slot)   # the element's bit in the physical word: slot * L + lane
        plane_bits = Signal(C)                 # a wide beat's codes, bit `plane` of each
        ncols_mask = Signal(C)
        wide_data = Signal(R * L)
        wide_en = Signal(R * L)
        for i in range(C):
            m.d.comb += plane_bits[i].eq(stored_code(thr.out.payload.bits[i], req.out.payload.value[i])
                                         .bit_select(plane, 1))
        # TRANS: the beat's C channels are C consecutive stored rows, slots slot .. slot + C - 1 of one
        # physical word, all at the token's lane (and, for the last token, its lanes above cleared)
        lane_one = Signal(L)
        m.d.comb += lane_one.eq(Const(1, L) << head.lane[:lb])
        trans_data = Cat(*(Mux(plane_bits[i], lane_one, 0) for i in range(C))) << (head.slot * L)
        trans_en = Cat(*(Mux(ncols_mask[i], lane_one | lane_mask, 0) for i in range(C))) << (head.slot * L)
        trans = ins.layout == Layout.TRANS
        m.d.comb += [
            ncols_mask.eq((Const(1, C + 1) << head.ncols) - 1),
            wide_data.eq(Mux(trans, trans_data, plane_bits << pos)),
            wide_en.eq(Mux(trans, trans_en, (ncols_mask << pos) | clear_mask)),
        ]
        m.d.comb += [
            one_hot.eq(Const(1, R * L) << pos),
            lane_mask.eq(Mux(head.clear & (tail != 0), Const((1 << L) - 1, L) << tail, 0)),
            clear_mask.eq(lane_mask << (head.slot * L)),
            self.act_w_addr.eq(head.addr + plane_off),
            self.act_w_data.eq(Mux(wide, wide_data, Mux(stored.bit_select(plane, 1), one_hot, 0))),
            # a wide beat: its C scores in every C-lane group of the word, the enables on its group
            self.scr_w_addr.eq(head.addr >> lw),
            self.scr_w_data.eq(Mux(wide, Cat(*[head.accs.as_value()] * (W // C)) if W % C == 0 else 0,
                                   Cat(*[head.accs[0]] * W))),
            self.scr_w_en.eq(Mux(scr_write, Mux(wide, ncols_mask << head.addr[:lw], Const(1, W) << head.addr[:lw]), 0)),
        ]

        with m.If(res_wide):                   # C = V values: the whole word, the beat's columns enabled
            write_lanes(m, self.res_w_addr, self.res_w_data, self.res_w_en, head.addr,
                        [req.out.payload.value[i] for i in range(V)], 1, valid=ncols_mask)
        with m.Else():
            write_element(m, self.res_w_addr, self.res_w_data, self.res_w_en, head.addr, req_val, res_write)

        def next_plane():
            """Plane `plane` is written now: retire after the last one, else go on to the next."""
            with m.If(plane + 1 == ins.out_bits):
                m.d.comb += retire.eq(1)
            with m.Else():
                m.d.sync += [phase.eq(2), plane.eq(plane + 1), plane_off.eq(plane_off + dst_wpr)]

        def post_write():
            """The post value: to the trace (tap), then its write (residual, or code plane 0)."""
            m.d.comb += [tv.valid.eq(tap), tv.payload.value.eq(post_val)]
            with m.If(~tap | tv.ready):
                with m.If(post == Post.RESIDUAL):
                    m.d.comb += [res_write.eq(1), retire.eq(1)]
                with m.Else():
                    m.d.comb += self.act_w_en.eq(one_hot | clear_mask)
                    next_plane()

        with m.If(ready_el & wide):
            with m.If(tap & (wk < head.ncols)):      # trace each element: accumulator, then its code
                m.d.comb += tv.valid.eq(1)
                with m.If(phase == 0):
                    m.d.comb += tv.payload.value.eq(head.accs[wk])
                    with m.If(tv.ready):
                        with m.If(two_phase):
                            m.d.sync += phase.eq(1)
                        with m.Else():
                            m.d.sync += wk.eq(wk + 1)
                with m.Else():
                    m.d.comb += tv.payload.value.eq(post_val)
                    with m.If(tv.ready):
                        m.d.sync += [phase.eq(0), wk.eq(wk + 1)]
            with m.Elif(post == Post.SCORES):        # then the beat's C scores in one write
                m.d.comb += [scr_write.eq(1), retire.eq(1)]
            with m.Elif(post == Post.RESIDUAL):      # or its C residual values in one write
                m.d.comb += [res_wide.eq(1), retire.eq(1)]
            with m.Else():                           # or one write per plane: the beat's C code lanes
                m.d.comb += self.act_w_en.eq(wide_en)
                next_plane()
        with m.Elif(ready_el):
            with m.If(phase == 0):
                with m.If(need_acc):
                    m.d.comb += [tv.valid.eq(1), tv.payload.value.eq(head.accs[0])]
                    with m.If(tv.ready):
                        with m.If(two_phase):
                            m.d.sync += phase.eq(1)
                        with m.Else():
                            m.d.comb += [scr_write.eq(post == Post.SCORES), retire.eq(1)]
                with m.Elif(two_phase):
                    post_write()
                with m.Else():
                    m.d.comb += [scr_write.eq(post == Post.SCORES), retire.eq(1)]
            with m.Elif(phase == 1):
                post_write()
            with m.Else():
                m.d.comb += self.act_w_en.eq(one_hot | clear_mask)
                next_plane()
        with m.If(retire):
            m.d.sync += [phase.eq(0), plane.eq(0), plane_off.eq(0), wk.eq(0)]
        m.d.comb += [
            meta.r_en.eq(retire),
            thr.out.ready.eq(retire & to_thr),
            req.out.ready.eq(retire & uses_req),
        ]

        # ------------------------------------------------------------------ control FSM
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [self.busy.eq(1), self.error.eq(0)]
                    m.next = "CHECK"
            with m.State("CHECK"):
                m.d.sync += [
                    a_p.eq(_exact_div(ins.a, R, pbits)), b_p.eq(_exact_div(ins.b, R, pbits)),
                    dst_p.eq(_exact_div(ins.dst, R, pbits)),
                    # serializer and write-back
                    s_have.eq(0), s_done.eq(0), nb_r.eq(0), nb_i.eq(0), nb_rw.eq(0), nb_rl.eq(0), nb_colbase.eq(0),
                    nb_rowaddr.eq(ins.dst + ins.dst_col), nb_newtile.eq(1), phase.eq(0), plane.eq(0),
                    plane_off.eq(0),
                    # seek
                    seek_done.eq(0), seek_n.eq(0), seek_cnt.eq(0), nblk.eq(0), gw.eq(0), col_start.eq(0),
                    # issue and load
                    colbase_i.eq(0), t_addr.eq(base + ins.b), rbb.eq(_exact_div(ins.b, R, pbits)), nr.eq(0),
                    n_load.eq(0), v1.eq(0), ibank.eq(0), lbank.eq(0), lcol.eq(0), full.eq(0),
                ]
                with m.If(bad):
                    m.d.sync += self.error.eq(ERR_RANGE)
                    m.next = "DONE"
                with m.Else():
                    m.next = "SETUP"
            with m.State("SETUP"):
                rows_codes = is_codes & (ins.layout != Layout.TRANS) & _multiple_of(ins.dst_col, C) \
                    & _multiple_of(width, C) if L % C == 0 else 0
                trans_codes = is_codes & (ins.layout == Layout.TRANS) & _multiple_of(ins.dst_col, C) \
                    & _multiple_of(width, C) if R % C == 0 else 0
                wide_codes = rows_codes | trans_codes
                whole_words = _multiple_of(ins.dst, C) & _multiple_of(ins.dst_col, C) & _multiple_of(width, C)
                wide_scores = (post == Post.SCORES) & whole_words if W % C == 0 and C & (C - 1) == 0 else 0
                wide_res = (post == Post.RESIDUAL) & whole_words if V == C else 0
                m.d.sync += wide.eq(wide_codes | wide_scores | wide_res)
                m.d.sync += [dst_wpr.eq(Mux(ins.layout == Layout.TRANS, (M + (L - 1)) >> lb,
                                            (width + (L - 1)) >> lb))]
                m.next = "SETUP2"
            with m.State("SETUP2"):
                m.d.sync += dst_stride.eq(ins.out_bits * dst_wpr)
                with m.If(post == Post.THRESHOLD):
                    m.next = "THR_CMD"
                with m.Elif(uses_req):
                    m.next = "RQ_HEAD_CMD"
                with m.Else():
                    m.next = "TRACE"
            # ---- constants
            # ---- constants: one per beat, gathered into table rows of C (channel k: row k div C, slot k mod C)
            thr_idx = Signal(16)
            cslot = Signal(range(max(C, 2)))
            crow = Signal(16)
            row_done = (cslot == C - 1) | self.rd_data.payload.last     # this beat completes a table row
            thr_row = Signal(data.ArrayLayout(thr.thr_shape, C))
            off_row = Signal(data.ArrayLayout(signed(OFFSET_BITS), C))
            lo_row = Signal(data.ArrayLayout(signed(RESIDUAL_BITS), C))

            def next_slot():
                with m.If(row_done):
                    m.d.sync += [cslot.eq(0), crow.eq(crow + 1)]
                with m.Else():
                    m.d.sync += cslot.eq(cslot + 1)

            with m.State("THR_CMD"):
                read(base + ins.consts + (ins.dst_col << 3), N)
                with m.If(self.rd_cmd.ready):
                    m.d.sync += [thr_idx.eq(0), cslot.eq(0), crow.eq(0)]
                    m.next = "THR"
            with m.State("THR"):
                row = gather_row(m, thr_row, cslot, _saturate(data_in.as_signed(), thr.thr_shape), take)
                m.d.comb += [thr.thr_write.valid.eq(self.rd_data.valid & row_done),
                             thr.thr_write.payload.addr.eq(crow),
                             self.rd_data.ready.eq(~row_done | thr.thr_write.ready)]
                m.d.comb += [thr.thr_write.payload.data[i].eq(row[i]) for i in range(C)]
                with m.If(take):
                    m.d.sync += thr_idx.eq(thr_idx + 1)
                    next_slot()
                    with m.If(self.rd_data.payload.last):
                        m.next = "TRACE"
            with m.State("RQ_HEAD_CMD"):
                read(base + ins.consts, 4)
                with m.If(self.rd_cmd.ready):
                    m.d.sync += thr_idx.eq(0)
                    m.next = "RQ_HEAD"
            with m.State("RQ_HEAD"):
                m.d.comb += self.rd_data.ready.eq(1)
                with m.If(take):
                    m.d.sync += thr_idx.eq(thr_idx + 1)
                    with m.Switch(thr_idx):
                        with m.Case(0):
                            m.d.sync += req.mult.eq(data_in[:MULT_BITS - 1])
                        with m.Case(1):
                            m.d.sync += req.shift.eq(data_in[:MAX_SHIFT.bit_length()])
                        with m.Case(2):
                            m.d.sync += req.hi.eq(_saturate(data_in.as_signed(), signed(RESIDUAL_BITS)))
                    with m.If(self.rd_data.payload.last):
                        m.next = "RQ_PAIRS_CMD"
            with m.State("RQ_PAIRS_CMD"):
                read(base + ins.consts + 32 + (ins.dst_col << 4), N << 1)
                with m.If(self.rd_cmd.ready):
                    m.d.sync += [thr_idx.eq(0), cslot.eq(0), crow.eq(0)]
                    m.next = "RQ_PAIRS"
            with m.State("RQ_PAIRS"):      # (offset, lo) per channel; the lo beat completes the pair
                is_lo = thr_idx[0]
                write = is_lo & row_done
                gather_row(m, off_row, cslot, data_in[:OFFSET_BITS], take & ~is_lo)
                lo = gather_row(m, lo_row, cslot, _saturate(data_in.as_signed(), signed(RESIDUAL_BITS)), take & is_lo)
                m.d.comb += [
                    req.offset_write.valid.eq(self.rd_data.valid & write), req.offset_write.payload.addr.eq(crow),
                    req.lo_write.valid.eq(self.rd_data.valid & write), req.lo_write.payload.addr.eq(crow),
                    self.rd_data.ready.eq(~write | (req.offset_write.ready & req.lo_write.ready)),
                ]
                m.d.comb += [req.offset_write.payload.data[i].eq(off_row[i]) for i in range(C)]
                m.d.comb += [req.lo_write.payload.data[i].eq(lo[i]) for i in range(C)]
                with m.If(take):
                    m.d.sync += thr_idx.eq(thr_idx + 1)
                    with m.If(is_lo):
                        next_slot()
                    with m.If(self.rd_data.payload.last):
                        m.next = "TRACE"
            with m.State("TRACE"):
                count = Mux(two_phase, (M * N) << 1, M * N)
                need = tap | (post == Post.EXT)
                m.d.comb += [self.trace_start.valid.eq(need), self.trace_start.payload.addr.eq(base + ins.ext_out),
                             self.trace_start.payload.count.eq(count)]
                with m.If(~need | self.trace_start.ready):
                    m.d.comb += wl_go.eq(ins.b_src == BSource.WEIGHTS)
                    m.next = "LOAD"
            # ---- tile load
            with m.State("LOAD"):
                with m.If(ins.b_src == BSource.WEIGHTS):
                    with m.If(full.bit_select(ibank, 1)):     # the weight loader has filled this tile's bank
                        m.next = "ISSUE_START"
                with m.Elif(~v1):              # ACT: the read port is free once the previous tile's beats are in
                    m.d.sync += [cc.eq(0), q.eq(0), lv.eq(0)]
                    m.next = "LOADA"
            with m.State("LOADA"):
                m.d.comb += [loading_act.eq(1), rd_addr_load.eq(rbb + q)]
                m.d.sync += [lv.eq(1), l_q.eq(q), l_cc.eq(cc), l_slot.eq(nr), l_valid.eq(n_load < N)]
                with m.If(q + 1 == b_stride):
                    m.d.sync += [q.eq(0), cc.eq(cc + 1), n_load.eq(n_load + 1)]
                    with m.If(nr == R - 1):
                        m.d.sync += [nr.eq(0), rbb.eq(rbb + b_stride)]
                    with m.Else():
                        m.d.sync += nr.eq(nr + 1)
                    with m.If(cc == C - 1):
                        m.next = "LOADA_LAST"
                with m.Else():
                    m.d.sync += q.eq(q + 1)
            with m.State("LOADA_LAST"):
                m.d.sync += lv.eq(0)          # the last word is written this cycle
                m.next = "ISSUE_START"
            # ---- issue
            with m.State("ISSUE_START"):
                m.d.sync += [w.eq(ins.a_bits + ins.b_bits - 2), ip.eq(ins.a_bits - 1), ch.eq(0), ab.eq(a_p),
                             blk_first.eq(1), new_w.eq(0), rb0.eq(0)]
                m.next = "ISSUE"
            with m.State("ISSUE"):
                m.d.comb += issuing.eq(1)
                with m.If(advance):
                    m.d.sync += [
                        v1.eq(1), addr1_a.eq(addr0_a), addr1_t.eq(addr0_t),
                        ctrl1.first.eq(blk_first), ctrl1.step.eq(new_w & (ch == 0)),
                        ctrl1.row_en.eq(b_pos | (b_neg & (jp == 0))), ctrl1.col_en.eq(a_pos | (a_neg & (ip == 0))),
                        ctrl1.last.eq(last0), ctrl1.tile_end.eq(last0 & (rb0 + R >= M)), ctrl1.bank.eq(ibank),
                        blk_first.eq(0), new_w.eq(0),
                    ]
                    with m.If(ch + 1 < chunks):
                        m.d.sync += ch.eq(ch + 1)
                    with m.Else():
                        m.d.sync += ch.eq(0)
                        with m.If((ip > 0) & (jp < ins.b_bits - 1)):
                            m.d.sync += ip.eq(ip - 1)
                        with m.Elif(w > 0):
                            m.d.sync += [w.eq(w - 1), new_w.eq(1),
                                         ip.eq(Mux(w - 1 < ins.a_bits - 1, w - 1, ins.a_bits - 1))]
                        with m.Else():
                            # the row block's last beat
                            with m.If(rb0 + R < M):
                                m.d.sync += [rb0.eq(rb0 + R), ab.eq(ab + a_stride), blk_first.eq(1),
                                             w.eq(ins.a_bits + ins.b_bits - 2), ip.eq(ins.a_bits - 1)]
                            with m.Elif(colbase_i + C < N):
                                m.d.sync += [colbase_i.eq(colbase_i + C), ibank.eq(~ibank)]
                                m.next = "LOAD"
                            with m.Else():
                                m.next = "FINISH"
            with m.State("FINISH"):
                with m.If(s_done & ~s_have & ~meta.r_rdy):
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.sync += self.busy.eq(0)
                m.next = "IDLE"
        with m.If(advance & ~issuing):
            m.d.sync += v1.eq(0)

        # ---- weight-tile loader: fills the bank the issue stage is not reading (double buffering)
        with m.FSM(name="wload"):
            with m.State("IDLE"):
                with m.If(wl_go):
                    m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(lcol >= N):          # every column tile of the instruction is loaded
                    m.next = "IDLE"
                with m.Elif(~full.bit_select(lbank, 1)):
                    m.d.sync += [widx.eq(0), fill.eq(0), first_beat.eq(1), skip.eq(t_addr[:3])]
                    m.next = "CMD"
            with m.State("CMD"):
                read(Cat(Const(0, 3), t_addr[3:]), (tile_bytes + skip + 7) >> 3)
                with m.If(self.rd_cmd.ready):
                    m.next = "DATA"
            with m.State("DATA"):
                emit = fill >= wb
                after = Signal(range(cap + 1))
                m.d.comb += after.eq(Mux(emit, fill - wb, fill))
                room = after + 8 <= cap
                m.d.comb += self.rd_data.ready.eq(room & (widx < chunks))
                kept = Mux(emit, gear >> (8 * wb), gear)
                incoming = Mux(first_beat, data_in >> (skip * 8), data_in)
                n_in = Mux(first_beat, 8 - skip, 8)
                with m.If(take):
                    m.d.sync += [gear.eq(kept | (incoming << (after * 8))), fill.eq(after + n_in), first_beat.eq(0)]
                with m.Else():
                    m.d.sync += [gear.eq(kept), fill.eq(after)]
                with m.If(emit):
                    m.d.comb += [tile_w.addr.eq(Mux(lbank, td, 0) + widx), tile_w.data.eq(gear[:C * L]),
                                 tile_w.en.eq((1 << C) - 1)]
                    m.d.sync += widx.eq(widx + 1)
                    with m.If(widx + 1 == chunks):
                        m.d.comb += loaded.eq(1)
                        m.d.sync += [t_addr.eq(t_addr + tile_bytes), lcol.eq(lcol + C), lbank.eq(~lbank)]
                        m.next = "WAIT"

        for bank in range(2):                  # a bank is never loaded and released in the same cycle
            with m.If(loaded & (lbank == bank)):
                m.d.sync += full[bank].eq(1)
            with m.If(release & (ctrl1.bank == bank)):
                m.d.sync += full[bank].eq(0)

        # ---- seek FSM (runs beside the constant and tile loads)
        def restart():
            """Every start restarts the seek, whatever it was doing (last: it has priority)."""
            with m.If(self.start):
                m.next = "WAIT"

        with m.FSM(name="seek"):
            with m.State("IDLE"):
                restart()
            with m.State("WAIT"):
                m.next = "NBLK"            # CHECK resets the counters in this cycle
            with m.State("NBLK"):          # HEADS: nblk = ceil(M / R)
                with m.If((ins.layout == Layout.HEADS) & (seek_cnt < M)):
                    m.d.sync += [seek_cnt.eq(seek_cnt + R), nblk.eq(nblk + 1)]
                with m.Else():
                    m.d.sync += seek_cnt.eq(0)
                    m.next = "GW"
                restart()
            with m.State("GW"):            # TRANS: gw = ceil(width / R)
                with m.If((ins.layout == Layout.TRANS) & (seek_cnt < width)):
                    m.d.sync += [seek_cnt.eq(seek_cnt + R), gw.eq(gw + 1)]
                with m.Else():
                    m.next = "COL"
                restart()
            with m.State("COL"):           # the column state of channel dst_col
                with m.If(seek_n < ins.dst_col):
                    m.d.sync += [seek_n.eq(seek_n + 1), col_start.eq(seek_next)]
                with m.Else():
                    m.d.sync += [seek_done.eq(1), s_col_end.eq(col_start)]
                    m.next = "IDLE"
                restart()
        return m
