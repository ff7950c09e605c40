"""Fixed-point softmax over one attention row, bit-exact with golden.softmax (docs/numerics.md §4).

A row (one query against up to ``max_seq`` keys) is processed in three passes over a row
buffer, ``width`` keys per beat:

1. ingest: buffer the beats and track ``m`` = max score over the valid keys;
2. sum: ``e_j = LUT[m - s_j]`` if ``m - s_j < lut_len`` else 0 (0 for invalid keys),
   ``Σ = Σ_j e_j``;
3. output: recompute ``e_j`` (the row buffer holds scores, not exps) and emit either
   1-bit probabilities ``bit_j = (e_j << theta_frac) >= θ·Σ`` (division-free; computed as
   ``e_j >= ceil(θ·Σ / 2^theta_frac)``, one multiply per row, identical for integer e_j) or
   multi-bit probabilities ``p_j = rshift_round(e_j·R, exp_frac + recip_guard)`` with the
   defined reciprocal ``R = floor(2^(exp_frac + prob_frac + recip_guard) / Σ)`` from a
   sequential restoring divider (hw/divider.py), one division per row.

Passes 2 and 3 share one stall-all read pipeline (buffer read, LUT read, compute; see
`SoftmaxUnit.latency`). Pass 1 runs on its own: the row buffer has two banks, so the next
row is ingested while the previous one is summed and output, and back-to-back rows take
two passes each (`SoftmaxUnit.interval`). Storage: the row buffer (2 banks of
``ceil(max_seq / width)`` × ``width``·(score_width + 1) bits) and the exp LUT with one read
port per lane (synthesis replicates it ``width`` times).
"""
from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from bitaccel.golden.formats import NumericFormat, acc_bits, exp_sum_bits

from .divider import RestoringDivider
from .params import HwParams
from .spec.validate import require_int


class SoftmaxMode(enum.Enum, shape=1):
    """Pass-3 output mode (the ``mode`` port)."""

    #: 1-bit probabilities ``bits`` (division-free threshold compare).
    BINARY = 0
    #: multi-bit fixed-point probabilities ``p`` (prob_frac fractional bits).
    MULTIBIT = 1


def _tree(values: list, op):
    """Balanced binary reduction (log2(len) levels) of a non-empty list."""
    values = list(values)
    while len(values) > 1:
        nxt = [op(values[i], values[i + 1]) for i in range(0, len(values) - 1, 2)]
        if len(values) % 2:
            nxt.append(values[-1])
        values = nxt
    return values[0]


