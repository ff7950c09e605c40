"""A compiled program: the external-memory image (instructions, model, input), its regions and the checkpoint map.

File format (safetensors-compatible, written and read with NumPy and json only; no pickle):
  8 bytes   little-endian u64 N, the header length
  N bytes   JSON header: {"image": {dtype "U8", shape, data_offsets}, "__metadata__": {"bitaccel-program": MANIFEST}}
  rest      the image bytes
MANIFEST (a JSON string): format name and version, instruction width, target, model config,
sequence length, regions, checkpoint map and the SHA-256 of the image. Loading checks all of
it and decodes every instruction; any problem raises ProgramError naming the file.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import struct
import tempfile

import numpy as np

from bitaccel.golden.config import ModelConfig
from bitaccel.golden.inputs import check_inputs
from bitaccel.hw.spec.isa import INSTR_BITS, INSTR_BYTES, Instruction, IsaError, decode_program

from .memory import token_words
from .target import Target

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "ProgramError", "View", "Piece", "Checkpoint", "Program",
           "save_program", "load_program"]

FORMAT_NAME = "bitaccel-program"
FORMAT_VERSION = 2     # 2: R-row interleaved activation buffer, traces in hardware order
_MAX_HEADER = 64 * 1024 * 1024


class ProgramError(ValueError):
    """A file that is not a valid program for this version of bitaccel."""


@dataclasses.dataclass(frozen=True)
class View:
    """A rows x cols region of a buffer.

    buffer "act": a code tensor (layout, `width` as in `compiler.memory.act_address`: ROWS the
    packed row length, HEADS / TRANS the channel group size; first channel `col`, `bits`,
    `signed`, `total_rows` = the tensor's row count, which HEADS and TRANS addressing need);
    "res" / "scr": element (r, c) at addr + r*width + col + c;
    "ext": int32 values at byte addr: stream `stream` of `streams` interleaved rows x cols
    streams in the hardware's order, `compiler.memory.trace_offsets(rows, cols, streams,
    stream, unit, tile_cols)` (tile_cols = C: a MATMUL's drain order; 0: row-major).
    """

    buffer: str
    addr: int
    rows: int
    cols: int
    width: int
    col: int = 0
    layout: int = 0
    bits: int = 1
    signed: bool = True
    total_rows: int = 0
    streams: int = 1
    stream: int = 0
    unit: int = 1
    tile_cols: int = 0


@dataclasses.dataclass(frozen=True)
class Piece:
    """Part of a golden intermediate: `view` holds it right after instruction `pc` ran.

    It is golden[lead][..., col0:col0+cols] (rows x cols), or, where golden[lead] is a vector,
    golden[lead][col0:col0+rows*cols].
    """

    pc: int
    view: View
    lead: tuple
    col0: int = 0


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """Where a golden intermediate lives: in on-chip buffers (`buffers`) and/or in the trace (`trace`)."""

    shape: tuple
    buffers: tuple = ()
    trace: tuple = ()


@dataclasses.dataclass
class Program:
    """Instructions and memory images for one model, target and sequence length.

    `image` is the whole external memory the accelerator sees (uint8): instruction words at
    `regions["program"]`, the model image, the input image (`regions["tokens"]`), the output
    and the trace. `checkpoints` maps golden intermediate names to where they can be read.
    """

    target: Target
    config: ModelConfig
    seq_len: int
    image: np.ndarray
    regions: dict
    checkpoints: dict

    @property
    def instructions(self) -> list[Instruction]:
        addr, size = self.regions["program"]
        return decode_program(self.image[addr:addr + size].tobytes())

    def with_inputs(self, ids, mask=None, types=None) -> "Program":
        """The same program with another input image (token ids, mask, types of `seq_len` tokens)."""
        ids, valid, types = check_inputs(self.config, ids, mask, types)
        if ids.shape != (1, self.seq_len):
            raise ValueError(f"this program runs one sequence of {self.seq_len} tokens, not shape {ids.shape}")
        addr, size = self.regions["tokens"]
        image = self.image.copy()
        image[addr:addr + size] = np.frombuffer(token_words(ids, types, valid), dtype=np.uint8)
        return dataclasses.replace(self, image=image)

    def save(self, path) -> None:
        save_program(self, path)


def _manifest(p: Program) -> dict:
    return {
        "format": FORMAT_NAME, "version": FORMAT_VERSION, "instr_bits": INSTR_BITS,
        "target": p.target.to_dict(), "config": p.config.to_dict(), "seq_len": p.seq_len,
        "regions": {k: list(v) for k, v in p.regions.items()},
        "checkpoints": {name: {"shape": list(c.shape),
                               "buffers": [_piece_json(x) for x in c.buffers],
                               "trace": [_piece_json(x) for x in c.trace]} for name, c in p.checkpoints.items()},
        "sha256": hashlib.sha256(p.image.tobytes()).hexdigest(),
    }


def _piece_json(piece: Piece) -> dict:
    return {"pc": piece.pc, "view": dataclasses.asdict(piece.view), "lead": list(piece.lead), "col0": piece.col0}


def _piece(d: dict) -> Piece:
    return Piece(int(d["pc"]), View(**d["view"]), tuple(int(x) for x in d["lead"]), int(d["col0"]))


def save_program(program: Program, path) -> None:
    """Write atomically (temporary file in the same folder, then rename)."""
    image = np.ascontiguousarray(program.image, dtype=np.uint8)
    header = {"image": {"dtype": "U8", "shape": [int(image.size)], "data_offsets": [0, int(image.size)]},
              "__metadata__": {"bitaccel-program": json.dumps(_manifest(program), sort_keys=True)}}
    blob = json.dumps(header, sort_keys=True).encode("utf-8")
    blob += b" " * (-len(blob) % 8)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".program-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(blob)) + blob + image.tobytes())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_program(path) -> Program:
    """Read and check a program file; every problem raises ProgramError with the reason."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except (FileNotFoundError, IsADirectoryError):
        raise ProgramError(f"{path}: no such program file") from None
    if len(data) < 8:
        raise ProgramError(f"{path}: truncated ({len(data)} bytes; not even a header length)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > _MAX_HEADER or 8 + n > len(data):
        raise ProgramError(f"{path}: truncated or not a program (header length {n}, file {len(data)} bytes)")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
        m = json.loads(header["__metadata__"]["bitaccel-program"])
        info = header["image"]
        start, end = (int(o) for o in info["data_offsets"])
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise ProgramError(f"{path}: not a bitaccel program (unreadable header: {e})") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT_NAME:
        raise ProgramError(f"{path}: not a bitaccel program")
    if m.get("version") != FORMAT_VERSION or m.get("instr_bits") != INSTR_BITS:
        raise ProgramError(f"{path}: program version {m.get('version')!r} / {m.get('instr_bits')!r}-bit instructions; "
                           f"this bitaccel reads version {FORMAT_VERSION} with {INSTR_BITS}-bit instructions")
    body = data[8 + n:]
    if info.get("dtype") != "U8" or start != 0 or end != len(body):
        raise ProgramError(f"{path}: truncated: image is {len(body)} bytes, the header says {end - start}")
    image = np.frombuffer(body, dtype=np.uint8).copy()
    if hashlib.sha256(image.tobytes()).hexdigest() != m.get("sha256"):
        raise ProgramError(f"{path}: checksum mismatch in the image (corrupt file)")
    try:
        prog = Program(
            target=Target.from_dict(m["target"]),
            config=ModelConfig.from_dict(m["config"]),
            seq_len=int(m["seq_len"]),
            image=image,
            regions={k: (int(v[0]), int(v[1])) for k, v in m["regions"].items()},
            checkpoints={name: Checkpoint(tuple(int(s) for s in c["shape"]),
                                          tuple(_piece(x) for x in c["buffers"]),
                                          tuple(_piece(x) for x in c["trace"])) for name, c in m["checkpoints"].items()},
        )
        if prog.regions["program"][1] % INSTR_BYTES:
            raise ProgramError("program region is not a whole number of instructions")
        prog.instructions     # decodes every word
    except IsaError as e:
        raise ProgramError(f"{path}: bad instruction: {e}") from None
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, ProgramError):
            raise ProgramError(f"{path}: {e}") from None
        raise ProgramError(f"{path}: bad manifest: {e}") from None
    return prog
