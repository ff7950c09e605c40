"""Atomic training checkpoints and RNG state capture.

`save_checkpoint` writes with `torch.save` to a temporary file in the destination's
folder, flushes and fsyncs it, renames it over the destination (`os.replace`, atomic on
POSIX) and fsyncs the folder: a crash at any point leaves either the previous checkpoint
or the new one, never a partial file. `load_checkpoint` reads with
`torch.load(weights_only=True)`: only tensors and plain containers/numbers/strings are
accepted, nothing is unpickled into arbitrary objects. Everything stored must therefore
be tensors, dicts, lists, tuples, str, int, float, bool or None (`rng_state` converts the
NumPy and Python RNG states accordingly).
"""
from __future__ import annotations

import os
import random
import shutil
import tempfile

import numpy as np
import torch


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """torch.save(state) to `path` atomically (temporary file in the same folder, fsync, rename)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(folder)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Inverse of `save_checkpoint` (weights_only=True: no arbitrary unpickling)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no checkpoint file")
    return torch.load(path, map_location=map_location, weights_only=True)


def save_model_atomic(model, folder: str | os.PathLike) -> None:
    """model.save(folder) where each file is replaced atomically (written to a sibling folder first).

    config.json and bitaccel_model.json are the same for every save of one training stage,
    so the folder is consistent at every moment; the weights file is replaced last.
    """
    folder = os.fspath(folder)
    parent = os.path.dirname(os.path.abspath(folder))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=os.path.basename(folder) + ".", suffix=".tmp", dir=parent)
    try:
        model.save(tmp)
        os.makedirs(folder, exist_ok=True)
        names = sorted(os.listdir(tmp), key=lambda n: n.endswith(".safetensors"))   # weights last
        for name in names:
            with open(os.path.join(tmp, name), "rb+") as f:
                os.fsync(f.fileno())
            os.replace(os.path.join(tmp, name), os.path.join(folder, name))
        _fsync_dir(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def rng_state() -> dict:
    """Torch (CPU and CUDA), NumPy and Python RNG states as weights_only-loadable values."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Inverse of `rng_state`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), NumPy's global RNG and Python's random."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
