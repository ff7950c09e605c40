"""A NumPy interpreter of an encoded program: what the sequencer and its units do, instruction by instruction.

`Machine` models the on-chip buffers (act: L-bit words, res: 16-bit words, scr: accumulator
words, the key mask) and the external memory (a copy of the program's image). It fetches each
instruction word from the program region, decodes it (hw.spec.isa.decode) and performs it
with golden primitives, reading operands only from the buffers and the external memory by
address; it never sees the artifact. Products with static weights run plane by plane as the
MAC array forms them (plane counts, row and column popcounts, offset-binary correction);
products of two dynamic operands use the exact integer product.
`execute(program)` returns every mapped golden intermediate (int64, golden shapes).
"""
from __future__ import annotations

import numpy as np

from bitaccel.golden.formats import residual_range, signed_bits_for
from bitaccel.golden.layernorm import layernorm
from bitaccel.golden.matmul import blas_matmul
from bitaccel.golden.requant import requantize
from bitaccel.golden.softmax import softmax_binarize, softmax_exp, softmax_probs, softmax_reciprocal
from bitaccel.golden.threshold import bits_to_codes, threshold
from bitaccel.hw.spec.isa import INSTR_BYTES, BSource, Layout, Op, Post, decode

from . import memory as mem
from .program import Piece, Program, View

__all__ = ["ExecError", "Machine", "execute", "read_external"]


class ExecError(RuntimeError):
    """The program did something the hardware would flag (bad address, bad token, overflow)."""


