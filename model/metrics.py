"""GLUE evaluation metrics in plain NumPy (no scikit-learn / SciPy needed).

All scores are fractions (accuracy 0.87, not 87.0). Degenerate cases follow
scikit-learn / SciPy:

- ``f1`` is 0.0 when there are no positive predictions and no positive labels.
- ``matthews_corrcoef`` is 0.0 when either the predictions or the labels hold a
  single class (the denominator is zero).
- ``pearson`` / ``spearman`` are NaN when either input is constant (the
  correlation is undefined). ``nan > best`` is False, so a best-so-far model
  selection loop never picks such a checkpoint.

Official GLUE metric set per task, and the **main score** used for model selection
(``MAIN_METRIC``; the same choice as the BiBERT / BiT training code, whose
``quant_task_glue.py`` keeps the checkpoint with the best dev accuracy, MCC or
correlation, and the BiT appendix A.6 "highest accuracy on the validation set"):

======== ========================== ===============================================
task     reported metrics           main score
======== ========================== ===============================================
cola     mcc                        mcc
sst2     accuracy                   accuracy
mrpc     accuracy, f1               accuracy
qqp      accuracy, f1               accuracy
stsb     pearson, spearman          corr = (pearson + spearman) / 2
mnli     accuracy (dev_matched)     accuracy
mnli-mm  accuracy (dev_mismatched)  accuracy
qnli     accuracy                   accuracy
rte      accuracy                   accuracy
mr       accuracy                   accuracy
======== ========================== ===============================================
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "accuracy", "f1", "matthews_corrcoef", "pearson", "spearman", "rankdata",
    "glue_metrics", "canonical_task", "TASK_NAMES", "GLUE_METRICS", "MAIN_METRIC",
    "REGRESSION_TASKS",
]

#: Canonical task names (HF ``datasets`` style) in GLUE order, plus the offline ``mr``.
TASK_NAMES = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "mnli-mm", "qnli", "rte", "mr")

#: Reported metrics per task (``glue_metrics`` also adds ``main``).
GLUE_METRICS = {
    "cola": ("mcc",),
    "sst2": ("accuracy",),
    "mrpc": ("accuracy", "f1"),
    "qqp": ("accuracy", "f1"),
    "stsb": ("pearson", "spearman", "corr"),
    "mnli": ("accuracy",),
    "mnli-mm": ("accuracy",),
    "qnli": ("accuracy",),
    "rte": ("accuracy",),
    "mr": ("accuracy",),
}

#: The metric used for model selection (higher is better) per task.
MAIN_METRIC = {
    "cola": "mcc",
    "sst2": "accuracy",
    "mrpc": "accuracy",
    "qqp": "accuracy",
    "stsb": "corr",
    "mnli": "accuracy",
    "mnli-mm": "accuracy",
    "qnli": "accuracy",
    "rte": "accuracy",
    "mr": "accuracy",
}

REGRESSION_TASKS = frozenset({"stsb"})

_ALIASES = {
    "cola": "cola", "sst2": "sst2", "mrpc": "mrpc", "stsb": "stsb", "qqp": "qqp",
    "mnli": "mnli", "mnlim": "mnli", "mnlimatched": "mnli",
    "mnlimm": "mnli-mm", "mnlimismatched": "mnli-mm",
    "qnli": "qnli", "rte": "rte", "mr": "mr",
}


def canonical_task(name: str) -> str:
    """Canonical task name: case, ``-`` and ``_`` are ignored (``"SST-2"`` -> ``"sst2"``,
    ``"MNLI-mm"`` / ``"mnli_mismatched"`` -> ``"mnli-mm"``)."""
    if not isinstance(name, str):
        raise TypeError(f"task name must be a str, not {name!r}")
    key = name.lower().replace("-", "").replace("_", "")
    if key not in _ALIASES:
        raise ValueError(f"unknown task {name!r}; expected one of {', '.join(TASK_NAMES)}")
    return _ALIASES[key]


def _pair(predictions, labels) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(predictions)
    y = np.asarray(labels)
    if p.ndim != 1 or y.ndim != 1:
        raise ValueError(f"predictions and labels must be 1-D, not shapes {p.shape} and {y.shape}")
    if p.shape != y.shape:
        raise ValueError(f"predictions ({p.shape[0]}) and labels ({y.shape[0]}) differ in length")
    if p.size == 0:
        raise ValueError("cannot score an empty set of predictions")
    return p, y


def accuracy(predictions, labels) -> float:
    """Fraction of predictions equal to the labels."""
    p, y = _pair(predictions, labels)
    return float(np.mean(p == y))


def f1(predictions, labels, positive=1) -> float:
    """Binary F1 of the ``positive`` class: 2·TP / (2·TP + FP + FN); 0.0 if that is 0/0."""
    p, y = _pair(predictions, labels)
    tp = int(np.sum((p == positive) & (y == positive)))
    fp = int(np.sum((p == positive) & (y != positive)))
    fn = int(np.sum((p != positive) & (y == positive)))
    denom = 2 * tp + fp + fn
    return 0.0 if denom == 0 else 2.0 * tp / denom


def matthews_corrcoef(predictions, labels) -> float:
    """Matthews correlation coefficient (multi-class R_K form; binary MCC for two classes).

    0.0 when the denominator vanishes (e.g. all predictions, or all labels, one class).
    """
    p, y = _pair(predictions, labels)
    classes, inverse = np.unique(np.concatenate([y, p]), return_inverse=True)
    yi, pi = inverse[: y.size], inverse[y.size:]
    k = classes.size
    confusion = np.zeros((k, k), dtype=np.float64)
    np.add.at(confusion, (yi, pi), 1.0)
    t_sum = confusion.sum(axis=1)          # true occurrences per class
    p_sum = confusion.sum(axis=0)          # predicted occurrences per class
    n = confusion.sum()
    correct = np.trace(confusion)
    cov_yp = correct * n - t_sum @ p_sum
    cov_pp = n * n - p_sum @ p_sum
    cov_yy = n * n - t_sum @ t_sum
    if cov_pp == 0.0 or cov_yy == 0.0:
        return 0.0
    return float(cov_yp / np.sqrt(cov_yy * cov_pp))


def pearson(x, y) -> float:
    """Pearson correlation; NaN if either input is constant."""
    a, b = _pair(x, y)
    a = a.astype(np.float64) - np.mean(a, dtype=np.float64)
    b = b.astype(np.float64) - np.mean(b, dtype=np.float64)
    denom = np.sqrt(np.dot(a, a) * np.dot(b, b))
    if denom == 0.0:
        return float("nan")
    # Clip tiny rounding excursions outside [-1, 1].
    return float(np.clip(np.dot(a, b) / denom, -1.0, 1.0))


def rankdata(x) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (SciPy's ``method="average"``)."""
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"rankdata needs a 1-D array, not shape {a.shape}")
    order = np.argsort(a, kind="stable")
    sorted_a = a[order]
    # Start index of each run of equal values, and the run boundaries.
    starts = np.flatnonzero(np.concatenate([[True], sorted_a[1:] != sorted_a[:-1]]))
    ends = np.concatenate([starts[1:], [a.size]])
    avg = (starts + ends - 1) / 2.0 + 1.0            # mean of ranks start+1 .. end
    ranks = np.empty(a.size, dtype=np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def spearman(x, y) -> float:
    """Spearman rank correlation (Pearson of average ranks); NaN if either input is constant."""
    a, b = _pair(x, y)
    return pearson(rankdata(a), rankdata(b))


def glue_metrics(task: str, predictions, labels) -> dict[str, float]:
    """The GLUE metric set of ``task`` plus ``"main"`` (the model-selection score).

    ``predictions`` may be class ids (n,), logits (n, num_labels) — argmax is taken —
    or, for STS-B, scores (n,) or (n, 1).
    """
    name = canonical_task(task)
    p = np.asarray(predictions)
    y = np.asarray(labels)
    if name in REGRESSION_TASKS:
        if p.ndim == 2 and p.shape[1] == 1:
            p = p[:, 0]
        r, s = pearson(p, y), spearman(p, y)
        out = {"pearson": r, "spearman": s, "corr": (r + s) / 2.0}
    else:
        if p.ndim == 2:
            p = np.argmax(p, axis=1)
        if name == "cola":
            out = {"mcc": matthews_corrcoef(p, y)}
        elif name in ("mrpc", "qqp"):
            out = {"accuracy": accuracy(p, y), "f1": f1(p, y, positive=1)}
        else:
            out = {"accuracy": accuracy(p, y)}
    out["main"] = out[MAIN_METRIC[name]]
    return out
