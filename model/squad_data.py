"""SQuAD v1.1 span extraction data: the official JSON files and sliding-window features.

Nothing here downloads. The user brings ``train-v1.1.json`` / ``dev-v1.1.json``::

    {"version": "1.1", "data": [{"title": ..., "paragraphs": [{"context": ...,
        "qas": [{"id": ..., "question": ..., "answers": [{"text": ..., "answer_start": ...}]}]}]}]}

``read_squad`` checks the layout and raises one-line ``ValueError``s naming the file and
the entry (e.g. ``data[0].paragraphs[2].qas[1] (id '5733be28')``). SQuAD 2.0 questions
(``is_impossible`` true, or no answers) are refused. Answers whose text is not
``context[answer_start:answer_start + len(text)]`` are handled like BERT's
``run_squad.py``: with ``training=True`` the question is skipped, logged and counted in
``SquadFile.skipped_ids`` (training also requires exactly one answer per question, as
run_squad does); for evaluation nothing is skipped, since the official metric only uses
the answer texts (mismatches are still listed in ``SquadFile.mismatched_ids``). The
check is by characters, stricter than run_squad's whitespace-word check, because the
token alignment below works on character offsets.

``prepare_features`` follows Hugging Face ``run_qa.py``: question + context pairs from a
fast tokenizer with ``truncation="only_second"``, ``return_overflowing_tokens`` and
``stride=doc_stride`` (``doc_stride`` = context tokens shared by consecutive windows,
the HF meaning), padded to ``max_len``. Questions are first cut to ``max_query_len``
tokens, as run_squad does. Start / end token positions come from the first answer via
the offset mappings (the last context token starting at or before the answer's first
character, the first ending at or after its last); a window that does not contain the
whole answer points both at the [CLS] index (0 for BERT). This equals run_qa's walk
except when the answer starts in a window's last context token, where run_qa's walk runs
on into [SEP] / padding (offsets (0, 0)) and returns start > end.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

__all__ = ["SquadExample", "SquadFile", "SquadFeatures", "read_squad", "prepare_features"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SquadExample:
    """One question. ``answers`` are the ground-truth texts (one in train, usually three in
    dev) and ``answer_starts`` their character offsets into ``context``."""
    id: str
    title: str
    question: str
    context: str
    answers: tuple[str, ...]
    answer_starts: tuple[int, ...]


@dataclass(frozen=True)
class SquadFile:
    """What ``read_squad`` read: the kept examples, the ids skipped (training only) and the
    ids whose (first, in training; any, in evaluation) answer text does not match the context."""
    examples: list[SquadExample]
    skipped_ids: list[str]
    mismatched_ids: list[str]


def _answer_matches(context: str, text: str, start: int) -> bool:
    return context[start:start + len(text)] == text


def _require(cond: bool, path: Path, where: str, what: str) -> None:
    if not cond:
        raise ValueError(f"{path}: {where}: {what}")


def _field(obj, key: str, kind, path: Path, where: str):
    """obj[key], checked to be a dict entry of type ``kind`` (bool is not an int)."""
    _require(isinstance(obj, dict), path, where, f"expected a JSON object, got {type(obj).__name__}")
    _require(key in obj, path, where, f"missing {key!r}")
    value = obj[key]
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    _require(ok, path, where, f"{key!r} must be {kind.__name__}, got {type(value).__name__}")
    return value


def read_squad(path: str | os.PathLike, *, training: bool) -> SquadFile:
    """Read a SQuAD v1.1 JSON file (see the module docstring for the checks and skipping).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for bad JSON, a bad
    layout, an empty context / question / answer, a negative ``answer_start``, a duplicate
    id, a SQuAD 2.0 question, or (``training``) a question without exactly one answer.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SQuAD file not found: {path}")
    try:
        with open(path, encoding="utf-8") as fh:
            root = json.load(fh)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON: {err}") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text: {err}") from None
    articles = _field(root, "data", list, path, "top level")

    examples, skipped, mismatched, seen = [], [], [], set()
    for a, article in enumerate(articles):
        where = f"data[{a}]"
        title = article.get("title", "") if isinstance(article, dict) else ""
        _require(isinstance(title, str), path, where, f"'title' must be str, got {type(title).__name__}")
        for p, para in enumerate(_field(article, "paragraphs", list, path, where)):
            where = f"data[{a}].paragraphs[{p}]"
            context = _field(para, "context", str, path, where)
            _require(bool(context.strip()), path, where, "empty context")
            for q, qa in enumerate(_field(para, "qas", list, path, where)):
                where = f"data[{a}].paragraphs[{p}].qas[{q}]"
                qid = _field(qa, "id", str, path, where)
                where += f" (id {qid!r})"
                _require(qid not in seen, path, where, "duplicate question id")
                seen.add(qid)
                question = _field(qa, "question", str, path, where).lstrip()   # HF run_qa: drop leading blanks
                _require(bool(question.strip()), path, where, "empty question")
                _require(not qa.get("is_impossible", False), path, where,
                         "is_impossible is set: SQuAD 2.0 unanswerable questions are not supported")
                answers = _field(qa, "answers", list, path, where)
                _require(bool(answers), path, where, "no answers (SQuAD 2.0 unanswerable questions "
                                                     "are not supported)")
                _require(not training or len(answers) == 1, path, where,
                         f"a training question needs exactly 1 answer, got {len(answers)}")
                texts, starts = [], []
                for i, ans in enumerate(answers):
                    at = f"{where}.answers[{i}]"
                    text = _field(ans, "text", str, path, at)
                    start = _field(ans, "answer_start", int, path, at)
                    _require(bool(text), path, at, "empty answer text")
                    _require(start >= 0, path, at, f"negative answer_start {start}")
                    texts.append(text)
                    starts.append(start)
                bad = [i for i, (t, s) in enumerate(zip(texts, starts)) if not _answer_matches(context, t, s)]
                if bad:
                    mismatched.append(qid)
                    if training:
                        log.warning("%s: %s: skipped, answer %r is not at context[%d:]", path, where,
                                    texts[0], starts[0])
                        skipped.append(qid)
                        continue
                examples.append(SquadExample(qid, title, question, context, tuple(texts), tuple(starts)))
    if skipped:
        log.warning("%s: skipped %d of %d questions whose answer text does not match the context",
                    path, len(skipped), len(seen))
    return SquadFile(examples, skipped, mismatched)


