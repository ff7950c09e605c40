"""Seeded generator of random but valid artifacts for any BERT-shaped config.

Weights and embeddings are random; every alpha is then set from the statistics of a
random calibration batch run through the float reference (alpha = mean|x - beta| for
signed binary sites, the LSQ initialization 2 * mean|x - beta| / sqrt(Qp) otherwise),
so every binarization splits its input instead of saturating. Hardware work can use
these before any model is trained.
"""
from __future__ import annotations

import numpy as np

from .artifact import Artifact
from .config import (LINEARS, PRESETS, ModelConfig, check_head, site_has_beta, site_names, site_signed, site_width,
                     uniform_quant)
from .fold import fold_all
from .formats import NumericFormat, code_range
from .packing import pack_bits
from .reference import FloatModel


def _linear(rng, t: dict, name: str, n: int, k: int, bias_std: float) -> None:
    t[f"{name}.bits"] = pack_bits(rng.integers(0, 2, size=(n, k), dtype=np.uint8))
    t[f"{name}.scale"] = np.array(rng.uniform(0.02, 0.05), np.float64)
    t[f"{name}.bias"] = rng.normal(0.0, bias_std, n).astype(np.float32)


def _layernorm(rng, t: dict, name: str, h: int) -> None:
    t[f"{name}.gamma"] = (1.0 + 0.1 * rng.normal(size=h)).astype(np.float32)
    t[f"{name}.beta"] = (0.05 * rng.normal(size=h)).astype(np.float32)


def random_float_tensors(config: ModelConfig, rng: np.random.Generator,
                         head: str = "classifier") -> dict[str, np.ndarray]:
    """Random float tensors of a BiT model (alpha = 1 and beta = 0 until calibrated).

    head "classifier": pooler and classifier; "span": span.weight (2, H) and span.bias (2)."""
    c = config
    t: dict[str, np.ndarray] = {
        "embeddings.word.bits": pack_bits(rng.integers(0, 2, size=(c.vocab_size, c.hidden), dtype=np.uint8)),
        "embeddings.word.scale": rng.uniform(0.02, 0.05, c.vocab_size).astype(np.float64),
        "embeddings.position": rng.normal(0.0, 0.02, (c.max_position, c.hidden)).astype(np.float32),
        "embeddings.token_type": rng.normal(0.0, 0.02, (c.type_vocab, c.hidden)).astype(np.float32),
    }
    head_name = "classifier" if check_head(head) == "classifier" else "span"
    t[f"{head_name}.weight"] = (rng.normal(size=(c.num_labels, c.hidden)) / np.sqrt(c.hidden)).astype(np.float32)
    t[f"{head_name}.bias"] = (0.1 * rng.normal(size=c.num_labels)).astype(np.float32)
    _layernorm(rng, t, "embeddings.ln", c.hidden)
    if head == "classifier":
        _linear(rng, t, "pooler", c.hidden, c.hidden, 0.1)
    for i in range(c.layers):
        for lin in LINEARS:
            _linear(rng, t, f"layers.{i}.{lin}", *c.linear_shape(lin), 0.1)
        _layernorm(rng, t, f"layers.{i}.ln1", c.hidden)
        _layernorm(rng, t, f"layers.{i}.ln2", c.hidden)
    for site in site_names(c, head):
        t[f"{site}.alpha"] = np.array(1.0, np.float64)
        if site_has_beta(site):
            t[f"{site}.beta"] = np.zeros(site_width(c, site), np.float32)
    return t


def calibrate_alphas(config: ModelConfig, quant: dict[str, int], t: dict, rng: np.random.Generator,
                     batch: int = 4, seq: int = 32, head: str = "classifier") -> None:
    """Set every site's beta (small random offsets) and alpha from one random batch, in place."""
    seq = min(seq, config.max_position)
    ids = rng.integers(0, config.vocab_size, size=(batch, seq))
    mask = np.ones((batch, seq), dtype=bool)
    for r in range(1, batch):
        mask[r, seq - rng.integers(0, seq // 2 + 1):] = False

    def calibrate(site: str, x: np.ndarray) -> None:
        feats = x.reshape(-1, x.shape[-1])
        if site_has_beta(site):
            t[f"{site}.beta"] = (0.1 * feats.std() * rng.normal(size=feats.shape[-1])).astype(np.float32)
            feats = feats - t[f"{site}.beta"]
        bits = quant[site]
        mean_abs = float(np.abs(feats).mean())
        if bits == 1 and site_signed(site):
            alpha = mean_abs                                   # Eq. 6
        else:
            alpha = 2.0 * mean_abs / np.sqrt(code_range(bits, site_signed(site))[1])  # LSQ initialization
        t[f"{site}.alpha"] = np.array(max(alpha, 1e-6), np.float64)

    FloatModel(config, quant, t, calibrate=calibrate, head=head).forward(ids, mask)


def random_artifact(config: ModelConfig | str = "tiny", seed: int = 0, act_bits: int = 1,
                    numerics: NumericFormat | None = None, quant: dict[str, int] | None = None,
                    head: str = "classifier") -> Artifact:
    """A random, calibrated, valid artifact for `config` (a ModelConfig or a preset name).

    head "span": a SQuAD-style head (start / end logits per token, no pooler); the config's
    num_labels must be 2. The classifier tensors of a seed do not change with this option."""
    if isinstance(config, str):
        if config not in PRESETS:
            raise ValueError(f"unknown config {config!r}; choose one of {sorted(PRESETS)}")
        config = PRESETS[config]
    config.validate()
    fmt = (numerics or NumericFormat()).validate()
    check_head(head)
    if head == "span" and config.num_labels != 2:
        raise ValueError(f"a span head has num_labels = 2 (start, end), not {config.num_labels}")
    quant = dict(quant) if quant is not None else uniform_quant(config, act_bits, head)
    rng = np.random.default_rng(seed)
    t = random_float_tensors(config, rng, head)
    calibrate_alphas(config, quant, t, rng, head=head)
    t.update(fold_all(config, fmt, quant, t, head))
    extra = "" if head == "classifier" else f" head={head}"
    return Artifact(config=config, numerics=fmt, quant=quant, tensors=t, tokenizer={"kind": "none"},
                    producer=f"bitaccel random-artifact seed={seed} act_bits={act_bits}{extra}",
                    head=head).validate()
