"""What one inference runs on the accelerator: the schedule of blocks and stages (pure Python).

An inference of a BERT-shaped encoder (golden.config.ModelConfig) at sequence length S is
a list of `Block`s run one after the other. A block is a chain of `Stage`s in which each
stage streams the previous one's output (the MAC array feeding a threshold unit, a
LayerNorm feeding a threshold unit, ...). A block with ``repeat = heads`` runs once per
attention head. Which integer computation each stage performs is docs/numerics.md §7 (the
accelerator part); this module only says *what* runs with *which shapes and widths*; how
long it takes is sim/cycles.py and what it costs is sim/energy.py.

Schedule (docs/sim.md explains why, and that the whole-encoder sequencer that would run it
does not exist yet):

* ``embed_ln``: embedding LayerNorm -> binarize layer 0's q.in, k.in, v.in.
* per layer i: ``q``, ``k``, ``v`` (linear -> q/k/v.out binarization);
  ``qk_softmax`` x heads (Q·Kᵀ -> softmax [-> probs requant if multi-bit]);
  ``pv`` x heads (P·V -> o.in binarization of the head's d channels);
  ``o_ln1`` (O linear -> residual requant -> residual add + LayerNorm -> ffn1.in binarization);
  ``ffn1`` (FFN1 linear -> ReLU-folded ffn2.in binarization);
  ``ffn2_ln2`` (FFN2 linear -> residual requant -> residual add + LayerNorm -> binarization
  of the next layer's q.in, k.in, v.in, or of pooler.in on the [CLS] row after the last layer
  of a classifier head; after the last layer of a span head, nothing: its LayerNorm output, the
  final residual stream, leaves the chip).
* ``pooler`` (classifier head only): the pooler's binary linear on the [CLS] row (its
  accumulators leave the chip).

The head is the artifact's (golden.config.HEADS, as compiler.blocks.encoder_blocks follows it):
"classifier" has the site pooler.in and the pooler block, "span" has neither.

A binarization is the threshold unit for a 1-bit site and the requantization unit for a
multi-bit site (docs/numerics.md §3).
"""
from __future__ import annotations

import dataclasses

from bitaccel.golden.config import MODEL_SITES, ModelConfig, check_head, site_names, uniform_quant
from bitaccel.golden.formats import ACT_BITS, RESIDUAL_BITS, NumericFormat, acc_bits

__all__ = ["Matmul", "PostProc", "Softmax", "LayerNorm", "Block", "inference_blocks", "quant_map", "map_head",
           "parse_array", "parse_arrays", "UNIT_WORKLOAD_KEYS", "unit_workload"]


@dataclasses.dataclass(frozen=True)
class Matmul:
    """``out (M, N) = a (M, K) @ b (N, K).T`` on the MAC array (bit-serial over plane pairs).

    ``b_kind`` is "weights" (a static linear weight, 1-bit) or "activations" (a dynamic
    operand: K in Q·Kᵀ, V in P·V). `acc_width` is the exact accumulator width of this
    product (golden.formats.acc_bits), the width a stage after it reads.
    """

    name: str
    m: int
    n: int
    k: int
    a_bits: int
    a_signed: bool
    b_bits: int = 1
    b_signed: bool = True
    b_kind: str = "weights"
    unit: str = dataclasses.field(default="mac_array", init=False)

    @property
    def macs(self) -> int:
        """Useful binary MACs: M * N * K * plane pairs."""
        return self.m * self.n * self.k * self.a_bits * self.b_bits

    @property
    def acc_width(self) -> int:
        return acc_bits(self.k, self.a_bits, self.a_signed, self.b_bits, self.b_signed)