class Machine:
    """Buffers, external memory and the instruction semantics of one accelerator."""

    def __init__(self, program: Program, rng: np.random.Generator | None = None):
        """Buffers start at zero, or with random contents from `rng` (a program must not depend on them)."""
        t, p = program.target, program.target.params
        self.lanes, self.cols, self.rows = p.lanes, p.cols, p.rows
        if t.act_words % p.rows:
            raise ExecError(f"act_words = {t.act_words} is not a whole number of {p.rows}-row physical words")
        self.fmt = p.numerics
        self.acc_limit = 1 << (p.acc_width - 1)
        self.act = np.zeros((t.act_words, p.lanes), dtype=np.uint8)
        self.res = np.zeros(t.res_words, dtype=np.int16)
        self.scr = np.zeros(t.scr_words, dtype=np.int64)
        self.mask = np.zeros(p.max_seq, dtype=bool)
        if rng is not None:
            self.act[:] = rng.integers(0, 2, self.act.shape)
            self.res[:] = rng.integers(-(1 << 15), 1 << 15, self.res.shape)
            self.scr[:] = rng.integers(-self.acc_limit, self.acc_limit, self.scr.shape)
            self.mask[:] = rng.integers(0, 2, self.mask.shape)
        self.ext = program.image.copy()
        self.program_addr, self.program_bytes = program.regions["program"]
        self.pc = 0

    # ------------------------------------------------------------------ buffer access
    def _span(self, buf: np.ndarray, name: str, lo: int, hi: int) -> None:
        if lo < 0 or hi > len(buf):
            raise ExecError(f"pc {self.pc}: {name} buffer access [{lo}, {hi}) outside its {len(buf)} words")

    def _address(self, v: View, r, n, plane):
        """(flat word, lane) in the activation buffer of elements of the code tensor `v` (its base starts a physical word)."""
        if v.addr % self.rows:
            raise ExecError(f"pc {self.pc}: code tensor at act {v.addr} does not start a {self.rows}-row physical word")
        return mem.act_address(v.layout, v.addr, v.total_rows, v.width, v.bits, self.lanes, self.rows, r, n, plane)

    def _grid(self, v: View):
        r = np.arange(v.rows)[:, None, None]
        n = v.col + np.arange(v.cols)[None, :, None]
        plane = np.arange(v.bits)[None, None, :]
        words, lanes = self._address(v, r, n, plane)
        if words.size:
            self._span(self.act, "act", int(words.min()), int(words.max()) + 1)
        return words, lanes

    def write_codes(self, v: View, codes: np.ndarray) -> None:
        """Write codes; a write that reaches the end of a packed row also clears that word's lanes past it.

        The code writer owns the whole last word of every row it completes, so the padding lanes
        the MAC array reads (past K) are 0 whatever the buffer held before. (ROWS / HEADS: the
        writer of a row's last channel, of the row or of its group; TRANS: the writer of the
        last row, which completes every channel row it writes.) Padding rows are not written.
        """
        u = mem.to_stored(codes, v.bits, v.signed)
        if u.size and (u.min() < 0 or u.max() >= 1 << v.bits):
            raise ExecError(f"pc {self.pc}: codes outside the {v.bits}-bit range")
        words, lanes = self._grid(v)
        self.act[words, lanes] = (u[:, :, None] >> np.arange(v.bits)) & 1
        packed = v.total_rows if v.layout == Layout.TRANS else v.width
        tail = packed % self.lanes
        if not tail:
            return
        plane = np.arange(v.bits)[None, :]
        if v.layout == Layout.TRANS:
            ends = [(v.total_rows - 1, n) for n in range(v.col, v.col + v.cols)] if v.rows == v.total_rows else []
        else:   # ROWS / HEADS: rows whose last channel (of the row or of its group) was written
            last = [n for n in range(v.col, v.col + v.cols) if n % v.width == v.width - 1]
            ends = [(r, n) for r in range(v.rows) for n in last]
        for r, n in ends:
            w, _ = self._address(v, r, n, plane)
            self.act[w.ravel(), tail:] = 0

    def check_padding(self, v: View) -> None:
        """The lanes past K of each row's last word must be 0 (the MAC array counts every lane)."""
        tail = v.width % self.lanes
        if tail and v.rows:
            r, plane = np.arange(v.rows)[:, None], np.arange(v.bits)[None, :]
            w, _ = self._address(v, r, v.width - 1, plane)
            if self.act[w.ravel(), tail:].any():
                raise ExecError(f"pc {self.pc}: operand at act {v.addr} has non-zero lanes past K = {v.width}")

    def read_planes(self, v: View) -> np.ndarray:
        """Stored bit planes (bits, rows, cols) uint8 of a code tensor."""
        words, lanes = self._grid(v)
        return np.moveaxis(self.act[words, lanes], -1, 0)

    def read_codes(self, v: View) -> np.ndarray:
        planes = self.read_planes(v).astype(np.int64)
        u = np.tensordot(1 << np.arange(v.bits, dtype=np.int64), planes, axes=1)
        return mem.from_stored(u, v.bits, v.signed)

    def _rows(self, buf, name, addr, rows, cols, width, col=0):
        idx = addr + col + np.arange(rows)[:, None] * width + np.arange(cols)[None, :]
        if idx.size:
            self._span(buf, name, int(idx.min()), int(idx.max()) + 1)
        return idx

    def read_res(self, addr, rows, cols, width=None, col=0) -> np.ndarray:
        return self.res[self._rows(self.res, "res", addr, rows, cols, width or cols, col)].astype(np.int64)

    def write_res(self, addr, values, width=None, col=0) -> None:
        lo, hi = residual_range()
        if values.size and (values.min() < lo or values.max() > hi):
            raise ExecError(f"pc {self.pc}: residual value outside 16 bits")
        rows, cols = values.shape
        self.res[self._rows(self.res, "res", addr, rows, cols, width or cols, col)] = values

    def read_view(self, v: View) -> np.ndarray:
        """A checkpoint view's values (rows, cols) int64."""
        if v.buffer == "act":
            return self.read_codes(v)
        if v.buffer == "res":
            return self.read_res(v.addr, v.rows, v.cols, v.width, v.col)
        if v.buffer == "scr":
            return self.scr[self._rows(self.scr, "scr", v.addr, v.rows, v.cols, v.width, v.col)].copy()
        if v.buffer == "ext":
            words = mem.read_i32(self.ext, v.addr, v.streams * v.rows * v.cols)
            return words[mem.trace_offsets(v.rows, v.cols, v.streams, v.stream, v.unit, v.tile_cols)]
        raise ValueError(f"unknown buffer {v.buffer!r}")

    def tap(self, ins, key: str, streams: list[np.ndarray], unit: int = 1, tile_cols: int = 0) -> None:
        """Write the trace at ins[key]: equal-shape (rows, cols) streams as int32 in the hardware's order.

        `unit` values of each stream in turn, the values in `mem.drain_order(rows, cols, tile_cols)`
        (docs/encoder.md §6).
        """
        if ins["tap"]:
            try:
                mem.write_i32(self.ext, ins[key], mem.trace_words(streams, unit, tile_cols))
            except (OverflowError, IndexError) as e:
                raise ExecError(f"pc {self.pc}: trace write: {e}") from None

    def check_acc(self, acc: np.ndarray) -> np.ndarray:
        if acc.size and np.abs(acc).max() >= self.acc_limit:
            raise ExecError(f"pc {self.pc}: accumulator {int(np.abs(acc).max())} overflows the "
                            f"{signed_bits_for(self.acc_limit - 1)}-bit accumulator")
        return acc

    def post_codes(self, acc: np.ndarray, bits: int, signed: bool, consts: int, first: int) -> np.ndarray:
        """Threshold unit (1 bit) or requant unit (multi-bit) on (rows, N) values of channels first.."""
        n = acc.shape[1]
        if bits == 1:
            thr = mem.read_consts(self.ext, consts + mem.CONST_BYTES * first, n)
            return bits_to_codes(threshold(acc, thr), signed)
        m, b, s, lo, hi = mem.read_requant(self.ext, consts, first, n)
        return requantize(acc, m, b, s, lo, hi)

    # ------------------------------------------------------------------ instructions
    def step(self) -> bool:
        """Fetch, decode and execute the instruction at pc; False after END."""
        addr = self.program_addr + INSTR_BYTES * self.pc
        if addr + INSTR_BYTES > self.program_addr + self.program_bytes:
            raise ExecError(f"pc {self.pc}: ran past the end of the program without END")
        ins = decode(self.ext[addr:addr + INSTR_BYTES].tobytes())
        if ins.op == Op.END:
            return False
        {Op.EMBED: self.embed, Op.LAYERNORM: self.layernorm, Op.QUANT: self.quant, Op.MATMUL: self.matmul,
         Op.SOFTMAX: self.softmax}[ins.op](ins)
        return True

    def embed(self, ins) -> None:
        t, h = ins["rows"], ins["hidden"]
        if t > len(self.mask):
            raise ExecError(f"pc {self.pc}: {t} tokens exceed the {len(self.mask)}-entry key mask")
        ids, types, valid = mem.read_token_words(self.ext, ins["tokens"], t)
        if ids.size and (ids.max() >= ins["vocab"] or types.max() >= ins["type_vocab"]):
            raise ExecError(f"pc {self.pc}: token id or type outside the tables")
        self.mask[:] = False
        self.mask[:t] = valid
        signs, scale = mem.read_word_rows(self.ext, ins["word"], ids, h)
        pos = mem.read_int16_rows(self.ext, ins["position"], np.arange(t), h)
        typ = mem.read_int16_rows(self.ext, ins["token_type"], types, h)
        e = np.clip(signs * scale[:, None] + pos + typ, *residual_range())
        self.write_res(ins["dst"], e)
        self.tap(ins, "trace", [e])

    def layernorm(self, ins) -> None:
        t, h = ins["rows"], ins["hidden"]
        x = self.read_res(ins["src"], t, h)
        streams = []
        if ins["add"]:
            x = np.clip(x + self.read_res(ins["res"], t, h), *residual_range())
            self.write_res(ins["sum_dst"], x)
            streams.append(x)
        gamma, beta, eps = mem.read_layernorm(self.ext, ins["consts"], h)
        y = layernorm(x, gamma, beta, eps, self.fmt)
        self.write_res(ins["dst"], y)
        self.tap(ins, "trace", streams + [y], unit=h)         # per row: the sum row, then the output row

    def quant(self, ins) -> None:
        rows, ch = ins["rows"], ins["channels"]
        x = self.read_res(ins["src"], rows, ch)
        codes = self.post_codes(x, ins["bits"], bool(ins["signed"]), ins["consts"], ins["dst_col"])
        self.write_codes(View("act", ins["dst"], rows, ch, ins["dst_width"], ins["dst_col"], ins["layout"],
                              ins["bits"], bool(ins["signed"]), rows), codes)
        self.tap(ins, "trace", [codes])

    def matmul(self, ins) -> None:
        m, n, k = ins["m"], ins["n"], ins["k"]
        a_view = View("act", ins["a"], m, k, k, 0, int(Layout.ROWS), ins["a_bits"], bool(ins["a_signed"]), m)
        self.check_padding(a_view)
        if ins["b_src"] == BSource.WEIGHTS:
            if ins["b_bits"] != 1 or not ins["b_signed"]:
                raise ExecError(f"pc {self.pc}: weights are 1-bit signed")
            acc = self.weight_product(a_view, ins["b"], n, k)
        else:
            b_view = View("act", ins["b"], n, k, k, 0, int(Layout.ROWS), ins["b_bits"], bool(ins["b_signed"]), n)
            self.check_padding(b_view)
            acc = blas_matmul(self.read_codes(a_view), self.read_codes(b_view))
        acc = self.check_acc(acc)
        post = Post(ins["post"])
        if post == Post.SCORES:
            self.scr[self._rows(self.scr, "scr", ins["dst"], m, n, ins["dst_width"], ins["dst_col"])] = acc
            self.tap(ins, "ext_out", [acc], tile_cols=self.cols)
        elif post == Post.EXT:
            try:
                mem.write_i32(self.ext, ins["ext_out"], mem.trace_words([acc], tile_cols=self.cols))
            except (OverflowError, IndexError) as e:
                raise ExecError(f"pc {self.pc}: output write: {e}") from None
        elif post == Post.RESIDUAL:
            m_, b, s, lo, hi = mem.read_requant(self.ext, ins["consts"], ins["dst_col"], n)
            y = requantize(acc, m_, b, s, lo, hi)
            self.write_res(ins["dst"], y, ins["dst_width"], ins["dst_col"])
            self.tap(ins, "ext_out", [acc, y], tile_cols=self.cols)
        else:
            bits, signed = ins["out_bits"], bool(ins["out_signed"])
            if (bits == 1) != (post == Post.THRESHOLD):
                raise ExecError(f"pc {self.pc}: {post.name} cannot write {bits}-bit codes")
            codes = self.post_codes(acc, bits, signed, ins["consts"], ins["dst_col"])
            self.write_codes(View("act", ins["dst"], m, n, ins["dst_width"], ins["dst_col"], ins["layout"], bits,
                                  signed, m), codes)
            self.tap(ins, "ext_out", [acc, codes], tile_cols=self.cols)

    def weight_product(self, a_view: View, addr: int, n: int, k: int) -> np.ndarray:
        """Codes x streamed +-1 weights from the counts the MAC array forms (hw/schedule.py).

        With A's stored planes u_j (offset binary) and weight bits v (w = 2v - 1):
        1-bit signed A (x = 2u - 1): dot = 4 u.v - 2 sum(u) - 2 sum(v) + K;
        otherwise dot = sum_j 2**j (2 u_j.v - sum(u_j)), minus 2**(b-1) * (2 sum(v) - K) for
        signed codes (x = u - 2**(b-1)). sum(v), the weight column count, comes from the
        streamed bits, as the array's column counters compute it.
        """
        v = mem.read_weight_block(self.ext, addr, n, k, self.cols, self.lanes).astype(np.float64)
        planes = self.read_planes(a_view).astype(np.float64)          # (bits, M, K)
        uv = [np.rint(p @ v.T).astype(np.int64) for p in planes]        # exact: K < 2**53
        su = planes.sum(axis=-1).astype(np.int64)                       # (bits, M)
        sv = v.sum(axis=-1).astype(np.int64)                            # (N,)
        if a_view.bits == 1 and a_view.signed:
            return 4 * uv[0] - 2 * su[0][:, None] - 2 * sv[None, :] + k
        acc = sum((1 << j) * (2 * x - su[j][:, None]) for j, x in enumerate(uv))
        if a_view.signed:
            acc = acc - (1 << (a_view.bits - 1)) * (2 * sv - k)[None, :]
        return acc

    def softmax(self, ins) -> None:
        t, keys, bits = ins["rows"], ins["keys"], ins["bits"]
        if keys > len(self.mask):
            raise ExecError(f"pc {self.pc}: {keys} keys exceed the key mask")
        scores = self.scr[self._rows(self.scr, "scr", ins["src"], t, keys, keys)]
        head, lut = mem.read_softmax(self.ext, ins["consts"], ins["lut_len"])
        valid = self.mask[:keys]
        if not valid.any():
            raise ExecError(f"pc {self.pc}: softmax row with no valid key")
        e, total = softmax_exp(scores, valid[None, :], lut)
        streams = []                    # e, the sum and the reciprocal are the unit's internals: not traced
        if bits == 1:
            probs = softmax_binarize(e, total, int(head[0]), self.fmt).astype(np.int64)
        else:
            p = softmax_probs(e, softmax_reciprocal(total, self.fmt), self.fmt)
            probs = requantize(p, head[0], head[3], head[1], head[4], head[2])
            streams.append(p)
        self.write_codes(View("act", ins["dst"], t, keys, keys, 0, int(Layout.ROWS), bits, False, t), probs)
        self.tap(ins, "trace", streams + [probs])            # per key: p (multi-bit), then the code


