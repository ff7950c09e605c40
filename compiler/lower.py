"""Blocks -> instructions with buffer and external addresses, the memory image and the checkpoint map.

`compile_program(artifact, target, ids, mask, types)` checks the artifact against the
target's limits (CompileError naming the limit), allocates the on-chip buffer regions
(`hw.spec.buffers.plan_buffers`), lays out the external memory (program, model image,
input, output, trace) and emits one instruction per block of `compiler.blocks`, then END.
With `trace=True` every instruction taps its results into the trace region in the hardware's
order (docs/encoder.md §6), so every mapped golden intermediate (all but the softmax unit's
internals exp, exp_sum, recip) can be read after the run; with `trace=False` only the values that
live in on-chip buffers (read right after their instruction) and the output are mapped.

The output region holds what the host head needs: the pooler accumulators (classifier head,
H int32 from MATMUL EXT) or, for a span head, the last LAYERNORM's trace (per token the sum row
`layers.{L-1}.res2`, then the output row `layers.{L-1}.ln2`: 2 x T x H int32), which that
instruction always writes there (tap = 1, trace = the output region), with or without `trace`.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from bitaccel.golden.artifact import Artifact
from bitaccel.golden.config import site_signed
from bitaccel.golden.inputs import check_inputs
from bitaccel.hw.spec.buffers import pad_rows, plan_buffers
from bitaccel.hw.spec.isa import INSTR_BYTES, BSource, Instruction, Layout, Op, Post, encode_program

from . import memory as mem
from .blocks import Context, Embed, Linear, Norm, Quant, Scores, Softmax, encoder_blocks
from .program import Checkpoint, Piece, Program, View
from .target import CompileError, Target, check_model

__all__ = ["compile_program"]


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _role_bits(art: Artifact) -> dict[str, int]:
    """Widest code of each activation region over all layers."""
    q, layers = art.quant, range(art.config.layers)

    def widest(*sites):
        return max(q[f"layers.{i}.{s}"] for i in layers for s in sites)

    return {"x": widest("q.in", "k.in", "v.in", "o.in", "ffn1.in"), "q": widest("q.out"), "k": widest("k.out"),
            "vt": widest("v.out"), "p": widest("probs"), "f": widest("ffn2.in"),
            "cls": q["pooler.in"] if art.head == "classifier" else 0}     # span head: no [CLS] region


class _Lowering:
    """State of one compilation: the image, the buffer plan, the instructions and the checkpoint map."""

    def __init__(self, art: Artifact, target: Target, seq_len: int, trace: bool):
        self.art, self.cfg, self.target, self.trace = art, art.config, target, trace
        self.p = target.params
        self.t = seq_len
        self.blocks = encoder_blocks(self.cfg, art.head)
        c = self.cfg
        self.plan = plan_buffers(seq_len, c.hidden, c.ffn, c.heads, c.head_dim, _role_bits(art), self.p.lanes,
                                       self.p.rows)
        for buf, limit in (("act", target.act_words), ("res", target.res_words), ("scr", target.scr_words)):
            need = self.plan[buf]["total"]
            if need > limit:
                raise CompileError(f"model exceeds the hardware limit {buf}_words = {limit}: the {buf} buffer "
                                   f"regions need {need} words at {seq_len} tokens")
        self.ext = mem.ExtImage()
        self.ext.reserve("program", (len(self.blocks) + 1) * INSTR_BYTES)
        self.addr: dict[str, int] = {}
        self.instrs: list[Instruction] = []
        self.points: dict[str, dict] = {}
        self.trace_allocs: list[int] = []   # sizes (bytes) of the taps, in order
        self.in_trace: set[int] = set()     # pcs whose tap address is relative to the trace region

    # ------------------------------------------------------------------ helpers
    def base(self, buf: str, role: str) -> int:
        return self.plan[buf][role][0]

    def bits(self, site: str) -> int:
        return self.art.quant[site]

    def const(self, name: str, payload_fn) -> int:
        """External address of a constant block, laid out on first use."""
        if name not in self.addr:
            self.addr[name] = self.ext.add(name, payload_fn())
        return self.addr[name]

    def site_consts(self, site: str) -> int:
        """Threshold block (1-bit site) or requant block (multi-bit site, or a residual requant `<lin>.out`)."""
        a = self.art
        if site in a.quant and self.bits(site) == 1:
            return self.const(site, lambda: mem.const_block(a[f"{site}.thr"]))
        return self.const(site, lambda: mem.requant_block(a[f"{site}.rq_m"], a[f"{site}.rq_b"], a[f"{site}.rq_s"],
                                                          a[f"{site}.rq_lo"], a[f"{site}.rq_hi"]))

    def weights(self, lin: str, k: int) -> int:
        a = self.art
        return self.const(f"{lin}.weights", lambda: mem.weight_block(a[f"{lin}.bits"], k, self.p.cols, self.p.lanes))

    def shape(self, name: str) -> tuple:
        c, t = self.cfg, self.t
        short = name.rsplit(".", 1)[-1]
        if name.startswith("pooler"):
            return (1, c.hidden)
        if short in ("scores", "probs", "p"):
            return (1, c.heads, t, t)
        if name.endswith(("ffn1.acc", "ffn2.in")):
            return (1, t, c.ffn)
        return (1, t, c.hidden)

    def point(self, name: str, kind: str, view: View, lead: tuple, col0: int = 0) -> None:
        """Record a piece of checkpoint `name`: kind "buffers", "trace" (address relative to the trace
        region) or "output" (an absolute external address; listed with the trace pieces)."""
        entry = self.points.setdefault(name, {"shape": self.shape(name), "buffers": [], "trace": [], "output": []})
        entry[kind].append(Piece(len(self.instrs), view, lead, col0))

    def tap(self, names: list[str], rows: int, cols: int, lead: tuple, col0: int = 0, unit: int = 1,
            tile_cols: int = 0, at: int | None = None) -> tuple[int, int]:
        """Allocate a trace of interleaved rows x cols streams `names` -> (tap, offset in the trace); records pieces.

        The hardware's order (docs/encoder.md §6): `unit` values of each stream in turn, the
        values in `compiler.memory.drain_order(rows, cols, tile_cols)`. Every trace starts on a
        `compiler.memory.ALIGN`-byte boundary (bus words). `at`: write it at this absolute
        external address instead (the span head's output region), with or without `trace`.
        """
        if at is not None:
            for s, name in enumerate(names):
                self.point(name, "output", View("ext", at, rows, cols, cols, streams=len(names), stream=s, unit=unit,
                                                tile_cols=tile_cols), lead, col0)
            return 1, at
        if not self.trace:
            return 0, 0
        offset = sum(self.trace_allocs)
        self.in_trace.add(len(self.instrs))
        for s, name in enumerate(names):   # addresses are fixed up once the trace region is placed
            self.point(name, "trace", View("ext", offset, rows, cols, cols, streams=len(names), stream=s, unit=unit,
                                           tile_cols=tile_cols), lead, col0)
        # each trace starts on an ALIGN boundary: the hardware writes whole bus words (a partial
        # last word is zero-padded), so a trace must start on one and own the whole of its last
        self.trace_allocs.append(-(-4 * len(names) * rows * cols // mem.ALIGN) * mem.ALIGN)
        return 1, offset

    def emit(self, op: Op, **fields) -> None:
        self.instrs.append(Instruction(op, fields))

    def codes_view(self, role: str, rows: int, cols: int, width: int, site_bits: int, signed: bool,
                   layout: Layout = Layout.ROWS, col: int = 0) -> View:
        return View("act", self.base("act", role), rows, cols, width, col, int(layout), site_bits, signed, rows)

    def res_view(self, role: str, rows: int, cols: int) -> View:
        return View("res", self.base("res", role), rows, cols, cols)

    # ------------------------------------------------------------------ model image
    def layout_model(self) -> None:
        """Embedding tables, then every block's weights and constants in program order."""
        a, c = self.art, self.cfg
        self.addr["word"] = self.ext.add("embeddings.word", mem.word_table(a["embeddings.word.bits"],
                                                                           a["embeddings.word.scale_q"]))
        rows = min(c.max_position, self.p.max_seq)
        self.addr["position"] = self.ext.add("embeddings.position", mem.int16_table(a["embeddings.position_q"][:rows]))
        self.addr["token_type"] = self.ext.add("embeddings.token_type", mem.int16_table(a["embeddings.token_type_q"]))
        for b in self.blocks:
            if isinstance(b, Norm):
                self.const(b.ln, lambda b=b: mem.layernorm_block(a[f"{b.ln}.gamma_q"], a[f"{b.ln}.beta_q"],
                                                                   a[f"{b.ln}.eps_q"]))
            elif isinstance(b, Quant):
                self.site_consts(b.site)
            elif isinstance(b, Linear):
                self.weights(b.lin, c.linear_shape(b.lin.rsplit(".", 1)[-1])[1])
                if b.post == "site":
                    self.site_consts(b.out_site)
                elif b.post == "residual":
                    self.site_consts(f"{b.lin}.out")
            elif isinstance(b, Softmax):
                self.softmax_consts(b.layer)
            elif isinstance(b, Context):
                self.site_consts(f"layers.{b.layer}.o.in")
        self.addr["tokens"] = self.ext.reserve("tokens", 4 * self.t)
        out_words = c.hidden if self.art.head == "classifier" else 2 * self.t * c.hidden   # pooler acc / last LN trace
        self.addr["output"] = self.ext.reserve("output", 4 * out_words)

    def softmax_consts(self, layer: int) -> int:
        a, pre = self.art, f"layers.{layer}"
        if self.bits(f"{pre}.probs") == 1:
            fn = lambda: mem.softmax_block(a[f"{pre}.softmax.exp_lut"], theta=int(a[f"{pre}.probs.theta"]))
        else:
            fn = lambda: mem.softmax_block(a[f"{pre}.softmax.exp_lut"],
                                           rq={k: a[f"{pre}.probs.{k}"] for k in ("rq_m", "rq_s", "rq_hi", "rq_b", "rq_lo")})
        return self.const(f"{pre}.softmax", fn)

    # ------------------------------------------------------------------ blocks
    def lower(self, b) -> None:
        {Embed: self.embed, Norm: self.norm, Quant: self.quant, Linear: self.linear, Scores: self.scores,
         Softmax: self.softmax, Context: self.context}[type(b)](b)

    def embed(self, b: Embed) -> None:
        c, t = self.cfg, self.t
        self.point("embeddings.sum", "buffers", self.res_view(b.out, t, c.hidden), (0,))
        tap, tr = self.tap(["embeddings.sum"], t, c.hidden, (0,))
        self.emit(Op.EMBED, rows=t, hidden=c.hidden, vocab=c.vocab_size, type_vocab=c.type_vocab,
                  dst=self.base("res", b.out), tokens=self.addr["tokens"], word=self.addr["word"],
                  position=self.addr["position"], token_type=self.addr["token_type"], tap=tap, trace=tr)

    def norm(self, b: Norm) -> None:
        t, h = self.t, self.cfg.hidden
        streams = [b.sum_name, b.ln] if b.res else [b.ln]
        if b.res:
            self.point(b.sum_name, "buffers", self.res_view(b.sum_to, t, h), (0,))
        self.point(b.ln, "buffers", self.res_view(b.out, t, h), (0,))
        at = self.addr["output"] if b.to_output else None
        tap, tr = self.tap(streams, t, h, (0,), unit=h, at=at)   # per row: the sum row, then the output row
        self.emit(Op.LAYERNORM, rows=t, hidden=h, add=int(b.res is not None), src=self.base("res", b.src),
                  res=self.base("res", b.res) if b.res else 0, sum_dst=self.base("res", b.sum_to) if b.res else 0,
                  dst=self.base("res", b.out), consts=self.addr[b.ln], tap=tap, trace=tr)

    def quant(self, b: Quant) -> None:
        h = self.cfg.hidden
        rows = b.rows or self.t
        bits, signed = self.bits(b.site), site_signed(b.site)
        lead = () if b.rows == 1 else (0,)
        self.point(b.site, "buffers", self.codes_view(b.out, rows, h, h, bits, signed), lead)
        tap, tr = self.tap([b.site], rows, h, lead)
        self.emit(Op.QUANT, rows=rows, channels=h, src=self.base("res", b.src), bits=bits, signed=int(signed),
                  dst=self.base("act", b.out), layout=int(Layout.ROWS), dst_width=h, dst_col=0,
                  consts=self.site_consts(b.site), tap=tap, trace=tr)

    def linear(self, b: Linear) -> None:
        c = self.cfg
        n, k = c.linear_shape(b.lin.rsplit(".", 1)[-1])
        m = b.rows or self.t
        lead = () if b.rows == 1 else (0,)
        a_bits, a_signed = self.bits(b.a_site), site_signed(b.a_site)
        common = dict(m=m, n=n, k=k, a=self.base("act", b.a), a_bits=a_bits, a_signed=int(a_signed),
                      b_src=int(BSource.WEIGHTS), b=self.addr[f"{b.lin}.weights"], b_bits=1, b_signed=1, dst_col=0)
        if b.post == "ext":
            out = self.addr["output"]
            view = View("ext", out, m, n, n, tile_cols=self.p.cols)     # drain order
            self.point(f"{b.lin}.acc", "buffers", view, lead)   # the output region, read after the run
            self.emit(Op.MATMUL, post=int(Post.EXT), **common, dst=0, out_bits=0, out_signed=0,
                      layout=0, dst_width=n, consts=0, tap=0, ext_out=out)
            return
        if b.post == "residual":
            out_name = f"{b.lin}.out"
            self.point(out_name, "buffers", self.res_view(b.out, m, n), lead)
            post, dst, out_bits, out_signed, layout, width = Post.RESIDUAL, self.base("res", b.out), 0, 1, Layout.ROWS, n
        else:
            out_name = b.out_site
            out_bits, out_signed, layout = self.bits(out_name), site_signed(out_name), b.layout
            width = n if layout == Layout.ROWS else c.head_dim        # HEADS / TRANS: the group size
            self.point(out_name, "buffers", self.codes_view(b.out, m, n, width, out_bits, out_signed, layout), lead)
            post = Post.THRESHOLD if out_bits == 1 else Post.REQUANT
            dst = self.base("act", b.out)
        tap, tr = self.tap([f"{b.lin}.acc", out_name], m, n, lead, tile_cols=self.p.cols)
        self.emit(Op.MATMUL, post=int(post), **common, dst=dst, out_bits=out_bits, out_signed=int(out_signed),
                  layout=int(layout), dst_width=width, consts=self.site_consts(out_name), tap=tap, ext_out=tr)

    def head_operand(self, role: str, head: int, rows: int, width: int, bits: int) -> int:
        """Address of one head's slice (a ROWS tensor of `rows` rows, packed `width`) of a HEADS or TRANS tensor.

        HEADS (q, k): rows = T, width = head_dim; TRANS (vt): rows = head_dim, width = T. Each
        head's rows are padded to a multiple of R, so the slice starts a physical word.
        """
        return self.base("act", role) + head * pad_rows(rows, self.p.rows) * bits * _ceil(width, self.p.lanes)

    def scores(self, b: Scores) -> None:
        t, d, pre = self.t, self.cfg.head_dim, f"layers.{b.layer}"
        bq, bk = self.bits(f"{pre}.q.out"), self.bits(f"{pre}.k.out")
        name = f"{pre}.scores"
        self.point(name, "buffers", View("scr", self.base("scr", "s"), t, t, t), (0, b.head))
        tap, tr = self.tap([name], t, t, (0, b.head), tile_cols=self.p.cols)
        self.emit(Op.MATMUL, post=int(Post.SCORES), m=t, n=t, k=d, a=self.head_operand("q", b.head, t, d, bq),
                  a_bits=bq, a_signed=1, b_src=int(BSource.ACT), b=self.head_operand("k", b.head, t, d, bk),
                  b_bits=bk, b_signed=1, dst=self.base("scr", "s"), out_bits=0, out_signed=0, layout=0,
                  dst_width=t, dst_col=0, consts=0, tap=tap, ext_out=tr)

    def softmax(self, b: Softmax) -> None:
        t, pre, lead = self.t, f"layers.{b.layer}", (0, b.head)
        bp = self.bits(f"{pre}.probs")
        streams = ([f"{pre}.p"] if bp > 1 else []) + [f"{pre}.probs"]    # per key: p, then the code
        self.point(f"{pre}.probs", "buffers", self.codes_view("p", t, t, t, bp, False), lead)
        tap, tr = self.tap(streams, t, t, lead)
        self.emit(Op.SOFTMAX, rows=t, keys=t, src=self.base("scr", "s"), dst=self.base("act", "p"), bits=bp,
                  lut_len=len(self.art[f"{pre}.softmax.exp_lut"]), consts=self.softmax_consts(b.layer),
                  tap=tap, trace=tr)

    def context(self, b: Context) -> None:
        t, h, d, pre = self.t, self.cfg.hidden, self.cfg.head_dim, f"layers.{b.layer}"
        bp, bv, site = self.bits(f"{pre}.probs"), self.bits(f"{pre}.v.out"), f"{pre}.o.in"
        out_bits, col = self.bits(site), b.head * d
        self.point(site, "buffers", View("act", self.base("act", "x"), t, d, h, col, int(Layout.ROWS), out_bits,
                                         True, t), (0,), col)
        tap, tr = self.tap([f"{pre}.ctx.acc", site], t, d, (0,), col, tile_cols=self.p.cols)
        self.emit(Op.MATMUL, post=int(Post.THRESHOLD if out_bits == 1 else Post.REQUANT), m=t, n=d, k=t,
                  a=self.base("act", "p"), a_bits=bp, a_signed=0, b_src=int(BSource.ACT),
                  b=self.head_operand("vt", b.head, d, t, bv), b_bits=bv, b_signed=1, dst=self.base("act", "x"),
                  out_bits=out_bits, out_signed=1, layout=int(Layout.ROWS), dst_width=h, dst_col=col,
                  consts=self.site_consts(site), tap=tap, ext_out=tr)

    # ------------------------------------------------------------------ whole program
    def run(self) -> tuple[list[Instruction], dict, np.ndarray, dict]:
        self.layout_model()
        for b in self.blocks:
            self.lower(b)
        self.emit(Op.END)
        trace_base = self.ext.reserve("trace", sum(self.trace_allocs)) if self.trace else 0
        if len(self.ext.data) > 1 << 32:
            raise CompileError(f"model exceeds the hardware limit of 2**32 bytes of external memory: "
                               f"the image needs {len(self.ext.data)} bytes")
        instrs = [self.relocate(i, trace_base) if pc in self.in_trace else i for pc, i in enumerate(self.instrs)]
        words = encode_program(instrs)
        addr, size = self.ext.regions["program"]
        assert len(words) == size, (len(words), size)
        self.ext.data[addr:addr + size] = words
        points = {}
        for name, e in self.points.items():
            trace = tuple(Piece(p.pc, _shift(p.view, trace_base), p.lead, p.col0) for p in e["trace"]) + tuple(e["output"])
            points[name] = Checkpoint(e["shape"], tuple(e["buffers"]), trace)
        return instrs, points, self.ext.array(), dict(self.ext.regions)

    @staticmethod
    def relocate(instr: Instruction, trace_base: int) -> Instruction:
        """Trace offset -> absolute external address (an instruction that taps into the trace region)."""
        f = dict(instr.fields)
        key = "ext_out" if instr.op == Op.MATMUL else "trace"
        f[key] += trace_base
        return Instruction(instr.op, f)


def _shift(view: View, base: int) -> View:
    return dataclasses.replace(view, addr=view.addr + base)


def compile_program(art: Artifact, target: Target | None = None, ids=None, mask=None, types=None,
                    seq_len: int | None = None, trace: bool = True) -> Program:
    """Compile `art` for `target` into a Program for one sequence.

    Give the input (`ids`, optional `mask` and `types`, one sequence) or only `seq_len`
    (an all-zero input image to fill later with `Program.with_inputs`). Raises CompileError
    naming the first hardware limit the model exceeds.
    """
    target = target or Target()
    if ids is not None:
        ids, valid, types = check_inputs(art.config, ids, mask, types)
        if ids.shape[0] != 1:
            raise ValueError(f"a program runs one sequence; got a batch of {ids.shape[0]}")
        seq_len = ids.shape[1]
    if not isinstance(seq_len, int) or isinstance(seq_len, bool) or seq_len < 1:
        raise ValueError(f"give token ids or a positive seq_len, not {seq_len!r}")
    if seq_len > art.config.max_position:
        raise ValueError(f"sequence of {seq_len} tokens is longer than the model's max_position {art.config.max_position}")
    check_model(art, target, seq_len)
    low = _Lowering(art, target, seq_len, trace)
    _, points, image, regions = low.run()
    prog = Program(target=target, config=art.config, seq_len=seq_len, image=image, regions=regions, checkpoints=points)
    return prog.with_inputs(ids, valid, types) if ids is not None else prog