@dataclasses.dataclass(frozen=True)
class PostProc:
    """Binarize (threshold unit) or requantize (requant unit) `rows` x `channels` values.

    `in_width`: bits of the values read (an accumulator, or the 16-bit residual stream);
    `out_bits`: bits of each output code (16 for the residual stream); `source`: "array"
    (accumulators streaming out of the MAC array) or "layernorm" (the residual stream);
    `dest`: "activations" (codes written to the activation buffer) or "layernorm" (residual
    values streaming into the LayerNorm unit).
    """

    name: str
    unit: str            # "threshold" | "requant"
    rows: int
    channels: int
    in_width: int
    out_bits: int
    source: str = "array"
    dest: str = "activations"


@dataclasses.dataclass(frozen=True)
class Softmax:
    """`rows` attention rows of `seq_len` keys; mode "binary" (1-bit probs) or "multibit"."""

    name: str
    rows: int
    seq_len: int
    mode: str
    score_width: int
    unit: str = dataclasses.field(default="softmax", init=False)


@dataclasses.dataclass(frozen=True)
class LayerNorm:
    """`rows` rows of `hidden` residual values; ``add``: residual add first (x = sat16(y + h))."""

    name: str
    rows: int
    hidden: int
    add: bool
    unit: str = dataclasses.field(default="layernorm", init=False)


@dataclasses.dataclass(frozen=True)
class Block:
    """One step of the schedule: `stages` chained (each streams its predecessor's output), run `repeat` times."""

    name: str
    kind: str
    stages: tuple
    repeat: int = 1

    @property
    def matmul(self) -> Matmul | None:
        return next((s for s in self.stages if isinstance(s, Matmul)), None)

    @property
    def macs(self) -> int:
        mm = self.matmul
        return 0 if mm is None else mm.macs * self.repeat


# ----------------------------------------------------------------------------- quantization map
def map_head(act_bits: int | dict, head: str | None = None) -> str:
    """The head of a quantization map: `head` if given (checked), else the map's own ("classifier" for a
    uniform width; for a site -> bits dict, "classifier" if it has pooler.in, else "span")."""
    if head is not None:
        return check_head(head)
    if isinstance(act_bits, dict) and not any(site in act_bits for site in MODEL_SITES):
        return "span"
    return "classifier"


def quant_map(config: ModelConfig, act_bits: int | dict = 1, head: str | None = None) -> dict[str, int]:
    """Activation bits of every site: a uniform width (1, 2, 4, 8) or an artifact's own map (checked).

    `head`: "classifier" or "span" (golden.config.HEADS); None = the map's own (`map_head`).
    """
    head = map_head(act_bits, head)
    if isinstance(act_bits, dict):
        missing = set(site_names(config, head)) - set(act_bits)
        if missing:
            raise ValueError(f"quantization map lacks {len(missing)} site(s), e.g. {sorted(missing)[:3]}")
        bad = {k: v for k, v in act_bits.items() if v not in ACT_BITS}
        if bad:
            raise ValueError(f"activation bits must be one of {ACT_BITS}: {sorted(bad.items())[:3]}")
        return dict(act_bits)
    return uniform_quant(config, act_bits, head)


def _post(name: str, bits: int, rows: int, channels: int, in_width: int, source="array", dest="activations"):
    return PostProc(name, "threshold" if bits == 1 else "requant", rows, channels, in_width, bits, source, dest)


