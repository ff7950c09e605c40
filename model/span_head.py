"""Span extraction (SQuAD) on the BiT encoder: a full-precision start / end head and its losses.

``SpanHead`` is Hugging Face ``BertForQuestionAnswering``'s ``qa_outputs``: one
full-precision ``Linear(H, 2)`` on the last encoder block's output h (B, S, H), giving
per-token start and end logits (B, S) each. Like the sequence classifier it is never
quantized, and like HF there is no dropout before it and padding is not masked in the
logits (decoding skips non-context tokens through the offsets, model/squad_metrics.py).

``BitBertForSpans`` is the BiT encoder of model/bit_bert.py (embeddings and layers, the
same flags and quantizer sites ``layers.{i}.*``; no pooler) with that head. At 32/32 it
computes exactly HF ``BertForQuestionAnswering``.

Losses:

- ``span_loss``: HF's hard loss, the mean of the start and end cross-entropies over
  positions; positions outside [0, S) are ignored.
- ``span_distillation_loss``: BiT's L_logits for spans, the mean of the soft
  cross-entropies (temperature 1) of the start and the end distributions over the
  sequence, padded positions excluded from both teacher and student distributions;
  plus L_reps (and L_att) exactly as model/distill.py computes them.

``save`` / ``load`` use the classifier's folder layout (config.json, bitaccel_model.json with
the flags, model.safetensors: no pickle) with the format ``bitaccel-bit-bert-spans``, so
neither class loads the other's folders. Export (model/export.py) writes an artifact with
head "span" (``span.weight`` / ``span.bias`` = ``qa_outputs``). Not here yet: the
integer-exact mode.
"""
from __future__ import annotations

import dataclasses
import os

import torch
from torch import nn
from torch.nn import functional as F
from transformers import BertConfig, BertForQuestionAnswering

from bitaccel.golden.config import LAYER_SITES

from .bit_bert import META_FILE, BitBertForSequenceClassification, _key, load_model_folder, save_model_folder
from .distill import with_block_terms
from .quant import ActQuantizer

__all__ = ["SpanOutput", "SpanHead", "BitBertForSpans", "span_loss", "masked_soft_cross_entropy",
           "span_distillation_loss", "SPAN_FORMAT"]

#: bitaccel_model.json "format" of a saved span model (the classifier's is "bitaccel-bit-bert").
SPAN_FORMAT = "bitaccel-bit-bert-spans"


@dataclasses.dataclass
class SpanOutput:
    """Span model outputs.

    start_logits, end_logits : (B, S) each.
    hidden_states : (embedding LayerNorm output, block 1 output, ..., block L output), each (B, S, H).
    attentions : per layer the raw scores (B, heads, S, S) when output_attentions=True; else None.
    loss : ``span_loss`` when start and end positions are given; else None.
    """

    start_logits: torch.Tensor
    end_logits: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...]
    attentions: tuple[torch.Tensor, ...] | None = None
    loss: torch.Tensor | None = None


