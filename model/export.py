"""Export a trained BiT model to a bitaccel artifact (docs/artifact.md).

The float tensors are read from the model exactly as its forward pass uses them:
sign bits and scales from `model.quant.weight_signs_scale` (float64), alpha clamped like
the forward (`ActQuantizer.effective_alpha`), beta, biases, LayerNorm, embeddings and the
head; then golden.fold.fold_all derives the integer tensors and the artifact is
validated and written atomically. The eval-mode model then equals
golden.reference.FloatModel on the artifact's tensors.

Two heads (the artifact's ``head``): a `BitBertForSequenceClassification` exports its binary
pooler and full-precision classifier ("classifier"); a `BitBertForSpans` (SQuAD) exports its
full-precision ``qa_outputs`` as ``span.weight`` (2, H) / ``span.bias`` (2) and has no pooler
("span"). Both pass the same checks (`check_exportable`).

Numeric format (`choose_numerics`), everything else at NumericFormat's defaults:

* gamma_frac: the largest value in [0, 14] for which every LayerNorm gamma rounds into
  int16 (most precision that fits; 11 if max|gamma| is in [8, 16)).
* residual_frac: the largest value in [0, 14] with R * 2^residual_frac <= 2^15 - 1, where R
  is the largest of (a) the exact bound of an embedding sum, max word scale + max|position|
  + max|token type|, (b) max|LayerNorm beta|, and (c) twice the largest |value| of the
  residual stream (every LayerNorm input and output, every O / FFN2 output) measured
  in eval mode on `sample` inputs, by default 8 seeded random token sequences of
  min(64, max_position) tokens. The factor 2 is headroom for real inputs; values beyond the
  range saturate in the integer model (never wrap).
"""
from __future__ import annotations

import os

import numpy as np
import torch

from bitaccel.golden.artifact import Artifact, save_artifact
from bitaccel.golden.config import LINEARS, ModelConfig, site_has_beta
from bitaccel.golden.fold import fold_all, to_fixed
from bitaccel.golden.formats import GAMMA_BITS, RESIDUAL_BITS, NumericFormat
from bitaccel.golden.packing import pack_bits, pm1_to_bits

from .bit_bert import BitBertForSequenceClassification
from .quant import weight_signs_scale
from .span_head import BitBertForSpans

EXPORT_ACT_BITS = (1, 2, 4, 8)


def head_kind(model) -> str:
    """The artifact head of a model: "span" for BitBertForSpans, else "classifier"."""
    return "span" if isinstance(model, BitBertForSpans) else "classifier"


def model_config(model: BitBertForSequenceClassification | BitBertForSpans) -> ModelConfig:
    """golden ModelConfig of a model (sizes from its Hugging Face config; num_labels 2 for a span head)."""
    c = model.config
    labels = 2 if head_kind(model) == "span" else model.num_labels
    return ModelConfig(vocab_size=c.vocab_size, hidden=c.hidden_size, layers=c.num_hidden_layers,
                       heads=c.num_attention_heads, ffn=c.intermediate_size, max_position=c.max_position_embeddings,
                       type_vocab=c.type_vocab_size, num_labels=labels,
                       layer_norm_eps=float(c.layer_norm_eps)).validate()


def check_exportable(model: BitBertForSequenceClassification | BitBertForSpans) -> None:
    """Raise ValueError, with the reason, unless the model is a W1 two-set softmax model with calibrated alphas."""
    if not isinstance(model, (BitBertForSequenceClassification, BitBertForSpans)):
        raise ValueError(f"export needs a BitBertForSequenceClassification or BitBertForSpans, "
                         f"not {type(model).__name__}")
    if model.weight_bits != 1:
        raise ValueError(f"export needs binary weights (weight_bits=1); this model has weight_bits={model.weight_bits}")
    bad = {n: q.bits for n, q in model.named_sites() if q.bits not in EXPORT_ACT_BITS}
    if bad:
        name, bits = next(iter(bad.items()))
        raise ValueError(f"export needs activation bits in {EXPORT_ACT_BITS} at every site; {name} has {bits} "
                         f"({len(bad)} site(s) unsupported)")
    if not model.two_set:
        raise ValueError("two_set=False (BinaryBERT-style signed activations after softmax/ReLU) is a training-only "
                         "baseline: the hardware implements BiT's two-set scheme; export refuses it")
    if model.bi_attention:
        raise ValueError("bi_attention=True (BiBERT Bi-Attention without softmax) is a training-only baseline: "
                         "the hardware computes a softmax; export refuses it")
    if model.ffn_act != "relu":
        raise ValueError(f"export needs the ReLU FFN of BiT students (the {{0,1}} ffn2.in site folds ReLU); "
                         f"this model uses {model.ffn_act!r}")
    missing = model.uninitialized_sites()
    if missing:
        raise ValueError(f"alpha of {len(missing)} site(s) was never initialized (first: {missing[0]}): "
                         "train the model or call model.calibrate(batch) before export")


