"""Binary MAC array: R x C processing elements, each an L-lane xnor-popcount with a shifted accumulator.

One `operands` beat carries one L-bit word per row of A and per column of B (the same K
chunk of one bit-plane pair). PE(r, c) adds ``(-1)^negate * plane_dot(r, c) << shift`` to
its accumulator, where plane_dot is the exact plane product of golden/matmul.py over the
first `count` lanes (docs/numerics.md section 2). Summing the beats of all plane pairs and K
chunks of a tile gives golden.matmul.bitserial_matmul for that R x C tile.

How plane_dot is formed (n = count, m = the n-lane mask, X = popcount(xnor(a, w) & m),
Ar = popcount(a & m), Wc = popcount(w & m)):

* the input stage registers ``a' = a & m`` per row and ``w'' = (w ^ negate) & m`` per
  column (shared, not per PE). Inverting w swaps matches and mismatches, so a negated
  plane costs no PE logic;
* each PE counts the mismatching lanes ``D = popcount(a' ^ w'')`` (an `XnorPopcount` of
  a' and ~w''; padding lanes are 0 in both, so they never count): D = n - X, or X when
  negated;
* shared `Popcount` trees give Ar per row and ``Q = popcount(w'')`` per column (Q = Wc, or
  n - Wc when negated), and from them two small corrections Cr(row), Cc(column), so that
  the PE only forms ``t = 2 * (+-plane_dot) = Cr + Cc - (D << e)``:

  ======== === ======================== ========================
  mode     e   Cr (negate = 0 / 1)      Cc (negate = 0 / 1)
  ======== === ======================== ========================
  PM1_PM1  2   0                        2n
  B01_PM1  1   0                        2Q
  PM1_B01  1   2Ar / 2(n - Ar)          0
  B01_B01  0   Ar / n - Ar              Q / Q - n
  ======== === ======================== ========================

  which is +-2 times 2X - n, X + Wc - n, X + Ar - n and (X - n + Ar + Wc) / 2, the
  plane products of docs/numerics.md (appendix A.4's n_neg = n - Wc computed on the fly,
  so dynamic operands such as V in P.V need no stored constant). t is even; the PE then
  shifts ``t >> 1`` left by `shift` (a log shifter) and accumulates.

Arithmetic is two's complement modulo 2**acc_width: partial sums may wrap, the tile's final
sum is exact whenever it fits acc_width (HwParams.acc_width guarantees that).

Pipeline (`latency` = 4 + max(XnorPopcount latency, Popcount latency + 1) cycles; 10 for
L = 64): input register, popcount trees (the shorter one delayed to align), PE add (t),
shift, accumulate. Every register advances together under one enable (`operands.ready`,
which depends combinationally on `results.ready`, as stream rules allow). The accumulators
and the `results` register form a double buffer: a tile accumulates while the previous
tile's results wait, so ``operands.ready`` drops only when a `last` beat reaches the
accumulators while the previous results are still not taken (and `results.ready` is low).
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, EnableInserter, Module, Mux, Signal, signed
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from .params import HwParams
from .popcount import POPCOUNT_GROUP, XNOR_GROUP, Popcount, XnorPopcount, tree_latency

__all__ = ["PlaneMode", "BinaryMacArray"]


class PlaneMode(enum.Enum, shape=2):
    """Operand plane kinds of one beat: A's plane x B's plane (PM1 = +-1 with bit 1 = +1, B01 = {0,1})."""

    PM1_PM1 = 0
    B01_PM1 = 1
    PM1_B01 = 2
    B01_B01 = 3


def _check_int(name: str, value, lo: int, hi: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {value!r}")
    if value < lo or (hi is not None and value > hi):
        bound = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be {bound}, not {value}")
    return value


class BinaryMacArray(wiring.Component):
    """R x C array of L-lane binary MAC units with bit-plane (shift/negate) accumulation.

    Parameters
    ----------
    rows : int
        R, rows of A per tile (>= 1).
    cols : int
        C, rows of B (columns of the result) per tile (>= 1).
    lanes : int
        L, bits of the reduction axis per beat (>= 1).
    acc_width : int
        Signed accumulator bits (>= bit_length(lanes) + 1).
    max_shift : int
        Largest plane weight exponent (0 .. acc_width - 2); 2 * (max_act_bits - 1) covers
        b-bit x b-bit codes.

    Members
    -------
    operands : ``In(stream.Signature(operands_layout))``
        One beat per (plane pair, K chunk). Fields: ``a`` ArrayLayout(L, R) (row r's word,
        lane i = element k0 + i), ``w`` ArrayLayout(L, C), ``count`` valid lanes 1..L (lanes
        >= count are ignored, may hold garbage), ``mode`` `PlaneMode`, ``shift``
        0..max_shift, ``negate`` (plane weight -2**shift), ``first`` (clear the
        accumulators before this beat), ``last`` (emit the accumulators after it). ``shift``
        is at least 1 bit wide; with max_shift = 0 it must be 0.
    results : ``Out(stream.Signature(results_layout))``
        One beat per tile: ``acc`` ArrayLayout(signed(acc_width), R*C), row-major
        (index r*C + c), `latency` cycles after the `last` beat was accepted.
    """

    def __init__(self, rows: int, cols: int, lanes: int, acc_width: int, max_shift: int):
        try:
            self._rows = _check_int("rows", rows, 1)
            self._cols = _check_int("cols", cols, 1)
            self._lanes = _check_int("lanes", lanes, 1)
            self._acc_width = _check_int("acc_width", acc_width, lanes.bit_length() + 1)
            self._max_shift = _check_int("max_shift", max_shift, 0, acc_width - 2)
        except (TypeError, ValueError):
            self._MustUse__silence = True   # a rejected instance is not an "unused elaboratable"
            raise
        self._lat_x = tree_latency(lanes, XNOR_GROUP)
        self._lat_p = tree_latency(lanes, POPCOUNT_GROUP)
        self._t_align = max(self._lat_x, self._lat_p + 1)
        super().__init__({
            "operands": In(stream.Signature(self.operands_layout)),
            "results": Out(stream.Signature(self.results_layout)),
        })

    @classmethod
    def from_params(cls, p: HwParams) -> "BinaryMacArray":
        """Array sized by `hw.params.HwParams` (acc_width = p.acc_width, max_shift = 2*(max_act_bits-1))."""
        if not isinstance(p, HwParams):
            raise TypeError(f"from_params needs an HwParams, not {p!r}")
        p.validate()
        return cls(p.rows, p.cols, p.lanes, p.acc_width, 2 * (p.max_act_bits - 1))

    # ------------------------------------------------------------------ description
    rows = property(lambda self: self._rows, doc="R: rows of A per tile.")
    cols = property(lambda self: self._cols, doc="C: rows of B per tile.")
    lanes = property(lambda self: self._lanes, doc="L: reduction bits per beat.")
    acc_width = property(lambda self: self._acc_width, doc="Signed accumulator bits.")
    max_shift = property(lambda self: self._max_shift, doc="Largest plane weight exponent.")

    @property
    def peak_macs_per_cycle(self) -> int:
        """Binary MACs per accepted beat: R * C * L."""
        return self._rows * self._cols * self._lanes

    @property
    def latency(self) -> int:
        """Cycles from the cycle a `last` beat is accepted to the first cycle `results.valid` is high (no stalls).

        = 1 (input register) + max(XnorPopcount latency, Popcount latency + 1) + 1 (PE add)
        + 1 (shift) + 1 (accumulate into the results register).
        """
        return self._t_align + 4

    @property
    def _shift_shape(self):
        # at least 1 bit: a zero-width field would export as an ill-formed `wire [-1:0]`
        return range(max(self._max_shift, 1) + 1)

    @property
    def operands_layout(self) -> data.StructLayout:
        return data.StructLayout({
            "a": data.ArrayLayout(self._lanes, self._rows),
            "w": data.ArrayLayout(self._lanes, self._cols),
            "count": range(self._lanes + 1),
            "mode": PlaneMode,
            "shift": self._shift_shape,
            "negate": 1,
            "first": 1,
            "last": 1,
        })

    @property
    def results_layout(self) -> data.StructLayout:
        return data.StructLayout({"acc": data.ArrayLayout(signed(self._acc_width), self._rows * self._cols)})

    # ------------------------------------------------------------------ hardware
    def elaborate(self, platform):
        m = Module()
        R, C, L = self._rows, self._cols, self._lanes
        ops = self.operands.payload
        ta = self._t_align
        corr = signed((4 * L).bit_length() + 1)      # holds every correction and 2 * plane_dot

        # one enable for every register: hold only when a last beat would overwrite untaken results
        en = Signal()
        m.d.comb += self.operands.ready.eq(en)
        ctrl_layout = data.StructLayout({
            "valid": 1, "count": range(L + 1), "mode": PlaneMode, "shift": self._shift_shape,
            "negate": 1, "first": 1, "last": 1,
        })
        ctrl = [Signal(ctrl_layout, name=f"ctrl{k}") for k in range(ta + 3)]   # ctrl[k]: k cycles after stage 0
        m.d.sync += [
            ctrl[0].valid.eq(self.operands.valid),
            ctrl[0].count.eq(ops.count), ctrl[0].mode.eq(ops.mode), ctrl[0].shift.eq(ops.shift),
            ctrl[0].negate.eq(ops.negate), ctrl[0].first.eq(ops.first), ctrl[0].last.eq(ops.last),
        ]
        for k in range(1, len(ctrl)):
            m.d.sync += ctrl[k].eq(ctrl[k - 1])

        def delay(value, cycles: int, name: str):
            for i in range(cycles):
                s = Signal.like(value, name=f"{name}_d{i + 1}", reset_less=True)
                m.d.sync += s.eq(value)
                value = s
            return value

        def as_corr(value, name: str):
            s = Signal(corr, name=name)
            m.d.comb += s.eq(value)
            return s

        # ---- stage 0: input register; lane mask m (lanes < count) and the negation, shared
        mask = Signal(L)
        with m.Switch(ops.count):
            for n_valid in range(L):
                with m.Case(n_valid):
                    m.d.comb += mask.eq((1 << n_valid) - 1)
            with m.Default():                                   # count >= L: every lane
                m.d.comb += mask.eq((1 << L) - 1)
        neg_lanes = Signal(L)
        m.d.comb += neg_lanes.eq(ops.negate.replicate(L))
        # datapath registers need no reset (`first` clears the accumulators; payloads
        # are meaningful only with their valid bit, which is reset)
        a0 = [Signal(L, name=f"a0_{r}", reset_less=True) for r in range(R)]     # a' = a & m
        w0 = [Signal(L, name=f"w0_{c}", reset_less=True) for c in range(C)]     # w'' = (w ^ negate) & m
        for r in range(R):
            m.d.sync += a0[r].eq(ops.a[r] & mask)
        for c in range(C):
            m.d.sync += w0[c].eq((ops.w[c] ^ neg_lanes) & mask)

        # ---- shared row / column popcounts -> corrections cr, cc (registered at stage ta)
        cw = ctrl[ta - 1]
        neg = cw.negate
        n = cw.count
        cr = [Signal(corr, name=f"cr_{r}", reset_less=True) for r in range(R)]
        cc = [Signal(corr, name=f"cc_{c}", reset_less=True) for c in range(C)]
        for r in range(R):
            pc = Popcount(L, group=POPCOUNT_GROUP)
            m.submodules[f"row_pc{r}"] = pc
            m.d.comb += pc.bits.eq(a0[r])
            ar = delay(pc.count, ta - 1 - self._lat_p, f"ar{r}")
            n_ar = Signal(signed(len(ar) + 1), name=f"n_ar{r}")
            m.d.comb += n_ar.eq(n - ar)
            r_term = as_corr(Mux(neg, n_ar, ar), f"rterm{r}")            # Ar, or n - Ar when negated
            with m.Switch(cw.mode):
                with m.Case(PlaneMode.PM1_B01):
                    m.d.sync += cr[r].eq(r_term << 1)
                with m.Case(PlaneMode.B01_B01):
                    m.d.sync += cr[r].eq(r_term)
                with m.Default():
                    m.d.sync += cr[r].eq(0)
        for c in range(C):
            pc = Popcount(L, group=POPCOUNT_GROUP)
            m.submodules[f"col_pc{c}"] = pc
            m.d.comb += pc.bits.eq(w0[c])
            q = delay(pc.count, ta - 1 - self._lat_p, f"q{c}")
            q_n = Signal(signed(len(q) + 1), name=f"q_n{c}")
            m.d.comb += q_n.eq(q - n)
            with m.Switch(cw.mode):
                with m.Case(PlaneMode.PM1_PM1):
                    m.d.sync += cc[c].eq(n << 1)
                with m.Case(PlaneMode.B01_PM1):
                    m.d.sync += cc[c].eq(q << 1)
                with m.Case(PlaneMode.PM1_B01):
                    m.d.sync += cc[c].eq(0)
                with m.Case(PlaneMode.B01_B01):
                    m.d.sync += cc[c].eq(Mux(neg, q_n, q))

        # ---- stage controls of the PEs
        ct, cs, cacc = ctrl[ta], ctrl[ta + 1], ctrl[ta + 2]
        mode_bits = ct.mode.as_value()     # bit 0: A's plane is {0,1}; bit 1: B's plane is {0,1}
        e2 = Signal()                      # D << 2 (PM1_PM1)
        e1 = Signal()                      # D << 1 (one {0,1} plane)
        m.d.comb += [e2.eq(~mode_bits[0] & ~mode_bits[1]), e1.eq(mode_bits[0] ^ mode_bits[1])]
        shift_bits = self._max_shift.bit_length()      # 0 when max_shift = 0: no shifter
        res = Signal(self.results_layout.members["acc"], reset_less=True)
        res_valid = Signal()
        m.d.comb += [
            # = ~(last beat at the accumulators & results pending & not taken); written as an OR:
            # an inverted root makes yosys 0.23 synth_xilinx put one inverter LUT on every FF's CE
            en.eq(~(cacc.valid & cacc.last) | ~res_valid | self.results.ready),
            self.results.valid.eq(res_valid),
            self.results.payload.acc.eq(res),
        ]
        with m.If(cacc.valid & cacc.last):
            m.d.sync += res_valid.eq(1)
        with m.Elif(self.results.ready):
            m.d.sync += res_valid.eq(0)

        # ---- processing elements
        acc_shape = signed(self._acc_width)
        for r in range(R):
            for c in range(C):
                pe = XnorPopcount(L, group=XNOR_GROUP)
                m.submodules[f"pe{r}_{c}"] = pe
                # xnor(a', ~w'') = xor(a', w''): D = mismatching valid lanes (padding lanes match)
                m.d.comb += [pe.a.eq(a0[r]), pe.b.eq(~w0[c])]
                d = delay(pe.count, ta - self._lat_x, f"d{r}_{c}")
                pad = corr.width + 1 - len(d) - 2              # D << e as a (corr.width + 1)-bit signed value
                d_e = Mux(e2, Cat(Const(0, 2), d, Const(0, pad)),
                          Mux(e1, Cat(Const(0, 1), d, Const(0, pad + 1)), Cat(d, Const(0, pad + 2)))).as_signed()
                t = Signal(corr, name=f"t{r}_{c}", reset_less=True)             # 2 * (+-plane_dot)
                m.d.sync += t.eq(cr[r] + cc[c] - d_e)
                # +-plane_dot << shift by a log shifter: stage j shifts by 2**j and widens by 2**j
                x = t[1:].as_signed()
                for j in range(shift_bits):
                    k = 1 << j
                    y = Signal(signed(min(len(x) + k, self._acc_width)), name=f"sh{r}_{c}_{j}")
                    m.d.comb += y.eq(Mux(cs.shift[j], Cat(Const(0, k), x).as_signed(), x))
                    x = y
                sh = Signal(acc_shape, name=f"sh{r}_{c}", reset_less=True)
                m.d.sync += sh.eq(x)
                acc = Signal(acc_shape, name=f"acc{r}_{c}", reset_less=True)
                total = Mux(cacc.first, 0, acc) + sh
                with m.If(cacc.valid):
                    m.d.sync += acc.eq(total)
                    with m.If(cacc.last):
                        m.d.sync += res[r * C + c].eq(total)
        return EnableInserter(en)(m)
