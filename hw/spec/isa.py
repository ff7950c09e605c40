"""The instruction set of the whole-encoder sequencer: named bit-field lists, encode and decode.

Every instruction is one fixed-width word of `INSTR_BITS` = 256 bits (32 bytes, stored
little-endian in external memory, so byte 0 holds bits 0..7). Bits 0..5 are the opcode;
the fields of that opcode follow in the order of `FORMATS[op]`, each packed LSB first
right after the previous one; every bit above the last field is reserved and must be 0
(a decoder rejects a word whose reserved bits are set). All fields are unsigned.

Field kinds (widths are constants below):
  * dimensions (rows, channels, M, N, K, ...): `DIM_BITS`
  * on-chip buffer addresses (in that buffer's words): `BUF_ADDR_BITS`
  * external-memory addresses (bytes, relative to the data base address): `EXT_ADDR_BITS`
  * activation bit widths (1, 2, 4, 8 as the plain number): `ACT_BITS_BITS`

The semantics of each opcode (which unit runs, what it reads and writes, the trace it taps)
are docs/compiler.md; `compiler/execute.py` is their executable form.
"""
from __future__ import annotations

import dataclasses
import enum
from typing import Mapping

__all__ = ["INSTR_BITS", "INSTR_BYTES", "OPCODE_BITS", "DIM_BITS", "BUF_ADDR_BITS", "EXT_ADDR_BITS",
           "ACT_BITS_BITS", "Op", "Post", "Layout", "BSource", "wide_beats", "wide_quant", "wide_layernorm", "embed_beat", "Field", "FORMATS", "Instruction", "IsaError",
           "encode", "decode", "encode_program", "decode_program", "field_offsets", "format_table"]

#: Width of one instruction word (bits) and its size in external memory (bytes).
INSTR_BITS = 256
INSTR_BYTES = INSTR_BITS // 8
#: Opcode width (bits 0..OPCODE_BITS-1 of every instruction).
OPCODE_BITS = 6
#: Width of a dimension field (rows, channels, M, N, K, ...).
DIM_BITS = 16
#: Width of an on-chip buffer address (in words of that buffer).
BUF_ADDR_BITS = 24
#: Width of an external-memory byte address (relative to the data base address).
EXT_ADDR_BITS = 32
#: Width of an activation-bits field (holds 1, 2, 4 or 8).
ACT_BITS_BITS = 4


class IsaError(ValueError):
    """An instruction that cannot be encoded, or a word that is not a valid instruction."""


class Op(enum.IntEnum):
    """Opcodes."""

    END = 0          #: stop; the sequencer raises done
    EMBED = 1        #: on-chip embedding gather + add -> residual buffer; loads the key mask
    LAYERNORM = 2    #: optional residual add (sat16), then LayerNorm of a row block -> residual buffer
    QUANT = 3        #: residual rows -> activation codes (threshold unit if 1 bit, else requant unit)
    MATMUL = 4       #: one tiled matmul on the MAC array with its post-op
    SOFTMAX = 5      #: softmax of one head's score rows -> probability codes


class Post(enum.IntEnum):
    """MATMUL post-op: where the drained accumulators go."""

    SCORES = 0       #: raw accumulators -> score buffer (Q.K^T)
    THRESHOLD = 1    #: threshold unit -> 1-bit codes in the activation buffer
    REQUANT = 2      #: requant unit -> multi-bit codes in the activation buffer
    RESIDUAL = 3     #: requant unit (16-bit saturating) -> residual buffer
    EXT = 4          #: raw accumulators -> external memory at `ext_out`, int32 row-major (pooler)


class Layout(enum.IntEnum):
    """How a code tensor (rows x channels) lies in the activation buffer (docs/compiler.md)."""

    ROWS = 0         #: one row after another, each row's planes packed along its channels
    HEADS = 1        #: channels in groups of `dst_width` (heads), each group stored as ROWS
    TRANS = 2        #: transposed: each channel is a row, packed along the rows (V for P.V)


