"""Validation of model inputs (token ids, attention mask, token types) shared by both models."""
from __future__ import annotations

import numpy as np

from .config import ModelConfig

_INT64 = 2 ** 63


def parse_int_list(text: str, what: str) -> list[int]:
    """'101,7592,102' -> [101, 7592, 102]; ValueError naming `what` for non-integers, empty lists and values
    outside int64 (the command-line form of token ids and masks)."""
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise ValueError(f"{what} must be comma-separated integers, e.g. 101,7592,102; got {text!r}") from None
    if not values:
        raise ValueError(f"{what} is empty")
    big = [v for v in values if not -_INT64 <= v < _INT64]
    if big:
        raise ValueError(f"{what}: {big[0]} is out of range (token ids are small non-negative integers)")
    return values


def check_inputs(config: ModelConfig, ids, mask=None, types=None):
    """Return (ids, mask, types) as 2-D int64 / bool arrays (B, S), or raise ValueError with the reason."""
    ids = np.asarray(ids)
    if ids.ndim == 1:
        ids = ids[None, :]
    if ids.ndim != 2 or ids.shape[1] == 0:
        raise ValueError(f"token ids must be a non-empty sequence or a (batch, seq) array, not shape {ids.shape}")
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError("token ids must be integers")
    b, s = ids.shape
    if s > config.max_position:
        raise ValueError(f"sequence of {s} tokens is longer than the model's max_position {config.max_position}")
    if ids.min() < 0 or ids.max() >= config.vocab_size:
        raise ValueError(f"token ids must lie in [0, {config.vocab_size}), got [{ids.min()}, {ids.max()}]")
    if mask is None:
        mask = np.ones((b, s), dtype=bool)
    else:
        mask = np.asarray(mask)
        if mask.size != b * s:
            raise ValueError(f"attention mask has {mask.size} entries, the token ids {b * s}")
        if mask.dtype != bool and not (np.issubdtype(mask.dtype, np.number) and np.isin(mask, (0, 1)).all()):
            raise ValueError("attention mask entries must be 0 or 1")
        mask = mask.reshape(b, s).astype(bool)
    if not mask.any(axis=1).all():
        raise ValueError("attention mask: every sequence needs at least one unmasked token")
    types = np.zeros((b, s), dtype=np.int64) if types is None else np.asarray(types, dtype=np.int64).reshape(b, s)
    if types.min() < 0 or types.max() >= config.type_vocab:
        raise ValueError(f"token type ids must lie in [0, {config.type_vocab})")
    return ids.astype(np.int64), mask, types
