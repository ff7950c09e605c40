"""Bit-exact integer inference of a BiT encoder from an artifact (what the accelerator computes).

Accelerator part (integers, bit-exact with the RTL): embedding LayerNorm, every layer,
the pooler accumulator (classifier head) or the final residual stream (span head). Host
part (float64): embedding gather/add (integer, defined here too), then pooler tanh and the
classifier (`head`), or the span head's start / end logits of every token (`span_logits`)
and the best answer span (`best_span`). See docs/numerics.md for each step.
"""
from __future__ import annotations

import numpy as np

from .artifact import Artifact
from .config import site_signed
from .formats import code_max_abs, residual_range
from .inputs import check_inputs
from .layernorm import layernorm
from .matmul import bit_planes, blas_matmul, code_matmul, xnor_popcount_matmul, xnor_popcount_matmul_01
from .fold import unpack_pm1
from .packing import pack_bits, unpack_bits
from .requant import requantize
from .softmax import softmax_binarize, softmax_exp, softmax_probs, softmax_reciprocal
from .threshold import bits_to_codes, threshold


class IntegerModel:
    """Integer BiT encoder. `path` picks how dot products are computed: "blas" or "packed".

    Both paths give identical integers. "packed" uses the stored packed bits and n_neg
    constants (xnor-popcount, int64 throughout). "blas" keeps codes and accumulators as
    float32 holding exact small integers (every bound is checked to stay below 2**24) and
    converts to int64 where the arithmetic needs it (requantization, LayerNorm, softmax).
    """

    def __init__(self, artifact: Artifact, path: str = "blas"):
        if path not in ("blas", "packed"):
            raise ValueError(f"path must be 'blas' or 'packed', not {path!r}")
        self.art = artifact
        self.cfg = artifact.config
        self.fmt = artifact.numerics
        self.path = path
        self._w: dict[str, np.ndarray] = {}     # blas: +-1 weights as float32 (K, N), unpacked once
        self._thr: dict[tuple, np.ndarray] = {}  # 1-bit sites: thresholds in the accumulator's dtype

    # ------------------------------------------------------------------ primitives
    def _weights(self, lin: str) -> np.ndarray:
        if lin not in self._w:
            k = self.cfg.linear_shape(lin.rsplit(".", 1)[-1])[1]
            self._w[lin] = np.ascontiguousarray(unpack_pm1(self.art[f"{lin}.bits"], k).T.astype(np.float32))
        return self._w[lin]

    def linear(self, lin: str, x: np.ndarray, bits: int, signed: bool) -> np.ndarray:
        """Codes x (..., K) times binary weights of `lin` -> accumulators (..., N)."""
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        k = shape[-1]
        if self.path == "blas":
            if k * code_max_abs(bits, signed) < 1 << 24:
                acc = x2.astype(np.float32, copy=False) @ self._weights(lin)
            else:  # float64 is exact below 2**53
                acc = x2.astype(np.float64) @ self._weights(lin).astype(np.float64)
        else:
            w = self.art[f"{lin}.bits"]
            nneg = self.art[f"{lin}.n_neg"].astype(np.int64)
            acc = np.zeros((x2.shape[0], w.shape[0]), dtype=np.int64)
            for weight, kind, plane in bit_planes(x2, bits, signed):
                p = pack_bits(plane)
                part = xnor_popcount_matmul(p, w, k) if kind == "pm1" else xnor_popcount_matmul_01(p, w, k, nneg)
                acc += weight * part
        return acc.reshape(shape[:-1] + (acc.shape[-1],))

    def quantize(self, site: str, acc: np.ndarray) -> np.ndarray:
        """Accumulator (or residual) -> activation codes of a site (threshold or requant).

        Codes come back as float32 on the blas path, int64 on the packed path.
        """
        a = self.art
        if a.quant[site] == 1:
            if self.path == "packed":
                return bits_to_codes(threshold(acc, a[f"{site}.thr"]), site_signed(site))
            key = (site, acc.dtype.kind)
            if key not in self._thr:  # thresholds in the accumulator's own type (float32 is exact below 2**24)
                self._thr[key] = a[f"{site}.thr"].astype(np.float32 if acc.dtype.kind == "f" else np.int64)
            codes = (acc >= self._thr[key]).astype(np.float32)               # == bits_to_codes(threshold(...))
            if site_signed(site):
                codes *= 2.0
                codes -= 1.0
            return codes
        codes = requantize(np.asarray(acc).astype(np.int64), a[f"{site}.rq_m"], a[f"{site}.rq_b"], a[f"{site}.rq_s"],
                           a[f"{site}.rq_lo"], a[f"{site}.rq_hi"])
        return codes.astype(np.float32) if self.path == "blas" else codes

    def residual(self, name: str, acc: np.ndarray) -> np.ndarray:
        a = self.art
        return requantize(np.asarray(acc).astype(np.int64), a[f"{name}.rq_m"], a[f"{name}.rq_b"], a[f"{name}.rq_s"],
                          a[f"{name}.rq_lo"], a[f"{name}.rq_hi"])

    def layernorm(self, name: str, x: np.ndarray) -> np.ndarray:
        a = self.art
        return layernorm(x, a[f"{name}.gamma_q"], a[f"{name}.beta_q"], int(a[f"{name}.eps_q"]), self.fmt)

    # ------------------------------------------------------------------ model
    def embed(self, ids: np.ndarray, types: np.ndarray) -> np.ndarray:
        """Host: word (+-scale) + position + token type, in residual fixed point, saturated -> (B, S, H)."""
        a, h = self.art, self.cfg.hidden
        signs = 2 * unpack_bits(a["embeddings.word.bits"][ids], h).astype(np.int64) - 1
        word = signs * a["embeddings.word.scale_q"].astype(np.int64)[ids][..., None]
        pos = a["embeddings.position_q"].astype(np.int64)[: ids.shape[1]][None]
        typ = a["embeddings.token_type_q"].astype(np.int64)[types]
        return np.clip(word + pos + typ, *residual_range())

    def attention(self, i: int, h: np.ndarray, valid: np.ndarray, keep: dict | None) -> np.ndarray:
        a, cfg, pre = self.art, self.cfg, f"layers.{i}"
        b, s, _ = h.shape
        nh, d = cfg.heads, cfg.head_dim
        codes = {}
        for lin in ("q", "k", "v"):
            x = self.quantize(f"{pre}.{lin}.in", h)
            acc = self.linear(f"{pre}.{lin}", x, a.quant[f"{pre}.{lin}.in"], True)
            codes[lin] = self.quantize(f"{pre}.{lin}.out", acc)
            _keep(keep, f"{pre}.{lin}.in", x)
            _keep(keep, f"{pre}.{lin}.acc", acc)
            _keep(keep, f"{pre}.{lin}.out", codes[lin])
        q, k, v = (codes[n].reshape(b, s, nh, d).transpose(0, 2, 1, 3) for n in ("q", "k", "v"))
        bq, bk, bv, bp = (a.quant[f"{pre}.{n}"] for n in ("q.out", "k.out", "v.out", "probs"))
        scores = self._batched(q, bq, True, k, bk, True)                     # (B, nh, S, S) exact ints
        e, total = softmax_exp(scores, valid[:, None, None, :], a[f"{pre}.softmax.exp_lut"])
        if bp == 1:
            bits = softmax_binarize(e, total, int(a[f"{pre}.probs.theta"]), self.fmt)
            probs = bits.astype(np.float32 if self.path == "blas" else np.int64)
        else:
            recip = softmax_reciprocal(total, self.fmt)
            p = softmax_probs(e, recip, self.fmt)
            probs = self.quantize(f"{pre}.probs", p[..., None])[..., 0]
            _keep(keep, f"{pre}.recip", recip)
            _keep(keep, f"{pre}.p", p)
        ctx = self._batched(probs, bp, False, v.transpose(0, 1, 3, 2), bv, True)  # (B, nh, S, d) exact ints
        ctx = ctx.transpose(0, 2, 1, 3).reshape(b, s, nh * d)
        for name, val in (("scores", scores), ("exp", e), ("exp_sum", total[..., 0]), ("probs", probs), ("ctx.acc", ctx)):
            _keep(keep, f"{pre}.{name}", val)
        return ctx

    def _batched(self, x, xb, xs, y, yb, ys) -> np.ndarray:
        """Exact code products over leading batch axes: out[..., m, n] = sum_k x[..., m, k] y[..., n, k]."""
        if self.path == "blas":
            if x.shape[-1] * code_max_abs(xb, xs) * code_max_abs(yb, ys) >= 1 << 24:
                return blas_matmul(x, y, code_max_abs(xb, xs), code_max_abs(yb, ys))   # float64, exact
            return np.matmul(x.astype(np.float32, copy=False), np.swapaxes(y, -1, -2).astype(np.float32, copy=False))
        out = np.empty(x.shape[:-1] + (y.shape[-2],), dtype=np.int64)
        for idx in np.ndindex(*x.shape[:-2]):
            out[idx] = code_matmul(x[idx], xb, xs, y[idx], yb, ys, path="packed")
        return out

    def layer(self, i: int, h: np.ndarray, valid: np.ndarray, keep: dict | None) -> np.ndarray:
        a, pre = self.art, f"layers.{i}"
        ctx = self.attention(i, h, valid, keep)
        x = self.quantize(f"{pre}.o.in", ctx)
        acc = self.linear(f"{pre}.o", x, a.quant[f"{pre}.o.in"], True)
        y = self.residual(f"{pre}.o.out", acc)
        r1 = np.clip(y + h, *residual_range())
        h1 = self.layernorm(f"{pre}.ln1", r1)
        for name, val in (("o.in", x), ("o.acc", acc), ("o.out", y), ("res1", r1), ("ln1", h1)):
            _keep(keep, f"{pre}.{name}", val)
        x = self.quantize(f"{pre}.ffn1.in", h1)
        acc1 = self.linear(f"{pre}.ffn1", x, a.quant[f"{pre}.ffn1.in"], True)
        x2 = self.quantize(f"{pre}.ffn2.in", acc1)
        acc2 = self.linear(f"{pre}.ffn2", x2, a.quant[f"{pre}.ffn2.in"], False)
        y2 = self.residual(f"{pre}.ffn2.out", acc2)
        r2 = np.clip(y2 + h1, *residual_range())
        h2 = self.layernorm(f"{pre}.ln2", r2)
        for name, val in (("ffn1.in", x), ("ffn1.acc", acc1), ("ffn2.in", x2), ("ffn2.acc", acc2),
                          ("ffn2.out", y2), ("res2", r2), ("ln2", h2)):
            _keep(keep, f"{pre}.{name}", val)
        return h2

    def forward(self, ids, mask=None, types=None, keep_intermediates: bool = False) -> dict:
        """ids (S,) or (B, S) -> {"logits" (B, C) float64, "prediction" (B,), "intermediates" {name: int64}}.

        Span head (artifact head "span"): {"start_logits" (B, S) float64, "end_logits" (B, S),
        "hidden" (B, S, H) int64: the final residual stream (= intermediates "layers.{L-1}.ln2"),
        "intermediates"}; padding tokens get logits too (decoding skips them).
        """
        ids, valid, types = check_inputs(self.cfg, ids, mask, types)
        keep = {} if keep_intermediates else None
        e = self.embed(ids, types)
        h = self.layernorm("embeddings.ln", e)
        _keep(keep, "embeddings.sum", e)
        _keep(keep, "embeddings.ln", h)
        for i in range(self.cfg.layers):
            h = self.layer(i, h, valid, keep)
        if self.art.head == "span":
            start, end = self.span_logits(h)
            return {"start_logits": start, "end_logits": end, "hidden": np.asarray(h, dtype=np.int64),
                    "intermediates": keep or {}}
        x = self.quantize("pooler.in", h[:, 0, :])
        acc = self.linear("pooler", x, self.art.quant["pooler.in"], True)
        _keep(keep, "pooler.in", x)
        _keep(keep, "pooler.acc", acc)
        logits = self.head(acc)
        return {"logits": logits, "prediction": logits.argmax(axis=-1), "intermediates": keep or {}}

    def head(self, pooler_acc: np.ndarray) -> np.ndarray:
        """Host: pooled = tanh(alpha_in * s_p * acc + b_p); logits = pooled W_c^T + b_c (float64)."""
        a = self.art
        scale = float(a["pooler.in.alpha"]) * float(a["pooler.scale"])
        pooled = np.tanh(scale * pooler_acc.astype(np.float64) + a["pooler.bias"].astype(np.float64))
        return pooled @ a["classifier.weight"].astype(np.float64).T + a["classifier.bias"].astype(np.float64)

    def span_logits(self, hidden: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Host: final residual stream (..., S, H) int16 values -> (start, end) logits (..., S) float64.

        x = hidden * 2**-residual_frac (the residual format's real value); [start, end] = x W_s^T + b_s
        with the full-precision span.weight (2, H) and span.bias (2).
        """
        a = self.art
        x = np.asarray(hidden).astype(np.float64) * 2.0 ** -self.fmt.residual_frac
        logits = x @ a["span.weight"].astype(np.float64).T + a["span.bias"].astype(np.float64)
        return logits[..., 0], logits[..., 1]


def best_span(start_logits, end_logits, allowed, max_answer_length: int = 30) -> tuple[int, int, float]:
    """The best answer span of one sequence: (start, end, score), end inclusive.

    Maximizes start_logits[s] + end_logits[e] over s <= e < s + max_answer_length with both
    tokens `allowed` (bool (S,), e.g. the context tokens); ties go to the smallest s, then e.
    ValueError if no token is allowed.
    """
    start = np.asarray(start_logits, dtype=np.float64)
    end = np.asarray(end_logits, dtype=np.float64)
    ok = np.asarray(allowed, dtype=bool)
    if start.ndim != 1 or start.shape != end.shape or ok.shape != start.shape:
        raise ValueError(f"start, end and allowed must have one shape (S,), not {start.shape}, {end.shape}, {ok.shape}")
    if max_answer_length < 1:
        raise ValueError(f"max_answer_length must be >= 1, not {max_answer_length}")
    if not ok.any():
        raise ValueError("no token may start or end the answer")
    s_idx, e_idx = np.meshgrid(np.arange(start.size), np.arange(start.size), indexing="ij")
    valid = ok[:, None] & ok[None, :] & (e_idx >= s_idx) & (e_idx - s_idx < max_answer_length)
    score = np.where(valid, start[:, None] + end[None, :], -np.inf)
    s, e = np.unravel_index(int(np.argmax(score)), score.shape)     # first maximum in (s, e) order
    return int(s), int(e), float(score[s, e])


def _keep(keep: dict | None, name: str, value: np.ndarray) -> None:
    if keep is not None:
        keep[name] = np.asarray(value, dtype=np.int64)
