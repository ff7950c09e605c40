"""BiT BERT for sequence classification / regression, at any (weight_bits, act_bits).

`BitBertForSequenceClassification` is a BERT encoder with a pooler and a classifier whose
quantizers sit exactly at golden's sites (golden.config LAYER_SITES, MODEL_SITES,
BETA_SITES). Per layer, with h the residual stream (B, S, H):

    q/k/v  = {q,k,v}.out( Linear_{q,k,v}( {q,k,v}.in(h) ) )       .in signed + beta, .out signed
    scores = q k^T / sqrt(d_head), padded keys -> -inf
    ctx    = probs(softmax(scores)) v                              probs: unsigned {0,1}, no beta
    h1     = LN1( Linear_o( o.in(ctx) ) + h )                      o.in: signed + beta
    h2     = LN2( Linear_ffn2( ffn2.in( act(Linear_ffn1( ffn1.in(h1) )) ) ) + h1 )
                                                                   ffn1.in signed + beta, ffn2.in unsigned + beta
then pooled = tanh(Linear_pooler(pooler.in(h[:, 0]))) and logits = classifier(pooled).
Every Linear and the word embedding (per-row scale) are binarized when weight_bits = 1;
LayerNorm, residuals, biases, position / token-type embeddings and the classifier stay
in full precision. Students (anything but 32/32) use ReLU in the FFN; the 32/32 teacher
keeps the checkpoint's activation and is then exactly Hugging Face's
BertForSequenceClassification. In eval mode a W1 two-set model computes exactly
golden.reference.FloatModel on its exported tensors (model/export.py).

Baselines / ablations (BiT Table 2 and appendix A.2, A.3), constructor flags:
* two_set=False: every site signed ({-1, +1} after softmax and ReLU too; BinaryBERT-style).
* learn_alpha=False: alpha fixed at its first-batch statistics; learn_beta=False: beta = 0.
  (strong baseline: both off; "+ learnable scale": learn_alpha; BiT: both on.)
* bi_attention=True: BiBERT's Bi-Attention, probabilities = 1{score >= 0} without softmax.
two_set=False and bi_attention=True are training-only (export refuses them).

Integer-exact mode: with `integer_format` set (a golden NumericFormat, frozen), `forward`
computes exactly what golden.model.IntegerModel computes on the model's export at that
format (model/integer_path.py), with straight-through gradients to the float parameters;
the folded constants are recomputed whenever a parameter changed. The format is saved
with the model. `integer_format = None` (the default) is the float fake-quant forward.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os

import torch
from torch import nn
from torch.nn import functional as F
from transformers import BertConfig, BertForSequenceClassification
from transformers.activations import ACT2FN

from bitaccel.golden.config import BETA_SITES, LAYER_SITES, LINEARS, MODEL_SITES

from .quant import (ACT_BITS, WEIGHT_BITS, ActQuantizer, BitEmbedding, BitLinear, BoolAttention, quantized_linear,
                    quantized_matmul)

#: File written by `save` next to config.json and model.safetensors.
META_FILE = "bitaccel_model.json"
WEIGHTS_FILE = "model.safetensors"


@dataclasses.dataclass
class BitBertOutput:
    """Model outputs.

    logits : (B, num_labels).
    hidden_states : (embedding LayerNorm output, block 1 output, ..., block L output), each (B, S, H);
        the representations distilled by L_reps (BiT Eq. 2).
    attentions : per layer the attention scores q k^T / sqrt(d) before masking and softmax,
        (B, heads, S, S), when output_attentions=True; else None.
    loss : cross-entropy (classification) or MSE (num_labels = 1) when labels are given; else None.
    """

    logits: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...]
    attentions: tuple[torch.Tensor, ...] | None = None
    loss: torch.Tensor | None = None


def _key(site: str) -> str:
    """'q.in' -> 'q_in' (nn.ModuleDict keys cannot hold dots)."""
    return site.replace(".", "_")


class BitEmbeddings(nn.Module):
    """Word (binarized per row) + token type + position embeddings, LayerNorm, dropout."""

    def __init__(self, config: BertConfig, weight_bits: int):
        super().__init__()
        h = config.hidden_size
        self.word = BitEmbedding(config.vocab_size, h, padding_idx=config.pad_token_id, weight_bits=weight_bits)
        self.position = nn.Embedding(config.max_position_embeddings, h)
        self.token_type = nn.Embedding(config.type_vocab_size, h)
        self.ln = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, ids: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
        """ids, types (B, S) -> (B, S, H)."""
        pos = torch.arange(ids.shape[1], device=ids.device)
        e = self.word(ids) + self.token_type(types) + self.position(pos)[None]
        return self.dropout(self.ln(e))


class BitLayer(nn.Module):
    """One encoder layer; `sites` holds the 10 quantizers of golden.config.LAYER_SITES."""

    def __init__(self, config: BertConfig, weight_bits: int, act_bits: int, two_set: bool, learn_alpha: bool,
                 learn_beta: bool, bi_attention: bool, ffn_act: str):
        super().__init__()
        h, f = config.hidden_size, config.intermediate_size
        self.heads = config.num_attention_heads
        self.head_dim = h // self.heads
        self.bi_attention = bi_attention
        shapes = {"q": (h, h), "k": (h, h), "v": (h, h), "o": (h, h), "ffn1": (h, f), "ffn2": (f, h)}
        self.linears = nn.ModuleDict({n: BitLinear(*shapes[n], weight_bits=weight_bits) for n in LINEARS})
        self.sites = nn.ModuleDict({
            _key(s): ActQuantizer(act_bits, signed or not two_set,
                                  (f if s == "ffn2.in" else h) if s in BETA_SITES else 0, learn_alpha, learn_beta)
            for s, signed in LAYER_SITES.items()})
        self.ln1 = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.ln2 = nn.LayerNorm(h, eps=config.layer_norm_eps)
        self.act = ACT2FN[ffn_act]
        self.attn_dropout = nn.Dropout(config.attention_probs_dropout_prob)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        return x.view(b, s, self.heads, self.head_dim).transpose(1, 2)   # (B, nh, S, d)

    def forward(self, h: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h (B, S, H), valid (B, S) bool -> (block output (B, S, H), raw scores (B, nh, S, S)).

        In eval mode the binary matmuls are exact integer sums times one scale
        (quant.quantized_linear / quantized_matmul), as golden folds them.
        """
        exact, sites, lin = not self.training, self.sites, self.linears
        q, k, v = (self._heads(sites[f"{n}_out"](quantized_linear(sites[f"{n}_in"], lin[n], h, exact))) for n in "qkv")
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        masked = scores.masked_fill(~valid[:, None, None, :], float("-inf"))
        if self.bi_attention:
            probs = BoolAttention.apply(masked)
        else:
            probs = sites["probs"](torch.softmax(masked, dim=-1))
        if exact and not self.bi_attention and sites["probs"].bits != 32 and sites["v_out"].bits != 32:
            ctx = quantized_matmul(probs, sites["probs"].effective_alpha(), v, sites["v_out"].effective_alpha())
        else:
            ctx = torch.matmul(self.attn_dropout(probs), v)
        ctx = ctx.transpose(1, 2).reshape(h.shape)
        y = self.dropout(quantized_linear(sites["o_in"], lin["o"], ctx, exact))
        h1 = self.ln1(y + h)
        f = self.act(quantized_linear(sites["ffn1_in"], lin["ffn1"], h1, exact))
        y2 = self.dropout(quantized_linear(sites["ffn2_in"], lin["ffn2"], f, exact))
        return self.ln2(y2 + h1), scores


