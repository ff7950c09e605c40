"""Buffers and memory images: every format the sequencer reads or writes, in both directions.

On-chip buffers (word-addressed, docs/compiler.md "Buffers"):
  * ``act``: packed activation codes, flat words of L bits (L = lanes), bit-granular write enables;
    the hardware's physical word is R*L bits, flat word f in slot f mod R of physical word f // R,
    and every code tensor puts the R rows of a row block in the R slots of one physical word.
    A code tensor of R rows x N channels with b bits is stored as its b bit planes; plane j
    of a stored value u holds bit j of u. Stored values: 1-bit signed codes as bits
    (1 = +1, 0 = -1); multi-bit signed codes as **offset binary** u = x + 2**(b-1); unsigned
    codes as themselves. Lane i of a word holds element k0 + i (LSB first), as hw/schedule.py
    packs MAC-array operands. `Layout` (hw.spec.isa) says which word holds (row, channel, plane).
  * ``res``: the 16-bit residual stream, one signed value per word, rows of H words.
  * ``scr``: attention scores, one signed accumulator per word, rows of `keys` words.

External memory (byte addresses relative to the data base, little-endian, every region
64-byte aligned): instruction words, the model image (embedding tables, weight blocks,
constant blocks), the input image (token words), the output (pooler accumulators) and the
trace. Constants are 64-bit signed words; weights are L-bit lane words (L/8 bytes) in
tiles of C weight rows, so a weight-stationary order reads each weight once.
"""
from __future__ import annotations

import numpy as np

from bitaccel.golden.packing import n_words, unpack_bits
from bitaccel.hw.spec.buffers import pad_rows
from bitaccel.hw.spec.isa import Layout

__all__ = ["ALIGN", "CONST_BYTES", "ExtImage", "act_address", "to_stored", "from_stored",
           "weight_block", "read_weight_block", "weight_block_bytes",
           "const_block", "read_consts", "requant_block", "read_requant", "REQUANT_HEADER",
           "layernorm_block", "read_layernorm", "softmax_block", "read_softmax", "SOFTMAX_HEADER",
           "word_table", "word_row_bytes", "read_word_rows", "int16_table", "read_int16_rows",
           "token_words", "read_token_words", "read_i32", "write_i32",
           "drain_order", "trace_offsets", "trace_words"]

#: Alignment of every external-memory region (bytes).
ALIGN = 64
#: Bytes of one constant word (signed 64-bit little-endian).
CONST_BYTES = 8
#: Constant words before the per-channel pairs of a requant block: M, S, hi, channels.
REQUANT_HEADER = 4
#: Constant words before the exp LUT of a softmax block: theta or M, S, hi, B, lo, lut_len.
SOFTMAX_HEADER = 6


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


# ----------------------------------------------------------------------------- activation buffer
def to_stored(codes: np.ndarray, bits: int, signed: bool) -> np.ndarray:
    """Codes -> the unsigned values whose bit planes are stored (1-bit signed: bit; signed: offset binary)."""
    codes = np.asarray(codes, dtype=np.int64)
    if bits == 1 and signed:
        return (codes > 0).astype(np.int64)
    return codes + (1 << (bits - 1)) if signed else codes


def from_stored(u: np.ndarray, bits: int, signed: bool) -> np.ndarray:
    """Inverse of `to_stored`."""
    u = np.asarray(u, dtype=np.int64)
    if bits == 1 and signed:
        return 2 * u - 1
    return u - (1 << (bits - 1)) if signed else u



