"""BiT quantizers: pure autograd functions with straight-through gradients, and small modules.

Layering (like Brevitas, without its indirection): the `torch.autograd.Function`s below
are the quantizers with their STE gradients; `ActQuantizer`, `BitLinear` and
`BitEmbedding` are the modules a model is built from; `quantized_linear` /
`quantized_matmul` compute a binary matmul either as fake-quant (training) or as an exact
integer sum times one scale (eval), the way golden folds it.

Notation: x the real input, alpha > 0 the scale (a scalar), beta the threshold (one per
feature of the last axis, or none), z = (x - beta) / alpha, g the incoming gradient.
The forward values are exactly golden's float semantics (`golden.reference.quantize_float`):

=====================  =========================================  ==================================
quantizer              forward: alpha * code with code =           STE gradients (per element)
=====================  =========================================  ==================================
signed, 1 bit          +1 if x - beta >= 0 else -1  (Eq. 12)       dx = g * 1{|z| <= 1}
(`SignedBinary`)       (sign(0) = +1)                              dalpha = g * code          (Eq. 13)
                                                                   dbeta = -g * 1{|z| <= 1}
unsigned, 1 bit        floor(z + 1/2) clipped to {0, 1}, i.e.      dx = g * 1{0 <= z <= 1}
(`UnsignedBinary`)     1{z >= 1/2}  (Eq. 7/9)                      dalpha = g * (0 if z < 0; code - z if
                                                                     0 <= z < 1; 1 if z >= 1)  (Eq. 10)
                                                                   dbeta = -g * 1{0 <= z < 1}  (Eq. 11)
b bits (2, 4, 8)       clamp(floor(z + 1/2), Qn, Qp)               dx = g * 1{Qn <= z <= Qp}
(`MultiBit`, LSQ)      signed: Qn = -2^(b-1), Qp = 2^(b-1) - 1     dalpha = g * (code - z inside,
                       unsigned: Qn = 0, Qp = 2^b - 1                Qn below, Qp above)    (LSQ)
                                                                   dbeta = -dx
=====================  =========================================  ==================================

dalpha and dbeta are summed over the broadcast axes (all axes for alpha, all but the
last for beta). Derivations, all as the STE of the clipped linear function
y = alpha * Clip(z, lo, hi) with the rounding's derivative taken as 1:

* signed 1 bit: dy/dx = 1{|z| <= 1} and dy/dbeta = alpha * (-1/alpha) * 1{|z| <= 1}
  = -1{|z| <= 1} (the signed analogue of Eq. 11; no factor alpha). For alpha the paper
  (Eq. 13) ignores the scale inside Sign and uses the binary value itself,
  dy/dalpha = sign(x - beta).
* unsigned 1 bit: Eq. 10 is code + alpha * dClip(z, 0, 1)/dalpha = code - z on the active
  range, so inside it equals LSQ's round(z) - z with Qn = 0, Qp = 1. The active range of
  Eq. 10/11 is the half-open [0, 1) (z = 1 is the "x >= alpha + beta" branch); dx uses the
  closed [0, 1], the clip range of Eq. 9. They differ only at z == 1 exactly (dx = g there,
  dbeta = 0).
* multi-bit: LSQ (Esser et al., 2019) without its gradient scale 1/sqrt(numel * Qp):
  the closed forms unscaled. Adam normalizes a constant gradient scale away (up to its eps).

Rounding: floor(z + 1/2) is round half UP (a tie z = k + 1/2 gives k + 1), like golden and
the paper's ">= 0.5 -> 1". `torch.round` would round half to even and differ at exact ties.

Weights (`BinarizeWeight`): W_b = mean|W| * sign(W - mean W), sign(0) = +1, one scale per
matrix; the word embedding has one scale per row and the mean of the whole table (the
official BiT code's BwnQuantizer with embed_layerwise=False). The gradient passes straight
through, dW = g, with no clipping (BiT Sec. 3.2) and no gradient into the scale or the mean.
Means and scales are accumulated in float64 and the sign test is exact, whatever the weight
dtype, and export calls the same `weight_signs_scale`, so the exported sign bits and scales
are exactly the ones the model used.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from bitaccel.golden.formats import ACT_BITS as GOLDEN_ACT_BITS
from bitaccel.golden.formats import code_range

#: Smallest scale alpha used in the forward pass (alpha is clamped to it, here and in export).
ALPHA_MIN = 1e-5
#: Activation bit widths: golden's (1, 2, 4, 8) quantize; 32 is the identity (full precision).
ACT_BITS = (*GOLDEN_ACT_BITS, 32)
#: Weight bit widths: 1 binarizes; 32 is full precision.
WEIGHT_BITS = (1, 32)


def quant_codes(x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor | None, bits: int, signed: bool) -> torch.Tensor:
    """Integer codes (in x's dtype) of BiT's elastic quantizer; same operations as golden.reference.quantize_float."""
    z = x if beta is None else x - beta
    if bits == 1 and signed:
        return torch.where(z >= 0, 1.0, -1.0).to(x.dtype)
    lo, hi = code_range(bits, signed)
    return torch.floor(z / alpha + 0.5).clamp(lo, hi)


def _sum_to(grad: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Sum a broadcast gradient back to the shape of `like` (alpha: (), beta: (C,))."""
    return grad.sum_to_size(like.shape) if like.dim() else grad.sum()


def _pm1(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """+1 where mask, -1 elsewhere, in like's dtype (arithmetic on the mask: torch.where with a bool mask is
    several times slower on the CPU)."""
    return mask.to(like.dtype).mul_(2).sub_(1)


class SignedBinary(torch.autograd.Function):
    """alpha * sign(x - beta), sign(0) = +1 (Eq. 12); STE gradients of Eq. 13 (see module doc).

    Saves the codes and the 0/1 mask 1{|z| <= alpha} instead of z (no recomputation in backward)."""

    @staticmethod
    def forward(ctx, x, alpha, beta):
        z = x if beta is None else x - beta
        code = _pm1(z >= 0, x)
        active = ((z / alpha).abs_() <= 1).to(x.dtype)
        ctx.save_for_backward(code, active, alpha, beta)
        return code * alpha.to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        code, active, alpha, beta = ctx.saved_tensors
        gx = g * active
        galpha = _sum_to(g * code, alpha)
        gbeta = None if beta is None else _sum_to(-gx, beta)
        return gx, galpha, gbeta


class UnsignedBinary(torch.autograd.Function):
    """alpha * 1{(x - beta)/alpha >= 1/2} (Eq. 9, round half up); gradients of Eq. 10 and 11."""

    @staticmethod
    def forward(ctx, x, alpha, beta):
        z = x if beta is None else x - beta
        u = z / alpha
        code = ((u + 0.5) >= 1).to(x.dtype)     # == floor(u + 1/2).clamp(0, 1), golden's rounding
        ctx.save_for_backward(u, code, alpha, beta)
        return code * alpha.to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        u, code, alpha, beta = ctx.saved_tensors
        nonneg = u >= 0
        inside = (nonneg & (u < 1)).to(g.dtype)                          # Eq. 10/11: beta <= x < alpha + beta
        galpha_e = inside * (code - u) + (u >= 1).to(g.dtype)
        gx = g * (nonneg & (u <= 1)).to(g.dtype)
        galpha = _sum_to(g * galpha_e, alpha)
        gbeta = None if beta is None else _sum_to(-(g * inside), beta)
        return gx, galpha, gbeta


class MultiBit(torch.autograd.Function):
    """alpha * clamp(floor((x - beta)/alpha + 1/2), Qn, Qp) with LSQ gradients (see module doc)."""

    @staticmethod
    def forward(ctx, x, alpha, beta, qn: int, qp: int):
        z = x if beta is None else x - beta
        u = z / alpha
        code = torch.floor(u + 0.5).clamp_(qn, qp)
        ctx.save_for_backward(u, code, alpha, beta)
        ctx.qn, ctx.qp = qn, qp
        return alpha * code

    @staticmethod
    def backward(ctx, g):
        u, code, alpha, beta = ctx.saved_tensors
        qn, qp = ctx.qn, ctx.qp
        below, above = u < qn, u > qp
        inside = (~(below | above)).to(g.dtype)
        galpha_e = inside * (code - u) + below.to(g.dtype) * float(qn) + above.to(g.dtype) * float(qp)
        gx = g * inside
        galpha = _sum_to(g * galpha_e, alpha)
        gbeta = None if beta is None else _sum_to(-gx, beta)
        return gx, galpha, gbeta, None, None


def quantize(x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor | None, bits: int, signed: bool) -> torch.Tensor:
    """BiT's elastic quantizer: alpha * code, with the STE gradients of the matching Function.

    x: (..., C); alpha: () > 0; beta: (C,) or None; bits in 1, 2, 4, 8, 32 (32 = identity).
    """
    if bits == 32:
        return x
    if bits == 1:
        return (SignedBinary if signed else UnsignedBinary).apply(x, alpha, beta)
    qn, qp = code_range(bits, signed)
    return MultiBit.apply(x, alpha, beta, qn, qp)


def _ceil_threshold(mean: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The smallest value t of `dtype` with t >= mean (float64), so that w >= t <=> w >= mean for w of `dtype`."""
    if dtype == torch.float64:
        return mean
    t = mean.to(dtype)
    up = torch.nextafter(t, torch.full_like(t, math.inf))
    return torch.where(t.to(torch.float64) < mean, up, t)


_SUM_CHUNK = 1 << 16     # elements per float64 block of `weight_sums` (cache-sized; no whole-matrix float64 copy)


def weight_sums(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum W, sum |W|) over all elements, accumulated in float64 block by block -> two float64 scalars.

    torch's sum(dtype=float64) first copies the whole matrix to float64 (for the word
    embedding, a 94 MB copy every step); float64 blocks of 2^16 elements give the same
    accuracy (float64 sums of float32 values) without it.
    """
    flat = w.detach().reshape(-1)
    total = torch.zeros((), dtype=torch.float64, device=w.device)
    total_abs = torch.zeros((), dtype=torch.float64, device=w.device)
    for block in flat.split(_SUM_CHUNK):
        b64 = block.to(torch.float64, copy=True)     # a copy even for float64 weights (abs_ below)
        total += b64.sum()
        total_abs += b64.abs_().sum()
    return total, total_abs


def weight_mean(w: torch.Tensor) -> torch.Tensor:
    """mean(W) over the whole matrix, accumulated in float64, as a float64 scalar."""
    return weight_sums(w)[0] / w.numel()


def weight_signs_scale(w: torch.Tensor, per_row: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(signs, scale) of BiT weight binarization, without gradient.

    signs = sign(W - mean W) with sign(0) = +1 and the mean over the whole matrix, +-1 in
    w's dtype; scale = mean|W|, float64: shape () per matrix, or (rows, 1) per row (the word
    embedding: per-row scale, global mean, as the official BiT code's embed_layerwise=False).
    Sums are accumulated in float64 and the sign test is exact (w >= mean compared without
    rounding the mean), so float32 weights need no float64 copy.
    """
    w = w.detach()
    total, total_abs = weight_sums(w)
    thr = _ceil_threshold(total / w.numel(), w.dtype)
    signs = _pm1(w >= thr, w)
    scale = w.to(torch.float64, copy=True).abs_().sum(dim=-1, keepdim=True) / w.shape[-1] if per_row else total_abs / w.numel()
    return signs, scale


def word_embedding_signs_scale(weight: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """weight_signs_scale(weight, per_row=True) restricted to the rows `ids` (..., ) -> ((..., H), (..., 1)).

    The mean is over the whole table (as in export); only the looked-up rows are binarized.
    """
    rows = F.embedding(ids, weight.detach())
    thr = _ceil_threshold(weight_mean(weight), weight.dtype)
    signs = _pm1(rows >= thr, rows)
    return signs, rows.to(torch.float64, copy=True).abs_().sum(dim=-1, keepdim=True) / weight.shape[-1]


class BinarizeWeight(torch.autograd.Function):
    """mean|W| * sign(W - mean W) (one scale per matrix); gradient passes straight through, unclipped."""

    @staticmethod
    def forward(ctx, w):
        total, total_abs = weight_sums(w)
        thr = _ceil_threshold(total / w.numel(), w.dtype)
        scale = (total_abs / w.numel()).to(w.dtype)
        return (w >= thr).to(w.dtype).mul_(2 * scale).sub_(scale)     # == signs * scale, exactly (2s - s = s)

    @staticmethod
    def backward(ctx, g):
        return g


class BinaryLinear(torch.autograd.Function):
    """linear(alpha * codes, mean|W| * sign(W - mean W), bias) with an exact int8 forward.

    Forward: y = (alpha * s) * (codes . signs) + bias, the ±1/small-integer product as an int8 x int8
    -> int32 matmul (torch._int_mm; exact, a few times faster than float32 on the CPU), the same
    form golden folds. Backward: the float STE gradients of F.linear(x, s * signs, bias) with the
    binarized weight's pass-through to W (as `binarize_weight`): dx = g W_b, dW = g^T x, dbias = sum g.
    x must be alpha * codes with integer codes in [-128, 127] (`int8_codes`).
    """

    @staticmethod
    def forward(ctx, x, alpha, weight, bias):
        total, total_abs = weight_sums(weight)
        positive = weight >= _ceil_threshold(total / weight.numel(), weight.dtype)
        scale = total_abs / weight.numel()
        codes = torch.round(x / alpha).to(torch.int8)
        signs = positive.to(torch.int8).mul_(2).sub_(1)
        acc = torch._int_mm(codes.reshape(-1, codes.shape[-1]), signs.T)
        y = acc.to(x.dtype).mul_((alpha * scale).to(x.dtype)).reshape(*x.shape[:-1], weight.shape[0])
        ctx.save_for_backward(x, positive, scale)
        ctx.has_bias = bias is not None
        return y if bias is None else y.add_(bias)

    @staticmethod
    def backward(ctx, g):
        x, positive, scale = ctx.saved_tensors
        s = scale.to(g.dtype)
        w_b = positive.to(g.dtype).mul_(2 * s).sub_(s)
        g2 = g.reshape(-1, g.shape[-1])
        gx = (g2 @ w_b).reshape(x.shape)
        gw = g2.T @ x.reshape(-1, x.shape[-1])
        gb = g2.sum(dim=0) if ctx.has_bias else None
        return gx, None, gw, gb


def int8_codes(bits: int, signed: bool) -> bool:
    """Whether codes of this kind fit int8 (BinaryLinear's forward)."""
    lo, hi = code_range(bits, signed)
    return -128 <= lo and hi <= 127


def binarize_weight(w: torch.Tensor) -> torch.Tensor:
    """mean|W| * sign(W - mean W), one scale per matrix, with the pass-through gradient."""
    return BinarizeWeight.apply(w)


def quantized_linear(quantizer: "ActQuantizer", linear: "BitLinear", x: torch.Tensor, exact: bool) -> torch.Tensor:
    """linear(quantizer(x)), x (..., K) -> (..., N).

    exact=True (eval mode), with a quantizing site and binary weights: computed as golden
    folds it, v = (alpha * s) * acc + bias with acc = codes . signs an exact integer sum
    (an int8 matmul on the CPU when the codes fit int8, else float32, exact below 2^24), so a
    tie acc = 0 gives exactly the bias, as in the integer model; no gradient into the weights.
    exact=False (training): `BinaryLinear` on the CPU when the codes fit int8 (the same exact
    forward, the STE gradients of the fake-quant product), else the fake-quant product
    (alpha * codes) . (s * signs) itself. They differ only by floating-point rounding.
    """
    xq = quantizer(x)
    if quantizer.bits == 32 or linear.weight_bits != 1:
        return linear(xq)
    if not exact:
        if xq.device.type == "cpu" and int8_codes(quantizer.bits, quantizer.signed):
            return BinaryLinear.apply(xq, quantizer.effective_alpha().detach(), linear.weight, linear.bias)
        return linear(xq)
    alpha = quantizer.effective_alpha().to(xq.dtype)
    signs, scale = linear.signs_scale()
    codes = torch.round(xq / alpha)
    if xq.device.type == "cpu" and int8_codes(quantizer.bits, quantizer.signed):
        int8_signs = linear._cached("int8_signs", lambda: signs.to(torch.int8))
        acc = torch._int_mm(codes.to(torch.int8).reshape(-1, codes.shape[-1]), int8_signs.T)
        acc = acc.to(xq.dtype).reshape(*codes.shape[:-1], signs.shape[0])
    else:
        acc = F.linear(codes, signs.to(xq.dtype))
    y = acc * (alpha * scale.to(xq.dtype))
    return y if linear.bias is None else y + linear.bias


def quantized_matmul(a: torch.Tensor, alpha_a: torch.Tensor, b: torch.Tensor, alpha_b: torch.Tensor) -> torch.Tensor:
    """a @ b for quantized a = alpha_a * codes_a, b = alpha_b * codes_b, as (alpha_a * alpha_b) * (exact integer product).

    Eval-mode form of P.V (no gradient through the codes)."""
    alpha_a, alpha_b = alpha_a.to(a.dtype), alpha_b.to(a.dtype)
    acc = torch.matmul(torch.round(a / alpha_a), torch.round(b / alpha_b))
    return acc * (alpha_a * alpha_b)


class BoolAttention(torch.autograd.Function):
    """BiBERT's Bi-Attention: 1{score >= 0} in {0, 1} (no softmax); STE gradient g * 1{|score| <= 1}.

    Masked keys must carry score -inf (they give 0 and no gradient). Training-only baseline.
    """

    @staticmethod
    def forward(ctx, s):
        ctx.save_for_backward(s)
        return (s >= 0).to(s.dtype)

    @staticmethod
    def backward(ctx, g):
        (s,) = ctx.saved_tensors
        return g * (s.abs() <= 1).to(g.dtype)


# ----------------------------------------------------------------------------- modules
class ActQuantizer(nn.Module):
    """One activation quantization site: learnable scale alpha (scalar) and threshold beta (per feature).

    Parameters
    ----------
    bits : 1, 2, 4, 8, or 32 (identity: the full-precision teacher).
    signed : {-1, +1} / two's complement codes (True) or the {0, 1} / unsigned set (False).
    channels : length of beta (features of the last axis); 0 = no beta at this site.
    learn_alpha : alpha is trained (True) or fixed at its first-batch value (False).
    learn_beta : beta is trained (True) or fixed at 0 (False).

    alpha is initialized lazily from the first batch it sees in training mode (or in
    `calibrating` mode), from z = x - beta over every element of that batch (padding included,
    like golden.random_artifact): alpha = mean|z| for signed 1-bit sites (BiT Eq. 6), otherwise
    the LSQ initialization 2 * mean|z| / sqrt(Qp). In the forward pass alpha is clamped to
    >= ALPHA_MIN. An eval-mode forward with an uninitialized alpha raises RuntimeError.
    """

    def __init__(self, bits: int = 32, signed: bool = True, channels: int = 0,
                 learn_alpha: bool = True, learn_beta: bool = True):
        super().__init__()
        if bits not in ACT_BITS:
            raise ValueError(f"activation bits must be one of {ACT_BITS}, not {bits!r}")
        self.bits, self.signed = bits, bool(signed)
        self.alpha = nn.Parameter(torch.tensor(1.0), requires_grad=learn_alpha)
        self.beta = nn.Parameter(torch.zeros(channels), requires_grad=learn_beta) if channels else None
        self.register_buffer("initialized", torch.tensor(False))
        self._ready = False          # python mirror of `initialized` (no device sync per forward)
        self.calibrating = False

    def extra_repr(self) -> str:
        beta = 0 if self.beta is None else self.beta.numel()
        return f"bits={self.bits}, signed={self.signed}, beta={beta}"

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._ready = bool(self.initialized)

    def set_bits(self, bits: int) -> None:
        """Change the bit width; alpha is re-initialized on the next training batch if it changed."""
        if bits not in ACT_BITS:
            raise ValueError(f"activation bits must be one of {ACT_BITS}, not {bits!r}")
        if bits != self.bits:
            self.bits = bits
            self.reset_alpha()

    def reset_alpha(self) -> None:
        """Forget alpha: it is set again from the next batch seen in training/calibration."""
        self.initialized.fill_(False)
        self._ready = False

    @torch.no_grad()
    def init_alpha(self, x: torch.Tensor) -> None:
        """alpha from statistics of x (see class doc)."""
        z = x.detach().to(torch.float64)
        if self.beta is not None:
            z = z - self.beta.detach().to(torch.float64)
        mean_abs = float(z.abs().mean())
        if self.bits == 1 and self.signed:
            alpha = mean_abs
        else:
            alpha = 2.0 * mean_abs / math.sqrt(code_range(self.bits, self.signed)[1])
        self.alpha.fill_(max(alpha, ALPHA_MIN))
        self.initialized.fill_(True)
        self._ready = True

    def effective_alpha(self) -> torch.Tensor:
        """alpha as used in the forward pass: clamped to >= ALPHA_MIN."""
        return self.alpha.clamp_min(ALPHA_MIN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., C) -> alpha * codes, same shape (identity at 32 bits)."""
        if self.bits == 32:
            return x
        if not self._ready:
            if not (self.training or self.calibrating):
                raise RuntimeError("quantizer alpha is not initialized: train on a batch or call calibrate() first")
            self.init_alpha(x)
        return quantize(x, self.effective_alpha(), self.beta, self.bits, self.signed)


class BitLinear(nn.Linear):
    """nn.Linear whose weight is binarized (weight_bits=1, one scale per matrix) in the forward pass."""

    def __init__(self, in_features: int, out_features: int, weight_bits: int = 32, bias: bool = True):
        super().__init__(in_features, out_features, bias=bias)
        if weight_bits not in WEIGHT_BITS:
            raise ValueError(f"weight bits must be one of {WEIGHT_BITS}, not {weight_bits!r}")
        self.weight_bits = weight_bits

    def extra_repr(self) -> str:
        return super().extra_repr() + f", weight_bits={self.weight_bits}"

    def effective_weight(self) -> torch.Tensor:
        """The weight the forward multiplies by: binarized (weight_bits=1) or the weight itself.

        In eval mode without autograd the binarized weight is cached (`_cached`)."""
        if self.weight_bits != 1:
            return self.weight
        if torch.is_grad_enabled() and self.weight.requires_grad:
            return binarize_weight(self.weight)
        return self._cached("weight", lambda: binarize_weight(self.weight.detach()))

    def signs_scale(self) -> tuple[torch.Tensor, torch.Tensor]:
        """weight_signs_scale(weight); cached in eval mode (`_cached`)."""
        return self._cached("signs_scale", lambda: weight_signs_scale(self.weight))

    def _cached(self, what: str, compute):
        """compute() in training mode; in eval mode computed once and kept until the weight's storage or
        version counter changes or the module switches mode. (The version counter alone is not enough:
        fused optimizers update parameters without bumping it, so training mode never caches.)"""
        if self.training:
            return compute()
        key = (what, self.weight.data_ptr(), self.weight._version, self.weight.dtype)
        cache = self.__dict__.setdefault("_binary_cache", {})
        if cache.get(what, (None,))[0] != key:
            cache[what] = (key, compute())
        return cache[what][1]

    def train(self, mode: bool = True):
        self.__dict__.pop("_binary_cache", None)
        return super().train(mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.effective_weight(), self.bias)


class BitEmbedding(nn.Embedding):
    """nn.Embedding whose rows are binarized (weight_bits=1): one scale per row, the mean of the whole table.

    Only the looked-up rows are binarized (plus one float64-accumulated mean of the table per forward).
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None, weight_bits: int = 32):
        super().__init__(num_embeddings, embedding_dim, padding_idx=padding_idx)
        if weight_bits not in WEIGHT_BITS:
            raise ValueError(f"weight bits must be one of {WEIGHT_BITS}, not {weight_bits!r}")
        self.weight_bits = weight_bits

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = F.embedding(ids, self.weight, self.padding_idx)
        if self.weight_bits != 1:
            return rows
        signs, scale = word_embedding_signs_scale(self.weight, ids)
        return rows + (signs * scale.to(rows.dtype) - rows).detach()     # pass-through gradient to the rows