class SpanHead(nn.Module):
    """Full-precision Linear(H, 2): h (B, S, H) -> (start logits (B, S), end logits (B, S))."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.qa_outputs = nn.Linear(hidden_size, 2)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.qa_outputs(h)
        return logits[..., 0].contiguous(), logits[..., 1].contiguous()


def span_loss(start_logits: torch.Tensor, end_logits: torch.Tensor, start_positions: torch.Tensor,
              end_positions: torch.Tensor) -> torch.Tensor:
    """(CE(start) + CE(end)) / 2 over the batch; logits (B, S), positions (B,) token indices.
    Positions outside [0, S) are ignored, as Hugging Face does."""
    seq = start_logits.shape[1]
    ce = nn.CrossEntropyLoss(ignore_index=seq)
    start = ce(start_logits, start_positions.clamp(0, seq))
    end = ce(end_logits, end_positions.clamp(0, seq))
    return (start + end) / 2


def masked_soft_cross_entropy(student: torch.Tensor, teacher: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """-sum softmax(teacher) * log_softmax(student) over the valid positions of (B, S) logits,
    mean over the batch (temperature 1). valid: (B, S) bool, at least one True per row."""
    if not bool(valid.any(dim=1).all()):
        raise ValueError("every row needs at least one valid position")
    low = torch.finfo(student.dtype).min
    s = student.masked_fill(~valid, low)
    t = teacher.detach().to(student.dtype).masked_fill(~valid, low)
    target = F.softmax(t, dim=-1)
    return -(target * F.log_softmax(s, dim=-1)).sum(dim=-1).mean()


def span_distillation_loss(student: SpanOutput, teacher: SpanOutput, attention_mask: torch.Tensor,
                           attention: bool = False) -> dict[str, torch.Tensor]:
    """{"loss": total, "logits": L_logits, "reps": L_reps, "att": L_att (0 unless attention)}.

    L_logits = (soft CE of the start logits + soft CE of the end logits) / 2 over the
    attention_mask (B, S) positions; L_reps and L_att as model.distill.distillation_loss.
    """
    valid = attention_mask.bool()
    logits = (masked_soft_cross_entropy(student.start_logits, teacher.start_logits, valid)
              + masked_soft_cross_entropy(student.end_logits, teacher.end_logits, valid)) / 2
    return with_block_terms(logits, student, teacher, valid, attention)


class BitBertForSpans(nn.Module):
    """The BiT encoder (model/bit_bert.py) + ``SpanHead``.

    Constructor arguments as ``BitBertForSequenceClassification`` (config, weight_bits,
    act_bits, two_set, learn_alpha, learn_beta, bi_attention, ffn_act); the encoder is that
    model's embeddings and layers, built and checked by it (its pooler and classifier are
    dropped), so state-dict keys ``embeddings.*`` / ``layers.*`` are the same.
    """

    def __init__(self, config: BertConfig, **flags):
        super().__init__()
        donor = BitBertForSequenceClassification(config, **flags)
        self.config = config
        self._flags = donor.flags()
        self.embeddings = donor.embeddings
        self.layers = donor.layers
        self.head = SpanHead(config.hidden_size)
        self.integer_format = None      # always: span models have no integer-exact mode yet

    def flags(self) -> dict:
        """Constructor arguments besides the config."""
        return dict(self._flags)

    @property
    def weight_bits(self) -> int:
        return self._flags["weight_bits"]

    @property
    def act_bits(self) -> int:
        return self._flags["act_bits"]

    @property
    def bi_attention(self) -> bool:
        return self._flags["bi_attention"]

    @property
    def two_set(self) -> bool:
        return self._flags["two_set"]

    @property
    def ffn_act(self) -> str:
        return self._flags["ffn_act"]

    def save(self, folder: str | os.PathLike) -> None:
        """Write config.json, bitaccel_model.json (format SPAN_FORMAT, flags) and model.safetensors into `folder`."""
        save_model_folder(self, folder, SPAN_FORMAT)

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "BitBertForSpans":
        """Inverse of `save` (FileNotFoundError / ValueError with the reason)."""
        return load_model_folder(cls, folder, SPAN_FORMAT, "span model")[1]

    @classmethod
    def from_hf(cls, hf: BertForQuestionAnswering, **flags) -> "BitBertForSpans":
        """A model with the weights of an in-memory Hugging Face BertForQuestionAnswering."""
        if hf.qa_outputs.out_features != 2:
            raise ValueError(f"the span head has 2 outputs (start, end), not {hf.qa_outputs.out_features}")
        model = cls(hf.config, **flags)
        model.load_hf_weights(hf)
        return model

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, weight_bits: int = 32, act_bits: int = 32, seed: int = 0,
                        **flags) -> "BitBertForSpans":
        """Load a Hugging Face BERT checkpoint from a local folder (BertModel, BertForQuestionAnswering, ...).

        A head absent from the checkpoint (or of another size) is initialized as Hugging Face
        does, from torch's RNG seeded with ``seed``. No network access.
        """
        if os.path.exists(os.path.join(os.fspath(path), META_FILE)):
            raise ValueError(f"{path} holds a bitaccel model saved with save(), not a Hugging Face checkpoint")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            hf = BertForQuestionAnswering.from_pretrained(os.fspath(path), num_labels=2, ignore_mismatched_sizes=True,
                                                          local_files_only=True)
        return cls.from_hf(hf, weight_bits=weight_bits, act_bits=act_bits, **flags)

    @torch.no_grad()
    def load_hf_weights(self, hf: BertForQuestionAnswering) -> None:
        """Copy every weight of a Hugging Face BertForQuestionAnswering (same sizes)."""
        bert = hf.bert
        pairs = [
            (self.embeddings.word, bert.embeddings.word_embeddings),
            (self.embeddings.position, bert.embeddings.position_embeddings),
            (self.embeddings.token_type, bert.embeddings.token_type_embeddings),
            (self.embeddings.ln, bert.embeddings.LayerNorm),
            (self.head.qa_outputs, hf.qa_outputs),
        ]
        for mine, theirs in zip(self.layers, bert.encoder.layer, strict=True):
            att = theirs.attention
            pairs += [(mine.linears["q"], att.self.query), (mine.linears["k"], att.self.key),
                      (mine.linears["v"], att.self.value), (mine.linears["o"], att.output.dense),
                      (mine.ln1, att.output.LayerNorm), (mine.linears["ffn1"], theirs.intermediate.dense),
                      (mine.ln2, theirs.output.LayerNorm), (mine.linears["ffn2"], theirs.output.dense)]
        for mine, theirs in pairs:
            for name in ("weight", "bias"):
                src = getattr(theirs, name, None)
                if src is not None:
                    getattr(mine, name).copy_(src)

    @classmethod
    def from_teacher(cls, teacher: "BitBertForSpans", weight_bits: int, act_bits: int, **flags) -> "BitBertForSpans":
        """A student initialized from ``teacher``: every weight, alpha and beta copied, as
        ``BitBertForSequenceClassification.from_teacher`` does (alphas re-initialized with
        learn_alpha=False, betas zeroed with learn_beta=False; other flags default to the teacher's)."""
        args = {k: v for k, v in teacher.flags().items() if k not in ("weight_bits", "act_bits", "ffn_act")}
        args.update(flags)
        student = cls(teacher.config, weight_bits=weight_bits, act_bits=act_bits, **args)
        student.to(next(teacher.parameters()).device)
        student.load_state_dict(teacher.state_dict())
        with torch.no_grad():
            for _, q in student.named_sites():
                if not student._flags["learn_alpha"]:
                    q.reset_alpha()
                if q.beta is not None and not student._flags["learn_beta"]:
                    q.beta.zero_()
        return student

    def named_sites(self):
        """(golden site name, ActQuantizer) for every encoder site, e.g. ('layers.0.q.in', ...)."""
        for i, layer in enumerate(self.layers):
            for s in LAYER_SITES:
                yield f"layers.{i}.{s}", layer.sites[_key(s)]

    def site(self, name: str) -> ActQuantizer:
        return dict(self.named_sites())[name]

    def uninitialized_sites(self) -> list[str]:
        """Quantizing sites (bits < 32) whose alpha was never set (bi_attention's unused probs excluded)."""
        return [n for n, q in self.named_sites() if q.bits != 32 and not q._ready
                and not (self.bi_attention and n.endswith(".probs"))]

    @torch.no_grad()
    def calibrate(self, input_ids, attention_mask=None, token_type_ids=None) -> None:
        """Initialize every uninitialized alpha from one batch in eval mode, in forward order
        (as BitBertForSequenceClassification.calibrate)."""
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

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, start_positions: torch.Tensor | None = None,
                end_positions: torch.Tensor | None = None, output_attentions: bool = False) -> SpanOutput:
        """input_ids (B, S) int; attention_mask (B, S) 1 = token, 0 = padding; token_type_ids (B, S);
        start_positions / end_positions (B,) token indices (both or neither) for ``span_loss``."""
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, seq), not shape {tuple(input_ids.shape)}")
        if (start_positions is None) != (end_positions is None):
            raise ValueError("give both start_positions and end_positions, or neither")
        valid = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        types = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        h = self.embeddings(input_ids, types)
        hidden, scores = [h], []
        for layer in self.layers:
            h, s = layer(h, valid)
            hidden.append(h)
            scores.append(s)
        start, end = self.head(h)
        loss = None if start_positions is None else span_loss(start, end, start_positions, end_positions)
        return SpanOutput(start, end, tuple(hidden), tuple(scores) if output_attentions else None, loss)