def inference_blocks(config: ModelConfig, seq: int, quant: dict[str, int] | int = 1,
                     numerics: NumericFormat | None = None, head: str | None = None) -> list[Block]:
    """The blocks of one inference of `config` at sequence length `seq` (all positions valid).

    `quant`: site -> activation bits (an artifact's ``quant``) or one uniform width. `head`:
    "classifier" (ends with the pooler) or "span" (ends with the last layer's LayerNorm); None =
    the quantization map's own (`map_head`: a map without pooler.in is a span head's).
    """
    config.validate()
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise ValueError(f"sequence length must be a positive integer, not {seq!r}")
    if seq > config.max_position:
        raise ValueError(f"sequence length {seq} exceeds the model's max_position {config.max_position}")
    fmt = numerics or NumericFormat()
    head = map_head(quant, head)
    q = quant_map(config, quant, head)
    s, h, f, nh, d = seq, config.hidden, config.ffn, config.heads, config.head_dim
    r16 = RESIDUAL_BITS
    blocks: list[Block] = []

    def in_sites(pre: str, rows: int = s) -> tuple:
        return tuple(_post(f"{pre}.{x}.in", q[f"{pre}.{x}.in"], rows, h, r16, source="layernorm")
                     for x in ("q", "k", "v"))

    blocks.append(Block("embeddings.ln", "embed_ln",
                        (LayerNorm("embeddings.ln", s, h, add=False),) + in_sites("layers.0")))
    for i in range(config.layers):
        pre = f"layers.{i}"
        for x in ("q", "k", "v"):
            mm = Matmul(f"{pre}.{x}", s, h, h, q[f"{pre}.{x}.in"], True)
            blocks.append(Block(mm.name, x, (mm, _post(f"{pre}.{x}.out", q[f"{pre}.{x}.out"], s, h, mm.acc_width))))
        bq, bk, bv, bp = (q[f"{pre}.{x}"] for x in ("q.out", "k.out", "v.out", "probs"))
        qk = Matmul(f"{pre}.qk", s, s, d, bq, True, bk, True, "activations")
        stages = (qk, Softmax(f"{pre}.softmax", s, s, "binary" if bp == 1 else "multibit", qk.acc_width))
        if bp > 1:   # probabilities (prob_frac + 1 bits) -> bp-bit codes
            stages += (PostProc(f"{pre}.probs", "requant", s, s, fmt.prob_frac + 1, bp, source="softmax"),)
        blocks.append(Block(f"{pre}.qk_softmax", "qk_softmax", stages, repeat=nh))
        pv = Matmul(f"{pre}.pv", s, d, s, bp, False, bv, True, "activations")
        blocks.append(Block(pv.name, "pv", (pv, _post(f"{pre}.o.in", q[f"{pre}.o.in"], s, d, pv.acc_width)), repeat=nh))
        o = Matmul(f"{pre}.o", s, h, h, q[f"{pre}.o.in"], True)
        blocks.append(Block(f"{pre}.o_ln1", "o_ln1", (
            o, PostProc(f"{pre}.o.out", "requant", s, h, o.acc_width, r16, dest="layernorm"),
            LayerNorm(f"{pre}.ln1", s, h, add=True),
            _post(f"{pre}.ffn1.in", q[f"{pre}.ffn1.in"], s, h, r16, source="layernorm"))))
        f1 = Matmul(f"{pre}.ffn1", s, f, h, q[f"{pre}.ffn1.in"], True)
        blocks.append(Block(f1.name, "ffn1", (f1, _post(f"{pre}.ffn2.in", q[f"{pre}.ffn2.in"], s, f, f1.acc_width))))
        f2 = Matmul(f"{pre}.ffn2", s, h, f, q[f"{pre}.ffn2.in"], False)
        if i + 1 < config.layers:
            nxt = in_sites(f"layers.{i + 1}")
        elif head == "classifier":
            nxt = (_post("pooler.in", q["pooler.in"], 1, h, r16, source="layernorm"),)
        else:                            # span: the final residual stream leaves the chip as it is
            nxt = ()
        blocks.append(Block(f"{pre}.ffn2_ln2", "ffn2_ln2", (
            f2, PostProc(f"{pre}.ffn2.out", "requant", s, h, f2.acc_width, r16, dest="layernorm"),
            LayerNorm(f"{pre}.ln2", s, h, add=True)) + nxt))
    if head == "classifier":
        pooler = Matmul("pooler", 1, h, h, q["pooler.in"], True)
        blocks.append(Block("pooler", "pooler", (pooler,)))
    return blocks


