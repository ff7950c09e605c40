"""Float64 "dequantized" reference of the same BiT network (BiT's fake-quant semantics).

It reads the float tensors of an artifact (binary weights as sign bits times scale,
alpha/beta of every site, biases, LayerNorm, embeddings) and computes the network in
float64 with quantizers as in the paper (Eq. 7, 9, 12), rounding half up. The integer
model differs from it only by fixed-point rounding (docs/numerics.md, "Tolerance").

`calibrate`, when given, is called as calibrate(site, x) before each quantizer with the
real values x it is about to quantize; the random-artifact generator uses it to set
alpha from first-batch statistics.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .config import ModelConfig, check_head, site_has_beta, site_signed
from .formats import code_range
from .inputs import check_inputs
from .fold import unpack_pm1
from .packing import unpack_bits


def quantize_float(x: np.ndarray, alpha: float, beta, bits: int, signed: bool) -> np.ndarray:
    """Codes (float64 integers) of BiT's elastic quantizer; the real value is alpha * code."""
    z = np.asarray(x, dtype=np.float64) - beta
    if bits == 1 and signed:
        return np.where(z >= 0, 1.0, -1.0)
    lo, hi = code_range(bits, signed)
    return np.clip(np.floor(z / alpha + 0.5), lo, hi)


def layernorm_float(x: np.ndarray, gamma, beta, eps: float) -> np.ndarray:
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * gamma + beta


class FloatModel:
    """Float reference over a dict of float tensors (an artifact's `tensors`, or a draft of them)."""

    def __init__(self, config: ModelConfig, quant: dict[str, int], tensors: dict,
                 calibrate: Callable[[str, np.ndarray], None] | None = None, head: str = "classifier"):
        self.cfg, self.quant, self.t, self.calibrate = config, quant, tensors, calibrate
        self.head = check_head(head)

    def q(self, site: str, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Quantize real values at a site -> (alpha, codes); the real value is alpha * codes.

        Products are formed as (exact integer sums of codes) * scales, so a sum that is exactly
        zero stays zero and ties resolve as in the integer model, whatever the summation order.
        """
        if self.calibrate is not None:
            self.calibrate(site, x)
        alpha = float(self.t[f"{site}.alpha"])
        beta = self.t[f"{site}.beta"].astype(np.float64) if site_has_beta(site) else 0.0
        return alpha, quantize_float(x, alpha, beta, self.quant[site], site_signed(site))

    def linear(self, lin: str, x: tuple[float, np.ndarray]) -> np.ndarray:
        alpha, codes = x
        k = self.cfg.linear_shape(lin.rsplit(".", 1)[-1])[1]
        w = unpack_pm1(self.t[f"{lin}.bits"], k).astype(np.float64)
        return (alpha * float(self.t[f"{lin}.scale"])) * (codes @ w.T) + self.t[f"{lin}.bias"].astype(np.float64)

    def ln(self, name: str, x: np.ndarray) -> np.ndarray:
        return layernorm_float(x, self.t[f"{name}.gamma"].astype(np.float64), self.t[f"{name}.beta"].astype(np.float64),
                               self.cfg.layer_norm_eps)

    def embed(self, ids, types) -> np.ndarray:
        t, h = self.t, self.cfg.hidden
        word = (2.0 * unpack_bits(t["embeddings.word.bits"][ids], h) - 1.0) * t["embeddings.word.scale"][ids][..., None]
        return word + t["embeddings.position"][: ids.shape[1]][None].astype(np.float64) \
            + t["embeddings.token_type"][types].astype(np.float64)

    def layer(self, i: int, h: np.ndarray, valid: np.ndarray, keep: dict | None) -> np.ndarray:
        cfg, pre = self.cfg, f"layers.{i}"
        b, s, _ = h.shape
        nh, d = cfg.heads, cfg.head_dim
        qkv = {}
        for lin in ("q", "k", "v"):
            val = self.linear(f"{pre}.{lin}", self.q(f"{pre}.{lin}.in", h))
            alpha, codes = self.q(f"{pre}.{lin}.out", val)
            qkv[lin] = alpha, codes.reshape(b, s, nh, d).transpose(0, 2, 1, 3)
        (aq, cq), (ak, ck), (av, cv) = qkv["q"], qkv["k"], qkv["v"]
        scores = (aq * ak / math.sqrt(d)) * (cq @ ck.transpose(0, 1, 3, 2))
        scores = np.where(valid[:, None, None, :], scores, -np.inf)
        scores = scores - scores.max(axis=-1, keepdims=True)
        p = np.exp(scores)
        p = p / p.sum(axis=-1, keepdims=True)
        ap, cp = self.q(f"{pre}.probs", p)
        ctx = (ap * av) * (cp @ cv).transpose(0, 2, 1, 3).reshape(b, s, nh * d)
        y = self.linear(f"{pre}.o", self.q(f"{pre}.o.in", ctx))
        h1 = self.ln(f"{pre}.ln1", y + h)
        f = np.maximum(self.linear(f"{pre}.ffn1", self.q(f"{pre}.ffn1.in", h1)), 0.0)
        y2 = self.linear(f"{pre}.ffn2", self.q(f"{pre}.ffn2.in", f))
        h2 = self.ln(f"{pre}.ln2", y2 + h1)
        if keep is not None:
            keep.update({f"{pre}.ln1": h1, f"{pre}.ln2": h2, f"{pre}.probs": p})
        return h2

    def forward(self, ids, mask=None, types=None, keep_intermediates: bool = False) -> dict:
        """ids (S,) or (B, S) -> {"logits" (B, C), "prediction" (B,), "intermediates" {name: float64}};
        span head: {"start_logits" (B, S), "end_logits" (B, S), "intermediates"} from the final h."""
        ids, valid, types = check_inputs(self.cfg, ids, mask, types)
        keep = {} if keep_intermediates else None
        h = self.ln("embeddings.ln", self.embed(ids, types))
        if keep is not None:
            keep["embeddings.ln"] = h
        for i in range(self.cfg.layers):
            h = self.layer(i, h, valid, keep)
        if self.head == "span":
            logits = h @ self.t["span.weight"].astype(np.float64).T + self.t["span.bias"].astype(np.float64)
            return {"start_logits": logits[..., 0], "end_logits": logits[..., 1], "intermediates": keep or {}}
        pooled = np.tanh(self.linear("pooler", self.q("pooler.in", h[:, 0, :])))
        logits = pooled @ self.t["classifier.weight"].astype(np.float64).T + self.t["classifier.bias"].astype(np.float64)
        return {"logits": logits, "prediction": logits.argmax(axis=-1), "intermediates": keep or {}}
