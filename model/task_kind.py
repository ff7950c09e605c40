"""What the training loop (model/train.py) needs from a task, for its two kinds.

==============  =====================================  ==========================================
                classification (mr, GLUE)              span (squad)
==============  =====================================  ==========================================
model           BitBertForSequenceClassification       BitBertForSpans (model/span_head.py)
split data      encoded tensors with ``labels``        `SquadSplit`: sliding-window features
                                                       (``start_positions`` / ``end_positions``)
                                                       and the examples
stage-0 loss    cross-entropy (MSE for regression)     span_loss (start + end cross-entropy) / 2
distillation    model.distill.distillation_loss        span_distillation_loss (same L_reps, L_att)
metrics         glue_metrics (main: the task's)        official EM / F1 in % (main: F1)
==============  =====================================  ==========================================

`task_kind(task)` returns the kind; every method takes the run's resolved `Options`.
"""
from __future__ import annotations

import torch

from .bit_bert import BitBertForSequenceClassification
from .distill import distillation_loss
from .evaluate import evaluate, evaluate_spans, load_split, load_squad_split
from .plan import Options, is_span_task, task_spec
from .span_head import BitBertForSpans, span_distillation_loss


class ClassificationKind:
    """Sequence classification / regression (model/data.py tasks)."""
    model_class = BitBertForSequenceClassification

    def pretrained(self, opts: Options):
        """Stage 0's model from the Hugging Face checkpoint --model (head seeded when absent)."""
        return BitBertForSequenceClassification.from_pretrained(opts.model, num_labels=task_spec(opts.task).num_labels,
                                                                seed=opts.seed)

    def load_split(self, opts: Options, split: str, tokenizer):
        return load_split(opts.task, split, tokenizer, opts.max_len, opts.glue_dir)

    def tensors(self, split_data) -> dict[str, torch.Tensor]:
        """The (n, ...) tensors the loop batches (train) and counts."""
        return split_data

    def loss(self, model, batch: dict) -> dict[str, torch.Tensor]:
        out = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], labels=batch["labels"])
        return {"loss": out.loss}

    def distill_loss(self, out, teacher_out, attention_mask, attention: bool) -> dict[str, torch.Tensor]:
        return distillation_loss(out, teacher_out, attention_mask, attention=attention)

    def evaluate(self, model, opts: Options, split_data) -> dict:
        return evaluate(model, opts.task, split_data, opts.eval_batch_size)


class SpanKind(ClassificationKind):
    """SQuAD v1.1 span extraction; dev metrics with the n-best defaults of model/evaluate.py."""
    model_class = BitBertForSpans

    def pretrained(self, opts: Options):
        return BitBertForSpans.from_pretrained(opts.model, seed=opts.seed)

    def load_split(self, opts: Options, split: str, tokenizer):
        return load_squad_split(split, tokenizer, opts.max_len, opts.doc_stride, opts.max_query_len, opts.squad_dir)

    def tensors(self, split_data) -> dict[str, torch.Tensor]:
        return split_data.tensors

    def loss(self, model, batch: dict) -> dict[str, torch.Tensor]:
        out = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"],
                    start_positions=batch["start_positions"], end_positions=batch["end_positions"])
        return {"loss": out.loss}

    def distill_loss(self, out, teacher_out, attention_mask, attention: bool) -> dict[str, torch.Tensor]:
        return span_distillation_loss(out, teacher_out, attention_mask, attention=attention)

    def evaluate(self, model, opts: Options, split_data) -> dict:
        return evaluate_spans(model, split_data, opts.eval_batch_size)


def task_kind(task: str) -> ClassificationKind:
    """SpanKind for squad, ClassificationKind for every other task."""
    return SpanKind() if is_span_task(task) else ClassificationKind()
