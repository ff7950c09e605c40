"""Binary MAC array: R x C processing elements that only count and accumulate, with the tile drain inside.

The operand encoding, the beat order and the result formula are owned by `hw.schedule`
(read its module docstring first). In short, every beat carries one L-bit plane word per
row of A (``a``) and per column of B (``w``), zero padded past K, and

* PE(r, c) accumulates ``H <- (first ? 0 : step ? 2H : H) + popcount(a[r] XOR w[c])``
  (Horner over plane pairs issued in falling weight: no shifter, no negation, no mask);
* R row accumulators ``P[r]`` and C column accumulators ``Q[c]`` do the same with
  ``popcount(a[r])`` (when ``row_en``) and ``popcount(w[c])`` (when ``col_en``);
* on a tile's ``last`` beat the accumulators are copied into one of two drain banks (a
  clock enable per bank, no multiplexer) and restart with the next tile;
* the drain emits R result beats, row r = 0 .. R-1, each C values computed by C shared
  adder pairs: ``out[c] = offset + (rho[r] + kappa[c] - (H[r][c] << (a_pm1 + b_pm1))) / 2``
  with ``rho = +-(P[r] << a_pm1)``, ``kappa = +-(Q[c] << b_pm1)`` (signs row_neg, col_neg).
  Row r of the bank being read reaches the adders through a 2R:1 multiplexer per column;
  results leave through a small FIFO.

Arithmetic: H, P, Q are unsigned `pe_width`-bit counts (wrap-free inside the limits that
hw.schedule.check_fits enforces); the drain computes modulo 2**(out_width + 1), exact
because the final value fits `out_width` signed bits.

Flow control (no global enable): the compute pipeline never stalls. ``operands.ready`` is
low only for a tile's last beat while two tiles already hold, or are about to hold, a drain
bank (their last beat accepted, their rows not all read), so every last beat reaching the
accumulators finds a free bank. The drain pipeline never stalls either: it reads a row only
when its output FIFO (`OUT_FIFO_DEPTH` rows) has room for every row in flight, so result
back-pressure reaches only the FIFO, the row reads and, through the two banks, eventually
the next tiles' last beats; no register waits on ``results.ready`` combinationally.

Timing (edges numbered from a beat's acceptance): a beat accepted at edge t accumulates at
edge t + `pipe` (input register, then the popcount trees and their count delays, see
`TREE_REGISTER_EVERY`); a tile loaded at edge e has its
rows read at consecutive edges from e + 1 (after the previous tile's rows), and a row read
at edge s transfers on `results` at s + `drain` - 1 (results always ready).
`hw.schedule.array_cycles` is the exact cycle formula.
"""
from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .params import HwParams
from .popcount import POPCOUNT_GROUP, XNOR_GROUP, Popcount, XorPopcount, tree_latency
from .schedule import ArraySpec
from .spec.validate import require_int

__all__ = ["BinaryMacArray"]

#: Drain pipeline: row multiplexer, row term, base add, subtract, output FIFO (+1).
DRAIN_LATENCY = 7
#: The popcount trees register every this many levels; `pipe` is that of trees registered at every
#: level (the `hw.schedule` timing contract), the difference is made up by delaying the counts.
#: Every level registered left pass-through bits in chains of 3+ flip-flops, which synthesis maps
#: to shift-register LUTs (SRL16E, a LUT site each): measured at 8x8x64, 100 LUT sites per PE tree
#: (95 LUTs + 5 SRL16E) against 93 LUTs and no SRL16E registered every 2 levels.
TREE_REGISTER_EVERY = 2
#: Rows the output FIFO holds: the 4 drain stages in flight plus room to stream at full rate.
OUT_FIFO_DEPTH = 8


def _bank_rows(banks: list, row_bits: int) -> list:
    """The values a (row, bank) select reads, indexed by ``row + (bank << row_bits)`` (unused rows: 0)."""
    rows = len(banks[0])
    return [banks[k >> row_bits][k & ((1 << row_bits) - 1)] if k & ((1 << row_bits) - 1) < rows else Const(0)
            for k in range(2 << row_bits)]