#: `format` of a saved BitBertForSequenceClassification folder (bitaccel_model.json).
MODEL_FORMAT = "bitaccel-bit-bert"
#: Constructor flags recorded in bitaccel_model.json, besides the config.
FLAG_NAMES = ("weight_bits", "act_bits", "two_set", "learn_alpha", "learn_beta", "bi_attention", "ffn_act")


def save_model_folder(model, folder: str | os.PathLike, fmt: str, extra: dict | None = None) -> None:
    """Write `model` (a BiT model with .config, .flags()) as config.json, bitaccel_model.json
    ({format: fmt, version: 1, flags, extra}) and model.safetensors into `folder`."""
    from safetensors.torch import save_file

    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    model.config.save_pretrained(folder)
    with open(os.path.join(folder, META_FILE), "w") as f:
        json.dump({"format": fmt, "version": 1, **model.flags(), **(extra or {})}, f, indent=1, sort_keys=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(folder, WEIGHTS_FILE))


def load_model_folder(cls, folder: str | os.PathLike, fmt: str, what: str):
    """Inverse of `save_model_folder` for class `cls` -> (meta, model); FileNotFoundError / ValueError
    with the reason (no bitaccel_model.json, another format)."""
    from safetensors.torch import load_file

    folder = os.fspath(folder)
    meta_path = os.path.join(folder, META_FILE)
    if not os.path.exists(meta_path):
        raise FileNotFoundError(f"{folder}: no {META_FILE}; a Hugging Face checkpoint loads with from_pretrained()")
    with open(meta_path) as f:
        meta = json.load(f)
    if meta.get("format") != fmt or meta.get("version") != 1:
        raise ValueError(f"{meta_path}: not a bitaccel {what} (format {meta.get('format')!r}, "
                         f"version {meta.get('version')!r})")
    model = cls(BertConfig.from_pretrained(folder), **{k: meta[k] for k in FLAG_NAMES})
    model.load_state_dict(load_file(os.path.join(folder, WEIGHTS_FILE)))
    return meta, model


