"""Keep freed memory in the process on glibc, so big tensors do not page-fault at every training step.

By default glibc serves allocations above a (dynamic) threshold of at most 32 MB with
mmap and returns them to the system when freed; allocations below it come from the heap,
which is trimmed back to the system when its top holds more than a threshold. A training
step allocates and frees the same large activations, gradients and weight copies every
time (the word embedding's gradient alone is 47 MB for MiniLM), so each step pays for
fresh zero pages. Raising both thresholds keeps that memory mapped: later steps reuse it.
Measured on the MiniLM W1A1 distillation step in bench/train_step_speed.py.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

#: glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Allocations below this come from the heap; freed heap memory below this stays in the process.
KEEP_BYTES = 1 << 30

_applied = False


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds to KEEP_BYTES (once per process). False where not glibc."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, KEEP_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, KEEP_BYTES))
    return _applied