def act_address(layout: int, base: int, rows: int, width: int, bits: int, lanes: int, block: int,
                r: np.ndarray, n: np.ndarray, plane: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(flat word, lane) of element (row r, channel n, plane) of a code tensor; arrays broadcast.

    Every layout stores "stored rows" rho of packed elements k (wpr = ceil(packed length / L)):
        word = base + ((rho // R * bits + plane) * wpr + k // L) * R + rho % R,   lane = k % L
    so the R stored rows of a row block, same plane and chunk, are R consecutive flat words:
    one physical word of R*L bits (docs/encoder.md §5). `base` must be a multiple of R.
    ROWS:  rho = r, k = n (packed length `width`).
    HEADS: g = n // width; rho = g * pad(rows) + r, k = n % width (packed length `width`).
    TRANS: g = n // width; rho = g * pad(width) + n % width, k = r (packed length `rows`).
    pad(x) = x rounded up to a multiple of R, so each group starts a row block.
    """
    r, n, plane = (np.asarray(x, dtype=np.int64) for x in (r, n, plane))
    if layout == Layout.ROWS:
        rho, k, wpr = r, n, _ceil(width, lanes)
    elif layout == Layout.HEADS:
        rho, k, wpr = (n // width) * pad_rows(rows, block) + r, n % width, _ceil(width, lanes)
    elif layout == Layout.TRANS:
        rho, k, wpr = (n // width) * pad_rows(width, block) + n % width, r, _ceil(rows, lanes)
    else:
        raise ValueError(f"unknown layout {layout!r}")
    return base + (((rho // block) * bits + plane) * wpr + k // lanes) * block + rho % block, k % lanes



# ----------------------------------------------------------------------------- external memory
class ExtImage:
    """An external-memory image being laid out: named, 64-byte aligned regions."""

    def __init__(self):
        self.data = bytearray()
        self.regions: dict[str, tuple[int, int]] = {}

    def add(self, name: str, payload: bytes) -> int:
        """Append `payload` as region `name` at the next aligned offset -> its byte address."""
        if name in self.regions:
            raise ValueError(f"external region {name!r} laid out twice")
        self.data += bytes(-len(self.data) % ALIGN)
        addr = len(self.data)
        self.data += payload
        self.regions[name] = (addr, len(payload))
        return addr

    def reserve(self, name: str, nbytes: int) -> int:
        """A zero-filled region of `nbytes` -> its byte address."""
        return self.add(name, bytes(nbytes))

    def array(self) -> np.ndarray:
        """The image as uint8, padded to a multiple of ALIGN."""
        pad = bytes(-len(self.data) % ALIGN)
        return np.frombuffer(bytes(self.data) + pad, dtype=np.uint8).copy()


def _i64(values) -> bytes:
    return np.asarray(values, dtype="<i8").tobytes()


def _read(ext: np.ndarray, addr: int, nbytes: int) -> np.ndarray:
    if addr < 0 or addr + nbytes > len(ext):
        raise IndexError(f"external read [{addr}, {addr + nbytes}) outside the {len(ext)}-byte memory")
    return ext[addr:addr + nbytes]


def read_i32(ext: np.ndarray, addr: int, count: int) -> np.ndarray:
    return _read(ext, addr, 4 * count).view("<i4").astype(np.int64)


def write_i32(ext: np.ndarray, addr: int, values: np.ndarray) -> None:
    v = np.asarray(values, dtype=np.int64).ravel()
    if v.size and (v.min() < -(1 << 31) or v.max() >= 1 << 31):
        raise OverflowError("value does not fit a 32-bit trace word")
    if addr < 0 or addr + 4 * v.size > len(ext):
        raise IndexError(f"external write [{addr}, {addr + 4 * v.size}) outside the {len(ext)}-byte memory")
    ext[addr:addr + 4 * v.size] = np.frombuffer(v.astype("<i4").tobytes(), dtype=np.uint8)


def drain_order(rows: int, cols: int, tile_cols: int = 0) -> np.ndarray:
    """Row-major indices of a rows x cols result in the order the hardware produces it.

    tile_cols = C (a MATMUL's drain order, docs/encoder.md §6): for each column tile j
    (columns j*C .. min(cols, j*C+C)-1), for each row block of R rows, for each row of the
    block, for each column of the tile. The row blocks follow each other in row order, so
    within a column tile this is row-major and R does not change the order.
    tile_cols = 0: row-major.
    """
    idx = np.arange(rows * cols, dtype=np.int64).reshape(rows, cols)
    if not tile_cols or tile_cols >= cols:
        return idx.ravel()
    return np.concatenate([idx[:, j:j + tile_cols].ravel() for j in range(0, cols, tile_cols)])


def trace_offsets(rows: int, cols: int, streams: int = 1, stream: int = 0, unit: int = 1,
                  tile_cols: int = 0) -> np.ndarray:
    """int32-word offset (rows, cols) of each value of stream `stream` of a trace of interleaved streams.

    The streams are rows x cols each; they are produced in `drain_order(rows, cols, tile_cols)`,
    `unit` values of stream 0, then `unit` values of stream 1, ..., then the next `unit` values
    of stream 0 (LAYERNORM: unit = the row length; SOFTMAX, MATMUL: unit = 1).
    """
    if (rows * cols) % unit or not 0 <= stream < streams:
        raise ValueError(f"bad trace interleave: {rows}x{cols} values, unit {unit}, stream {stream} of {streams}")
    pos = np.empty(rows * cols, dtype=np.int64)
    pos[drain_order(rows, cols, tile_cols)] = np.arange(rows * cols, dtype=np.int64)
    return ((pos // unit) * unit * streams + stream * unit + pos % unit).reshape(rows, cols)


def trace_words(streams: list[np.ndarray], unit: int = 1, tile_cols: int = 0) -> np.ndarray:
    """Interleave equal-shape (rows, cols) streams into the trace order of `trace_offsets` -> 1-D int64."""
    rows, cols = streams[0].shape
    out = np.zeros(len(streams) * rows * cols, dtype=np.int64)
    for s, values in enumerate(streams):
        out[trace_offsets(rows, cols, len(streams), s, unit, tile_cols)] = values
    return out


def const_block(values) -> bytes:
    """Per-channel constants (e.g. thresholds) as 64-bit signed words."""
    return _i64(np.asarray(values, dtype=np.int64).ravel())


def read_consts(ext: np.ndarray, addr: int, count: int) -> np.ndarray:
    return _read(ext, addr, CONST_BYTES * count).view("<i8").astype(np.int64)


def requant_block(m, b, s, lo, hi) -> bytes:
    """[M, S, hi, N] then N pairs (B_n, lo_n): the requant unit's constants for N channels."""
    b = np.asarray(b, dtype=np.int64).ravel()
    lo = np.broadcast_to(np.asarray(lo, dtype=np.int64), b.shape)
    pairs = np.stack([b, lo], axis=-1).ravel()
    return _i64([int(m), int(s), int(hi), b.size]) + _i64(pairs)


def read_requant(ext: np.ndarray, addr: int, first: int, count: int) -> tuple[int, np.ndarray, int, np.ndarray, int]:
    """(M, B, S, lo, hi) of channels first .. first+count-1 of a requant block."""
    m, s, hi, n = read_consts(ext, addr, REQUANT_HEADER)
    if first + count > n:
        raise IndexError(f"requant block holds {n} channels, channels {first}..{first + count - 1} asked")
    pairs = read_consts(ext, addr + CONST_BYTES * (REQUANT_HEADER + 2 * first), 2 * count).reshape(count, 2)
    return int(m), pairs[:, 0], int(s), pairs[:, 1], int(hi)


def layernorm_block(gamma_q, beta_q, eps_q) -> bytes:
    """[eps_q] then gamma_q (H words) then beta_q (H words)."""
    return _i64([int(eps_q)]) + const_block(gamma_q) + const_block(beta_q)


def read_layernorm(ext: np.ndarray, addr: int, h: int) -> tuple[np.ndarray, np.ndarray, int]:
    words = read_consts(ext, addr, 1 + 2 * h)
    return words[1:1 + h], words[1 + h:], int(words[0])


def softmax_block(lut, theta: int | None = None, rq: dict | None = None) -> bytes:
    """Header [theta or M, S, hi, B, lo, lut_len] then the exp LUT (64-bit words)."""
    lut = np.asarray(lut, dtype=np.int64)
    if theta is not None:
        head = [int(theta), 0, 0, 0, 0]
    else:
        head = [int(rq["rq_m"]), int(rq["rq_s"]), int(rq["rq_hi"]), int(np.ravel(rq["rq_b"])[0]),
                int(np.ravel(rq["rq_lo"])[0])]
    return _i64(head + [lut.size]) + const_block(lut)


def read_softmax(ext: np.ndarray, addr: int, lut_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(header words (6,), LUT (lut_len,)); the header's last word must equal lut_len."""
    head = read_consts(ext, addr, SOFTMAX_HEADER)
    if head[-1] != lut_len:
        raise ValueError(f"softmax block holds {head[-1]} LUT entries, the instruction says {lut_len}")
    return head, read_consts(ext, addr + CONST_BYTES * SOFTMAX_HEADER, lut_len)


# ----------------------------------------------------------------------------- weights
def weight_block_bytes(n: int, k: int, cols: int, lanes: int) -> int:
    """Bytes of a weight block: ceil(N/C) tiles of ceil(K/L) * C lane words of L/8 bytes."""
    return _ceil(n, cols) * _ceil(k, lanes) * cols * lanes // 8


def weight_block(words: np.ndarray, k: int, cols: int, lanes: int) -> bytes:
    """Packed +-1 weights (N, ceil(K/64)) uint64 (golden order) -> the hardware's weight block.

    Tile j holds weight rows j*C .. j*C+C-1 (rows past N are zero words): for each K chunk c
    (elements c*L .. c*L+L-1) the C rows' lane words in row order, so one MAC-array beat's
    weights are C consecutive words and a tile is one contiguous burst. Lane i = element
    c*L + i, LSB first, 1 = +1; lanes past K are 0. No per-row constant is stored: the MAC
    array counts the weight bits itself (hw/schedule.py, column counts), so the block is
    exactly the packed weights plus edge padding.
    """
    n = words.shape[0]
    tiles, chunks = _ceil(n, cols), _ceil(k, lanes)
    bits = np.zeros((tiles * cols, chunks * lanes), dtype=np.uint8)
    bits[:n, :k] = unpack_bits(words, k)
    lane_bytes = np.packbits(bits.reshape(tiles, cols, chunks, lanes).transpose(0, 2, 1, 3), axis=-1,
                             bitorder="little")                       # (tiles, chunks, C, L/8)
    return lane_bytes.tobytes()


def read_weight_block(ext: np.ndarray, addr: int, n: int, k: int, cols: int, lanes: int) -> np.ndarray:
    """Inverse of `weight_block` -> bits (N, K) uint8, 1 = +1."""
    tiles, chunks = _ceil(n, cols), _ceil(k, lanes)
    raw = _read(ext, addr, weight_block_bytes(n, k, cols, lanes)).reshape(tiles, chunks, cols, lanes // 8)
    bits = np.unpackbits(raw, axis=-1, bitorder="little")            # (tiles, chunks, C, L)
    return bits.transpose(0, 2, 1, 3).reshape(tiles * cols, chunks * lanes)[:n, :k]


# ----------------------------------------------------------------------------- embeddings and inputs
def word_row_bytes(h: int) -> int:
    """Bytes of one word-table row: scale_q (one 64-bit word) then ceil(H/64) 64-bit sign words."""
    return CONST_BYTES * (1 + n_words(h))


def word_table(bits: np.ndarray, scale_q: np.ndarray) -> bytes:
    """Word embedding rows: [scale_q][sign bits, 64-bit words LSB first, 1 = +1] per token."""
    rows = np.concatenate([np.asarray(scale_q, dtype=np.int64)[:, None], np.asarray(bits).view(np.int64)], axis=1)
    return rows.astype("<i8").tobytes()


def read_word_rows(ext: np.ndarray, addr: int, ids: np.ndarray, h: int) -> tuple[np.ndarray, np.ndarray]:
    """Gather rows `ids` of a word table -> (signs (T, H) int64 +-1, scale_q (T,) int64)."""
    stride = word_row_bytes(h)
    rows = np.stack([_read(ext, addr + int(i) * stride, stride).view("<i8") for i in ids])
    signs = 2 * unpack_bits(rows[:, 1:].view(np.uint64), h).astype(np.int64) - 1
    return signs, rows[:, 0].astype(np.int64)


def int16_table(values: np.ndarray) -> bytes:
    """Rows of int16 values (position / token-type embeddings), row stride 2*H bytes."""
    return np.asarray(values, dtype="<i2").tobytes()


def read_int16_rows(ext: np.ndarray, addr: int, rows: np.ndarray, h: int) -> np.ndarray:
    return np.stack([_read(ext, addr + 2 * h * int(r), 2 * h).view("<i2") for r in rows]).astype(np.int64)


def token_words(ids: np.ndarray, types: np.ndarray, valid: np.ndarray) -> bytes:
    """The input image: one 32-bit word per token, id (bits 0..23) | type << 24 (7 bits) | valid << 31."""
    ids, types, valid = (np.asarray(x, dtype=np.int64).ravel() for x in (ids, types, valid))
    if ids.size and (ids.min() < 0 or ids.max() >= 1 << 24 or types.min() < 0 or types.max() >= 1 << 7):
        raise ValueError("token ids must fit 24 bits and token types 7 bits")
    return (ids | (types << 24) | (valid.astype(np.int64) << 31)).astype("<u4").tobytes()


def read_token_words(ext: np.ndarray, addr: int, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (ids, types, valid) of `count` token words."""
    w = _read(ext, addr, 4 * count).view("<u4").astype(np.int64)
    return w & 0xFFFFFF, (w >> 24) & 0x7F, (w >> 31).astype(bool)