class BitBertForSequenceClassification(nn.Module):
    """BERT + pooler + classifier with BiT quantization (see module doc).

    Parameters
    ----------
    config : a transformers.BertConfig (absolute positions, encoder only); num_labels from it.
    weight_bits : 1 (binary weights) or 32.
    act_bits : 1, 2, 4, 8 or 32 (activation bits at every site; 32 = no quantization).
    two_set, learn_alpha, learn_beta, bi_attention : baselines / ablations (module doc).
    ffn_act : FFN activation; default "relu" for students, the checkpoint's hidden_act for 32/32.
    """

    def __init__(self, config: BertConfig, weight_bits: int = 32, act_bits: int = 32, two_set: bool = True,
                 learn_alpha: bool = True, learn_beta: bool = True, bi_attention: bool = False, ffn_act: str | None = None):
        super().__init__()
        if weight_bits not in WEIGHT_BITS:
            raise ValueError(f"weight_bits must be one of {WEIGHT_BITS}, not {weight_bits!r}")
        if act_bits not in ACT_BITS:
            raise ValueError(f"act_bits must be one of {ACT_BITS}, not {act_bits!r}")
        if getattr(config, "position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"only absolute position embeddings are supported, not {config.position_embedding_type!r}")
        if getattr(config, "is_decoder", False):
            raise ValueError("decoder BERT configs are not supported")
        if config.hidden_size % config.num_attention_heads:
            raise ValueError(f"hidden_size {config.hidden_size} is not a multiple of heads {config.num_attention_heads}")
        self.config = config
        self.weight_bits, self.act_bits = weight_bits, act_bits
        self.two_set, self.learn_alpha, self.learn_beta, self.bi_attention = two_set, learn_alpha, learn_beta, bi_attention
        teacher = weight_bits == 32 and act_bits == 32 and not bi_attention
        self.ffn_act = ffn_act or (config.hidden_act if teacher else "relu")
        if not isinstance(self.ffn_act, str) or self.ffn_act not in ACT2FN:
            raise ValueError(f"unknown FFN activation {self.ffn_act!r}")
        flags = (weight_bits, act_bits, two_set, learn_alpha, learn_beta, bi_attention, self.ffn_act)
        h = config.hidden_size
        self.embeddings = BitEmbeddings(config, weight_bits)
        self.layers = nn.ModuleList(BitLayer(config, *flags) for _ in range(config.num_hidden_layers))
        self.pooler = BitLinear(h, h, weight_bits=weight_bits)
        self.sites = nn.ModuleDict({_key(s): ActQuantizer(act_bits, signed or not two_set, h if s in BETA_SITES else 0,
                                                          learn_alpha, learn_beta)
                                    for s, signed in MODEL_SITES.items()})
        drop = config.classifier_dropout if getattr(config, "classifier_dropout", None) is not None \
            else config.hidden_dropout_prob
        self.classifier_dropout = nn.Dropout(drop)
        self.classifier = nn.Linear(h, config.num_labels)
        self.integer_format = None      # golden NumericFormat: integer-exact mode (module doc)
        self._integer_cache = None      # (parameter versions, IntegerPath)

    # ------------------------------------------------------------------ construction
    @property
    def num_labels(self) -> int:
        return self.classifier.out_features

    def flags(self) -> dict:
        """Constructor arguments besides the config (saved with the model)."""
        return {"weight_bits": self.weight_bits, "act_bits": self.act_bits, "two_set": self.two_set,
                "learn_alpha": self.learn_alpha, "learn_beta": self.learn_beta, "bi_attention": self.bi_attention,
                "ffn_act": self.ffn_act}

    @classmethod
    def from_hf(cls, hf: BertForSequenceClassification, **flags) -> "BitBertForSequenceClassification":
        """A model with the weights of an in-memory Hugging Face BertForSequenceClassification."""
        model = cls(hf.config, **flags)
        model.load_hf_weights(hf)
        return model

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, num_labels: int = 2, weight_bits: int = 32, act_bits: int = 32,
                        seed: int = 0, **flags) -> "BitBertForSequenceClassification":
        """Load any Hugging Face BERT checkpoint from a local folder (BertModel or BertForSequenceClassification).

        Sizes come from its config.json. Weights absent from the checkpoint (pooler,
        classifier, or a classifier with another num_labels) are initialized as Hugging
        Face does, from torch's RNG seeded with `seed`. No network access.
        """
        if os.path.exists(os.path.join(os.fspath(path), META_FILE)):
            raise ValueError(f"{path} holds a bitaccel model saved with save(): load it with "
                             f"{cls.__name__}.load() (and from_teacher() for another precision)")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            hf = BertForSequenceClassification.from_pretrained(os.fspath(path), num_labels=num_labels,
                                                               ignore_mismatched_sizes=True, local_files_only=True)
        return cls.from_hf(hf, weight_bits=weight_bits, act_bits=act_bits, **flags)

    @torch.no_grad()
    def load_hf_weights(self, hf: BertForSequenceClassification) -> None:
        """Copy every weight of a Hugging Face BertForSequenceClassification with the same shape."""
        bert = hf.bert
        pairs = [
            (self.embeddings.word, bert.embeddings.word_embeddings),
            (self.embeddings.position, bert.embeddings.position_embeddings),
            (self.embeddings.token_type, bert.embeddings.token_type_embeddings),
            (self.embeddings.ln, bert.embeddings.LayerNorm),
            (self.pooler, bert.pooler.dense),
            (self.classifier, hf.classifier),
        ]
        for mine, theirs in zip(self.layers, bert.encoder.layer):
            att = theirs.attention
            pairs += [(mine.linears["q"], att.self.query), (mine.linears["k"], att.self.key),
                      (mine.linears["v"], att.self.value), (mine.linears["o"], att.output.dense),
                      (mine.ln1, att.output.LayerNorm), (mine.linears["ffn1"], theirs.intermediate.dense),
                      (mine.linears["ffn2"], theirs.output.dense), (mine.ln2, theirs.output.LayerNorm)]
        for mine, theirs in pairs:
            for name in ("weight", "bias"):
                src = getattr(theirs, name, None)
                if src is not None:
                    getattr(mine, name).copy_(src)

    @classmethod
    def from_teacher(cls, teacher: "BitBertForSequenceClassification", weight_bits: int, act_bits: int,
                     **flags) -> "BitBertForSequenceClassification":
        """A student initialized from `teacher` (BiT Algorithm 1, line 3: Quantize(h_teacher, b_w, b_a)).

        All weights, betas and alphas are copied: multi-distillation carries every alpha and beta
        of the previous step into the next, whatever its bit width, as the official BiT code does
        (its students load the previous step's checkpoint; alpha is initialized only while it
        still holds its construction value). Sites that never quantized (a 32/32 teacher) have no
        alpha yet: it is initialized from the student's first training batch. With
        learn_alpha=False (fixed-scale baselines) every alpha is re-initialized from that batch,
        and with learn_beta=False the betas are zero. `flags` default to the teacher's (two_set,
        learn_alpha, learn_beta, bi_attention); the FFN activation follows the student rule.
        """
        args = {k: v for k, v in teacher.flags().items() if k not in ("weight_bits", "act_bits", "ffn_act")}
        args.update(flags)
        student = cls(teacher.config, weight_bits, act_bits, **args).to(next(teacher.parameters()).device)
        student.load_state_dict(teacher.state_dict())
        with torch.no_grad():
            for name, q in student.named_sites():
                if not student.learn_alpha:
                    q.reset_alpha()
                if q.beta is not None and not student.learn_beta:
                    q.beta.zero_()
        return student

    def save(self, folder: str | os.PathLike) -> None:
        """Write config.json, bitaccel_model.json (flags) and model.safetensors into `folder`."""
        extra = {} if self.integer_format is None else {"integer_format": self.integer_format.to_dict()}
        save_model_folder(self, folder, MODEL_FORMAT, extra)

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "BitBertForSequenceClassification":
        """Inverse of `save`."""
        meta, model = load_model_folder(cls, folder, MODEL_FORMAT, "BiT model")
        if meta.get("integer_format") is not None:
            from bitaccel.golden.formats import NumericFormat
            model.integer_format = NumericFormat.from_dict(meta["integer_format"])
        return model

    # ------------------------------------------------------------------ quantizers
    def named_sites(self):
        """(golden site name, ActQuantizer) for every site, e.g. ('layers.0.q.in', ...), ..., ('pooler.in', ...)."""
        for i, layer in enumerate(self.layers):
            for s in LAYER_SITES:
                yield f"layers.{i}.{s}", layer.sites[_key(s)]
        for s in MODEL_SITES:
            yield s, self.sites[_key(s)]

    def site(self, name: str) -> ActQuantizer:
        return dict(self.named_sites())[name]

    def uninitialized_sites(self) -> list[str]:
        """Quantizing sites (bits < 32) whose alpha was never set (bi_attention's unused probs excluded)."""
        return [n for n, q in self.named_sites() if q.bits != 32 and not q._ready
                and not (self.bi_attention and n.endswith(".probs"))]

    @torch.no_grad()
    def calibrate(self, input_ids, attention_mask=None, token_type_ids=None) -> None:
        """Initialize every uninitialized alpha from one batch, without dropout and without training.

        The sites are set in forward order, each from the values it sees with the sites
        before it already quantizing (as a first training batch would, minus dropout).
        """
        was_training = self.training
        quantizers = [q for _, q in self.named_sites()]
        try:
            self.eval()
            for q in quantizers:
                q.calibrating = True
            self(input_ids, attention_mask, token_type_ids)
        finally:
            for q in quantizers:
                q.calibrating = False
            self.train(was_training)

    # ------------------------------------------------------------------ forward
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_attentions: bool = False) -> BitBertOutput:
        """input_ids (B, S) int; attention_mask (B, S) 1 = token, 0 = padding; token_type_ids (B, S).

        Padded keys are excluded from attention (probability 0). labels: (B,) class ids or
        (B,) floats for regression (num_labels = 1).
        """
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, seq), not shape {tuple(input_ids.shape)}")
        if self.integer_format is not None:
            return self._integer_forward(input_ids, attention_mask, token_type_ids, labels)
        valid = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        types = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        h = self.embeddings(input_ids, types)
        hidden, scores = [h], []
        for layer in self.layers:
            h, s = layer(h, valid)
            hidden.append(h)
            scores.append(s)
        pooled = torch.tanh(quantized_linear(self.sites["pooler_in"], self.pooler, h[:, 0], not self.training))
        logits = self.classifier(self.classifier_dropout(pooled))
        loss = None
        if labels is not None:
            if self.num_labels == 1:
                loss = F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
            else:
                loss = F.cross_entropy(logits, labels)
        return BitBertOutput(logits=logits, hidden_states=tuple(hidden),
                             attentions=tuple(scores) if output_attentions else None, loss=loss)

    # ------------------------------------------------------------------ integer-exact mode
    def integer_path(self):
        """The IntegerPath (model/integer_path.py) of the current parameters at `integer_format`.

        Folded (model.export.fold_constants) at every call in training mode; in eval mode kept
        until a parameter's storage or version counter changes or the model switches mode (fused
        optimizers update parameters without bumping version counters, so training never caches)."""
        from .export import fold_constants, model_config
        from .integer_path import IntegerPath

        if self.integer_format is None:
            raise ValueError("integer_format is not set: the model is in float mode")
        key = (self.integer_format, tuple((t.data_ptr(), t._version) for t in self.state_dict().values()))
        if self.training or self._integer_cache is None or self._integer_cache[0] != key:
            tensors = fold_constants(self, self.integer_format)
            quant = {name: q.bits for name, q in self.named_sites()}
            path = IntegerPath(model_config(self), self.integer_format, quant, tensors,
                               next(self.parameters()).device)
            self._integer_cache = (key, path)
        return self._integer_cache[1]

    def train(self, mode: bool = True):
        self._integer_cache = None
        return super().train(mode)

    def _integer_forward(self, input_ids, attention_mask, token_type_ids, labels) -> BitBertOutput:
        logits, hidden = self.integer_path().forward(self, input_ids, attention_mask, token_type_ids)
        loss = None
        if labels is not None:
            if self.num_labels == 1:
                loss = F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
            else:
                loss = F.cross_entropy(logits, labels)
        return BitBertOutput(logits=logits, hidden_states=hidden, loss=loss)