class SoftmaxUnit(wiring.Component):
    """One attention row at a time, ``width`` keys per beat, bit-exact with golden.softmax.

    Parameters
    ----------
    width : int
        Keys per beat (lanes).
    score_width : int
        Bits of a signed score ``s = q·k`` (``golden.formats.acc_bits`` of the head dimension).
    max_seq : int
        Most keys in a row (valid or not): the row buffer holds ``ceil(max_seq / width)``
        beats; at most ``max_seq`` keys may be valid (Σ has ``exp_sum_bits(numerics, max_seq)`` bits).
    max_lut : int
        Exp LUT depth (entries of ``exp_frac + 1`` bits).
    numerics : golden.formats.NumericFormat
        exp_frac, theta_frac, prob_frac and recip_guard set every internal width.

    Members
    -------
    scores : ``In(stream.Signature(StructLayout({"score": ArrayLayout(signed(score_width), width), "valid": width, "last": 1})))``
        A row as ``ceil(seq_len / width)`` beats in key order: lane j of beat b is key
        ``b·width + j``; ``valid`` bit j = 0 masks that key (padding, also past the row
        end); ``last`` marks the row's final beat. A row longer than the buffer, or a valid
        key past ``max_seq``, is the caller's error: the extra beats are dropped (never
        wrapped into the buffer) and `length_error` is set.
    probs : ``Out(stream.Signature(StructLayout({"bits": width, "p": ArrayLayout(unsigned(prob_frac + 1), width), "last": 1})))``
        One beat per input beat, same lane order. BINARY mode: ``bits`` (bit j = lane j)
        and ``p`` = 0; MULTIBIT mode: ``p`` (probability · 2^prob_frac, at most 2^prob_frac)
        and ``bits`` = 0. If Σ = 0 (a row with no valid key — the caller's error; golden
        raises, and `masked_row_error` is set — or ``lut_len`` = 0) every output of the row is 0.
    lut_write : ``In(stream.Signature(StructLayout({"addr": unsigned(lut_addr_width), "data": unsigned(exp_frac + 1)})))``
        (``lut_addr_width = max(1, ceil_log2(max_lut))``).
        Writes one exp LUT entry. Accepted only while no row is being evaluated (passes 2 and
        3); otherwise held off until the current row's reads finish.
    lut_len : ``In(unsigned(bits_for(max_lut)))``
        Number of LUT entries in use (``len(exp_lut)``); values above ``max_lut`` act as ``max_lut``.
    theta : ``In(unsigned(theta_frac + 2))``
        1-bit threshold θ (``layers.i.probs.theta``, in [1, 2^theta_frac + 1]; other port
        values still match golden.softmax_binarize, e.g. θ = 0 fires every lane).
    mode : ``In(SoftmaxMode)``
        BINARY or MULTIBIT.
    length_error : ``Out(1)``
        Sticky: a row had more than ``ceil(max_seq / width)`` beats, or a valid key at index
        ``>= max_seq``. Cleared by reset.
    masked_row_error : ``Out(1)``
        Sticky: a row had no valid key (golden.softmax raises on it). Cleared by reset.

    ``lut_len``, ``theta`` and ``mode`` are sampled when a row's ``last`` beat is accepted.
    """

    def __init__(self, width: int, score_width: int, max_seq: int, max_lut: int, numerics: NumericFormat):
        self.width = require_int("width", width, 1)
        self.score_width = require_int("score_width", score_width, 2)
        self.max_seq = require_int("max_seq", max_seq, 1)
        self.max_lut = require_int("max_lut", max_lut, 1)
        if not isinstance(numerics, NumericFormat):
            raise TypeError(f"numerics must be a golden.formats.NumericFormat, not {numerics!r}")
        self.numerics = numerics.validate()
        fmt = numerics

        #: rows of the row buffer (beats)
        self.depth = -(-max_seq // width)
        #: exp LUT entry bits (LUT[0] = 2^exp_frac)
        self.exp_width = fmt.exp_frac + 1
        #: Σ bits
        self.sum_width = exp_sum_bits(fmt, max_seq)
        #: θ bits
        self.theta_width = fmt.theta_frac + 2
        #: multi-bit probability bits (value 2^prob_frac = 1.0 fits)
        self.prob_width = fmt.prob_frac + 1
        #: reciprocal R bits: Σ >= 2^exp_frac gives R <= 2^(prob_frac + recip_guard)
        self.recip_width = fmt.prob_frac + fmt.recip_guard + 1
        #: R = floor(2^recip_exp / Σ)
        self.recip_exp = fmt.exp_frac + fmt.prob_frac + fmt.recip_guard
        #: p_j = rshift_round(e_j · R, recip_shift)
        self.recip_shift = fmt.exp_frac + fmt.recip_guard
        self.lut_addr_width = max(1, ceil_log2(max_lut))

        self.beat_layout = data.StructLayout({
            "score": data.ArrayLayout(signed(self.score_width), self.width),
            "valid": self.width,
        })
        super().__init__({
            "scores": In(stream.Signature(data.StructLayout({
                "score": data.ArrayLayout(signed(self.score_width), self.width),
                "valid": self.width,
                "last": 1,
            }))),
            "probs": Out(stream.Signature(data.StructLayout({
                "bits": self.width,
                "p": data.ArrayLayout(unsigned(self.prob_width), self.width),
                "last": 1,
            }))),
            "lut_write": In(stream.Signature(data.StructLayout({
                "addr": unsigned(self.lut_addr_width),
                "data": unsigned(self.exp_width),
            }))),
            "lut_len": In(range(self.max_lut + 1)),
            "theta": In(unsigned(self.theta_width)),
            "mode": In(SoftmaxMode),
            "length_error": Out(1),
            "masked_row_error": Out(1),
        })

    @classmethod
    def from_params(cls, p: HwParams, width: int | None = None) -> "SoftmaxUnit":
        """Unit for generation parameters: scores of max_head_dim-long products of max_act_bits
        signed codes, max_seq keys, max_exp_lut LUT entries; ``width`` defaults to ``p.cols``
        (one score per MAC-array column)."""
        if not isinstance(p, HwParams):
            raise TypeError(f"p must be an HwParams, not {p!r}")
        p.validate()
        score_width = acc_bits(p.max_head_dim, p.max_act_bits, True, p.max_act_bits, True)
        return cls(p.cols if width is None else width, score_width, p.max_seq, p.max_exp_lut, p.numerics)

    # ------------------------------------------------------------------ timing
    @property
    def latency(self) -> int:
        """Pipeline depth: cycles from a beat's row-buffer read to its output beat being valid
        (buffer read, LUT read, compute into the output register)."""
        return 3

    @property
    def divider_latency(self) -> int:
        """Cycles from the divider request to its result (MULTIBIT only)."""
        return self.recip_width + 1

    def beats(self, seq_len: int) -> int:
        """Beats of a row of ``seq_len`` keys."""
        seq_len = require_int("seq_len", seq_len, 1)
        if seq_len > self.max_seq:
            raise ValueError(f"seq_len {seq_len} exceeds max_seq {self.max_seq}")
        return -(-seq_len // self.width)

    def cycles(self, seq_len: int, mode: SoftmaxMode = SoftmaxMode.BINARY) -> int:
        """Cycles per row, first input beat to last output beat inclusive, no stalls, unit idle.

        With n = ceil(seq_len / width): n ingest + n sum reads + (latency − 1) drain +
        setup + n output reads + latency, where setup is 1 (row threshold register) in BINARY mode
        and divider_latency + 1 (request, iterations, R register) in MULTIBIT mode:
        BINARY 3n + 6, MULTIBIT 3n + prob_frac + recip_guard + 8.
        """
        n = self.beats(seq_len)
        setup = 1 if SoftmaxMode(mode) == SoftmaxMode.BINARY else self.divider_latency + 1
        return 3 * n + (self.latency - 1) + setup + self.latency

    def interval(self, seq_len: int, mode: SoftmaxMode = SoftmaxMode.BINARY) -> int:
        """Steady-state cycles between the last output beats of back-to-back rows of equal length, the
        rows offered as fast as the unit takes them, no stalls: the next row is ingested (into the
        other bank) while this one is evaluated, so a row costs its sum and output passes: n sum
        reads, the S1/S2 drain (3), setup, n output reads, and 2 cycles for the read pipeline to
        empty before the next row's registers load: 2n + 5 + setup - 1 (BINARY 2n + 5), n =
        ceil(seq_len / width). ``cycles + (rows - 1) * interval`` spans a run of rows."""
        n = self.beats(seq_len)
        setup = 1 if SoftmaxMode(mode) == SoftmaxMode.BINARY else self.divider_latency + 1
        return 2 * n + 4 + setup

    # ------------------------------------------------------------------ hardware
    def elaborate(self, platform):
        m = Module()
        fmt = self.numerics
        lanes = range(self.width)
        smin = Const(-(1 << (self.score_width - 1)), signed(self.score_width))

        m.submodules.buf = buf = Memory(shape=self.beat_layout, depth=2 * self.depth, init=[])   # two row banks
        m.submodules.lut = lut = Memory(shape=unsigned(self.exp_width), depth=self.max_lut, init=[])
        m.submodules.div = div = RestoringDivider(self.recip_exp + 1, self.sum_width, self.recip_width)
        buf_wr = buf.write_port()
        buf_rd = buf.read_port()
        lut_wr = lut.write_port()
        lut_rd = [lut.read_port() for _ in lanes]

        # ---- ingest-side state (the row being received)
        in_m = Signal(signed(self.score_width), init=smin.value)   # running max over valid keys
        in_n = Signal(range(self.depth + 1))                       # beats received
        in_mode = Signal(SoftmaxMode)
        in_theta = Signal(self.theta_width)
        in_len = Signal(range(self.max_lut + 1))
        in_any = Signal()                                          # a valid key seen in this row
        in_bank = Signal()                                         # the bank being filled
        in_full = Signal()                                         # a whole row waits in it for pass 2
        # ---- row-side state (the row being evaluated by passes 2 and 3)
        row_m = Signal(signed(self.score_width))
        row_n = Signal(range(self.depth + 1))
        row_mode = Signal(SoftmaxMode)
        row_theta = Signal(self.theta_width)
        row_len = Signal(range(self.max_lut + 1))
        row_bank = Signal()                                        # the bank passes 2 and 3 read
        total = Signal(self.sum_width)                             # Σ
        # per-row 1-bit threshold ceil(θ·Σ / 2^theta_frac): θ·Σ + 2^theta_frac − 1 <
        # 2^(theta_width + sum_width) since theta_width > theta_frac, so the quotient fits exactly
        row_thr = Signal(self.theta_width + self.sum_width - fmt.theta_frac)
        recip = Signal(self.recip_width)                           # R

        # ---- read pipeline: S0 issue -> S1 buffer data -> S2 LUT data -> output register
        adv = Signal()          # the whole pipeline advances (stall-all on output back-pressure)
        issue = Signal()        # S0 issues a read this cycle (SUM or OUT state)
        issue_out = Signal()    # ... tagged as a pass-3 (output) beat
        rd_addr = Signal(range(self.depth))
        rd_last = Signal()
        v1, out1, last1 = Signal(), Signal(), Signal()
        v2, out2, last2 = Signal(), Signal(), Signal()
        inside2 = Signal(self.width)
        m.d.comb += [
            adv.eq(~self.probs.valid | self.probs.ready),
            rd_last.eq(rd_addr == row_n - 1),
            buf_rd.addr.eq(Mux(row_bank, self.depth, 0) + rd_addr),
            buf_rd.en.eq(adv),
        ]
        with m.If(adv):
            m.d.sync += [v1.eq(issue), out1.eq(issue_out), last1.eq(rd_last),
                         v2.eq(v1), out2.eq(out1), last2.eq(last1)]
            with m.If(issue):
                m.d.sync += rd_addr.eq(Mux(rd_last, 0, rd_addr + 1))

        # S1: t_j = m - s_j (>= 0 for valid keys), LUT address
        inside = []
        for j in lanes:
            t = Signal(signed(self.score_width + 1), name=f"t{j}")
            ok = Signal(name=f"inside{j}")
            m.d.comb += [
                t.eq(row_m - buf_rd.data.score[j]),
                ok.eq(buf_rd.data.valid[j] & (t < row_len)),
                lut_rd[j].addr.eq(t[:self.lut_addr_width]),
                lut_rd[j].en.eq(adv),
            ]
            inside.append(ok)
        with m.If(adv):
            m.d.sync += inside2.eq(Cat(*inside))

        # S2: e_j, then the sum (pass 2) or the output register (pass 3)
        e = []
        for j in lanes:
            ej = Signal(self.exp_width, name=f"e{j}")
            m.d.comb += ej.eq(Mux(inside2[j], lut_rd[j].data, 0))
            e.append(ej)
        with m.If(adv & v2 & ~out2):
            m.d.sync += total.eq(total + _tree(e, lambda a, b: a + b))

        binary = row_mode == SoftmaxMode.BINARY
        nonzero = total != 0
        half = 1 << (self.recip_shift - 1)      # recip_shift >= exp_frac >= 4
        bits, probs = [], []
        for j in lanes:
            bits.append(binary & nonzero & (e[j] >= row_thr))
            pj = Signal(self.prob_width, name=f"p{j}")
            m.d.comb += pj.eq(Mux(binary, 0, (e[j] * recip + half) >> self.recip_shift))
            probs.append(pj)
        with m.If(adv):
            m.d.sync += self.probs.valid.eq(v2 & out2)
            with m.If(v2 & out2):
                m.d.sync += [self.probs.payload.bits.eq(Cat(*bits)), self.probs.payload.last.eq(last2)]
                m.d.sync += [self.probs.payload.p[j].eq(probs[j]) for j in lanes]

        # ---- ingest datapath (pass 1): into bank in_bank while it does not hold a waiting row
        beat = self.scores.payload
        masked = [Mux(beat.valid[j], beat.score[j], smin) for j in lanes]
        beat_max = _tree(masked, lambda a, b: Mux(a > b, a, b))
        next_m = Signal(signed(self.score_width))
        # limits: a beat past the buffer is dropped; a valid key past max_seq in the last beat is flagged
        full = in_n == self.depth
        past = Const(sum(1 << j for j in lanes if (self.depth - 1) * self.width + j >= self.max_seq), self.width)
        too_long = full | ((in_n == self.depth - 1) & (beat.valid & past).any())
        kept = Signal(range(self.depth + 1))                       # beats of the row once this one is taken
        take = self.scores.valid & self.scores.ready
        m.d.comb += [
            self.scores.ready.eq(~in_full),
            next_m.eq(Mux(beat_max > in_m, beat_max, in_m)),
            kept.eq(Mux(full, in_n, in_n + 1)),
            buf_wr.addr.eq(Mux(in_bank, self.depth, 0) + in_n),
            buf_wr.data.score.eq(beat.score),
            buf_wr.data.valid.eq(beat.valid),
            buf_wr.en.eq(take & ~full),
        ]
        with m.If(take):
            m.d.sync += [in_m.eq(next_m), in_n.eq(kept), in_any.eq(in_any | beat.valid.any())]
            with m.If(too_long):
                m.d.sync += self.length_error.eq(1)
            with m.If(beat.last):
                m.d.sync += [in_any.eq(0), in_full.eq(1),
                             in_mode.eq(self.mode), in_theta.eq(self.theta), in_len.eq(self.lut_len)]
                with m.If(~in_any & ~beat.valid.any()):
                    m.d.sync += self.masked_row_error.eq(1)
        # Row registers may be reloaded once the previous row's output beats no longer need
        # them: none in S1, and the one in S2 (if any) leaves it this cycle.
        reload_ok = ~v1 & (~v2 | adv)

        def start_row(m_val, n_val, mode_val, theta_val, len_val):
            """Passes 2 and 3 take the row in bank in_bank; the ingest goes on in the other bank (these
            assignments come after the ingest's, so they win when the row's last beat is taken now)."""
            m.d.sync += [
                row_m.eq(m_val), row_n.eq(n_val), row_mode.eq(mode_val), row_theta.eq(theta_val),
                row_len.eq(Mux(len_val > self.max_lut, self.max_lut, len_val)), row_bank.eq(in_bank),
                total.eq(0), rd_addr.eq(0),
                in_m.eq(smin), in_n.eq(0), in_full.eq(0), in_bank.eq(~in_bank),
            ]

        # ---- LUT writes: only while no S1 LUT read of a row can be pending
        lut_idle = Signal()
        m.d.comb += [
            self.lut_write.ready.eq(lut_idle & ~v1),
            lut_wr.addr.eq(self.lut_write.payload.addr),
            lut_wr.data.eq(self.lut_write.payload.data),
            lut_wr.en.eq(self.lut_write.valid & self.lut_write.ready),
        ]

        # ---- divider (MULTIBIT): R = floor(2^recip_exp / Σ)
        m.d.comb += [
            div.request.payload.dividend.eq(1 << self.recip_exp),
            div.request.payload.divisor.eq(total),
        ]

        with m.FSM(name="softmax"):
            with m.State("IDLE"):       # passes 2 and 3 wait for a row: a waiting one, or one ending now
                m.d.comb += lut_idle.eq(1)
                with m.If(in_full):
                    with m.If(reload_ok):
                        start_row(in_m, in_n, in_mode, in_theta, in_len)
                        m.next = "SUM"
                with m.Elif(take & beat.last & reload_ok):
                    start_row(next_m, kept, self.mode, self.theta, self.lut_len)
                    m.next = "SUM"
            with m.State("SUM"):        # pass 2 reads
                m.d.comb += issue.eq(1)
                with m.If(adv & rd_last):
                    m.next = "SUM_WAIT"
            with m.State("SUM_WAIT"):   # Σ final once the pass-2 beats left S2
                with m.If(~v1 & ~v2):
                    with m.If(binary):
                        m.d.sync += row_thr.eq((row_theta * total + ((1 << fmt.theta_frac) - 1)) >> fmt.theta_frac)
                        m.next = "OUT"
                    with m.Else():
                        m.d.comb += div.request.valid.eq(1)
                        with m.If(div.request.ready):
                            m.next = "DIVIDE"
            with m.State("DIVIDE"):
                m.d.comb += div.result.ready.eq(1)
                with m.If(div.result.valid):
                    m.d.sync += recip.eq(div.result.payload.quotient)
                    m.next = "OUT"
            with m.State("OUT"):        # pass 3 reads
                m.d.comb += [issue.eq(1), issue_out.eq(1)]
                with m.If(adv & rd_last):
                    m.next = "IDLE"
        return m
