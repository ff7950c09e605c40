"""SQuAD v1.1 metrics and span decoding in plain Python / NumPy (no torch).

Scores follow the official ``evaluate-v1.1.py`` exactly:

- ``normalize_answer``: lower case, drop ASCII punctuation (``string.punctuation``),
  replace the whole words a / an / the by a space, collapse whitespace.
- ``exact_match_score``: normalized strings equal (so "" matches "The ." in v1.1).
- ``f1_score``: token F1 of the normalized, whitespace-split answers with multiset
  (``Counter``) overlap; 0.0 when nothing overlaps, including when both are empty
  (v1.1 rule; SQuAD 2.0 would give 1.0 there).
- ``squad_scores``: the max of each score over an example's ground truths, averaged
  over all reference examples, as **percentages** (EM 81.2, not 0.812). A reference
  without a prediction scores 0 (logged, as the official script prints it); predictions
  for unknown ids are ignored.

``decode_best_spans`` turns per-feature start/end logits into one answer text per
example, as Hugging Face ``run_qa.py``'s ``postprocess_qa_predictions`` does for v1.1
(without its optional ``token_is_max_context`` filter).
"""
from __future__ import annotations

import logging
import re
import string
from collections import Counter
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

__all__ = [
    "normalize_answer", "exact_match_score", "f1_score", "squad_scores",
    "Span", "feature_nbest", "decode_best_spans",
]

log = logging.getLogger(__name__)

_PUNCT = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(s: str) -> str:
    """Lower case, remove punctuation, remove articles, collapse whitespace (official order)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def exact_match_score(prediction: str, ground_truth: str) -> float:
    """1.0 if the normalized strings are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def f1_score(prediction: str, ground_truth: str) -> float:
    """Token-level F1 in [0, 1] of the normalized answers (multiset overlap)."""
    pred = normalize_answer(prediction).split()
    gold = normalize_answer(ground_truth).split()
    same = sum((Counter(pred) & Counter(gold)).values())
    if same == 0:
        return 0.0
    precision = same / len(pred)
    recall = same / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """{"exact_match": %, "f1": %}: max over each id's ground-truth texts, mean over the ids
    of ``references`` (a missing prediction scores 0)."""
    if not references:
        raise ValueError("squad_scores needs at least one reference example")
    em = f1 = 0.0
    missing = 0
    for qid, truths in references.items():
        if isinstance(truths, str) or not truths:
            raise ValueError(f"references[{qid!r}] must be a non-empty list of answer texts, got {truths!r}")
        if qid not in predictions:
            missing += 1
            continue
        pred = predictions[qid]
        em += max(exact_match_score(pred, t) for t in truths)
        f1 += max(f1_score(pred, t) for t in truths)
    if missing:
        log.warning("%d of %d questions have no prediction and score 0", missing, len(references))
    n = len(references)
    return {"exact_match": 100.0 * em / n, "f1": 100.0 * f1 / n}


# ---------------------------------------------------------------------------------------
# Span decoding
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Span:
    """One candidate answer: token indices ``start``..``end`` (inclusive) of feature
    ``feature``, its character range ``[char_start, char_end)`` in the context, and
    ``score`` = start logit + end logit."""
    score: float
    feature: int
    start: int
    end: int
    char_start: int
    char_end: int


def _top(logits: np.ndarray, n: int) -> list[int]:
    """Indices of the n largest values, largest first (ties: lower index first)."""
    return np.argsort(-logits, kind="stable")[:n].tolist()


def feature_nbest(start_logits, end_logits, offsets: Sequence, *, n_best: int = 20,
                  max_answer_length: int = 30, feature: int = 0) -> list[Span]:
    """Valid spans of one feature from its top-``n_best`` start and end tokens, best first.

    ``start_logits`` / ``end_logits``: shape (seq_len,). ``offsets``: seq_len entries, a
    ``(char_start, char_end)`` pair for context tokens and None elsewhere (question,
    special and padding tokens). A pair (s, e) is kept when both tokens are context
    tokens, ``e >= s`` and ``e - s + 1 <= max_answer_length`` (tokens).
    """
    start_logits = np.asarray(start_logits, dtype=np.float64)
    end_logits = np.asarray(end_logits, dtype=np.float64)
    if start_logits.ndim != 1 or start_logits.shape != end_logits.shape:
        raise ValueError(f"start/end logits must both have shape (seq_len,), got "
                         f"{start_logits.shape} and {end_logits.shape}")
    if len(offsets) != len(start_logits):
        raise ValueError(f"{len(offsets)} offsets for {len(start_logits)} logits")
    if n_best < 1 or max_answer_length < 1:
        raise ValueError(f"n_best and max_answer_length must be >= 1, got {n_best}, {max_answer_length}")
    spans = []
    for s in _top(start_logits, n_best):
        for e in _top(end_logits, n_best):
            if offsets[s] is None or offsets[e] is None:
                continue
            if e < s or e - s + 1 > max_answer_length:
                continue
            spans.append(Span(float(start_logits[s] + end_logits[e]), feature, s, e,
                              int(offsets[s][0]), int(offsets[e][1])))
    spans.sort(key=lambda sp: -sp.score)         # stable: ties keep (start rank, end rank) order
    return spans[:n_best]


def decode_best_spans(start_logits, end_logits, example_index: Sequence[int], offsets: Sequence[Sequence],
                      contexts: Sequence[str], *, n_best: int = 20, max_answer_length: int = 30) -> list[str]:
    """The best answer text of each example.

    ``start_logits`` / ``end_logits``: (n_features, seq_len). ``example_index[f]``: the
    example (index into ``contexts``) feature f was cut from; ``offsets[f]``: its per-token
    context offsets (see ``feature_nbest``). The best span over all features of an example
    (highest start + end logit; ties go to the earlier feature) gives
    ``context[char_start:char_end]``; an example with no valid span gets "".
    """
    start_logits = np.asarray(start_logits, dtype=np.float64)
    end_logits = np.asarray(end_logits, dtype=np.float64)
    n = len(example_index)
    if start_logits.ndim != 2 or start_logits.shape != end_logits.shape or start_logits.shape[0] != n:
        raise ValueError(f"start/end logits must both have shape ({n}, seq_len) for {n} features, got "
                         f"{start_logits.shape} and {end_logits.shape}")
    if len(offsets) != n:
        raise ValueError(f"{len(offsets)} offset lists for {n} features")
    best: list[Span | None] = [None] * len(contexts)
    for f, ex in enumerate(example_index):
        if not 0 <= ex < len(contexts):
            raise ValueError(f"feature {f} points at example {ex}, but there are {len(contexts)} contexts")
        spans = feature_nbest(start_logits[f], end_logits[f], offsets[f], n_best=n_best,
                              max_answer_length=max_answer_length, feature=f)
        if spans and (best[ex] is None or spans[0].score > best[ex].score):
            best[ex] = spans[0]
    return ["" if sp is None else ctx[sp.char_start:sp.char_end] for sp, ctx in zip(best, contexts)]