# ----------------------------------------------------------------------------- array sizes
def parse_array(text: str) -> tuple[int, int, int]:
    """'RxCxL' (e.g. '8x8x64') -> (R, C, L); ValueError with the reason otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"array size must be a string like 8x8x64, not {text!r}")
    parts = text.strip().lower().split("x")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"array size must be ROWSxCOLSxLANES with positive integers, e.g. 8x8x64; got {text!r}")
    r, c, lanes = (int(p) for p in parts)
    if min(r, c, lanes) < 1:
        raise ValueError(f"array size {text!r}: rows, cols and lanes must be >= 1")
    return r, c, lanes


def parse_arrays(text: str) -> list[tuple[int, int, int]]:
    """'8x8x64,16x16x64' -> [(8, 8, 64), (16, 16, 64)] (order kept, duplicates rejected)."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("--arrays is empty; give array sizes like 8x8x64,16x16x64")
    items = [t for t in text.replace(" ", "").split(",")]
    if any(t == "" for t in items):
        raise ValueError(f"--arrays has an empty entry: {text!r}")
    sizes = [parse_array(t) for t in items]
    if len(set(sizes)) != len(sizes):
        raise ValueError(f"--arrays lists a size twice: {text!r}")
    return sizes


# ----------------------------------------------------------------------------- unit workloads
#: Keys of a unit workload (`bitaccel simulate --workload k=v,...`) and their defaults.
UNIT_WORKLOAD_KEYS = {
    "mac_array": {"m": 16, "n": 16, "k": 100, "a_bits": 1, "a_signed": 1, "b_bits": 1, "b_signed": 1},
    "threshold": {"rows": 4, "channels": 64},
    "requant": {"rows": 4, "channels": 64},
    "softmax": {"rows": 4, "seq_len": 37, "mode": "binary"},
    "layernorm": {"rows": 3, "hidden": 64},
}


#: Largest workload dimension (rows, channels, m, n, k, seq_len, hidden): the hardware limits are
#: at most 4096 per dimension (hw.params), and a simulation of more rows than this would run for hours.
MAX_WORKLOAD_SIZE = 1 << 16


def unit_workload(unit: str, spec: str | dict | None = None) -> dict:
    """A unit workload: the defaults of `unit` updated by `spec` ('k=v,k=v' or a dict); validated."""
    if unit not in UNIT_WORKLOAD_KEYS:
        raise ValueError(f"unknown unit {unit!r}; choose one of {', '.join(UNIT_WORKLOAD_KEYS)}")
    w = dict(UNIT_WORKLOAD_KEYS[unit])
    if isinstance(spec, str):
        items = {}
        for part in (p for p in spec.replace(" ", "").split(",") if p):
            if "=" not in part:
                raise ValueError(f"--workload entries must be key=value, got {part!r}")
            key, value = part.split("=", 1)
            items[key] = value
        spec = items
    if spec is not None and not isinstance(spec, dict):
        raise ValueError(f"a workload is key=value,... or a JSON object, not {type(spec).__name__}")
    for key, value in (spec or {}).items():
        if key not in w:
            raise ValueError(f"unknown workload key {key!r} for {unit}; known: {', '.join(w)}")
        if key == "mode":
            if str(value) not in ("binary", "multibit"):
                raise ValueError(f"workload mode must be binary or multibit, not {value!r}")
            w[key] = str(value)
            continue
        if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
            raise ValueError(f"workload {key} must be an integer, not {value!r}")
        try:
            w[key] = int(value)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"workload {key} must be an integer, not {value!r}") from None
        if key.endswith("_signed"):
            if w[key] not in (0, 1):
                raise ValueError(f"workload {key} must be 0 (unsigned) or 1 (signed), not {value!r}")
        elif not 1 <= w[key] <= MAX_WORKLOAD_SIZE:
            raise ValueError(f"workload {key} must be a positive integer <= {MAX_WORKLOAD_SIZE}, not {value!r}")
    for key in ("a_bits", "b_bits"):
        if key in w and w[key] not in ACT_BITS:
            raise ValueError(f"workload {key} must be one of {ACT_BITS}, not {w[key]}")
    return w