def _place(out: dict, shapes: dict, name: str, piece: Piece, values: np.ndarray) -> None:
    if name not in out:
        out[name] = np.zeros(shapes[name], dtype=np.int64)
    sub = out[name][piece.lead] if piece.lead else out[name]
    if sub.ndim == 1:
        sub[piece.col0:piece.col0 + values.size] = values.ravel()
    else:
        sub[:, piece.col0:piece.col0 + values.shape[1]] = values


def execute(program: Program, source: str = "trace", rng: np.random.Generator | None = None,
            max_steps: int = 1 << 22) -> dict[str, np.ndarray]:
    """Run `program`; return {golden intermediate name: int64 array in golden's shape}.

    `source` "trace": read each checkpoint from the trace where it was tapped, else from its
    buffer right after its instruction; "buffers": from the buffers where it lives there.
    `rng`: start the on-chip buffers with random contents instead of zeros.
    """
    if source not in ("trace", "buffers"):
        raise ValueError(f"source must be 'trace' or 'buffers', not {source!r}")
    chosen: dict[str, tuple] = {}
    for name, c in program.checkpoints.items():
        first, second = (c.trace, c.buffers) if source == "trace" else (c.buffers, c.trace)
        chosen[name] = first or second
    by_pc: dict[int, list] = {}
    for name, pieces in chosen.items():
        for p in pieces:
            by_pc.setdefault(p.pc, []).append((name, p))
    shapes = {name: c.shape for name, c in program.checkpoints.items()}
    machine = Machine(program, rng)
    out: dict[str, np.ndarray] = {}
    deferred = []
    while True:
        if machine.pc >= max_steps:
            raise ExecError(f"program ran {max_steps} instructions without END")
        running = machine.step()
        for name, p in by_pc.get(machine.pc, []):
            if p.view.buffer == "ext":
                deferred.append((name, p))      # external regions are read after the run
            else:
                _place(out, shapes, name, p, machine.read_view(p.view))
        if not running:
            break
        machine.pc += 1
    for name, p in deferred:
        _place(out, shapes, name, p, machine.read_view(p.view))
    return out


def read_external(program: Program, ext: np.ndarray) -> dict[str, np.ndarray]:
    """The checkpoints that live in external memory (traces, the output), read from the image `ext`
    (uint8, the program's external memory after a run, e.g. the RTL's): {name: int64 array in
    golden's shape}. Checkpoints that live only in on-chip buffers are absent."""
    ext = np.asarray(ext, dtype=np.uint8)
    if ext.shape != program.image.shape:
        raise ValueError(f"external image of {ext.size} bytes, the program's is {program.image.size}")
    shapes = {name: c.shape for name, c in program.checkpoints.items()}
    out: dict[str, np.ndarray] = {}
    for name, c in program.checkpoints.items():
        pieces = c.trace or tuple(p for p in c.buffers if p.view.buffer == "ext")
        if pieces and all(p.view.buffer == "ext" for p in pieces):
            for p in pieces:
                v = p.view
                words = mem.read_i32(ext, v.addr, v.streams * v.rows * v.cols)
                _place(out, shapes, name, p, words[mem.trace_offsets(v.rows, v.cols, v.streams, v.stream, v.unit,
                                                                      v.tile_cols)])
    return out
