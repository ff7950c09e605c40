"""Seeded random corruptions of an artifact file (shared by tests/test_artifact_fuzz.py and bench/reliability.py).

`corruptions(data, seed, count)` yields ``(kind, bytes)``: `count` corrupted copies of the
artifact bytes `data`, each guaranteed to differ from a valid artifact:

* ``flip``: 1-4 bytes anywhere XOR-ed with a non-zero byte; ``header_flip``: the same
  inside the 8-byte length or the JSON header;
* ``truncate``: the first k < len(data) bytes; ``append``: 1-64 random bytes added;
* ``length``: the header length field replaced by another value;
* ``edit``: a structural edit of the header (dtype, shape, offsets, a tensor renamed,
  dropped or added; a manifest field given a wrong type or an out-of-range value) with
  the header checksum recomputed, so the loader's deeper checks must catch it.

Edits never produce a valid artifact: every one breaks a rule the format states
(docs/artifact.md). Use a W1A1 artifact, where any change of a site's bits is invalid.
"""
from __future__ import annotations

import json
import struct

import numpy as np

from bitaccel.golden.artifact import header_bytes

KINDS = ("flip", "header_flip", "truncate", "append", "length", "edit")
#: Share of each kind in a run (sums to 1).
SHARES = {"flip": 0.35, "header_flip": 0.15, "truncate": 0.15, "append": 0.05, "length": 0.05, "edit": 0.25}


def split(data: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + n]), data[8 + n:]


def join(header: dict, body: bytes) -> bytes:
    blob = header_bytes(header)
    return struct.pack("<Q", len(blob)) + blob + body


def _flip(data: bytes, rng, lo: int, hi: int) -> bytes:
    b = bytearray(data)
    for pos in rng.choice(np.arange(lo, hi), size=int(rng.integers(1, 5)), replace=False):
        b[pos] ^= int(rng.integers(1, 256))
    return bytes(b)


def _manifest_edit(m: dict, rng) -> None:
    """One invalid change of the manifest (in place)."""
    choice = int(rng.integers(0, 10))
    site = sorted(m["quant"])[int(rng.integers(0, len(m["quant"])))]
    field = sorted(m["config"])[int(rng.integers(0, len(m["config"])))]
    num = sorted(m["numerics"])[int(rng.integers(0, len(m["numerics"])))]
    bad_value = [-1, 0, "7", 2.5, None, [1], 10 ** 9, True][int(rng.integers(0, 8))]
    if choice == 0:
        m["version"] = [0, 1, 3, "2", None][int(rng.integers(0, 5))]
    elif choice == 1:
        m["format"] = ["safetensors", "", None, 1][int(rng.integers(0, 4))]
    elif choice == 2:
        if field == "layer_norm_eps" and bad_value in (0, 2.5, True):
            bad_value = -1.0
        if field == "num_labels" and bad_value in (True,):
            bad_value = -1
        m["config"][field] = bad_value
    elif choice == 3:
        m["numerics"][num] = [-1, 99, "8", 2.5, None][int(rng.integers(0, 5))]
    elif choice == 4:
        m["quant"][site] = [2, 4, 8, 0, 3, "1", 1.0, True, None][int(rng.integers(0, 9))]
    elif choice == 5:
        del m["quant"][site]
    elif choice == 6:
        m["quant"]["layers.99.q.in"] = 1
    elif choice == 7:
        key = ["config", "numerics", "quant", "tokenizer", "producer", "sha256"][int(rng.integers(0, 6))]
        m[key] = [[], 1, None, "x"][int(rng.integers(0, 4))] if key != "producer" else 1
    elif choice == 8:
        name = sorted(m["sha256"])[int(rng.integers(0, len(m["sha256"])))]
        m["sha256"][name] = ["0" * 64, "", 5][int(rng.integers(0, 3))]
    else:
        m["config"]["layers"] = [10 ** 9, 3, 1][int(rng.integers(0, 3))]


def _edit(data: bytes, rng) -> bytes:
    header, body = split(data)
    names = sorted(k for k in header if k != "__metadata__")
    name = names[int(rng.integers(0, len(names)))]
    info = header[name]
    choice = int(rng.integers(0, 9))
    if choice == 0:
        others = [d for d in ("U8", "I8", "I16", "U16", "I32", "U32", "I64", "U64", "F32", "F64", "BF16", 7)
                  if d != info["dtype"]]
        info["dtype"] = others[int(rng.integers(0, len(others)))]
    elif choice == 1:
        shape = info["shape"] or [1]
        shape[int(rng.integers(0, len(shape)))] += [-1, 1, 7][int(rng.integers(0, 3))]
        info["shape"] = shape
    elif choice == 2:
        info["shape"] = [[2, "3"], [-1], None, "4", [1.5], [2 ** 62, 8]][int(rng.integers(0, 6))]
    elif choice == 3:
        info["data_offsets"] = [[0, 0], [-8, 0], [1, 2, 3], None, [info["data_offsets"][0] + 8,
                                                                    info["data_offsets"][1] + 8]][int(rng.integers(0, 5))]
    elif choice == 4:
        header[name + ".renamed"] = header.pop(name)
    elif choice == 5:                        # drop the tensor cleanly: entry, bytes, later offsets shifted
        start, end = header.pop(name)["data_offsets"]
        for key, other in header.items():
            if key != "__metadata__" and other["data_offsets"][0] >= end:
                other["data_offsets"] = [o - (end - start) for o in other["data_offsets"]]
        body = body[:start] + body[end:]
    elif choice == 6:
        header["extra.tensor"] = {"dtype": "U8", "shape": [4], "data_offsets": [len(body), len(body) + 4]}
        body = body + b"\x00\x01\x02\x03"
    elif choice == 7:
        header[name] = [info, "x", None, {"dtype": info["dtype"]}][int(rng.integers(0, 4))]
    else:
        m = json.loads(header["__metadata__"]["bitaccel"])
        _manifest_edit(m, rng)
        header["__metadata__"]["bitaccel"] = json.dumps(m, sort_keys=True)
    return join(header, body)


def corrupt(data: bytes, kind: str, rng) -> bytes:
    """One corrupted copy of `data` of the given kind."""
    if kind == "flip":
        return _flip(data, rng, 0, len(data))
    if kind == "header_flip":
        (n,) = struct.unpack("<Q", data[:8])
        return _flip(data, rng, 0, 8 + n)
    if kind == "truncate":
        return data[:int(rng.integers(0, len(data)))]
    if kind == "append":
        return data + rng.integers(0, 256, int(rng.integers(1, 65)), dtype=np.uint8).tobytes()
    if kind == "length":
        (n,) = struct.unpack("<Q", data[:8])
        values = [0, 1, n - 8, n + 8, len(data), 2 ** 40, 2 ** 64 - 1, int(rng.integers(0, 2 ** 32))]
        new = values[int(rng.integers(0, len(values)))]
        if new == n:
            new = n + 16
        return struct.pack("<Q", new) + data[8:]
    if kind == "edit":
        return _edit(data, rng)
    raise ValueError(f"unknown corruption kind {kind!r}")


def corruptions(data: bytes, seed: int, count: int):
    """`count` seeded corruptions of `data`: yields (index, kind, corrupted bytes); never the original bytes."""
    rng = np.random.default_rng(seed)
    kinds = [k for k in KINDS for _ in range(round(SHARES[k] * count))]
    kinds += ["flip"] * (count - len(kinds))
    for i, kind in enumerate(kinds[:count]):
        out = corrupt(data, kind, rng)
        while out == data:                   # e.g. an edit that happens to restore a value
            out = corrupt(data, kind, rng)
        yield i, kind, out