def wide_beats(post: int, layout: int, dst: int, dst_col: int, dst_width: int, rows: int, cols: int,
               lanes: int) -> bool:
    """Whether a MATMUL writes each drain beat whole (docs/encoder.md §4a) instead of element by element.

    Codes (THRESHOLD, REQUANT): ROWS or HEADS when the C channels of every beat are C adjacent
    lanes of one packed word (C divides L, dst_col and the packed width `dst_width`); TRANS when
    they are C adjacent slots (stored rows) of one physical word (C divides R, dst_col and the
    group width `dst_width`): one act-buffer write per plane. SCORES: one score-buffer write when
    the beat's C scores are C lanes of one score word (C divides W = `hw.spec.buffers.score_lanes`,
    i.e. C a power of two <= L, and C divides dst, dst_col and the row stride `dst_width`). RESIDUAL: one
    residual-buffer write when the beat's C values are one residual word (C = V =
    `hw.spec.buffers.residual_lanes`, i.e. C a power of two, and C divides dst, dst_col and
    `dst_width`). The one owner of this rule: hw/encoder/matmul_exec.py implements it,
    sim/program_cycles.py models it.
    """
    if post in (Post.THRESHOLD, Post.REQUANT):
        group = rows if layout == Layout.TRANS else lanes
        return group % cols == 0 and dst_col % cols == 0 and dst_width % cols == 0
    if post in (Post.SCORES, Post.RESIDUAL):
        return (cols & (cols - 1) == 0 and (cols <= lanes or post == Post.RESIDUAL) and dst % cols == 0
                and dst_col % cols == 0 and dst_width % cols == 0)
    return False


def wide_quant(layout: int, src: int, channels: int, dst_col: int, dst_width: int, beat: int) -> bool:
    """Whether a QUANT takes `beat` = Q channels a cycle (Q = `hw.spec.buffers.quant_lanes`; docs/encoder.md
    §4a): a beat's residual values are Q adjacent values of one or two residual words (`src` and the row
    length `channels` multiples of Q) and its codes Q adjacent lanes of one packed word (ROWS or HEADS,
    `dst_col` and HEADS groups multiples of Q). Otherwise one channel a beat. hw/encoder/quant_exec.py
    implements it, sim/program_cycles.py models it."""
    return (layout != Layout.TRANS and src % beat == 0 and channels % beat == 0 and dst_col % beat == 0
            and (layout == Layout.ROWS or dst_width % beat == 0))


def wide_layernorm(hidden: int, src: int, res: int, dst: int, sum_dst: int, tap: int, lanes: int) -> bool:
    """Whether a LAYERNORM moves a whole residual word (V = `lanes` values, `hw.spec.buffers.residual_lanes`)
    a cycle (docs/encoder.md §4a): every row starts on a word (V divides `hidden` and the four row
    bases) and nothing is traced (the trace takes one value a cycle). Otherwise one value a cycle,
    gathered into beats of V for the unit. hw/encoder/layernorm_exec.py implements it,
    sim/program_cycles.py models it."""
    return not tap and all(v % lanes == 0 for v in (hidden, src, res, dst, sum_dst))


def embed_beat(dst: int, tap: int, lanes: int) -> int:
    """Values an EMBED writes a cycle (docs/encoder.md §4a): E = min(4, V) (V = `lanes`,
    `hw.spec.buffers.residual_lanes`; a bus word holds 4 values) when nothing is traced and `dst` is a
    multiple of E (every row then starts on an E-group: H is a multiple of 4), else 1.
    hw/encoder/embed.py implements it, sim/program_cycles.py models it."""
    e = min(4, lanes)
    return e if not tap and dst % e == 0 else 1


class BSource(enum.IntEnum):
    """MATMUL second operand."""

    WEIGHTS = 0      #: static weights streamed from external memory (weight block at `b`)
    ACT = 1          #: dynamic codes in the activation buffer at `b` (K in Q.K^T, V^T in P.V)


@dataclasses.dataclass(frozen=True)
class Field:
    """One bit field: its name, width in bits and meaning."""

    name: str
    width: int
    doc: str


def _f(name: str, width: int, doc: str) -> Field:
    return Field(name, width, doc)


_TAP = (_f("tap", 1, "1: write this instruction's trace to external memory at `trace`"),
        _f("trace", EXT_ADDR_BITS, "external byte address of the trace (int32 words)"))