def _mux_tree(m: Module, sel, values: list, name: str):
    """``values[sel]`` (len(values) = 2**len(sel)) as a tree of 4:1 multiplexers, low select bits first.

    Each 4:1 node (2 select bits, 4 data bits: one LUT6 per bit) is a kept signal, so synthesis
    does not re-merge the tree into wider, costlier cones (measured: 5 LUT6 per bit of a 16:1
    multiplexer, against 5.4 to 6 for a case statement or a shift).
    """
    level, at = list(values), 0
    width = max(len(Value.cast(v)) for v in values)
    while len(level) > 4:
        nxt = []
        for i in range(0, len(level), 4):
            s = Signal(width, name=f"{name}_l{at}_{i // 4}", attrs={"keep": 1})
            m.d.comb += s.eq(Array(level[i:i + 4])[sel[at:at + 2]])
            nxt.append(s)
        level, at = nxt, at + 2
    return Array(level)[sel[at:]]


class BinaryMacArray(wiring.Component):
    """R x C array of L-lane count-and-accumulate PEs with an R-beat drain.

    Parameters
    ----------
    rows, cols : int
        R rows of A and C rows of B (result columns) per tile (>= 1).
    lanes : int
        L, reduction bits per beat (>= 1).
    pe_width : int
        Unsigned bits of the PE, row and column accumulators (>= bit_length(lanes));
        `hw.schedule.pe_acc_bits` gives the need of one product.
    out_width : int
        Signed bits of a result value (>= 2).
    row_counts : bool
        Build the R row popcounts (needed whenever the b operand is not +-1); without them
        ``row_en`` is ignored and P = 0.

    Members
    -------
    operands : ``In(stream.Signature(operands_layout))``
        One beat per (plane pair, K chunk) in `hw.schedule` order. Fields: ``a``
        ArrayLayout(L, R) (row r's plane word, lane i = element k0 + i, zero past K), ``w``
        ArrayLayout(L, C), ``first``, ``step``, ``row_en``, ``col_en``, ``last``, and the
        tile constants read on the last beat: ``a_pm1``, ``b_pm1``, ``row_neg``,
        ``col_neg``, ``offset`` (signed out_width).
    results : ``Out(stream.Signature(results_layout))``
        R beats per tile: ``acc`` ArrayLayout(signed(out_width), C) (row ``row`` of the
        tile, column c at index c), ``row`` (0 .. R-1), ``last`` (row R-1).
    """

    def __init__(self, rows: int, cols: int, lanes: int, pe_width: int, out_width: int, row_counts: bool = True):
        try:
            self._rows = require_int("rows", rows, 1)
            self._cols = require_int("cols", cols, 1)
            self._lanes = require_int("lanes", lanes, 1)
            self._pe_width = require_int("pe_width", pe_width, lanes.bit_length())
            self._out_width = require_int("out_width", out_width, 2)
            if not isinstance(row_counts, bool):
                raise TypeError(f"row_counts must be a bool, not {row_counts!r}")
        except (TypeError, ValueError):
            self._MustUse__silence = True   # a rejected instance is not an "unused elaboratable"
            raise
        self._row_counts = row_counts
        self._lat_x = tree_latency(lanes, XNOR_GROUP)          # the timing contract (every level registered)
        self._lat_p = tree_latency(lanes, POPCOUNT_GROUP)
        self._built_x = tree_latency(lanes, XNOR_GROUP, TREE_REGISTER_EVERY)     # the trees built
        self._built_p = tree_latency(lanes, POPCOUNT_GROUP, TREE_REGISTER_EVERY)
        super().__init__({
            "operands": In(stream.Signature(self.operands_layout)),
            "results": Out(stream.Signature(self.results_layout)),
        })

    @classmethod
    def from_params(cls, p: HwParams) -> "BinaryMacArray":
        """Array sized by `hw.params.HwParams` (pe_acc_width, acc_width, array_row_counts)."""
        if not isinstance(p, HwParams):
            raise TypeError(f"from_params needs an HwParams, not {p!r}")
        p.validate()
        return cls(p.rows, p.cols, p.lanes, p.pe_acc_width, p.acc_width, p.array_row_counts)

    # ------------------------------------------------------------------ description
    rows = property(lambda self: self._rows, doc="R: rows of A per tile.")
    cols = property(lambda self: self._cols, doc="C: rows of B per tile.")
    lanes = property(lambda self: self._lanes, doc="L: reduction bits per beat.")
    pe_width = property(lambda self: self._pe_width, doc="Unsigned accumulator bits (H, P, Q).")
    out_width = property(lambda self: self._out_width, doc="Signed result bits.")
    acc_width = property(lambda self: self._out_width, doc="Signed result bits (= out_width).")
    row_counts = property(lambda self: self._row_counts, doc="Whether the row popcounts are built.")

    @property
    def peak_macs_per_cycle(self) -> int:
        """Binary MACs per accepted beat: R * C * L."""
        return self._rows * self._cols * self._lanes

    @property
    def pipe(self) -> int:
        """Edges from a beat's acceptance to its accumulation: 1 (input register) + the aligned tree latency."""
        return 1 + max(self._lat_x, self._lat_p)

    @property
    def drain(self) -> int:
        """Edges from a lone tile's drain load to the transfer of its result row 0 (results always ready)."""
        return DRAIN_LATENCY

    @property
    def latency(self) -> int:
        """Cycles from the cycle a lone tile's `last` beat is accepted to its first result beat's valid (no stalls)."""
        return self.pipe + self.drain

    @property
    def spec(self) -> ArraySpec:
        """The `hw.schedule.ArraySpec` of this array (what schedules and cycle formulas need)."""
        return ArraySpec(self._rows, self._cols, self._lanes, self._pe_width, self._out_width, self._row_counts,
                         self.pipe, self.drain)

    @property
    def operands_layout(self) -> data.StructLayout:
        return data.StructLayout({
            "a": data.ArrayLayout(self._lanes, self._rows),
            "w": data.ArrayLayout(self._lanes, self._cols),
            "first": 1, "step": 1, "row_en": 1, "col_en": 1, "last": 1,
            "a_pm1": 1, "b_pm1": 1, "row_neg": 1, "col_neg": 1,
            "offset": signed(self._out_width),
        })

    @property
    def results_layout(self) -> data.StructLayout:
        return data.StructLayout({
            "acc": data.ArrayLayout(signed(self._out_width), self._cols),
            "row": range(max(self._rows, 2)),     # at least 1 bit: no zero-width port in the Verilog
            "last": 1,
        })

    # ------------------------------------------------------------------ hardware
    def elaborate(self, platform):
        m = Module()          # the drain, outside the compute enable
        cm = Module()         # the compute pipeline (never stalls)
        R, C, L = self._rows, self._cols, self._lanes
        pw, ow = self._pe_width, self._out_width
        dw = ow + 1           # drain arithmetic width: 2 * (dot - offset) modulo 2**dw
        ops = self.operands.payload
        lat = max(self._lat_x, self._lat_p)

        # ---- admission: a tile's last beat enters only while fewer than 2 tiles hold (or will hold) a
        # drain bank, so a last beat always finds a free bank and the compute pipeline never stalls
        pending = Signal(range(3))          # tiles whose last beat was accepted and whose drain is not read
        accept_last = Signal()
        m.d.comb += [
            self.operands.ready.eq(~(ops.last & (pending == 2))),
            accept_last.eq(self.operands.valid & self.operands.ready & ops.last),
        ]

        # ---- control delay line: ctrl[k] holds the beat accepted k + 1 edges ago
        tile_layout = data.StructLayout({"a_pm1": 1, "b_pm1": 1, "row_neg": 1, "col_neg": 1, "offset": signed(ow)})
        ctrl_layout = data.StructLayout({"valid": 1, "first": 1, "step": 1, "row_en": 1, "col_en": 1, "last": 1,
                                         "tile": tile_layout})
        ctrl = [Signal(ctrl_layout, name=f"ctrl{k}") for k in range(lat + 1)]
        cm.d.sync += [
            ctrl[0].valid.eq(self.operands.valid & self.operands.ready),
            ctrl[0].first.eq(ops.first), ctrl[0].step.eq(ops.step), ctrl[0].row_en.eq(ops.row_en),
            ctrl[0].col_en.eq(ops.col_en), ctrl[0].last.eq(ops.last),
            ctrl[0].tile.a_pm1.eq(ops.a_pm1), ctrl[0].tile.b_pm1.eq(ops.b_pm1),
            ctrl[0].tile.row_neg.eq(ops.row_neg), ctrl[0].tile.col_neg.eq(ops.col_neg),
            ctrl[0].tile.offset.eq(ops.offset),
        ]
        for k in range(1, len(ctrl)):
            cm.d.sync += ctrl[k].eq(ctrl[k - 1])
        ca = ctrl[lat]        # the beat whose counts are ready now: accumulates at the coming edge

        def delay(mod, value, built: int, name: str, enable: str | None = None):
            """A tree's count `built` edges after a0 (ctrl[built]'s beat), delayed to ca's beat (ctrl[lat]),
            and zero unless the beat's `enable` control bit (row_en, col_en; None: always) is set.

            Each stage is zeroed when its beat is not valid (a flip-flop reset, no LUT): pure register
            chains of 3+ would be mapped to shift-register LUTs. A zeroed count is never accumulated.
            The enable rides on the last stage's reset (a multiplexer in front of the accumulator's
            adder costs a LUT per bit); without a delay stage it is a multiplexer."""
            for i in range(lat - built):
                keep = ctrl[built + i].valid
                if enable is not None and i == lat - built - 1:
                    keep = keep & ctrl[built + i][enable]
                s = Signal.like(value, name=f"{name}_d{i + 1}", reset_less=True)
                mod.d.sync += s.eq(Mux(keep, value, 0))
                value = s
            if enable is not None and lat == built:
                value = Mux(ca[enable], value, 0)
            return value

        # ---- input register (datapath registers need no reset: valid bits qualify them)
        a0 = [Signal(L, name=f"a0_{r}", reset_less=True) for r in range(R)]
        w0 = [Signal(L, name=f"w0_{c}", reset_less=True) for c in range(C)]
        for r in range(R):
            cm.d.sync += a0[r].eq(ops.a[r])
        for c in range(C):
            cm.d.sync += w0[c].eq(ops.w[c])

        # ---- drain state: two banks of drain registers, written alternately (wb), read in order (rb)
        busy = Signal(2)                    # bank b holds a tile not yet fully read
        wb = Signal()                       # bank the next load writes
        rb = Signal()                       # bank the drain reads
        row_shape = range(max(R, 2))        # at least 1 bit (a zero-width signal exports as `[-1:0]`)
        drow = Signal(row_shape)            # next row the drain reads
        room = Signal()                     # the output FIFO has room for one more row in flight
        reading = Signal()                  # a row is read at the coming edge
        finishing = Signal()                # the last row is read at the coming edge
        load = Signal()                     # the accumulators move to bank wb at the coming edge
        m.d.comb += [
            reading.eq(busy.bit_select(rb, 1) & room),
            finishing.eq(reading & (drow == R - 1)),
            load.eq(ca.valid & ca.last),
        ]
        m.d.sync += pending.eq(pending + accept_last - finishing)

        def horner(mod, acc, add, name):
            """acc <- (first ? 0 : step ? 2 acc : acc) + add, on a valid beat; returns the new value."""
            kept = Mux(ca.first, 0, Mux(ca.step, Cat(Const(0, 1), acc[:-1]), acc))
            total = Signal(pw, name=f"{name}_next")
            mod.d.comb += total.eq(kept + add)
            with mod.If(ca.valid):
                mod.d.sync += acc.eq(total)
            return total

        # ---- row / column accumulators and their drain registers
        sh_p = [[Signal(pw, name=f"sh_p{b}_{r}", reset_less=True) for r in range(R)] for b in range(2)]
        sh_q = [[Signal(pw, name=f"sh_q{b}_{c}", reset_less=True) for c in range(C)] for b in range(2)]

        def to_bank(regs, total):
            """Load `total` into regs[wb] on a tile's last beat (a clock enable per bank, no multiplexer)."""
            for b in range(2):
                with m.If(load & (wb == b)):
                    m.d.sync += regs[b].eq(total)

        if self._row_counts:
            for r in range(R):
                pc = Popcount(L, group=POPCOUNT_GROUP, register_every=TREE_REGISTER_EVERY)
                cm.submodules[f"row_pc{r}"] = pc
                cm.d.comb += pc.bits.eq(a0[r])
                cnt = delay(cm, pc.count, self._built_p, f"pa{r}", "row_en")
                p_acc = Signal(pw, name=f"p_acc{r}", reset_less=True)
                total = horner(cm, p_acc, cnt, f"p{r}")
                to_bank([sh_p[b][r] for b in range(2)], total)
        for c in range(C):
            pc = Popcount(L, group=POPCOUNT_GROUP, register_every=TREE_REGISTER_EVERY)
            cm.submodules[f"col_pc{c}"] = pc
            cm.d.comb += pc.bits.eq(w0[c])
            cnt = delay(cm, pc.count, self._built_p, f"qw{c}", "col_en")
            q_acc = Signal(pw, name=f"q_acc{c}", reset_less=True)
            total = horner(cm, q_acc, cnt, f"q{c}")
            to_bank([sh_q[b][c] for b in range(2)], total)

        # ---- processing elements: count and accumulate
        sh_h = [[[Signal(pw, name=f"sh_h{b}_{r}_{c}", reset_less=True) for c in range(C)] for r in range(R)]
                for b in range(2)]
        for r in range(R):
            for c in range(C):
                pe = XorPopcount(L, group=XNOR_GROUP, register_every=TREE_REGISTER_EVERY)
                cm.submodules[f"pe{r}_{c}"] = pe
                cm.d.comb += [pe.a.eq(a0[r]), pe.b.eq(w0[c])]
                cnt = delay(cm, pe.count, self._built_x, f"d{r}_{c}")
                h_acc = Signal(pw, name=f"h_acc{r}_{c}", reset_less=True)
                total = horner(cm, h_acc, cnt, f"h{r}_{c}")
                to_bank([sh_h[b][r][c] for b in range(2)], total)

        sh_tile = [Signal(tile_layout, name=f"sh_tile{b}", reset_less=True) for b in range(2)]
        to_bank(sh_tile, ca.tile)
        with m.If(load):
            m.d.sync += wb.eq(~wb)
        with m.If(reading):
            m.d.sync += drow.eq(drow + 1)
            with m.If(drow == R - 1):
                m.d.sync += [drow.eq(0), rb.eq(~rb)]
        for b in range(2):      # a load never targets the bank being finished (admission keeps them apart)
            with m.If(load & (wb == b)):
                m.d.sync += busy[b].eq(1)
            with m.Elif(finishing & (rb == b)):
                m.d.sync += busy[b].eq(0)

        # ---- drain pipeline (never stalls: a row is read only when the output FIFO has room for every
        # row in flight, so no register waits on results.ready). d1 reads everything it needs from bank rb (row r through
        # a 2R:1 multiplexer per column, the column counts, the tile constants), so the bank is free
        # for a new tile as soon as its last row is read
        v1, v2, v3, v4 = (Signal(name=f"dv{i}") for i in range(1, 5))
        row1, row2, row3 = (Signal(row_shape, name=f"drow{i}", reset_less=True) for i in range(1, 4))
        h1 = [Signal(pw, name=f"h1_{c}", reset_less=True) for c in range(C)]
        q1 = [Signal(pw, name=f"q1_{c}", reset_less=True) for c in range(C)]
        p1 = Signal(pw, name="p1", reset_less=True)
        t1 = Signal(tile_layout, name="t1", reset_less=True)
        rho2 = Signal(dw, name="rho2", reset_less=True)
        h2 = [Signal(pw, name=f"h2_{c}", reset_less=True) for c in range(C)]
        q2 = [Signal(pw, name=f"q2_{c}", reset_less=True) for c in range(C)]
        t2 = Signal(tile_layout, name="t2", reset_less=True)
        g2, g3 = (Signal(2, name=f"g{i}", reset_less=True) for i in (2, 3))
        base3 = [Signal(dw, name=f"base3_{c}", reset_less=True) for c in range(C)]
        h3 = [Signal(pw, name=f"h3_{c}", reset_less=True) for c in range(C)]
        out = [Signal(signed(ow), name=f"out{c}", reset_less=True) for c in range(C)]
        g = Cat(t1.a_pm1 ^ t1.b_pm1, t1.a_pm1 & t1.b_pm1)      # shift of H: a_pm1 + b_pm1 (0, 1 or 2)
        m.d.sync += [v1.eq(reading), v2.eq(v1), v3.eq(v2), v4.eq(v3), row1.eq(drow), row2.eq(Mux(v1, row1, 0)),
                     row3.eq(row2), t1.eq(Mux(rb, sh_tile[1], sh_tile[0])), t2.eq(t1), g2.eq(g), g3.eq(g2)]
        m.d.sync += [q1[c].eq(Mux(rb, sh_q[1][c], sh_q[0][c])) for c in range(C)]
        m.d.sync += [q2[c].eq(q1[c]) for c in range(C)]
        # d1: row r of bank rb, through a 4:1 multiplexer tree (one LUT6 per 4 inputs per bit)
        sel = Cat(drow, rb)
        m.d.sync += [h1[c].eq(_mux_tree(m, sel, _bank_rows([[sh_h[b][r][c] for r in range(R)] for b in range(2)],
                                                           len(drow)), f"hsel{c}")) for c in range(C)]
        m.d.sync += p1.eq(_mux_tree(m, sel, _bank_rows(sh_p, len(drow)), "psel"))

        def add_signed(x, y, neg, name):
            """x + y or x - y (neg) modulo 2**dw as one subtractor: x - (y XOR ~neg) - ~neg (x + y = x - ~y - 1).

            A subtraction keeps x as the carry chain's direct operand, so the shift and XOR of y fold into
            the chain's LUTs (one LUT6 per bit); the borrow-in rides on an extra low bit."""
            pos = Signal(name=f"{name}_pos")
            s = Signal(dw + 1, name=name)
            m.d.comb += [pos.eq(~neg), s.eq(Cat(Const(0, 1), x) - Cat(pos, y ^ pos.replicate(dw)))]
            return s[1:]

        # d2: rho = 2 offset +- (P << a_pm1) (one shared adder)
        p_sh = Signal(dw, name="p_sh")
        m.d.comb += p_sh.eq(Mux(t1.a_pm1, Cat(Const(0, 1), p1), p1))
        m.d.sync += rho2.eq(add_signed(Cat(Const(0, 1), t1.offset), p_sh, t1.row_neg, "rho_sum"))
        # (zeroed when no row is in flight: a flip-flop reset, which keeps synthesis from turning the
        # h1 -> h2 -> h3 chain into shift-register LUTs: a LUT site per bit instead of free flip-flops;
        # row2 likewise)
        m.d.sync += [h2[c].eq(Mux(v1, h1[c], 0)) for c in range(C)]
        # d3: base = rho +- (Q[c] << b_pm1)
        for c in range(C):
            q_sh = Signal(dw, name=f"q_sh{c}")
            m.d.comb += q_sh.eq(Mux(t2.b_pm1, Cat(Const(0, 1), q2[c]), q2[c]))
            m.d.sync += [base3[c].eq(add_signed(rho2, q_sh, t2.col_neg, f"base_sum{c}")), h3[c].eq(h2[c])]
        # d4: (base - H << g) / 2 = dot (the shift folds into the subtractor's LUTs)
        for c in range(C):
            h_sh = Signal(dw, name=f"h_sh{c}")
            diff = Signal(dw, name=f"diff{c}")
            m.d.comb += [h_sh.eq(Mux(g3[1], Cat(Const(0, 2), h3[c]), Mux(g3[0], Cat(Const(0, 1), h3[c]), h3[c]))),
                         diff.eq(base3[c] - h_sh)]
            m.d.sync += out[c].eq(diff[1:])
        row4 = Signal(row_shape, name="drow4", reset_less=True)
        m.d.sync += row4.eq(row3)
        # output FIFO: the drain's only point of back-pressure. `used` = rows read and not yet taken
        # (in flight or in the FIFO), kept as a counter so the row-read decision is one compare
        used = Signal(range(OUT_FIFO_DEPTH + 1))
        taken = Signal()
        m.d.comb += taken.eq(self.results.valid & self.results.ready)
        m.d.sync += used.eq(used + reading - taken)
        m.submodules.out_fifo = fifo = SyncFIFOBuffered(width=len(Cat(*out, row4)) + 1, depth=OUT_FIFO_DEPTH)
        m.d.comb += [
            fifo.w_en.eq(v4),
            fifo.w_data.eq(Cat(*out, row4, row4 == R - 1)),
            room.eq(used < OUT_FIFO_DEPTH - 1),
            self.results.valid.eq(fifo.r_rdy),
            fifo.r_en.eq(self.results.ready),
        ]
        for c in range(C):
            m.d.comb += self.results.payload.acc[c].eq(fifo.r_data[c * ow:(c + 1) * ow])
        m.d.comb += [self.results.payload.row.eq(fifo.r_data[C * ow:C * ow + len(row4)]),
                     self.results.payload.last.eq(fifo.r_data[-1])]
        m.submodules.compute = cm
        return m
