"""Using data and finished runs: encoded splits, eval-mode predictions and metrics, `evaluate_run`
(PyTorch beside the golden integer model) and `export_run`."""
from __future__ import annotations

import hashlib
import os

import numpy as np
import torch

from .bit_bert import BitBertForSequenceClassification
from .data import encode, get_task, load_tokenizer
from .metrics import glue_metrics
from .plan import Stage
from .run_folder import load_run, run_stages, stage_path, stage_result

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


def load_stage_model(run_dir: str, stage: int | None = None) -> BitBertForSequenceClassification:
    """The best model of the run's final stage (or of `stage`), in eval mode."""
    chosen, _ = final_stage(run_dir, stage)
    return BitBertForSequenceClassification.load(os.path.join(stage_path(run_dir, chosen), "model")).eval()


def _integer_logits(art, tensors: dict, batch_size: int = 64) -> np.ndarray:
    from golden.model import IntegerModel

    model = IntegerModel(art)
    out = np.zeros((len(tensors["input_ids"]), art.config.num_labels), dtype=np.float64)
    for rows, b in eval_batches(tensors, batch_size):
        out[rows.numpy()] = model.forward(b["input_ids"].numpy(), b["attention_mask"].numpy(),
                                          b["token_type_ids"].numpy())["logits"]
    return out


def evaluate_run(run_dir: str | os.PathLike, split: str = "dev", integer: str | os.PathLike | None = None,
                 stage: int | None = None, glue_dir: str | os.PathLike | None = None) -> dict:
    """Metrics of a run's final (or given) stage on a split; with `integer` (an artifact path) also
    the golden IntegerModel's metrics and its agreement with the PyTorch model."""
    run_dir = os.fspath(run_dir)
    run = load_run(run_dir)
    opts = run["options"]
    chosen, _ = final_stage(run_dir, stage)
    model = load_stage_model(run_dir, chosen.index)
    tokenizer = load_tokenizer(os.path.join(run_dir, "tokenizer"))
    gdir = os.fspath(glue_dir) if glue_dir is not None else opts["glue_dir"]
    tensors = load_split(run["task"], split, tokenizer, opts["max_len"], gdir)
    logits = predict(model, tensors, opts["eval_batch_size"])
    labels = tensors["labels"].numpy()
    out = {"run": os.path.abspath(run_dir), "task": run["task"], "split": split, "stage": chosen.name,
           "precision": chosen.precision, "examples": int(len(labels)),
           "metrics": glue_metrics(run["task"], logits, labels)}
    if integer is not None:
        from golden.artifact import load_artifact

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


def tokenizer_reference(tokenizer, source: str, task: str, max_len: int) -> dict:
    """The artifact manifest's tokenizer reference: what to tokenize inputs with (and a vocabulary hash)."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    digest = hashlib.sha256("\n".join(w for w, _ in vocab).encode()).hexdigest()
    spec = get_task(task)
    return {"kind": "huggingface", "class": type(tokenizer).__name__, "source": source,
            "vocab_size": len(vocab), "vocab_sha256": digest,
            "do_lower_case": bool(getattr(tokenizer, "do_lower_case", False)), "max_len": max_len,
            "task": spec.name, "labels": list(spec.labels) if spec.labels else None}


def export_run(run_dir: str | os.PathLike, out_path: str | os.PathLike, stage: int | None = None,
               sample_size: int = 64):
    """Export the run's final (or given) stage best model to an artifact; numerics chosen on a dev sample."""
    from golden.version import __version__

    from .export import export

    run_dir = os.fspath(run_dir)
    run = load_run(run_dir)
    opts = run["options"]
    chosen, _ = final_stage(run_dir, stage)
    model = load_stage_model(run_dir, chosen.index)
    tokenizer = load_tokenizer(os.path.join(run_dir, "tokenizer"))
    dev = load_split(run["task"], "dev", tokenizer, opts["max_len"], opts["glue_dir"])
    sample = trim_batch({k: dev[k][:sample_size] for k in ("input_ids", "attention_mask", "token_type_ids")})
    ref = tokenizer_reference(tokenizer, run.get("tokenizer_source", ""), run["task"], opts["max_len"])
    return export(model, out_path, tokenizer_ref=ref, sample=sample,
                  producer=f"bitaccel {__version__} train run {os.path.basename(os.path.abspath(run_dir))} "
                           f"stage {chosen.name} ({opts['method']}, schedule {opts['schedule']})")
