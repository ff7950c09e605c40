"""EMBED: the on-chip embedding gather (docs/numerics.md §7, docs/compiler.md "EMBED").

For T tokens of H channels, from external memory (byte addresses = data base + field):

* the T token words (``id | type << 24 | valid << 31``) -> the key mask (bit t = valid of
  token t, bits >= T cleared); an id >= ``vocab`` or type >= ``type_vocab`` stops with an error;
* per token t: its word-table row (``scale_q`` as one int64 word, then ceil(H/64) 64-bit sign
  words, 1 = +1), position row t and token-type row (H int16 each, little-endian), and
  ``e[t, i] = sat16(+-scale_q + position[t, i] + token_type[type, i])`` into the residual
  buffer at ``dst + t*H + i`` — `golden.model.IntegerModel.embed` exactly;
* with ``tap``: every e[t, i] to the trace, row-major.

From a 64-bit bus (four int16 per word: H must be a multiple of 4; the compiler's word rows
are whole 64-bit words); rows are read with one burst command each. The sums are written
E = `hw.spec.isa.embed_beat` values a cycle (E = min(4, V) lanes of one residual word of
V = `hw.spec.buffers.residual_lanes` values) when nothing is traced and ``dst`` is a multiple
of E, else one value a cycle (the trace takes one value a cycle).
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from bitaccel.hw.spec.isa import Op, embed_beat

from .layouts import instruction_layout
from .ports import BUS_BITS, rd_signatures, request_read, res_signatures, trace_signatures, write_element, write_lanes
from .regs import ERR_TOKEN

__all__ = ["EmbedExec"]

_SAT_LO, _SAT_HI = -(1 << 15), (1 << 15) - 1


class EmbedExec(wiring.Component):
    """Runs one EMBED instruction.

    Parameters
    ----------
    addr_width : AXI byte-address bits.
    max_seq, max_hidden : largest T and H (H a multiple of 4).
    res_words : residual-buffer depth (values).
    res_lanes : V, values per residual-buffer word (`hw.spec.buffers.residual_lanes`).

    Members
    -------
    start : ``In(1)`` pulse with ``ins`` (the EMBED instruction) and ``base`` (data base) valid.
    busy : ``Out(1)``; ``error`` : ``Out(8)`` error code (`hw.encoder.regs` ERR_*; 0 = none),
        held until the next start: ERR_TOKEN for a token outside the tables.
    rd_cmd, rd_data : read commands / data of the shared `AxiReader`.
    res_w_addr, res_w_data, res_w_en : the residual buffer's write port.
    mask : the key mask (max_seq bits): set by each EMBED, held until the next one.
    trace_start, trace_values : to the `TraceWriter`.
    """

    def __init__(self, addr_width: int, max_seq: int, max_hidden: int, res_words: int, res_lanes: int, max_beats: int):
        self.addr_width, self.max_seq, self.max_hidden, self.res_words = addr_width, max_seq, max_hidden, res_words
        self.res_lanes = res_lanes
        self.sign_words = -(-max_hidden // 64)
        super().__init__({
            "start": In(1), "ins": In(instruction_layout(Op.EMBED)), "base": In(addr_width),
            "busy": Out(1), "error": Out(8),
            **rd_signatures(addr_width, max_beats),
            **res_signatures(res_lanes, res_words, write=True),
            "mask": Out(max_seq),
            **trace_signatures(addr_width),
        })

    def elaborate(self, platform):
        m = Module()
        ins = self.ins
        T, H = ins.rows, ins.hidden
        # per-token scratch: the token words (two per bus word), the sign words, the position row
        m.submodules.tok = tok = memory.Memory(shape=BUS_BITS, depth=-(-self.max_seq // 2), init=[])
        m.submodules.sgn = sgn = memory.Memory(shape=64, depth=self.sign_words, init=[])
        m.submodules.pos = pos = memory.Memory(shape=BUS_BITS, depth=-(-self.max_hidden // 4), init=[])
        tok_w, tok_r = tok.write_port(), tok.read_port(domain="comb")
        sgn_w, sgn_r = sgn.write_port(), sgn.read_port(domain="comb")
        pos_w, pos_r = pos.write_port(), pos.read_port(domain="comb")

        t = Signal(range(self.max_seq + 1))          # token
        beat = Signal(range(max(self.max_seq, self.max_hidden) + 2))
        lane = Signal(2)                             # element within a 4-element word
        scale = Signal(signed(64))
        tid = Signal(24)
        ttype = Signal(7)
        row_base = Signal(range(self.res_words + self.max_hidden + 1))   # dst + t*H
        pos_addr = Signal(self.addr_width)            # base + position + t*2H
        mask = Signal(self.max_seq)
        n_sign = Signal(range(self.sign_words + 1))
        m.d.comb += [n_sign.eq((H + 63) >> 6), self.mask.eq(mask)]

        data_in = self.rd_data.payload.data
        take = self.rd_data.valid & self.rd_data.ready

        # the elements produced in state ADD: i .. i + E - 1, i = 4*beat + lane (wide: E = embed_beat a cycle)
        V = self.res_lanes
        E = embed_beat(0, 0, V)                      # the rule of hw.spec.isa.embed_beat
        wide = Signal()
        m.d.comb += wide.eq(~ins.tap & (ins.dst & (E - 1) == 0) if E > 1 else 0)
        step = Mux(wide, E, 1)
        i = Signal(range(self.max_hidden + 4))
        m.d.comb += [i.eq(Cat(lane, beat)), sgn_r.addr.eq(i >> 6), pos_r.addr.eq(beat)]
        sat = []
        for k in range(E):                           # k > 0: wide only (lane + k < 4, i[:6] + k < 64)
            sign = sgn_r.data.bit_select(i[:6] + k, 1)
            pos_v = pos_r.data.word_select(lane + k, 16).as_signed()
            typ_v = data_in.word_select(lane + k, 16).as_signed()
            total = Signal(signed(66), name=f"total{k}")
            m.d.comb += total.eq(Mux(sign, scale, -scale) + pos_v + typ_v)
            sat.append(Mux(total < _SAT_LO, _SAT_LO, Mux(total > _SAT_HI, _SAT_HI, total)))

        def read(addr, beats):
            request_read(m, self.rd_cmd, addr, beats)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [self.busy.eq(1), self.error.eq(0), t.eq(0), beat.eq(0), mask.eq(0),
                                 row_base.eq(ins.dst), pos_addr.eq(self.base + ins.position)]
                    m.next = "TOKENS_CMD"
            with m.State("TOKENS_CMD"):
                read(self.base + ins.tokens, (T + 1) >> 1)
                with m.If(self.rd_cmd.ready):
                    m.next = "TOKENS"
            with m.State("TOKENS"):
                # every token is checked before anything is written (an error never leaves a trace half done)
                m.d.comb += [self.rd_data.ready.eq(1), tok_w.addr.eq(beat), tok_w.data.eq(data_in), tok_w.en.eq(take)]
                with m.If(take):
                    m.d.sync += beat.eq(beat + 1)
                    for half in range(2):
                        idx = Cat(Const(half, 1), beat)
                        word = data_in[32 * half:32 * half + 32]
                        with m.If(idx < T):
                            m.d.sync += mask.bit_select(idx, 1).eq(word[31])
                            with m.If((word[:24] >= ins.vocab) | (word[24:31] >= ins.type_vocab)):
                                m.d.sync += self.error.eq(ERR_TOKEN)
                    with m.If(self.rd_data.payload.last):
                        m.next = "TRACE"
            with m.State("TRACE"):
                with m.If(self.error != 0):
                    m.next = "DONE"
                with m.Else():
                    m.d.comb += [self.trace_start.valid.eq(ins.tap),
                                 self.trace_start.payload.addr.eq(self.base + ins.trace),
                                 self.trace_start.payload.count.eq(T * H)]
                    with m.If(~ins.tap | self.trace_start.ready):
                        m.next = "TOKEN"
            with m.State("TOKEN"):
                m.d.comb += tok_r.addr.eq(t >> 1)
                word = tok_r.data.word_select(t[0], 32)
                m.d.sync += [tid.eq(word[:24]), ttype.eq(word[24:31])]
                m.next = "WORD_CMD"
            with m.State("WORD_CMD"):
                stride = (n_sign + 1) << 3                               # bytes of a word-table row
                read(self.base + ins.word + tid * stride, n_sign + 1)
                with m.If(self.rd_cmd.ready):
                    m.next = "SCALE"
            with m.State("SCALE"):
                m.d.comb += self.rd_data.ready.eq(1)
                with m.If(take):
                    m.d.sync += [scale.eq(data_in.as_signed()), beat.eq(0)]
                    m.next = "SIGNS"
            with m.State("SIGNS"):
                m.d.comb += [self.rd_data.ready.eq(1), sgn_w.addr.eq(beat), sgn_w.data.eq(data_in), sgn_w.en.eq(take)]
                with m.If(take):
                    m.d.sync += beat.eq(beat + 1)
                    with m.If(self.rd_data.payload.last):
                        m.next = "POS_CMD"
            with m.State("POS_CMD"):
                read(pos_addr, H >> 2)
                with m.If(self.rd_cmd.ready):
                    m.d.sync += beat.eq(0)
                    m.next = "POS"
            with m.State("POS"):
                m.d.comb += [self.rd_data.ready.eq(1), pos_w.addr.eq(beat), pos_w.data.eq(data_in), pos_w.en.eq(take)]
                with m.If(take):
                    m.d.sync += beat.eq(beat + 1)
                    with m.If(self.rd_data.payload.last):
                        m.next = "TYPE_CMD"
            with m.State("TYPE_CMD"):
                read(self.base + ins.token_type + ttype * (H << 1), H >> 2)
                with m.If(self.rd_cmd.ready):
                    m.d.sync += [beat.eq(0), lane.eq(0)]
                    m.next = "ADD"
            with m.State("ADD"):
                # E elements (wide) or one a cycle; the type word is consumed with its fourth element
                go = self.rd_data.valid & (~ins.tap | self.trace_values.ready)
                word_end = lane + step == 4
                with m.If(wide):                     # E lanes of one residual word
                    write_lanes(m, self.res_w_addr, self.res_w_data, self.res_w_en, row_base + i, sat, go)
                with m.Else():
                    write_element(m, self.res_w_addr, self.res_w_data, self.res_w_en, row_base + i, sat[0], go)
                m.d.comb += [
                    self.trace_values.valid.eq(ins.tap & self.rd_data.valid), self.trace_values.payload.value.eq(sat[0]),
                    self.rd_data.ready.eq(go & word_end),
                ]
                with m.If(go):
                    m.d.sync += lane.eq(lane + step)
                    with m.If(word_end):
                        m.d.sync += beat.eq(beat + 1)
                        with m.If(self.rd_data.payload.last):
                            m.d.sync += [t.eq(t + 1), row_base.eq(row_base + H), pos_addr.eq(pos_addr + (H << 1))]
                            with m.If(t + 1 == T):
                                m.next = "DONE"
                            with m.Else():
                                m.next = "TOKEN"
            with m.State("DONE"):
                m.d.sync += self.busy.eq(0)
                m.next = "IDLE"
        return m