#: The fields of every opcode, in bit order after the opcode.
FORMATS: dict[Op, tuple[Field, ...]] = {
    Op.END: (),
    Op.EMBED: (
        _f("rows", DIM_BITS, "tokens T"),
        _f("hidden", DIM_BITS, "hidden size H"),
        _f("vocab", 24, "word-table rows (token ids >= vocab are an error)"),
        _f("type_vocab", 8, "token-type rows (types >= type_vocab are an error)"),
        _f("dst", BUF_ADDR_BITS, "residual-buffer address of row 0 (rows of H words)"),
        _f("tokens", EXT_ADDR_BITS, "external address of the T token words (input image)"),
        _f("word", EXT_ADDR_BITS, "external address of the word table"),
        _f("position", EXT_ADDR_BITS, "external address of the position table"),
        _f("token_type", EXT_ADDR_BITS, "external address of the token-type table"),
    ) + _TAP,
    Op.LAYERNORM: (
        _f("rows", DIM_BITS, "rows"),
        _f("hidden", DIM_BITS, "hidden size H (row length)"),
        _f("add", 1, "1: x = sat16(src + res) first, written to `sum_dst`"),
        _f("src", BUF_ADDR_BITS, "residual-buffer address of the input rows"),
        _f("res", BUF_ADDR_BITS, "residual-buffer address of the rows added (add = 1)"),
        _f("sum_dst", BUF_ADDR_BITS, "residual-buffer address of the sums (add = 1)"),
        _f("dst", BUF_ADDR_BITS, "residual-buffer address of the LayerNorm output"),
        _f("consts", EXT_ADDR_BITS, "external address of the LayerNorm constant block"),
    ) + _TAP,
    Op.QUANT: (
        _f("rows", DIM_BITS, "rows"),
        _f("channels", DIM_BITS, "channels per row (= the residual row length)"),
        _f("src", BUF_ADDR_BITS, "residual-buffer address of row 0"),
        _f("bits", ACT_BITS_BITS, "code bits (1: threshold unit, else requant unit)"),
        _f("signed", 1, "codes are signed"),
        _f("dst", BUF_ADDR_BITS, "activation-buffer address of the code tensor"),
        _f("layout", 2, "Layout of the code tensor"),
        _f("dst_width", DIM_BITS, "ROWS: packed row length (channels); HEADS and TRANS: the group (head) size"),
        _f("dst_col", DIM_BITS, "first channel written"),
        _f("consts", EXT_ADDR_BITS, "external address of the threshold or requant block"),
    ) + _TAP,
    Op.MATMUL: (
        _f("post", 3, "Post-op"),
        _f("m", DIM_BITS, "rows of A (and of the result)"),
        _f("n", DIM_BITS, "rows of B (= result columns)"),
        _f("k", DIM_BITS, "reduction length"),
        _f("a", BUF_ADDR_BITS, "activation-buffer address of A (ROWS layout, width k)"),
        _f("a_bits", ACT_BITS_BITS, "code bits of A"),
        _f("a_signed", 1, "A is signed (multi-bit signed codes are stored offset binary)"),
        _f("b_src", 1, "BSource of B"),
        _f("b", EXT_ADDR_BITS, "weight block (external) or activation-buffer address of B (ROWS, width k)"),
        _f("b_bits", ACT_BITS_BITS, "code bits of B (1 for weights)"),
        _f("b_signed", 1, "B is signed"),
        _f("dst", BUF_ADDR_BITS, "destination address (activation, residual or score buffer)"),
        _f("out_bits", ACT_BITS_BITS, "code bits written (THRESHOLD / REQUANT)"),
        _f("out_signed", 1, "codes written are signed"),
        _f("layout", 2, "Layout of the codes written"),
        _f("dst_width", DIM_BITS, "codes: ROWS packed width, HEADS/TRANS group (head) size; residual/scores: row stride"),
        _f("dst_col", DIM_BITS, "first destination column (channel) written"),
        _f("consts", EXT_ADDR_BITS, "external address of the post-op constant block"),
        _f("tap", 1, "1: write the trace to external memory at `ext_out`"),
        _f("ext_out", EXT_ADDR_BITS, "external address of the trace (tap) or of the result (post EXT)"),
    ),
    Op.SOFTMAX: (
        _f("rows", DIM_BITS, "query rows"),
        _f("keys", DIM_BITS, "keys per row (the key mask's first `keys` bits apply)"),
        _f("src", BUF_ADDR_BITS, "score-buffer address of row 0 (rows of `keys` words)"),
        _f("dst", BUF_ADDR_BITS, "activation-buffer address of the probability codes (ROWS, width keys)"),
        _f("bits", ACT_BITS_BITS, "probability code bits (1: division-free threshold)"),
        _f("lut_len", DIM_BITS, "exp LUT entries"),
        _f("consts", EXT_ADDR_BITS, "external address of the softmax constant block"),
    ) + _TAP,
}