def _f32(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().to(torch.float32).numpy().copy()


def _linear(t: dict, name: str, lin) -> None:
    signs, scale = weight_signs_scale(lin.weight)
    t[f"{name}.bits"] = pack_bits(pm1_to_bits(signs.cpu().numpy().astype(np.int8)))
    t[f"{name}.scale"] = np.array(float(scale), np.float64)
    t[f"{name}.bias"] = _f32(lin.bias)


def _layernorm(t: dict, name: str, ln) -> None:
    t[f"{name}.gamma"] = _f32(ln.weight)
    t[f"{name}.beta"] = _f32(ln.bias)


def float_tensors(model: BitBertForSequenceClassification, word_bits: bool = True) -> dict[str, np.ndarray]:
    """The float tensors of the artifact (names of docs/artifact.md), before folding.

    word_bits=False leaves out the packed word-embedding signs (vocab x hidden bits: the
    integer training path computes the looked-up rows' signs itself, with the same function).
    """
    emb = model.embeddings
    signs, scale = weight_signs_scale(emb.word.weight, per_row=True)
    t: dict[str, np.ndarray] = {
        "embeddings.word.scale": scale[:, 0].cpu().numpy().astype(np.float64),
        "embeddings.position": _f32(emb.position.weight),
        "embeddings.token_type": _f32(emb.token_type.weight),
    }
    if head_kind(model) == "span":           # qa_outputs rows: start, end
        t["span.weight"] = _f32(model.head.qa_outputs.weight)
        t["span.bias"] = _f32(model.head.qa_outputs.bias)
    else:
        t["classifier.weight"] = _f32(model.classifier.weight)
        t["classifier.bias"] = _f32(model.classifier.bias)
        _linear(t, "pooler", model.pooler)
    if word_bits:
        t["embeddings.word.bits"] = pack_bits(pm1_to_bits(signs.cpu().numpy().astype(np.int8)))
    _layernorm(t, "embeddings.ln", emb.ln)
    for i, layer in enumerate(model.layers):
        for lin in LINEARS:
            _linear(t, f"layers.{i}.{lin}", layer.linears[lin])
        _layernorm(t, f"layers.{i}.ln1", layer.ln1)
        _layernorm(t, f"layers.{i}.ln2", layer.ln2)
    for name, q in model.named_sites():
        t[f"{name}.alpha"] = np.array(float(q.effective_alpha().detach().to(torch.float64)), np.float64)
        if site_has_beta(name):
            t[f"{name}.beta"] = _f32(q.beta)
    return t


@torch.no_grad()
def residual_max_abs(model: BitBertForSequenceClassification, sample: dict | None = None, seed: int = 0) -> float:
    """Largest |value| on the residual stream in eval mode: LayerNorm inputs/outputs, O and FFN2 outputs.

    sample: {"input_ids", optional "attention_mask", "token_type_ids"} tensors; default 8 seeded
    random sequences of min(64, max_position) tokens.
    """
    c = model.config
    if sample is None:
        gen = torch.Generator().manual_seed(seed)
        ids = torch.randint(0, c.vocab_size, (8, min(64, c.max_position_embeddings)), generator=gen)
        sample = {"input_ids": ids}
    device = next(model.parameters()).device
    sample = {k: v.to(device) for k, v in sample.items()}
    seen = [0.0]

    def hook(module, inputs, output):
        for x in (*inputs, output):
            seen[0] = max(seen[0], float(x.detach().abs().max()))

    # LayerNorm inputs (embedding sum, y + h) and outputs; a layer's dropout sees the O and FFN2 outputs y
    modules = [model.embeddings.ln] + [m for layer in model.layers for m in (layer.ln1, layer.ln2, layer.dropout)]
    handles = [m.register_forward_hook(hook) for m in modules]
    was_training, integer_format = model.training, model.integer_format
    try:
        model.eval()
        model.integer_format = None             # the float forward's values (the hooks sit on its modules)
        model(sample["input_ids"], sample.get("attention_mask"), sample.get("token_type_ids"))
    finally:
        for hd in handles:
            hd.remove()
        model.train(was_training)
        model.integer_format = integer_format
    return seen[0]


def choose_numerics(model: BitBertForSequenceClassification, tensors: dict[str, np.ndarray],
                    sample: dict | None = None) -> NumericFormat:
    """NumericFormat with gamma_frac and residual_frac chosen by the rule in the module doc."""
    lns = ["embeddings.ln"] + [f"layers.{i}.ln{j}" for i in range(len(model.layers)) for j in (1, 2)]
    gamma_frac = None
    for f in range(GAMMA_BITS - 2, -1, -1):
        try:
            for ln in lns:
                to_fixed(tensors[f"{ln}.gamma"], f, GAMMA_BITS, ln)
        except ValueError:
            continue
        gamma_frac = f
        break
    if gamma_frac is None:
        worst = max(float(np.abs(tensors[f"{ln}.gamma"]).max()) for ln in lns)
        raise ValueError(f"a LayerNorm gamma of magnitude {worst:.4g} does not fit {GAMMA_BITS}-bit fixed point")
    emb_bound = (float(tensors["embeddings.word.scale"].max()) + float(np.abs(tensors["embeddings.position"]).max())
                 + float(np.abs(tensors["embeddings.token_type"]).max()))
    ln_beta = max(float(np.abs(tensors[f"{ln}.beta"]).max()) for ln in lns)
    r = max(emb_bound, ln_beta, 2.0 * residual_max_abs(model, sample), 1e-9)
    limit = (1 << (RESIDUAL_BITS - 1)) - 1
    residual_frac = max((f for f in range(0, RESIDUAL_BITS - 1) if r * 2.0 ** f <= limit), default=None)
    if residual_frac is None:
        raise ValueError(f"the residual stream reaches {r / 2:.4g}: no residual_frac fits {RESIDUAL_BITS} bits")
    return NumericFormat(residual_frac=residual_frac, gamma_frac=gamma_frac).validate()


@torch.no_grad()
def fold_constants(model: BitBertForSequenceClassification, numerics: NumericFormat) -> dict[str, np.ndarray]:
    """The artifact tensors of `model` at a given numeric format (float tensors + golden.fold.fold_all),
    without the packed word-embedding signs: what model/integer_path.py computes with."""
    check_exportable(model)
    quant = {name: q.bits for name, q in model.named_sites()}
    tensors = float_tensors(model, word_bits=False)
    tensors.update(fold_all(model_config(model), numerics.validate(), quant, tensors, head_kind(model)))
    return tensors


def export(model: BitBertForSequenceClassification, out_path: str | os.PathLike, tokenizer_ref: dict | None = None,
           producer: str = "bitaccel export", numerics: NumericFormat | None = None,
           sample: dict | None = None) -> Artifact:
    """Write `model` as an artifact to out_path and return it.

    model : a W1 two-set model (BitBertForSequenceClassification or BitBertForSpans) with act_bits
        in {1, 2, 4, 8} and initialized alphas (ValueError with the reason otherwise).
    tokenizer_ref : the manifest's tokenizer reference (default {"kind": "none"}).
    numerics : fixed-point format; default the model's frozen `integer_format` (integer-exact
        mode, model/integer_path.py) if set, else `choose_numerics(model, tensors, sample)`.
    """
    check_exportable(model)
    config = model_config(model)
    quant = {name: q.bits for name, q in model.named_sites()}
    tensors = float_tensors(model)
    fmt = (numerics or model.integer_format or choose_numerics(model, tensors, sample)).validate()
    head = head_kind(model)
    tensors.update(fold_all(config, fmt, quant, tensors, head))
    art = Artifact(config=config, numerics=fmt, quant=quant, tensors=tensors,
                   tokenizer=dict(tokenizer_ref) if tokenizer_ref is not None else {"kind": "none"},
                   producer=producer, head=head).validate()
    save_artifact(art, out_path)
    return art
