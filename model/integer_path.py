"""Integer-exact forward of a BiT model in torch: the integers golden.model.IntegerModel computes.

The hardware's forward (docs/numerics.md §3-§7) computed batched in torch, from the folded
constants of an artifact (names of docs/artifact.md: thresholds, requantization constants,
LayerNorm gamma_q/beta_q/eps_q, exp LUT, theta, embedding tables in residual fixed point):

* codes and accumulators are int64 tensors; binary matmuls run on the codes in float32
  (exact: every partial sum is an integer below 2^24) or float64 (exact below 2^53), like
  golden's BLAS path;
* thresholds, requantization, the residual add with saturation, the integer LayerNorm with
  the defined rsqrt, the fixed-point softmax (exp LUT, division-free 1-bit probabilities,
  defined reciprocal) and the embedding sum on the residual grid are the int64 operations of
  golden.formats / golden.requant / golden.layernorm / golden.softmax, one torch function
  per golden function (same names, same steps);
* the host head (tanh pooler, float classifier) is golden's own `IntegerModel.head` in float64.

Gradients are straight-through (`ste`): next to the integer forward runs the model's float
fake-quant forward, each op fed the integer path's values (in real units), and at every
activation site, linear output on the residual stream, residual add, LayerNorm and the
logits the value is replaced by the integer result: ``float + (integer - float).detach()``.
So the forward value is the hardware's, the backward is the float path's gradient (BiT's
STE quantizers of model/quant.py, the binarized weights' pass-through) at the hardware's
operating point. Dropout is not applied (the hardware has none).

`IntegerPath` holds one set of constants as torch tensors. `fold_constants(model, fmt)`
(model/export.py: the export's float tensors + golden.fold.fold_all, no second folding)
gives the constants of a model's current parameters; `BitBertForSequenceClassification`
with `integer_format` set refolds them whenever a parameter changed.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from torch.nn import functional as F

from bitaccel.golden.config import LINEARS, ModelConfig, site_signed
from bitaccel.golden.fold import unpack_pm1
from bitaccel.golden.formats import RSQRT_IN_BITS, RSQRT_Q, NumericFormat, code_max_abs, residual_range
from bitaccel.golden.model import IntegerModel
from bitaccel.golden.packing import unpack_bits

from .quant import binarize_weight, quantize, word_embedding_signs_scale

_INT32_MIN_HALF = -(1 << 30)    # golden.softmax.softmax_exp's masked score (np.iinfo(np.int32).min // 2)


# ----------------------------------------------------------------------------- golden's integer steps, in torch
def rshift_round(x: torch.Tensor, s) -> torch.Tensor:
    """bitaccel.golden.formats.rshift_round: floor((x + 2^(s-1)) / 2^s) on int64; s <= 0 shifts left. s: int or int64 tensor."""
    if isinstance(s, torch.Tensor):
        return (x + (torch.ones_like(s) << (s - 1))) >> s      # per-row shifts, all > 0 (LayerNorm)
    s = int(s)
    if s <= 0:
        return x << -s
    return (x + (1 << (s - 1))) >> s


def requantize(acc: torch.Tensor, m, b, s, lo, hi) -> torch.Tensor:
    """bitaccel.golden.requant.requantize: clamp(rshift_round(acc * M + B, S), lo, hi), int64."""
    y = rshift_round(acc * m + b, int(s))
    return torch.minimum(torch.maximum(y, lo), hi)


def bit_length(v: torch.Tensor) -> torch.Tensor:
    """bitaccel.golden.layernorm.bit_length: exact bit length of non-negative int64 values."""
    powers = torch.ones(63, dtype=torch.int64, device=v.device) << torch.arange(63, device=v.device)
    return (v[..., None] >= powers).sum(dim=-1)


def rsqrt_fixed(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """bitaccel.golden.layernorm.rsqrt_fixed: (r, s) with r the largest integer, r^2 * (V >> 2s) <= 2^(2 RSQRT_Q)."""
    s = torch.clamp((bit_length(v) - RSQRT_IN_BITS + 1) // 2, min=0)
    vs = v >> (2 * s)
    limit = 1 << (2 * RSQRT_Q)
    r = torch.floor(float(1 << RSQRT_Q) / torch.sqrt(vs.to(torch.float64))).to(torch.int64)
    for _ in range(4):
        r = torch.where(r * r * vs > limit, r - 1, r)
        r = torch.where((r + 1) * (r + 1) * vs <= limit, r + 1, r)
    return r, s


def layernorm(x: torch.Tensor, gamma_q: torch.Tensor, beta_q: torch.Tensor, eps_q: int,
              fmt: NumericFormat) -> torch.Tensor:
    """bitaccel.golden.layernorm.layernorm: x (..., H) residual int64 -> y (..., H) residual int64."""
    lo, hi = residual_range()
    h = x.shape[-1]
    s1 = x.sum(dim=-1, keepdim=True)
    s2 = (x * x).sum(dim=-1, keepdim=True)
    v = torch.clamp(h * s2 - s1 * s1 + int(eps_q), min=1)
    d = h * x - s1
    r, s = rsqrt_fixed(v)
    n = rshift_round(d * r, RSQRT_Q + s - fmt.ln_norm_frac)
    y = rshift_round(n * gamma_q, fmt.ln_norm_frac + fmt.gamma_frac - fmt.residual_frac) + beta_q
    return torch.clamp(y, lo, hi)


def softmax_exp(scores: torch.Tensor, valid: torch.Tensor, lut: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """bitaccel.golden.softmax.softmax_exp: integer scores (..., S), valid keys (broadcastable bool) -> (e, sum (..., 1))."""
    if not bool(valid.any(dim=-1).all()):
        raise ValueError("softmax: every row needs at least one unmasked key")
    t = scores.masked_fill(~valid, _INT32_MIN_HALF)
    t = torch.clamp(t.amax(dim=-1, keepdim=True) - t, max=len(lut))     # t = m - s; padded -> len(LUT)
    e = torch.cat([lut, lut.new_zeros(1)])[t]
    return e, e.sum(dim=-1, keepdim=True)


def softmax_binarize(e: torch.Tensor, total: torch.Tensor, theta: int, fmt: NumericFormat) -> torch.Tensor:
    """bitaccel.golden.softmax.softmax_binarize: e >= ceil(theta * sum / 2^theta_frac) -> {0, 1} int64."""
    row_thr = (int(theta) * total + ((1 << fmt.theta_frac) - 1)) >> fmt.theta_frac
    return (e >= row_thr).to(torch.int64)


def softmax_reciprocal(total: torch.Tensor, fmt: NumericFormat) -> torch.Tensor:
    """bitaccel.golden.softmax.softmax_reciprocal: floor(2^(exp_frac + prob_frac + recip_guard) / sum)."""
    return torch.div(torch.full_like(total, 1 << (fmt.exp_frac + fmt.prob_frac + fmt.recip_guard)), total,
                     rounding_mode="floor")


def softmax_probs(e: torch.Tensor, recip: torch.Tensor, fmt: NumericFormat) -> torch.Tensor:
    """bitaccel.golden.softmax.softmax_probs: rshift_round(e * R, exp_frac + recip_guard)."""
    return rshift_round(e * recip, fmt.exp_frac + fmt.recip_guard)


def code_matmul(x: torch.Tensor, y: torch.Tensor, bound: int) -> torch.Tensor:
    """Exact sum_k x[..., m, k] * y[..., n, k] of integer tensors -> int64; `bound` >= every |partial sum|."""
    dtype = torch.float32 if bound < 1 << 24 else torch.float64
    return torch.matmul(x.to(dtype), y.to(dtype).transpose(-1, -2)).to(torch.int64)


def ste(value_float: torch.Tensor, value_exact: torch.Tensor) -> torch.Tensor:
    """Forward value `value_exact` (cast to the float's dtype), gradient of `value_float`."""
    return value_float + (value_exact.to(value_float.dtype) - value_float).detach()


# ----------------------------------------------------------------------------- constants
class IntegerPath:
    """Folded constants of one artifact as torch tensors, and the integer-exact forward of a model with them.

    Parameters
    ----------
    config, fmt, quant : the artifact's ModelConfig, NumericFormat and site bits.
    tensors : the artifact's tensors (numpy, names of docs/artifact.md); `embeddings.word.bits`
        is optional (without it the word signs come from the model, as export computes them).
    device : where the constants live.
    """

    def __init__(self, config: ModelConfig, fmt: NumericFormat, quant: dict[str, int], tensors: dict,
                 device: torch.device | str = "cpu"):
        self.cfg, self.fmt, self.quant = config, fmt, dict(quant)
        self.device = torch.device(device)
        self.host = {k: np.asarray(tensors[k]) for k in ("pooler.in.alpha", "pooler.scale", "pooler.bias",
                                                          "classifier.weight", "classifier.bias")}
        self.t: dict[str, torch.Tensor] = {}
        for name, a in tensors.items():
            a = np.asarray(a)
            if name.endswith(".bits") or name.endswith(".n_neg"):
                continue
            if a.dtype.kind in "iu":
                self.t[name] = torch.from_numpy(a.astype(np.int64)).to(self.device)
        self.signs: dict[str, torch.Tensor] = {}      # +-1 weights (N, K) as int8, from the packed bits
        for i in range(config.layers):
            for lin in LINEARS:
                self._add_signs(tensors, f"layers.{i}.{lin}")
        self._add_signs(tensors, "pooler")
        self.word_bits = tensors.get("embeddings.word.bits")

    def _add_signs(self, tensors: dict, lin: str) -> None:
        k = self.cfg.linear_shape(lin.rsplit(".", 1)[-1])[1]
        self.signs[lin] = torch.from_numpy(unpack_pm1(tensors[f"{lin}.bits"], k)).to(self.device)

    @classmethod
    def from_artifact(cls, art, device="cpu") -> "IntegerPath":
        return cls(art.config, art.numerics, art.quant, art.tensors, device)

    # ------------------------------------------------------------------ sites
    def codes(self, site: str, acc: torch.Tensor) -> torch.Tensor:
        """golden IntegerModel.quantize: accumulator or residual int64 -> codes int64 (threshold or requant)."""
        t = self.t
        if self.quant[site] == 1:
            bit = (acc >= t[f"{site}.thr"]).to(torch.int64)
            return 2 * bit - 1 if site_signed(site) else bit
        return requantize(acc, t[f"{site}.rq_m"], t[f"{site}.rq_b"], t[f"{site}.rq_s"], t[f"{site}.rq_lo"],
                          t[f"{site}.rq_hi"])

    def residual(self, name: str, acc: torch.Tensor) -> torch.Tensor:
        t = self.t
        return requantize(acc, t[f"{name}.rq_m"], t[f"{name}.rq_b"], t[f"{name}.rq_s"], t[f"{name}.rq_lo"],
                          t[f"{name}.rq_hi"])

    def layernorm(self, name: str, x: torch.Tensor) -> torch.Tensor:
        t = self.t
        return layernorm(x, t[f"{name}.gamma_q"], t[f"{name}.beta_q"], int(t[f"{name}.eps_q"]), self.fmt)

    def linear(self, lin: str, x: torch.Tensor, site: str) -> torch.Tensor:
        """Codes x (..., K) of `site` times the +-1 weights of `lin` -> int64 accumulators (..., N)."""
        w = self.signs[lin]
        return code_matmul(x, w, w.shape[1] * code_max_abs(self.quant[site], site_signed(site)))

    def head(self, pooler_acc: torch.Tensor) -> torch.Tensor:
        """golden IntegerModel.head (host, float64) on the pooler accumulator -> logits (B, C) float64."""
        logits = IntegerModel.head(SimpleNamespace(art=self.host), pooler_acc.detach().cpu().numpy())
        return torch.from_numpy(logits).to(pooler_acc.device)

    # ------------------------------------------------------------------ forward
    def forward(self, model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, keep: dict | None = None):
        """Integer-exact forward of `model` (a BitBertForSequenceClassification these constants were folded from).

        Returns (logits (B, C) float64, hidden_states: embedding LayerNorm output and every block
        output (B, S, H) in real units, float). Values are golden's integers; gradients flow to
        the model's float parameters (module doc). `keep`: filled with golden's intermediates
        (same names as IntegerModel.forward(keep_intermediates=True)), int64.
        """
        cfg, fmt = self.cfg, self.fmt
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, seq), not shape {tuple(input_ids.shape)}")
        if input_ids.shape[1] > cfg.max_position:
            raise ValueError(f"sequence of {input_ids.shape[1]} tokens is longer than max_position {cfg.max_position}")
        valid = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        types = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        unit = 2.0 ** -fmt.residual_frac
        h_int, h = self.embed(model, input_ids, types, keep, unit)
        hidden = [h]
        for i, layer in enumerate(model.layers):
            h_int, h = self.layer(i, layer, h_int, h, valid, keep, unit)
            hidden.append(h)
        site = "pooler.in"
        q = model.sites["pooler_in"]
        x_int = self.codes(site, h_int[:, 0])
        x = _site_ste(q, h[:, 0], x_int)
        acc = self.linear("pooler", x_int, site)
        _keep(keep, "pooler.in", x_int)
        _keep(keep, "pooler.acc", acc)
        pooled = torch.tanh(F.linear(x, binarize_weight(model.pooler.weight), model.pooler.bias))
        logits_float = model.classifier(pooled).to(torch.float64)
        return ste(logits_float, self.head(acc)), tuple(hidden)

    def embed(self, model, ids, types, keep, unit):
        """Host embedding sum on the residual grid (golden IntegerModel.embed) and the embedding LayerNorm."""
        emb, t = model.embeddings, self.t
        lo, hi = residual_range()
        if self.word_bits is not None:
            rows = unpack_bits(self.word_bits[ids.cpu().numpy()], self.cfg.hidden).astype(np.int64)
            signs = torch.from_numpy(2 * rows - 1).to(ids.device)
        else:
            signs = word_embedding_signs_scale(emb.word.weight, ids)[0].to(torch.int64)
        word = signs * t["embeddings.word.scale_q"][ids][..., None]
        e_int = torch.clamp(word + t["embeddings.position_q"][: ids.shape[1]][None] + t["embeddings.token_type_q"][types],
                            lo, hi)
        pos = torch.arange(ids.shape[1], device=ids.device)
        e_float = emb.word(ids) + emb.token_type(types) + emb.position(pos)[None]
        e = ste(e_float, e_int * unit)
        h_int = self.layernorm("embeddings.ln", e_int)
        _keep(keep, "embeddings.sum", e_int)
        _keep(keep, "embeddings.ln", h_int)
        return h_int, ste(emb.ln(e), h_int * unit)

    def layer(self, i: int, layer, h_int, h, valid, keep, unit):
        """One encoder layer (golden IntegerModel.attention + layer) -> (h2 int64, h2 real-valued STE tensor)."""
        pre, sites, lins = f"layers.{i}", layer.sites, layer.linears
        lo, hi = residual_range()
        b, s, _ = h_int.shape
        nh, d = self.cfg.heads, self.cfg.head_dim
        w = {n: binarize_weight(lins[n].weight) for n in LINEARS}
        ints, reals = {}, {}
        for n in ("q", "k", "v"):
            x_int = self.codes(f"{pre}.{n}.in", h_int)
            x = _site_ste(sites[f"{n}_in"], h, x_int)
            acc = self.linear(f"{pre}.{n}", x_int, f"{pre}.{n}.in")
            ints[n] = self.codes(f"{pre}.{n}.out", acc)
            reals[n] = _site_ste(sites[f"{n}_out"], F.linear(x, w[n], lins[n].bias), ints[n])
            _keep(keep, f"{pre}.{n}.in", x_int)
            _keep(keep, f"{pre}.{n}.acc", acc)
            _keep(keep, f"{pre}.{n}.out", ints[n])
        q_i, k_i, v_i = (ints[n].view(b, s, nh, d).transpose(1, 2) for n in ("q", "k", "v"))
        q_f, k_f, v_f = (reals[n].view(b, s, nh, d).transpose(1, 2) for n in ("q", "k", "v"))
        bq, bk, bv, bp = (self.quant[f"{pre}.{n}"] for n in ("q.out", "k.out", "v.out", "probs"))
        scores = code_matmul(q_i, k_i, d * code_max_abs(bq, True) * code_max_abs(bk, True))
        e, total = softmax_exp(scores, valid[:, None, None, :], self.t[f"{pre}.softmax.exp_lut"])
        if bp == 1:
            probs_int = softmax_binarize(e, total, int(self.t[f"{pre}.probs.theta"]), self.fmt)
        else:
            recip = softmax_reciprocal(total, self.fmt)
            p = softmax_probs(e, recip, self.fmt)
            probs_int = self.codes(f"{pre}.probs", p[..., None])[..., 0]
            _keep(keep, f"{pre}.recip", recip)
            _keep(keep, f"{pre}.p", p)
        ctx_int = code_matmul(probs_int, v_i.transpose(-1, -2),
                              s * code_max_abs(bp, False) * code_max_abs(bv, True))
        scores_f = torch.matmul(q_f, k_f.transpose(-1, -2)) / float(np.sqrt(d))
        probs_f = torch.softmax(scores_f.masked_fill(~valid[:, None, None, :], float("-inf")), dim=-1)
        probs = _site_ste(sites["probs"], probs_f, probs_int)
        ctx_int = ctx_int.transpose(1, 2).reshape(b, s, nh * d)
        ctx = torch.matmul(probs, v_f).transpose(1, 2).reshape(b, s, nh * d)
        for name, val in (("scores", scores), ("exp", e), ("exp_sum", total[..., 0]), ("probs", probs_int),
                          ("ctx.acc", ctx_int)):
            _keep(keep, f"{pre}.{name}", val)

        x_int = self.codes(f"{pre}.o.in", ctx_int)
        x = _site_ste(sites["o_in"], ctx, x_int)
        acc = self.linear(f"{pre}.o", x_int, f"{pre}.o.in")
        y_int = self.residual(f"{pre}.o.out", acc)
        y = ste(F.linear(x, w["o"], lins["o"].bias), y_int * unit)
        r1_int = torch.clamp(y_int + h_int, lo, hi)
        r1 = ste(y + h, r1_int * unit)
        h1_int = self.layernorm(f"{pre}.ln1", r1_int)
        h1 = ste(layer.ln1(r1), h1_int * unit)
        for name, val in (("o.in", x_int), ("o.acc", acc), ("o.out", y_int), ("res1", r1_int), ("ln1", h1_int)):
            _keep(keep, f"{pre}.{name}", val)

        x_int = self.codes(f"{pre}.ffn1.in", h1_int)
        x = _site_ste(sites["ffn1_in"], h1, x_int)
        acc1 = self.linear(f"{pre}.ffn1", x_int, f"{pre}.ffn1.in")
        f = layer.act(F.linear(x, w["ffn1"], lins["ffn1"].bias))
        x2_int = self.codes(f"{pre}.ffn2.in", acc1)
        x2 = _site_ste(sites["ffn2_in"], f, x2_int)
        acc2 = self.linear(f"{pre}.ffn2", x2_int, f"{pre}.ffn2.in")
        y2_int = self.residual(f"{pre}.ffn2.out", acc2)
        y2 = ste(F.linear(x2, w["ffn2"], lins["ffn2"].bias), y2_int * unit)
        r2_int = torch.clamp(y2_int + h1_int, lo, hi)
        r2 = ste(y2 + h1, r2_int * unit)
        h2_int = self.layernorm(f"{pre}.ln2", r2_int)
        h2 = ste(layer.ln2(r2), h2_int * unit)
        for name, val in (("ffn1.in", x_int), ("ffn1.acc", acc1), ("ffn2.in", x2_int), ("ffn2.acc", acc2),
                          ("ffn2.out", y2_int), ("res2", r2_int), ("ln2", h2_int)):
            _keep(keep, f"{pre}.{name}", val)
        return h2_int, h2


def _site_ste(q, x_float: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """alpha * codes (the integer path's codes) with the STE gradient of the site's float quantizer at x_float."""
    alpha = q.effective_alpha()
    fake = quantize(x_float, alpha, q.beta, q.bits, q.signed)
    return ste(fake, alpha.detach() * codes.to(fake.dtype))


def _keep(keep: dict | None, name: str, value: torch.Tensor) -> None:
    if keep is not None:
        keep[name] = value.detach().to(torch.int64)