# ---------------------------------------------------------------------------------------
# Features
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SquadFeatures:
    """Sliding-window features of a list of examples (n = number of features, S = max_len).

    ``tensors``: int64 ``input_ids``, ``attention_mask``, ``token_type_ids`` of shape (n, S)
    and ``start_positions``, ``end_positions`` of shape (n,) (token indices of the first
    answer, inclusive; the [CLS] index when the window does not hold the whole answer).
    ``example_index[f]``: the index of the example feature f was cut from.
    ``offsets[f][t]``: ``(char_start, char_end)`` of token t in the context, or None for
    question, special and padding tokens.
    """
    tensors: dict[str, torch.Tensor]
    example_index: list[int]
    offsets: list[list[tuple[int, int] | None]]


def _truncate_questions(questions: list[str], tokenizer, max_query_len: int) -> list[str]:
    """Each question cut after its ``max_query_len``-th token (at that token's character end)."""
    enc = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    out = []
    for q, offsets in zip(questions, enc["offset_mapping"]):
        out.append(q if len(offsets) <= max_query_len else q[:offsets[max_query_len - 1][1]])
    return out


def prepare_features(examples: Sequence[SquadExample], tokenizer, *, max_len: int = 384, doc_stride: int = 128,
                     max_query_len: int = 64) -> SquadFeatures:
    """Tokenize question + context pairs into overlapping windows of ``max_len`` tokens.

    ``tokenizer`` must be a fast (Rust) Hugging Face tokenizer with a [CLS] token that
    pads on the right. Each window holds [CLS] question [SEP] context-part [SEP]; the
    context-part holds at least ``max_len - max_query_len - 3`` tokens, which must exceed
    ``doc_stride``.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("prepare_features needs a fast tokenizer (PreTrainedTokenizerFast) for offset mappings")
    if tokenizer.cls_token_id is None or tokenizer.padding_side != "right":
        raise ValueError("prepare_features needs a tokenizer with a [CLS] token that pads on the right")
    for name, value in (("max_len", max_len), ("doc_stride", doc_stride), ("max_query_len", max_query_len)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, not {value!r}")
    if max_len - max_query_len - 3 <= doc_stride:
        raise ValueError(f"max_len {max_len} leaves {max_len - max_query_len - 3} context tokens after a "
                         f"{max_query_len}-token question; doc_stride {doc_stride} must be smaller")
    examples = list(examples)
    if not examples:
        raise ValueError("prepare_features needs at least one example")

    questions = _truncate_questions([e.question for e in examples], tokenizer, max_query_len)
    enc = tokenizer(questions, [e.context for e in examples], truncation="only_second", max_length=max_len,
                    stride=doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True,
                    padding="max_length", return_token_type_ids=True, return_attention_mask=True)
    example_index = list(enc["overflow_to_sample_mapping"])
    all_offsets, starts, ends = [], [], []
    for f, (ids, offsets) in enumerate(zip(enc["input_ids"], enc["offset_mapping"])):
        seq = enc.sequence_ids(f)
        context_offsets = [tuple(o) if s == 1 else None for o, s in zip(offsets, seq)]
        all_offsets.append(context_offsets)
        cls = ids.index(tokenizer.cls_token_id)
        ex = examples[example_index[f]]
        start_char = ex.answer_starts[0]
        end_char = start_char + len(ex.answers[0])
        tokens = [t for t, o in enumerate(context_offsets) if o is not None]
        if not tokens or context_offsets[tokens[0]][0] > start_char or context_offsets[tokens[-1]][1] < end_char:
            starts.append(cls)
            ends.append(cls)
            continue
        # run_qa's walk: the last context token starting at or before start_char, and the
        # first context token ending at or after end_char.
        start = max(t for t in tokens if context_offsets[t][0] <= start_char)
        end = min(t for t in tokens if context_offsets[t][1] >= end_char)
        starts.append(start)
        ends.append(end)

    tensors = {k: torch.tensor(enc[k], dtype=torch.long)
               for k in ("input_ids", "attention_mask", "token_type_ids")}
    tensors["start_positions"] = torch.tensor(starts, dtype=torch.long)
    tensors["end_positions"] = torch.tensor(ends, dtype=torch.long)
    return SquadFeatures(tensors, example_index, all_offsets)
