"""BERT-shaped model configuration and the activation quantization sites of a BiT encoder."""
from __future__ import annotations

import dataclasses

from .formats import ACT_BITS

#: Linear layers of one encoder layer: name -> (input features, output features) as config attributes.
LINEARS = ("q", "k", "v", "o", "ffn1", "ffn2")

#: Activation quantization sites of one layer: name -> signed? Inputs of every linear,
#: the Q/K/V outputs, and the attention probabilities. Unsigned = the {0,1} set of BiT.
LAYER_SITES = {
    "q.in": True, "k.in": True, "v.in": True,      # residual stream -> codes (beta per feature)
    "q.out": True, "k.out": True, "v.out": True,   # Q/K/V accumulators -> codes (no beta)
    "probs": False,                                # softmax -> {0,1} (or unsigned multi-bit)
    "o.in": True,                                  # P.V accumulator -> codes (beta per feature)
    "ffn1.in": True,                               # residual stream -> codes (beta per feature)
    "ffn2.in": False,                              # ReLU(FFN1) -> {0,1} codes (beta per feature)
}
#: Sites outside the layers (the classifier head's pooler input; a span head has none).
MODEL_SITES = {"pooler.in": True}
#: Head kinds an artifact can carry (its manifest's "head"): "classifier" = binarized pooler on [CLS]
#: + full-precision classifier (num_labels outputs); "span" = full-precision start / end logits of
#: every token from the final residual stream (SQuAD; num_labels = 2, no pooler).
HEADS = ("classifier", "span")
#: Sites with a learned per-feature threshold beta (the official BiT code's placement).
BETA_SITES = ("q.in", "k.in", "v.in", "o.in", "ffn1.in", "ffn2.in", "pooler.in")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Shape of a BERT encoder with a classification (or regression, num_labels=1) head; a span head
    (the artifact's head "span") has num_labels = 2, its start and end outputs."""

    vocab_size: int = 30522
    hidden: int = 384
    layers: int = 6
    heads: int = 12
    ffn: int = 1536
    max_position: int = 512
    type_vocab: int = 2
    num_labels: int = 2
    layer_norm_eps: float = 1e-12

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def linear_shape(self, name: str) -> tuple[int, int]:
        """(out_features, in_features) of a linear layer, like a PyTorch weight."""
        h, f = self.hidden, self.ffn
        return {"q": (h, h), "k": (h, h), "v": (h, h), "o": (h, h), "ffn1": (f, h), "ffn2": (h, f),
                "pooler": (h, h)}[name]

    def validate(self) -> "ModelConfig":
        for name in ("vocab_size", "hidden", "layers", "heads", "ffn", "max_position", "type_vocab", "num_labels"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"model config: {name} must be a positive int, not {v!r}")
        if self.hidden % self.heads:
            raise ValueError(f"model config: hidden {self.hidden} is not a multiple of heads {self.heads}")
        if self.hidden > 4096 or self.ffn > 16384:
            raise ValueError("model config: hidden <= 4096 and ffn <= 16384 are supported")
        if not (0.0 <= self.layer_norm_eps < 1.0):
            raise ValueError(f"model config: layer_norm_eps must be in [0, 1), not {self.layer_norm_eps!r}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        if set(d) != names:
            raise ValueError(f"model config: unknown keys {sorted(set(d) - names)}, missing keys {sorted(names - set(d))}")
        return cls(**d).validate()


PRESETS = {
    "tiny": ModelConfig(vocab_size=1000, hidden=64, layers=2, heads=4, ffn=128, max_position=64),
    "minilm": ModelConfig(vocab_size=30522, hidden=384, layers=6, heads=12, ffn=1536, max_position=512),
    "bert-base": ModelConfig(vocab_size=30522, hidden=768, layers=12, heads=12, ffn=3072, max_position=512),
}


def check_head(head: str) -> str:
    """`head` if it is one of HEADS, else ValueError."""
    if head not in HEADS:
        raise ValueError(f"head must be one of {', '.join(HEADS)}, not {head!r}")
    return head


def site_names(config: ModelConfig, head: str = "classifier") -> list[str]:
    """Every quantization site of a model, e.g. 'layers.0.q.in', ..., 'pooler.in' (classifier head only)."""
    names = [f"layers.{i}.{s}" for i in range(config.layers) for s in LAYER_SITES]
    return names + (list(MODEL_SITES) if check_head(head) == "classifier" else [])


def site_short(name: str) -> str:
    """'layers.3.q.in' -> 'q.in'; model-level names are returned as they are."""
    return name.split(".", 2)[2] if name.startswith("layers.") else name


def site_has_beta(name: str) -> bool:
    return site_short(name) in BETA_SITES


def site_width(config: ModelConfig, name: str) -> int:
    """Number of channels a site quantizes (its beta and threshold vectors have this length)."""
    return config.ffn if site_short(name) == "ffn2.in" else config.hidden


def site_signed(name: str) -> bool:
    """Whether a site's codes are signed (the two-set scheme fixes this per site)."""
    short = site_short(name)
    if short in LAYER_SITES:
        return LAYER_SITES[short]
    if short in MODEL_SITES:
        return MODEL_SITES[short]
    raise ValueError(f"unknown quantization site {name!r}")


def uniform_quant(config: ModelConfig, act_bits: int, head: str = "classifier") -> dict[str, int]:
    """Every site at the same activation bit width (W1A1, W1A2, W1A4, W1A8)."""
    if act_bits not in ACT_BITS:
        raise ValueError(f"activation bits must be one of {ACT_BITS}, not {act_bits!r}")
    return {name: act_bits for name in site_names(config, head)}
