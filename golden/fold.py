"""Folding float BiT parameters into the integer constants the hardware uses.

Every quantization site sees a value v = a * acc + b_j (a > 0 scalar, b_j per channel)
computed from an integer accumulator `acc` (for sites on the residual stream, acc is
the residual integer and a = 2**-residual_frac, b = 0). The site's float semantics
(docs/numerics.md) are
  signed 1-bit:   code = +1 if v - beta_j >= 0 else -1
  otherwise:      code = clamp(floor((v' - beta_j) / alpha + 1/2), lo, hi),  v' = relu(v) where folded
which fold to an integer threshold on acc (1-bit) or a requantization (multi-bit).
"""
from __future__ import annotations

import math

import numpy as np

from .config import LINEARS, ModelConfig, site_has_beta, site_names, site_signed, site_width
from .formats import (ALWAYS, OFFSET_BITS, NumericFormat, acc_max_abs, code_range,
                      fixed_multiplier, residual_range)
from .layernorm import layernorm_eps_q
from .packing import pm1_to_bits, pack_bits, unpack_bits
from .softmax import exp_lut


def round_half_up(x) -> np.ndarray:
    """floor(x + 1/2) as float64 (the rounding used everywhere in bitaccel)."""
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5)


def to_fixed(x, frac: int, bits: int, name: str) -> np.ndarray:
    """Round float values to a signed fixed-point integer; raise if any value does not fit."""
    q = round_half_up(np.asarray(x, dtype=np.float64) * float(1 << frac))
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if q.size and (q.min() < lo or q.max() > hi):
        worst = float(np.abs(np.asarray(x, dtype=np.float64)).max())
        raise ValueError(f"{name}: value {worst:.4g} does not fit {bits}-bit fixed point with {frac} fractional bits")
    return q.astype(np.int64)


def fold_threshold(a: float, b: np.ndarray, beta: np.ndarray, alpha: float, signed: bool, relu: bool,
                   acc_max: int) -> np.ndarray:
    """Per-channel threshold T with bit = acc >= T, clamped into [-acc_max, acc_max + 1]."""
    b = np.asarray(b, dtype=np.float64)
    beta = np.asarray(beta, dtype=np.float64)
    if signed:
        t_value = beta                          # v - beta >= 0
    else:
        t_value = beta + alpha / 2.0            # (v' - beta) / alpha >= 1/2
    thr = np.ceil((t_value - b) / a)
    if relu and not signed:
        thr = np.where(t_value <= 0.0, ALWAYS, thr)  # relu(v) >= t holds for every v
    return np.clip(thr, -acc_max, acc_max + 1).astype(np.int64)


def fold_code_requant(a: float, b: np.ndarray, beta: np.ndarray, alpha: float, bits: int, signed: bool,
                      relu: bool) -> dict[str, np.ndarray]:
    """Requantization constants producing multi-bit codes from acc (see golden.requant)."""
    b = np.asarray(b, dtype=np.float64)
    beta = np.broadcast_to(np.asarray(beta, dtype=np.float64), b.shape)
    m, s = fixed_multiplier(a / alpha)
    off = round_half_up((b - beta) / alpha * 2.0 ** s)
    lo, hi = code_range(bits, signed)
    lo_c = np.full(b.shape, lo, dtype=np.int64)
    if relu:  # codes of relu(v) = max(code(v), code(0))
        lo_c = np.clip(round_half_up(-beta / alpha), lo, hi).astype(np.int64)
    return _requant_dict(m, off, s, lo_c, hi)


def fold_residual_requant(a: float, b: np.ndarray, fmt: NumericFormat) -> dict[str, np.ndarray]:
    """Requantization constants producing the 16-bit residual stream from acc."""
    b = np.asarray(b, dtype=np.float64)
    m, s = fixed_multiplier(a * 2.0 ** fmt.residual_frac)
    off = round_half_up(b * 2.0 ** (fmt.residual_frac + s))
    lo, hi = residual_range()
    return _requant_dict(m, off, s, np.full(b.shape, lo, dtype=np.int64), hi)


def _requant_dict(m: int, off: np.ndarray, s: int, lo: np.ndarray, hi: int) -> dict[str, np.ndarray]:
    limit = 1 << (OFFSET_BITS - 1)
    if off.size and np.abs(off).max() >= limit:
        raise ValueError(f"requantization offset needs more than {OFFSET_BITS} bits")
    return {"rq_m": np.array(m, np.int64), "rq_b": off.astype(np.int64), "rq_s": np.array(s, np.int64),
            "rq_lo": np.asarray(lo, np.int64), "rq_hi": np.array(hi, np.int64)}


def site_producer(config: ModelConfig, fmt: NumericFormat, quant: dict[str, int], p: dict, site: str):
    """(a, b, relu, acc_max) of the value a site quantizes: v = a * acc + b."""
    h = config.hidden
    zeros = np.zeros(site_width(config, site))
    if site == "pooler.in" or site.endswith((".q.in", ".k.in", ".v.in", ".ffn1.in")):
        return 2.0 ** -fmt.residual_frac, zeros, False, 1 << 15
    pre, short = site.rsplit(".", 2)[0], site.split(".", 2)[2]
    if short in ("q.out", "k.out", "v.out"):
        lin = short[0]
        bits_in = quant[f"{pre}.{lin}.in"]
        a = float(p[f"{pre}.{lin}.in.alpha"]) * float(p[f"{pre}.{lin}.scale"])
        return a, p[f"{pre}.{lin}.bias"], False, acc_max_abs(h, bits_in, True)
    if short == "o.in":
        a = float(p[f"{pre}.probs.alpha"]) * float(p[f"{pre}.v.out.alpha"])
        acc_max = acc_max_abs(config.max_position, quant[f"{pre}.probs"], False, quant[f"{pre}.v.out"], True)
        return a, zeros, False, acc_max
    if short == "ffn2.in":
        a = float(p[f"{pre}.ffn1.in.alpha"]) * float(p[f"{pre}.ffn1.scale"])
        return a, p[f"{pre}.ffn1.bias"], True, acc_max_abs(h, quant[f"{pre}.ffn1.in"], True)
    raise ValueError(f"site {site!r} has no accumulator producer")


