"""Using data and finished runs: encoded splits, eval-mode predictions and metrics, `evaluate_run`
(PyTorch beside the golden integer model) and `export_run`.

Classification tasks (mr, GLUE): `load_split`, `predict` (logits), `evaluate` (glue_metrics).
SQuAD (span extraction): `load_squad_split` (sliding-window features of the official JSON),
`predict_spans` (start / end logits), `evaluate_spans` (n-best decoding, official EM / F1 in %,
main metric F1). Span runs export to artifacts with head "span" (`export_run`), and ``integer``
decodes the golden IntegerModel's start / end logits the same way (EM / F1 beside PyTorch's).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np
import torch

from .bit_bert import BitBertForSequenceClassification
from .data import encode, get_task, load_tokenizer
from .metrics import glue_metrics
from .plan import SQUAD, Stage, is_span_task, task_spec
from .run_folder import load_run, run_stages, stage_path, stage_result
from .span_head import BitBertForSpans
from .squad_data import SquadExample, SquadFeatures, prepare_features, read_squad
from .squad_metrics import decode_best_spans, squad_scores

#: n-best decoding defaults (Hugging Face run_qa.py): candidates per start / end, longest answer in tokens.
N_BEST = 20
MAX_ANSWER_LENGTH = 30

# ----------------------------------------------------------------------------- data and evaluation
def trim_batch(batch: dict) -> dict:
    """Cut a batch to its longest sequence (trailing all-padding columns removed)."""
    n = int(batch["attention_mask"].sum(dim=1).max())
    return {k: (v[:, :max(n, 1)] if v.dim() == 2 else v) for k, v in batch.items()}


def load_split(task: str, split: str, tokenizer, max_len: int, glue_dir: str | None) -> dict[str, torch.Tensor]:
    """Encoded tensors of one split (ValueError / FileNotFoundError with the reason)."""
    spec = get_task(task)
    if split not in spec.splits:
        raise ValueError(f"{spec.name} has no labeled split {split!r} (splits: {', '.join(spec.splits)})")
    if spec.name != "mr" and glue_dir is None:
        raise ValueError(f"{spec.name} is a GLUE task: pass the GLUE folder with --glue-dir")
    examples = spec.load(split, glue_dir if spec.name != "mr" else None)
    if not examples:
        raise ValueError(f"{spec.name} {split}: no examples")
    return encode(examples, tokenizer, max_len, regression=spec.is_regression)


def eval_batches(tensors: dict, batch_size: int):
    """(row indices, trimmed batch) over encoded tensors, longest sequences first: the order `predict` and the
    integer evaluation share, so both see the same batches (golden's float64 head rounds alike)."""
    order = torch.argsort(tensors["attention_mask"].sum(dim=1), descending=True, stable=True)
    for i in range(0, len(order), batch_size):
        rows = order[i:i + batch_size]
        yield rows, trim_batch({k: tensors[k][rows] for k in ("input_ids", "attention_mask", "token_type_ids")})


@torch.no_grad()
def predict(model: BitBertForSequenceClassification, tensors: dict, batch_size: int = 64) -> np.ndarray:
    """Eval-mode logits (n, num_labels) as float64; batches sorted by length and trimmed (same results)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = np.zeros((len(tensors["input_ids"]), model.num_labels), dtype=np.float64)
    for rows, b in eval_batches(tensors, batch_size):
        b = {k: v.to(device) for k, v in b.items()}
        logits = model(b["input_ids"], b["attention_mask"], b["token_type_ids"]).logits
        out[rows.numpy()] = logits.double().cpu().numpy()
    model.train(was_training)
    return out


def evaluate(model: BitBertForSequenceClassification, task: str, tensors: dict, batch_size: int = 64) -> dict:
    """glue_metrics of the model's eval-mode predictions on encoded, labeled tensors."""
    return glue_metrics(task, predict(model, tensors, batch_size), tensors["labels"].numpy())


# ----------------------------------------------------------------------------- SQuAD
@dataclass(frozen=True)
class SquadSplit:
    """One SQuAD split: the features (tensors (n, S), example_index, offsets) and the examples they came from."""
    features: SquadFeatures
    examples: list[SquadExample]

    @property
    def tensors(self) -> dict[str, torch.Tensor]:
        return self.features.tensors


def load_squad_split(split: str, tokenizer, max_len: int, doc_stride: int, max_query_len: int,
                     squad_dir: str | None) -> SquadSplit:
    """``{split}-v1.1.json`` of the SQuAD folder as features (ValueError / FileNotFoundError with the reason)."""
    if split not in ("train", "dev"):
        raise ValueError(f"{SQUAD} has no labeled split {split!r} (splits: train, dev)")
    if squad_dir is None:
        raise ValueError(f"{SQUAD} needs the SQuAD folder (train-v1.1.json, dev-v1.1.json): pass --squad-dir")
    if not os.path.isdir(squad_dir):
        raise FileNotFoundError(f"--squad-dir {squad_dir}: no such folder")
    path = os.path.join(squad_dir, f"{split}-v1.1.json")
    data = read_squad(path, training=split == "train")
    if not data.examples:
        raise ValueError(f"{path}: no usable questions")
    feats = prepare_features(data.examples, tokenizer, max_len=max_len, doc_stride=doc_stride,
                             max_query_len=max_query_len)
    return SquadSplit(feats, data.examples)


@torch.no_grad()
def predict_spans(model: BitBertForSpans, tensors: dict, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Eval-mode (start, end) logits, each (n, S) float64; batches sorted by length and trimmed, the trimmed
    (padding) positions -inf."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    shape = tuple(tensors["input_ids"].shape)
    start, end = np.full(shape, -np.inf), np.full(shape, -np.inf)
    for rows, b in eval_batches(tensors, batch_size):
        b = {k: v.to(device) for k, v in b.items()}
        out = model(b["input_ids"], b["attention_mask"], b["token_type_ids"])
        width = out.start_logits.shape[1]
        start[rows.numpy(), :width] = out.start_logits.double().cpu().numpy()
        end[rows.numpy(), :width] = out.end_logits.double().cpu().numpy()
    model.train(was_training)
    return start, end


def evaluate_spans(model: BitBertForSpans, split: SquadSplit, batch_size: int = 64, n_best: int = N_BEST,
                   max_answer_length: int = MAX_ANSWER_LENGTH) -> dict:
    """{"exact_match", "f1" (official, %), "main": f1} of the model's n-best decoded answers on a split."""
    start, end = predict_spans(model, split.tensors, batch_size)
    texts = decode_best_spans(start, end, split.features.example_index, split.features.offsets,
                              [e.context for e in split.examples], n_best=n_best,
                              max_answer_length=max_answer_length)
    scores = squad_scores({e.id: t for e, t in zip(split.examples, texts)},
                          {e.id: list(e.answers) for e in split.examples})
    return {**scores, "main": scores["f1"]}


# ----------------------------------------------------------------------------- using a finished run
def final_stage(run_dir: str, stage: int | None = None) -> tuple[Stage, dict]:
    """(stage, result) of the last finished stage of a run (or of `stage`); ValueError if unfinished."""
    run = load_run(run_dir)
    stages = run_stages(run)
    if stage is not None:
        if not 0 <= stage < len(stages):
            raise ValueError(f"{run_dir} has stages 0..{len(stages) - 1}, not {stage}")
        chosen = stages[stage]
    else:
        chosen = stages[-1]
    result = stage_result(run_dir, chosen)
    if result is None:
        raise ValueError(f"{run_dir}: stage {chosen.name} has not finished (resume the run with --resume)")
    return chosen, result


def model_class(task: str) -> type:
    """The model class of a task: BitBertForSpans for squad, else BitBertForSequenceClassification."""
    return BitBertForSpans if is_span_task(task) else BitBertForSequenceClassification


def _stage_model_and_tokenizer(run_dir: str, stage: int | None):
    """(the chosen stage, its best model in eval mode, the run's tokenizer)."""
    chosen, _ = final_stage(run_dir, stage)
    return chosen, load_stage_model(run_dir, chosen.index), load_tokenizer(os.path.join(run_dir, "tokenizer"))


def load_stage_model(run_dir: str, stage: int | None = None):
    """The best model of the run's final stage (or of `stage`), in eval mode (the run's task's model class)."""
    chosen, _ = final_stage(run_dir, stage)
    cls = model_class(load_run(run_dir)["task"])
    return cls.load(os.path.join(stage_path(run_dir, chosen), "model")).eval()


def _integer_logits(art, tensors: dict, batch_size: int = 64) -> np.ndarray:
    from bitaccel.golden.model import IntegerModel

    model = IntegerModel(art)
    out = np.zeros((len(tensors["input_ids"]), art.config.num_labels), dtype=np.float64)
    for rows, b in eval_batches(tensors, batch_size):
        out[rows.numpy()] = model.forward(b["input_ids"].numpy(), b["attention_mask"].numpy(),
                                          b["token_type_ids"].numpy())["logits"]
    return out


def evaluate_run(run_dir: str | os.PathLike, split: str = "dev", integer: str | os.PathLike | None = None,
                 stage: int | None = None, glue_dir: str | os.PathLike | None = None,
                 squad_dir: str | os.PathLike | None = None, n_best: int | None = None,
                 max_answer_length: int | None = None) -> dict:
    """Metrics of a run's final (or given) stage on a split; with `integer` (an artifact path) also
    the golden IntegerModel's metrics and its agreement with the PyTorch model.

    squad runs: EM / F1 after n-best decoding (`n_best`, `max_answer_length` tokens; defaults N_BEST,
    MAX_ANSWER_LENGTH) on the run's SQuAD folder or `squad_dir`; with `integer` (a span artifact) also the
    golden IntegerModel's EM / F1, its start / end logits decoded the same way."""
    run_dir = os.fspath(run_dir)
    run = load_run(run_dir)
    if is_span_task(run["task"]):
        return _evaluate_span_run(run_dir, run, split, integer, stage, squad_dir, n_best, max_answer_length)
    given = [name for name, v in (("squad_dir", squad_dir), ("n_best", n_best),
                                  ("max_answer_length", max_answer_length)) if v is not None]
    if given:
        raise ValueError(f"{', '.join(given)}: only for squad runs, and {run_dir} is a {run['task']} run")
    opts = run["options"]
    chosen, model, tokenizer = _stage_model_and_tokenizer(run_dir, stage)
    gdir = os.fspath(glue_dir) if glue_dir is not None else opts["glue_dir"]
    tensors = load_split(run["task"], split, tokenizer, opts["max_len"], gdir)
    logits = predict(model, tensors, opts["eval_batch_size"])
    labels = tensors["labels"].numpy()
    out = {"run": os.path.abspath(run_dir), "task": run["task"], "split": split, "stage": chosen.name,
           "precision": chosen.precision, "examples": int(len(labels)),
           "metrics": glue_metrics(run["task"], logits, labels)}
    if integer is not None:
        from bitaccel.golden.artifact import load_artifact

        art = load_artifact(integer)
        if art.config.num_labels != model.num_labels or art.config.hidden != model.config.hidden_size:
            raise ValueError(f"{integer} does not hold this run's model (num_labels {art.config.num_labels}, "
                             f"hidden {art.config.hidden})")
        ilogits = _integer_logits(art, tensors, opts["eval_batch_size"])
        diff = np.abs(ilogits - logits)
        out["integer"] = {"artifact": os.path.abspath(os.fspath(integer)),
                          "metrics": glue_metrics(run["task"], ilogits, labels),
                          "max_logit_diff": float(diff.max()), "mean_logit_diff": float(diff.mean())}
        if model.num_labels > 1:
            out["integer"]["agreement"] = float(np.mean(ilogits.argmax(1) == logits.argmax(1)))
    return out


def _evaluate_span_run(run_dir: str, run: dict, split: str, integer, stage: int | None, squad_dir,
                       n_best: int | None, max_answer_length: int | None) -> dict:
    n_best = N_BEST if n_best is None else n_best
    max_answer_length = MAX_ANSWER_LENGTH if max_answer_length is None else max_answer_length
    for name, v in (("n_best", n_best), ("max_answer_length", max_answer_length)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, not {v!r}")
    opts = run["options"]
    chosen, model, tokenizer = _stage_model_and_tokenizer(run_dir, stage)
    sdir = os.fspath(squad_dir) if squad_dir is not None else opts["squad_dir"]
    data = load_squad_split(split, tokenizer, opts["max_len"], opts["doc_stride"], opts["max_query_len"], sdir)
    metrics = evaluate_spans(model, data, opts["eval_batch_size"], n_best, max_answer_length)
    out = {"run": os.path.abspath(run_dir), "task": run["task"], "split": split, "stage": chosen.name,
           "precision": chosen.precision, "examples": len(data.examples),
           "features": int(len(data.tensors["input_ids"])), "n_best": n_best,
           "max_answer_length": max_answer_length, "metrics": metrics}
    if integer is not None:
        from bitaccel.golden.artifact import load_artifact
        from bitaccel.golden.model import IntegerModel

        art = load_artifact(integer)
        if art.head != "span" or art.config.hidden != model.config.hidden_size:
            raise ValueError(f"{integer} does not hold this run's model (head {art.head}, hidden {art.config.hidden})")
        tensors, golden = data.tensors, IntegerModel(art)
        start, end = np.full(tuple(tensors["input_ids"].shape), -np.inf), np.full(tuple(tensors["input_ids"].shape),
                                                                                  -np.inf)
        for rows, b in eval_batches(tensors, opts["eval_batch_size"]):
            o = golden.forward(b["input_ids"].numpy(), b["attention_mask"].numpy(), b["token_type_ids"].numpy())
            width = o["start_logits"].shape[1]
            start[rows.numpy(), :width], end[rows.numpy(), :width] = o["start_logits"], o["end_logits"]
        texts = decode_best_spans(start, end, data.features.example_index, data.features.offsets,
                                  [e.context for e in data.examples], n_best=n_best,
                                  max_answer_length=max_answer_length)
        scores = squad_scores({e.id: t for e, t in zip(data.examples, texts)},
                              {e.id: list(e.answers) for e in data.examples})
        out["integer"] = {"artifact": os.path.abspath(os.fspath(integer)), "metrics": {**scores, "main": scores["f1"]}}
    return out


def tokenizer_reference(tokenizer, source: str, task: str, max_len: int, span: dict | None = None) -> dict:
    """The artifact manifest's tokenizer reference: what to tokenize inputs with (and a vocabulary hash).

    squad: also ``max_query_len`` and ``doc_stride`` (question + context pairs as model/squad_data.py
    builds them; pass them in `span`)."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    digest = hashlib.sha256("\n".join(w for w, _ in vocab).encode()).hexdigest()
    spec = task_spec(task)
    labels = getattr(spec, "labels", None)
    return {"kind": "huggingface", "class": type(tokenizer).__name__, "source": source,
            "vocab_size": len(vocab), "vocab_sha256": digest,
            "do_lower_case": bool(getattr(tokenizer, "do_lower_case", False)), "max_len": max_len,
            "task": spec.name, "labels": list(labels) if labels else None, **(span or {})}


def export_run(run_dir: str | os.PathLike, out_path: str | os.PathLike, stage: int | None = None,
               sample_size: int = 64):
    """Export the run's final (or given) stage best model to an artifact; numerics chosen on a dev sample."""
    from bitaccel.golden.version import __version__

    from .export import export

    run_dir = os.fspath(run_dir)
    run = load_run(run_dir)
    opts = run["options"]
    chosen, model, tokenizer = _stage_model_and_tokenizer(run_dir, stage)
    span = None
    if is_span_task(run["task"]):            # head "span"; the sample: the first dev windows
        dev = load_squad_split("dev", tokenizer, opts["max_len"], opts["doc_stride"], opts["max_query_len"],
                               opts["squad_dir"]).tensors
        span = {"max_query_len": opts["max_query_len"], "doc_stride": opts["doc_stride"]}
    else:
        dev = load_split(run["task"], "dev", tokenizer, opts["max_len"], opts["glue_dir"])
    sample = trim_batch({k: dev[k][:sample_size] for k in ("input_ids", "attention_mask", "token_type_ids")})
    ref = tokenizer_reference(tokenizer, run.get("tokenizer_source", ""), run["task"], opts["max_len"], span)
    return export(model, out_path, tokenizer_ref=ref, sample=sample,
                  producer=f"bitaccel {__version__} train run {os.path.basename(os.path.abspath(run_dir))} "
                           f"stage {chosen.name} ({opts['method']}, schedule {opts['schedule']})")
