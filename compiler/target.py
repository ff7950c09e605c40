"""The hardware a program is compiled for: generation parameters, buffer sizes and the limits checked.

`Target` joins `hw.params.HwParams` (array R x C x L, model-size limits, numerics) with the
limits the compiler also needs and HwParams does not hold yet: on-chip buffer depths,
the largest vocabulary and head count. Buffer depths default to what the largest model
within HwParams's limits needs (`hw.spec.buffers.buffer_words`).
"""
from __future__ import annotations

import dataclasses

from bitaccel.golden.config import site_names
from bitaccel.golden.formats import NumericFormat
from bitaccel.hw.params import HwParams

from bitaccel.hw.spec.buffers import buffer_words

__all__ = ["CompileError", "Target", "check_model"]


class CompileError(ValueError):
    """The artifact cannot run on the target: one line naming the limit it exceeds."""


@dataclasses.dataclass(frozen=True)
class Target:
    """A hardware configuration to compile for.

    Members
    -------
    params : HwParams (rows, cols, lanes, max_seq, max_hidden, max_ffn, max_head_dim, max_act_bits,
        max_exp_lut, numerics).
    act_words : activation-buffer depth in flat words of `lanes` bits, a multiple of `rows` (physical
        words are R*L bits; None: sized for the largest model).
    res_words : residual-buffer depth in 16-bit words (None: sized for the largest model).
    scr_words : score-buffer depth in accumulator words (None: max_seq**2).
    max_vocab : largest word-table row count the embedding gather accepts (ids are 24-bit fields).
    max_type_vocab : largest token-type table (type fields are 7 bits in a token word).
    max_heads : largest head count the sequencer's per-head loop is generated for.
    """

    params: HwParams = dataclasses.field(default_factory=HwParams)
    act_words: int | None = None
    res_words: int | None = None
    scr_words: int | None = None
    max_vocab: int = 1 << 16
    max_type_vocab: int = 1 << 7
    max_heads: int = 16

    def __post_init__(self):
        self.params.validate()
        worst = buffer_words(self.params)
        for name in ("act_words", "res_words", "scr_words"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, worst[name])
        for name in ("act_words", "res_words", "scr_words", "max_vocab", "max_type_vocab", "max_heads"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"target: {name} must be a positive integer, not {v!r}")
        if self.max_vocab > 1 << 24 or self.max_type_vocab > 1 << 7:
            raise ValueError("target: max_vocab <= 2**24 and max_type_vocab <= 128 (token word fields)")
        if self.act_words % self.params.rows:
            raise ValueError(f"target: act_words must be a multiple of rows = {self.params.rows} (physical words of "
                             f"R*L bits), not {self.act_words}")
        if max(self.act_words, self.res_words, self.scr_words) > 1 << 24:
            raise ValueError("target: buffer depths must be <= 2**24 words (24-bit address fields)")

    def describe(self) -> dict:
        """JSON-ready description."""
        return {"params": self.params.describe(), "act_words": self.act_words, "res_words": self.res_words,
                "scr_words": self.scr_words, "max_vocab": self.max_vocab, "max_type_vocab": self.max_type_vocab,
                "max_heads": self.max_heads}

    def to_dict(self) -> dict:
        """Constructor arguments (round-trips through `from_dict`)."""
        p = dataclasses.asdict(self.params)
        p["numerics"] = self.params.numerics.to_dict()
        return {"params": p, "act_words": self.act_words, "res_words": self.res_words, "scr_words": self.scr_words,
                "max_vocab": self.max_vocab, "max_type_vocab": self.max_type_vocab, "max_heads": self.max_heads}

    @classmethod
    def from_dict(cls, d: dict) -> "Target":
        p = dict(d["params"])
        p["numerics"] = NumericFormat.from_dict(p["numerics"])
        return cls(params=HwParams(**p), **{k: v for k, v in d.items() if k != "params"})


def _limit(name: str, value: int, limit: int, what: str) -> None:
    if value > limit:
        raise CompileError(f"model exceeds the hardware limit {name} = {limit}: {what} is {value}")


def check_model(art, target: Target, seq_len: int) -> None:
    """Raise CompileError naming the first limit the artifact (at `seq_len` tokens) exceeds."""
    c, p = art.config, target.params
    if art.numerics != p.numerics:
        raise CompileError(f"the artifact's numeric format {art.numerics.to_dict()} differs from the hardware's "
                           f"{p.numerics.to_dict()}")
    _limit("max_hidden", c.hidden, p.max_hidden, "hidden")
    _limit("max_ffn", c.ffn, p.max_ffn, "ffn")
    _limit("max_head_dim", c.head_dim, p.max_head_dim, "head_dim")
    _limit("max_heads", c.heads, target.max_heads, "heads")
    _limit("max_seq", seq_len, p.max_seq, "sequence length")
    _limit("max_vocab", c.vocab_size, target.max_vocab, "vocab_size")
    _limit("max_type_vocab", c.type_vocab, target.max_type_vocab, "type_vocab")
    for site in site_names(c, art.head):
        _limit("max_act_bits", art.quant[site], p.max_act_bits, f"activation bits of {site}")
    for i in range(c.layers):
        _limit("max_exp_lut", len(art[f"layers.{i}.softmax.exp_lut"]), p.max_exp_lut,
               f"exp LUT length of layer {i}")