def softmax_scale(p: dict, layer: int, head_dim: int) -> float:
    """c = alpha_q * alpha_k / sqrt(d_head): the real value of one unit of the integer score."""
    pre = f"layers.{layer}"
    return float(p[f"{pre}.q.out.alpha"]) * float(p[f"{pre}.k.out.alpha"]) / math.sqrt(head_dim)


def fold_all(config: ModelConfig, fmt: NumericFormat, quant: dict[str, int], p: dict,
             head: str = "classifier") -> dict[str, np.ndarray]:
    """All integer tensors of an artifact from its float tensors `p` (see artifact.expected_tensors).

    head "span" has no pooler (its start / end head stays in full precision: nothing to fold)."""
    out: dict[str, np.ndarray] = {}
    f_r = fmt.residual_frac
    out["embeddings.word.scale_q"] = to_fixed(p["embeddings.word.scale"], f_r, 32, "word embedding scale").astype(np.int32)
    out["embeddings.position_q"] = to_fixed(p["embeddings.position"], f_r, 16, "position embedding").astype(np.int16)
    out["embeddings.token_type_q"] = to_fixed(p["embeddings.token_type"], f_r, 16, "token type embedding").astype(np.int16)
    lns = ["embeddings.ln"] + [f"layers.{i}.ln{j}" for i in range(config.layers) for j in (1, 2)]
    for ln in lns:
        out[f"{ln}.gamma_q"] = to_fixed(p[f"{ln}.gamma"], fmt.gamma_frac, 16, f"{ln}.gamma").astype(np.int16)
        out[f"{ln}.beta_q"] = to_fixed(p[f"{ln}.beta"], f_r, 16, f"{ln}.beta").astype(np.int16)
        out[f"{ln}.eps_q"] = np.array(layernorm_eps_q(config.layer_norm_eps, config.hidden, fmt), np.int64)
    linears = [f"layers.{i}.{lin}" for i in range(config.layers) for lin in LINEARS]
    linears += ["pooler"] if head == "classifier" else []
    for lin in linears:
        out[f"{lin}.n_neg"] = (config.linear_shape(lin.rsplit(".", 1)[-1])[1]
                               - np.bitwise_count(p[f"{lin}.bits"]).sum(axis=-1)).astype(np.int32)
    for site in site_names(config, head):
        bits, signed = quant[site], site_signed(site)
        alpha = float(p[f"{site}.alpha"])
        if not alpha > 0:
            raise ValueError(f"{site}.alpha must be positive, not {alpha!r}")
        if site.endswith("probs"):
            out.update(_fold_probs(site, alpha, bits, fmt))
            continue
        a, b, relu, acc_max = site_producer(config, fmt, quant, p, site)
        beta = p[f"{site}.beta"] if site_has_beta(site) else np.zeros(site_width(config, site))
        if bits == 1:
            out[f"{site}.thr"] = fold_threshold(a, b, beta, alpha, signed, relu, acc_max)
        else:
            for k, v in fold_code_requant(a, b, beta, alpha, bits, signed, relu).items():
                out[f"{site}.{k}"] = v
    for i in range(config.layers):
        pre = f"layers.{i}"
        for lin, src in (("o", "o.in"), ("ffn2", "ffn2.in")):
            a = float(p[f"{pre}.{src}.alpha"]) * float(p[f"{pre}.{lin}.scale"])
            for k, v in fold_residual_requant(a, p[f"{pre}.{lin}.bias"], fmt).items():
                out[f"{pre}.{lin}.out.{k}"] = v
        max_index = 2 * acc_max_abs(config.head_dim, quant[f"{pre}.q.out"], True, quant[f"{pre}.k.out"], True)
        out[f"{pre}.softmax.exp_lut"] = exp_lut(softmax_scale(p, i, config.head_dim), fmt, max_index)
    return out


def _fold_probs(site: str, alpha: float, bits: int, fmt: NumericFormat) -> dict[str, np.ndarray]:
    if bits == 1:  # p >= alpha / 2, with p <= 1 so larger thresholds never fire
        theta = min(round_half_up(alpha / 2.0 * 2.0 ** fmt.theta_frac), (1 << fmt.theta_frac) + 1)
        return {f"{site}.theta": np.array(max(int(theta), 1), np.int64)}
    rq = fold_code_requant(2.0 ** -fmt.prob_frac, np.zeros(1), np.zeros(1), alpha, bits, False, False)
    return {f"{site}.{k}": v for k, v in rq.items()}


def binarize_weight(w: np.ndarray) -> tuple[np.ndarray, float]:
    """BiT weight binarization of a float (N, K) matrix: (packed bits of sign(W - mean W), mean|W|)."""
    w = np.asarray(w, dtype=np.float64)
    signs = np.where(w - w.mean() >= 0, 1, -1)
    return pack_bits(pm1_to_bits(signs)), float(np.abs(w).mean())


def unpack_pm1(words: np.ndarray, k: int) -> np.ndarray:
    """Packed +-1 rows -> int8 +-1 matrix."""
    return (2 * unpack_bits(words, k).astype(np.int8) - 1).astype(np.int8)
