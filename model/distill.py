"""BiT knowledge distillation loss (BiT Sec. 2.3 and 3.2, "simplified KD").

    L = L_logits + L_reps (+ L_att, BinaryBERT baseline only)

* L_logits: soft cross-entropy between the teacher's and the student's class
  distributions at temperature 1, -sum_c softmax(t)_c * log softmax(s)_c, averaged over
  the batch. (It differs from KL(p_t || p_s) of Eq. 1 by the teacher's entropy, a
  constant, so the gradients are the same; this is the form of the BiT / BiBERT code.)
  Regression tasks (num_labels = 1, STS-B): a softmax over one logit is always 1 and
  the soft cross-entropy is identically 0, so the logit term is instead the MSE between
  student and teacher outputs, mean((s - t)^2).
* L_reps (Eq. 2): the sum over the embedding output and every transformer-block output
  (BitBertOutput.hidden_states: L + 1 tensors) of the MSE between student and teacher,
  averaged over the valid (non-padding) token positions and the hidden features. Padding
  positions are masked out (the official code averages over them too; they carry no
  meaning and the student cannot see them through attention).
* L_att (only with attention=True, the BinaryBERT-style baseline of BiT Table 2 row 4):
  the sum over layers of the MSE between the raw attention scores q k^T / sqrt(d)
  (BitBertOutput.attentions), averaged over the (valid query, valid key) pairs and heads.
  BiT itself drops this term (Sec. 3.2, Table 2 row 5 vs. 4).

The teacher runs in eval mode (no dropout) under torch.no_grad(): `teacher_forward`.

Against the official BiT script (kd_learner_glue.py; docs/training.md): the same terms
(logits at temperature 1 + representations, no attention term, no label loss); it averages
the representation MSE over padding too and calls teacher_model.train() before its loop, so
its teacher runs with dropout. Both are deliberate differences here (stated above).
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

from .bit_bert import BitBertForSequenceClassification, BitBertOutput


def soft_cross_entropy(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """-sum softmax(teacher) * log_softmax(student) over classes, mean over the batch (temperature 1)."""
    target = F.softmax(teacher_logits.detach().to(student_logits.dtype), dim=-1)
    return -(target * F.log_softmax(student_logits, dim=-1)).sum(dim=-1).mean()


def masked_mse(student: torch.Tensor, teacher: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """MSE of (B, S, H) tensors over the positions where valid (B, S) is True and all features."""
    w = valid.to(student.dtype)[..., None]
    sq = (student - teacher.detach()) ** 2 * w
    return sq.sum() / (w.sum().clamp_min(1.0) * student.shape[-1])


def attention_mse(student: torch.Tensor, teacher: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """MSE of (B, heads, S, S) attention scores over valid (query, key) pairs and all heads."""
    pair = (valid[:, None, :, None] & valid[:, None, None, :]).to(student.dtype)
    sq = (student - teacher.detach()) ** 2 * pair
    return sq.sum() / (pair.sum().clamp_min(1.0) * student.shape[1])


@torch.no_grad()
def teacher_forward(teacher: BitBertForSequenceClassification, batch: dict, attentions: bool = False) -> BitBertOutput:
    """The teacher's outputs on a batch, in eval mode and without gradient."""
    teacher.eval()
    return teacher(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"),
                   output_attentions=attentions)


def distillation_loss(student: BitBertOutput, teacher: BitBertOutput, attention_mask: torch.Tensor,
                      attention: bool = False) -> dict[str, torch.Tensor]:
    """{"loss": total, "logits": L_logits, "reps": L_reps, "att": L_att (0 unless attention)}.

    The regression form of L_logits is chosen from the logits' shape (one output = regression).
    """
    valid = attention_mask.bool()
    if student.logits.shape[-1] == 1:
        logits = F.mse_loss(student.logits, teacher.logits.detach().to(student.logits.dtype))
    else:
        logits = soft_cross_entropy(student.logits, teacher.logits)
    return with_block_terms(logits, student, teacher, valid, attention)


def with_block_terms(logits: torch.Tensor, student, teacher, valid: torch.Tensor, attention: bool) -> dict:
    """The loss dict of a head's L_logits plus the block-output terms: L_reps (masked MSE of every hidden
    state) and L_att (masked attention MSE, 0 unless `attention`). `student` / `teacher`: outputs with
    ``hidden_states`` and ``attentions``; `valid`: (B, S) bool."""
    if len(student.hidden_states) != len(teacher.hidden_states):
        raise ValueError(f"student has {len(student.hidden_states)} hidden states, teacher "
                         f"{len(teacher.hidden_states)}: distillation needs the same number of layers")
    reps = sum(masked_mse(s, t, valid) for s, t in zip(student.hidden_states, teacher.hidden_states))
    att = torch.zeros((), dtype=logits.dtype, device=logits.device)
    if attention:
        if student.attentions is None or teacher.attentions is None:
            raise ValueError("attention distillation needs output_attentions=True on student and teacher")
        att = sum(attention_mse(s, t, valid) for s, t in zip(student.attentions, teacher.attentions))
    return {"loss": logits + reps + att, "logits": logits, "reps": reps, "att": att}