def field_offsets(op: Op) -> list[tuple[Field, int]]:
    """[(field, bit offset)] of an opcode, the opcode itself at offset 0."""
    out = [(Field("op", OPCODE_BITS, "opcode"), 0)]
    pos = OPCODE_BITS
    for f in FORMATS[Op(op)]:
        out.append((f, pos))
        pos += f.width
    return out


def _check_formats() -> None:
    for op, fields in FORMATS.items():
        names = [f.name for f in fields]
        if len(set(names)) != len(names) or "op" in names:
            raise AssertionError(f"{op.name}: duplicate field names")
        used = OPCODE_BITS + sum(f.width for f in fields)
        if used > INSTR_BITS:
            raise AssertionError(f"{op.name}: {used} bits exceed the {INSTR_BITS}-bit instruction")


_check_formats()


@dataclasses.dataclass(frozen=True)
class Instruction:
    """One instruction: an opcode and a value for every field of its format."""

    op: Op
    fields: Mapping[str, int]

    def __getitem__(self, name: str) -> int:
        return self.fields[name]

    def __str__(self) -> str:
        return f"{self.op.name} " + " ".join(f"{k}={v}" for k, v in self.fields.items())


def encode(instr: Instruction) -> bytes:
    """Instruction -> INSTR_BYTES bytes; every field must be given and fit its width."""
    try:
        op = Op(instr.op)
    except ValueError:
        raise IsaError(f"unknown opcode {instr.op!r}") from None
    fields = dict(instr.fields)
    names = [f.name for f in FORMATS[op]]
    missing, extra = sorted(set(names) - set(fields)), sorted(set(fields) - set(names))
    if missing or extra:
        raise IsaError(f"{op.name}: missing fields {missing}, unknown fields {extra}")
    word = int(op)
    pos = OPCODE_BITS
    for f in FORMATS[op]:
        v = fields[f.name]
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < (1 << f.width):
            raise IsaError(f"{op.name}.{f.name} = {v!r} does not fit an unsigned {f.width}-bit field")
        word |= v << pos
        pos += f.width
    return word.to_bytes(INSTR_BYTES, "little")


def decode(data: bytes) -> Instruction:
    """INSTR_BYTES bytes -> Instruction; an unknown opcode or a set reserved bit is an IsaError."""
    if len(data) != INSTR_BYTES:
        raise IsaError(f"an instruction is {INSTR_BYTES} bytes, not {len(data)}")
    word = int.from_bytes(bytes(data), "little")
    code = word & ((1 << OPCODE_BITS) - 1)
    try:
        op = Op(code)
    except ValueError:
        raise IsaError(f"unknown opcode {code}") from None
    pos = OPCODE_BITS
    fields = {}
    for f in FORMATS[op]:
        fields[f.name] = (word >> pos) & ((1 << f.width) - 1)
        pos += f.width
    if word >> pos:
        raise IsaError(f"{op.name}: reserved bits {pos}..{INSTR_BITS - 1} are not zero")
    return Instruction(op, fields)


def encode_program(instrs) -> bytes:
    """A list of Instructions -> the concatenated instruction words."""
    return b"".join(encode(i) for i in instrs)


def decode_program(data: bytes) -> list[Instruction]:
    """Concatenated instruction words -> Instructions (up to and including the first END)."""
    if len(data) % INSTR_BYTES:
        raise IsaError(f"a program is a multiple of {INSTR_BYTES} bytes, not {len(data)}")
    out = []
    for i in range(0, len(data), INSTR_BYTES):
        out.append(decode(data[i:i + INSTR_BYTES]))
        if out[-1].op == Op.END:
            return out
    raise IsaError("program has no END instruction")


def format_table(op: Op) -> str:
    """Markdown table of an opcode's fields (bit offset, width, meaning), as docs/compiler.md shows it."""
    rows = ["| bits | field | meaning |", "|---|---|---|"]
    for f, pos in field_offsets(op):
        rows.append(f"| {pos}..{pos + f.width - 1} | `{f.name}` | {f.doc} |")
    return "\n".join(rows)
