"""On-chip buffer sizes and the activation tensors' footprint: what the hardware is generated with
and the compiler allocates within (pure Python; one owner for both sides).

The accelerator has three data buffers (docs/encoder.md §4): ``act`` (packed activation codes,
counted here in flat L-bit words, R flat words per physical word), ``res`` (signed 16-bit
residual values) and ``scr`` (one head's attention scores). `plan_buffers` lays out their
regions for one model shape; `buffer_words` is the depth the largest model within the
generation limits needs (the default depths of `hw.encoder.top.Accelerator` and of
`compiler.Target`). The word-level address of a code element (`compiler.memory.act_address`)
follows docs/encoder.md §5.
"""
from __future__ import annotations

from bitaccel.hw.params import HwParams
from bitaccel.hw.spec.isa import Layout

__all__ = ["ACT_ROLES", "RES_ROLES", "score_lanes", "residual_lanes", "quant_lanes", "pack_words", "unpack_words",
           "pad_rows", "act_tensor_words", "plan_buffers", "buffer_words"]


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


#: Activation-buffer regions: role -> what it holds.
ACT_ROLES = {
    "x": "codes of q.in / k.in / v.in / o.in / ffn1.in (T x H, ROWS)",
    "q": "q.out codes (T x H, HEADS of head_dim)",
    "k": "k.out codes (T x H, HEADS of head_dim)",
    "vt": "v.out codes transposed (H channel rows packed along T, TRANS in head groups)",
    "p": "one head's probability codes (T x T, ROWS)",
    "f": "ffn2.in codes (T x FFN, ROWS)",
    "cls": "pooler.in codes of the [CLS] row (1 x H, ROWS)",
}
#: Residual-buffer regions (T x H each).
RES_ROLES = {"h": "layer input / LayerNorm-2 output", "h1": "LayerNorm-1 output",
             "y": "O / FFN2 requantized output", "s": "embedding sum, residual sums"}



def score_lanes(params: HwParams) -> int:
    """W, the scores per physical word of the score buffer and the keys per beat of the softmax.

    The largest power of two <= min(2C, L): a drain beat's C scores (C a power of two) are C
    lanes of one word, written with lane enables, and W probability codes are W adjacent lanes of
    one packed activation word; the softmax takes two drain beats' worth of keys a cycle. The
    score buffer stays addressed per element (flat address a: word a div W, lane a mod W).
    """
    limit = min(2 * params.cols, params.lanes)
    return 1 << (limit.bit_length() - 1)


def residual_lanes(params: HwParams) -> int:
    """V, the signed 16-bit residual values per physical word of the residual buffer.

    The largest power of two <= C: a RESIDUAL drain beat of C = V values is one word, the
    LayerNorm unit takes a word a cycle and QUANT two (`quant_lanes`). The buffer stays addressed per element
    (flat address a: word a div V, lane a mod V); element-serial writers use lane enables.
    """
    return 1 << (params.cols.bit_length() - 1)


def quant_lanes(params: HwParams) -> int:
    """Q, the channels a QUANT takes a cycle on its wide path (`hw.spec.isa.wide_quant`): min(2V, L), a
    power of two: the lanes of one or two adjacent residual words (read ports r0 and r1), within one
    packed activation word."""
    return min(2 * residual_lanes(params), params.lanes)


def pack_words(values, lanes: int, bits: int) -> list[int]:
    """Flat signed `bits`-bit values -> physical words of `lanes` values (value a in lane a mod lanes of
    word a div lanes, lane i in bits i*bits ..), the last word zero-padded: the residual and score
    buffers' format."""
    flat = [int(v) & ((1 << bits) - 1) for v in values]
    flat += [0] * (-len(flat) % lanes)
    return [sum(v << (bits * i) for i, v in enumerate(flat[w:w + lanes])) for w in range(0, len(flat), lanes)]


def unpack_words(words, lanes: int, bits: int, count: int) -> list[int]:
    """Inverse of `pack_words`: the first `count` flat signed values of physical words."""
    flat = [(int(word) >> (bits * lane)) & ((1 << bits) - 1) for word in words for lane in range(lanes)][:count]
    return [v - (1 << bits) if v >> (bits - 1) else v for v in flat]


def pad_rows(rows: int, block: int) -> int:
    """`rows` rounded up to a whole number of row blocks of `block` (= R) rows."""
    return _ceil(rows, block) * block


def act_tensor_words(layout: int, rows: int, channels: int, width: int, bits: int, lanes: int, block: int) -> int:
    """Activation-buffer (flat) words of a code tensor (rows x channels, `bits` planes) in `layout`.

    `width`: ROWS - the packed row length (the channels of a row); HEADS, TRANS - the channel
    group (head) size. `block` = R, the rows of one physical word: every stored row count is
    padded to a multiple of R (HEADS: each group's `rows`; TRANS: each group's channels), so
    the result is a multiple of R.
    """
    groups = _ceil(channels, width)
    if layout == Layout.ROWS:
        return pad_rows(rows, block) * bits * _ceil(width, lanes)
    if layout == Layout.HEADS:
        return groups * pad_rows(rows, block) * bits * _ceil(width, lanes)
    if layout == Layout.TRANS:
        return groups * pad_rows(width, block) * bits * _ceil(rows, lanes)
    raise ValueError(f"unknown layout {layout!r}")


def buffer_words(params: HwParams) -> dict[str, int]:
    """Buffer depths the largest model within `params` needs (head_dim = max_head_dim, all sites max_act_bits).

    act_words is a multiple of R (whole physical words of R*L bits).
    """
    p = params
    d = min(p.max_head_dim, p.max_hidden)
    bits = {role: p.max_act_bits for role in ACT_ROLES}
    plan = plan_buffers(p.max_seq, p.max_hidden, p.max_ffn, _ceil(p.max_hidden, d), d, bits, p.lanes, p.rows)
    return {"act_words": plan["act"]["total"], "res_words": plan["res"]["total"], "scr_words": plan["scr"]["total"]}


def plan_buffers(t: int, h: int, f: int, heads: int, d: int, bits: dict[str, int], lanes: int, block: int) -> dict:
    """Region bases and sizes: {"act"|"res"|"scr": {role: (base, words), ..., "total": words}}.

    `block` = R: every act region size (so every act base and the act total) is a multiple of R.
    """
    act_sizes = {
        "x": act_tensor_words(Layout.ROWS, t, h, h, bits["x"], lanes, block),
        "q": act_tensor_words(Layout.HEADS, t, heads * d, d, bits["q"], lanes, block),
        "k": act_tensor_words(Layout.HEADS, t, heads * d, d, bits["k"], lanes, block),
        "vt": act_tensor_words(Layout.TRANS, t, heads * d, d, bits["vt"], lanes, block),
        "p": act_tensor_words(Layout.ROWS, t, t, t, bits["p"], lanes, block),
        "f": act_tensor_words(Layout.ROWS, t, f, f, bits["f"], lanes, block),
        "cls": act_tensor_words(Layout.ROWS, 1, h, h, bits["cls"], lanes, block),
    }
    out = {}
    for buf, sizes in (("act", act_sizes), ("res", {role: t * h for role in RES_ROLES}), ("scr", {"s": t * t})):
        regions, base = {}, 0
        for role, words in sizes.items():
            regions[role] = (base, words)
            base += words
        regions["total"] = base
        out[buf] = regions
    return out
