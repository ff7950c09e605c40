"""Energy estimate of the accelerator: ONE table of per-action energies, and action counts.

Every constant lives in `ENERGY_TABLE`, one row each, with its value in pJ, what it is per,
its source and technology node, and (for derived rows) the derivation. Primary figures are
Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014, 45 nm.

Action counts come from the same schedule as the cycle model (sim.workload blocks,
sim.cycles widths): the hardware's activity, padding included (an edge tile or a short
last K chunk still clocks all R x C x L lanes), so utilization shows up in energy too.
Every action is ``count x bits x (energy per bit)`` where "bits" is the operand width of
an adder or compare (full-adder bits), the partial-product bits a x b of a multiply, or
the bits moved by a memory access; the action list is returned so every figure can be
traced (docs/sim.md describes each count).

Estimate, not a measurement: gate-level activity factors, wires, clock tree and leakage
are not modeled; the point is the relative size of compute vs SRAM vs DRAM traffic and how
it changes with the array size.
"""
from __future__ import annotations

import dataclasses
import math

from bitaccel.golden.config import ModelConfig
from bitaccel.golden.formats import GAMMA_BITS, MULT_BITS, OFFSET_BITS, RESIDUAL_BITS, RSQRT_Q, acc_max_abs
from bitaccel.hw.mac_array import TREE_REGISTER_EVERY
from bitaccel.hw.popcount import POPCOUNT_GROUP, XNOR_GROUP, tree_cost, tree_latency
from bitaccel.hw.rsqrt import RsqrtUnit
from bitaccel.hw.schedule import tile_grid

from .cycles import CycleModel, params_for
from .workload import Block, LayerNorm, Matmul, PostProc, Softmax, inference_blocks

__all__ = ["EnergyRow", "ENERGY_TABLE", "ENERGY", "CATEGORIES", "Counts", "popcount_cost", "block_counts",
           "param_bits", "dram_plan", "design_memory_bits", "inference_energy", "unit_energy", "energy_table_rows",
           "AXI_BEAT_BITS", "measured_counts", "measured_energy", "activity_energy"]

HOROWITZ = "M. Horowitz, 'Computing's energy problem (and what we can do about it)', IEEE ISSCC 2014 (45 nm table)"
NODE = "45 nm"


@dataclasses.dataclass(frozen=True)
class EnergyRow:
    """One per-action energy: value in `unit` per `per`, with its source, node and derivation."""

    name: str
    value: float
    unit: str
    per: str
    source: str
    node: str
    derivation: str = ""


#: The one energy table. Rows used by the counts are the per-bit rows; the primary rows are
#: kept beside them so each derivation can be checked.
ENERGY_TABLE = (
    # ---- primary figures (as published)
    EnergyRow("add8", 0.03, "pJ", "8-bit integer add", HOROWITZ, NODE, "published"),
    EnergyRow("add32", 0.1, "pJ", "32-bit integer add", HOROWITZ, NODE, "published"),
    EnergyRow("mult8", 0.2, "pJ", "8-bit integer multiply", HOROWITZ, NODE, "published"),
    EnergyRow("mult32", 3.1, "pJ", "32-bit integer multiply", HOROWITZ, NODE, "published"),
    EnergyRow("sram_read32", 5.0, "pJ", "32-bit read from an 8 KB SRAM", HOROWITZ, NODE, "published"),
    EnergyRow("dram_read32", 640.0, "pJ", "32-bit DRAM read", HOROWITZ, NODE, "published"),
    # ---- derived per-bit figures (what the counts use)
    EnergyRow("fa_bit", 0.03 / 8, "pJ", "full-adder bit (adder/compare/accumulate bit)", f"derived from add8 ({HOROWITZ})",
              NODE, "add8 / 8 bits = 0.00375 pJ; add32 / 32 = 0.0031 pJ agrees within 20 % (the 8-bit figure "
              "is used: it is the larger, and the adders here are 2..64 bits wide). A compare is charged "
              "as a subtraction of its width."),
    EnergyRow("xnor_bit", 0.03 / 16, "pJ", "2-input XNOR (one binary multiply)", f"derived from add8 ({HOROWITZ})",
              NODE, "1/2 of a full-adder bit = 0.001875 pJ: a full adder's sum is two cascaded XOR2 gates "
              "plus a majority gate for the carry, so one XOR2/XNOR2 is at most half of it (conservative)."),
    EnergyRow("mult_pp_bit", 3.1 / 1024, "pJ", "partial-product bit of an a x b multiply (a*b of them)",
              f"derived from mult32 ({HOROWITZ})", NODE,
              "mult32 / (32*32) = 0.00303 pJ per partial-product bit (an array multiplier has a*b AND+FA "
              "cells); mult8 / 64 = 0.00313 pJ agrees within 4 %."),
    EnergyRow("sram_bit", 5.0 / 32, "pJ", "bit read or written, on-chip SRAM", f"derived from sram_read32 ({HOROWITZ})",
              NODE, "sram_read32 / 32 = 0.15625 pJ per bit. Writes are charged like reads (assumption). "
              "The figure is for an 8 KB array; larger buffers cost more per access (not modeled), "
              "the small unit tables and the exp LUT (<= 2 KB) less."),
    EnergyRow("dram_bit", 640.0 / 32, "pJ", "bit read from DRAM", f"derived from dram_read32 ({HOROWITZ})", NODE,
              "dram_read32 / 32 = 20 pJ per bit."),
    EnergyRow("ff_bit", 0.03 / 8, "pJ", "flip-flop bit clocked with new data (pipeline register)",
              "estimate derived from add8 (no flip-flop figure in the source)", NODE,
              "taken equal to one full-adder bit (0.00375 pJ): a static D flip-flop (~20-24 transistors, "
              "clocked every cycle) has switched capacitance of the order of a mirror full adder "
              "(28 transistors). An estimate, not a published number."),
)
ENERGY = {row.name: row for row in ENERGY_TABLE}

#: Categories of the breakdown, in report order.
CATEGORIES = ("xnor", "popcount", "accumulate", "registers", "threshold", "requant", "softmax", "layernorm",
              "sram_weights", "sram_activations", "sram_scores", "sram_residual", "sram_tables", "dram_weights",
              "dram_reads", "dram_writes")


def energy_table_rows() -> list[dict]:
    """The table as JSON-ready dicts."""
    return [dataclasses.asdict(r) for r in ENERGY_TABLE]


class Counts:
    """Actions of a workload: (category, action, count, bits each, energy row); energy = count * bits * row."""

    def __init__(self):
        self.actions: dict[tuple[str, str, int, str], float] = {}

    def add(self, category: str, action: str, count: float, bits: int, row: str) -> None:
        if category not in CATEGORIES:
            raise ValueError(f"unknown energy category {category!r}")
        if row not in ENERGY:
            raise ValueError(f"unknown energy row {row!r}")
        if count:
            key = (category, action, int(bits), row)
            self.actions[key] = self.actions.get(key, 0) + count

    def merge(self, other: "Counts", times: float = 1) -> "Counts":
        for (cat, action, bits, row), n in other.actions.items():
            self.add(cat, action, n * times, bits, row)
        return self

    def by_category(self) -> dict[str, float]:
        """Energy in pJ per category (every category present, zeros included)."""
        out = {c: 0.0 for c in CATEGORIES}
        for (cat, _a, bits, row), n in self.actions.items():
            out[cat] += n * bits * ENERGY[row].value
        return out

    def total_pj(self) -> float:
        return sum(self.by_category().values())

    def count(self, category: str, action: str | None = None) -> float:
        """Total count (not bits) of the actions of a category (optionally one action name)."""
        return sum(n for (c, a, _b, _r), n in self.actions.items() if c == category and (action is None or a == action))

    def bits(self, category: str, action: str | None = None) -> float:
        """Total count x bits of a category (bit-ops, FA bits, memory bits)."""
        return sum(n * b for (c, a, b, _r), n in self.actions.items()
                   if c == category and (action is None or a == action))

    def table(self) -> list[dict]:
        """Every action with its energy, largest first."""
        rows = [{"category": c, "action": a, "count": n, "bits": b, "row": r, "pj": n * b * ENERGY[r].value}
                for (c, a, b, r), n in self.actions.items()]
        return sorted(rows, key=lambda x: -x["pj"])


# ----------------------------------------------------------------------------- structure costs
def popcount_cost(width: int, group: int) -> tuple[float, int]:
    """(full-adder bits, register bits) of one hw.popcount compressor tree of `width` inputs as the MAC array
    builds it (hw.popcount.tree_cost, registered every hw.mac_array.TREE_REGISTER_EVERY levels)."""
    return tree_cost(width, group, TREE_REGISTER_EVERY)


# ----------------------------------------------------------------------------- per stage counts
def _array_beat_counts(cm: CycleModel, beats: float, c: Counts) -> None:
    """Actions of `beats` MAC-array operand beats: xnor, popcount trees, Horner accumulates, pipeline
    registers (every beat clocks all R x C x L lanes). Operand reads are the caller's."""
    p, arr = cm.params, cm.array
    R, C, L = p.rows, p.cols, p.lanes
    pe = R * C
    xadd, xregs = popcount_cost(L, XNOR_GROUP)
    padd, pregs = popcount_cost(L, POPCOUNT_GROUP)
    c.add("xnor", "xor bit-op", beats * pe * L, 1, "xnor_bit")
    c.add("popcount", f"PE xor-popcount tree ({L} lanes)", beats * pe, math.ceil(xadd), "fa_bit")
    n_counts = (R if arr.row_counts else 0) + C
    c.add("popcount", f"row/column popcount ({L} lanes)", beats * n_counts, math.ceil(padd), "fa_bit")
    pw = arr.pe_width
    c.add("accumulate", "PE Horner accumulate", beats * pe, pw, "fa_bit")
    c.add("accumulate", "row/column Horner accumulate", beats * n_counts, pw, "fa_bit")
    lat = arr.pipe - 1               # BinaryMacArray.pipe = 1 (input register) + aligned tree latency
    delay_bits = (lat - tree_latency(L, XNOR_GROUP, TREE_REGISTER_EVERY)) * L.bit_length()
    per_pe_regs = xregs + delay_bits + pw                      # tree levels, align delay, accumulator
    shared_regs = (R + C) * L + n_counts * (pregs + pw)        # input words, row/col trees and accumulators
    c.add("registers", "MAC array pipeline registers", beats, per_pe_regs * pe + shared_regs, "ff_bit")


def _matmul_counts(cm: CycleModel, st: Matmul, c: Counts, weights_from_dram: bool = False) -> None:
    p, arr = cm.params, cm.array
    R, C, L = p.rows, p.cols, p.lanes
    beats = cm.matmul_beats(st.m, st.n, st.k, st.a_bits, st.b_bits)
    pe = R * C
    pw = arr.pe_width
    n_counts = (R if arr.row_counts else 0) + C
    _array_beat_counts(cm, beats, c)
    tm, tn = tile_grid(st.m, st.n, R, C)
    tiles = tm * tn
    dw = arr.out_width + 1
    c.add("registers", "MAC array drain registers (load)", tiles * (pe + n_counts), pw, "ff_bit")
    c.add("accumulate", "drain adds (2 per column per row, 1 row term)", tiles * R * (2 * C + 1), dw, "fa_bit")
    c.add("registers", "drain pipeline registers", tiles * R, C * (2 * pw + 3 * dw) + arr.out_width * C, "ff_bit")
    # operand reads: every beat reads R words of A and C words of B, L bits each
    c.add("sram_activations", "A operand read", beats * R, L, "sram_bit")
    if st.b_kind == "weights" and weights_from_dram:
        c.add("dram_weights", "weight operand streamed from DRAM", beats * C, L, "dram_bit")
    elif st.b_kind == "weights":
        c.add("sram_weights", "weight operand read", beats * C, L, "sram_bit")
    else:
        c.add("sram_activations", "B operand read (K or V codes)", beats * C, L, "sram_bit")


def _post_counts(cm: CycleModel, st: PostProc, c: Counts) -> None:
    C = cm.params.cols
    beats = cm.stream_beats(st.rows, st.channels)
    lanes = beats * C
    if st.unit == "threshold":
        u = cm.threshold
        tw = u.thr_shape.width
        c.add("threshold", "threshold compare", lanes, tw, "fa_bit")
        c.add("registers", "threshold pipeline registers", beats, C * (u.acc_width + 1), "ff_bit")
        c.add("sram_tables", "threshold table read", beats, C * tw, "sram_bit")
    else:
        u = cm.requant
        ow = RESIDUAL_BITS if st.dest == "layernorm" else st.out_bits + 1
        c.add("requant", "requant multiply acc x M", lanes, u.acc_width * (MULT_BITS - 1), "mult_pp_bit")
        c.add("requant", "requant offset and rounding adds", lanes * 2, u.sum_width + 1, "fa_bit")
        c.add("requant", "requant clamp compares", lanes * 2, ow, "fa_bit")
        c.add("registers", "requant pipeline registers", beats,
              C * (u.acc_width + u.prod_width + 2 * u.sum_width + ow), "ff_bit")
        c.add("sram_tables", "requant offset/low table read", beats, C * (OFFSET_BITS + ow), "sram_bit")
    if st.dest == "activations":
        c.add("sram_activations", "activation code write", st.rows * st.channels, st.out_bits, "sram_bit")
    if st.source == "array" and st.dest == "layernorm":
        # the requantized residual is reordered into rows for the LayerNorm (row-block buffer)
        c.add("sram_residual", "row-block reorder write+read", 2 * st.rows * st.channels, RESIDUAL_BITS, "sram_bit")


def _softmax_counts(cm: CycleModel, st: Softmax, c: Counts) -> None:
    u, C = cm.softmax, cm.params.cols
    beats = u.beats(st.seq_len)
    lanes = st.rows * beats * C
    # scores arrive from the Q.K^T tiles through a row-block reorder buffer
    c.add("sram_scores", "Q.K^T score reorder write+read", 2 * st.rows * st.seq_len, u.score_width, "sram_bit")
    _softmax_lane_counts(u, lanes, st.mode, c)
    if st.mode == "binary":
        c.add("softmax", "row threshold theta x sum", st.rows, u.theta_width * u.sum_width, "mult_pp_bit")
    else:
        c.add("softmax", "reciprocal division (restoring, per row)", st.rows * u.recip_width, u.sum_width + 1, "fa_bit")


def _softmax_lane_counts(u, lanes: float, mode: str, c: Counts) -> None:
    """Per-lane actions of the softmax unit `u` (hw.softmax.SoftmaxUnit) over `lanes` key lanes (3 passes)."""
    sw, ew = u.score_width, u.exp_width
    c.add("softmax", "row max compares", lanes, sw, "fa_bit")
    c.add("sram_scores", "softmax row buffer write", lanes, sw + 1, "sram_bit")
    c.add("sram_scores", "softmax row buffer read (2 passes)", 2 * lanes, sw + 1, "sram_bit")
    c.add("softmax", "m - s and LUT range compare (2 passes)", 2 * 2 * lanes, sw + 1, "fa_bit")
    c.add("sram_tables", "exp LUT read (2 passes)", 2 * lanes, ew, "sram_bit")
    c.add("softmax", "exp sum add", lanes, u.sum_width, "fa_bit")
    c.add("registers", "softmax pipeline registers (3 passes)", 3 * lanes, sw + 1 + ew, "ff_bit")
    if mode == "binary":
        c.add("softmax", "probability threshold compare", lanes, ew, "fa_bit")
    else:
        c.add("softmax", "probability multiply e x R", lanes, ew * u.recip_width, "mult_pp_bit")
        c.add("softmax", "probability rounding add", lanes, ew + u.recip_width, "fa_bit")


def _layernorm_counts(cm: CycleModel, st: LayerNorm, c: Counts) -> None:
    u = cm.layernorm
    _layernorm_element_counts(u, st.rows * st.hidden, st.add, c)
    _layernorm_row_counts(u, st.rows, c)


def _layernorm_element_counts(u, n: float, add: bool, c: Counts) -> None:
    """Per-element actions of the LayerNorm unit `u` (hw.layernorm.LayerNormUnit) over `n` elements."""
    r16 = RESIDUAL_BITS
    rw = RsqrtUnit(u.var_width)
    rw._MustUse__silence = True
    if add:
        c.add("layernorm", "residual add + saturation", n, 3 * r16, "fa_bit")
        c.add("sram_residual", "residual h read", n, r16, "sram_bit")
    c.add("layernorm", "x^2 multiply", n, r16 * r16, "mult_pp_bit")
    c.add("layernorm", "S1 and S2 adds", n, u.s1_width + u.s2_width, "fa_bit")
    c.add("sram_residual", "LayerNorm row buffer write+read", 2 * n, r16, "sram_bit")
    c.add("layernorm", "d = H*x - S1 (multiply)", n, u.hidden_width * r16, "mult_pp_bit")
    c.add("layernorm", "d = H*x - S1 (add)", n, u.d_width, "fa_bit")
    c.add("layernorm", "d x r multiply", n, u.d_width * rw.r_width, "mult_pp_bit")
    c.add("layernorm", "normalize rounding add", n, u.prod_width, "fa_bit")
    c.add("layernorm", "n x gamma multiply", n, u.n_width * GAMMA_BITS, "mult_pp_bit")
    c.add("layernorm", "rounding, beta add, saturation", n, u.n_width + GAMMA_BITS + 3 * r16, "fa_bit")
    c.add("sram_tables", "gamma and beta read", n, GAMMA_BITS + r16, "sram_bit")
    c.add("registers", "LayerNorm pipeline registers", n,
          r16 + u.d_width + u.prod_width + u.n_width + (u.n_width + GAMMA_BITS) + r16, "ff_bit")
    c.add("sram_residual", "LayerNorm output write (residual stream)", n, r16, "sram_bit")


def _layernorm_row_counts(u, rows: float, c: Counts) -> None:
    """Per-row actions of the LayerNorm unit `u` (variance, rsqrt) over `rows` rows."""
    c.add("layernorm", "H*S2 and S1^2 multiplies (per row)", rows,
          u.hidden_width * u.s2_width + u.s1_width * u.s1_width, "mult_pp_bit")
    c.add("layernorm", "variance adds (per row)", rows * 2, u.var_width, "fa_bit")
    c.add("layernorm", "rsqrt iterations (3 adds per result bit, per row)", rows * 3 * (RSQRT_Q + 1),
          2 * RSQRT_Q + 1, "fa_bit")


def stage_counts(cm: CycleModel, st, dram_streamed: frozenset = frozenset()) -> Counts:
    """Actions of one stage; `dram_streamed`: names of linears whose weight operand comes from DRAM."""
    c = Counts()
    if isinstance(st, Matmul):
        _matmul_counts(cm, st, c, st.name in dram_streamed)
    elif isinstance(st, PostProc):
        _post_counts(cm, st, c)
    elif isinstance(st, Softmax):
        _softmax_counts(cm, st, c)
    elif isinstance(st, LayerNorm):
        _layernorm_counts(cm, st, c)
    else:
        raise TypeError(f"unknown stage {st!r}")
    return c


def block_counts(cm: CycleModel, blk: Block, dram_streamed: frozenset = frozenset()) -> Counts:
    """Actions of one block, all repeats."""
    c = Counts()
    for st in blk.stages:
        c.merge(stage_counts(cm, st, dram_streamed), blk.repeat)
    return c


# ----------------------------------------------------------------------------- parameters and DRAM
def param_bits(cm: CycleModel, blocks: list[Block]) -> dict:
    """Bits of the parameters one inference reads: binary weights per linear, and per-site constants
    (thresholds, requant offsets/lows, LayerNorm gamma/beta, exp LUTs) in the units' table widths."""
    weights, consts, largest = 0, 0, 0
    for blk in blocks:
        for st in blk.stages:
            if isinstance(st, Matmul) and st.b_kind == "weights":
                bits = st.n * st.k
                weights += bits
                largest = max(largest, bits)
            elif isinstance(st, PostProc):
                if st.unit == "threshold":
                    consts += st.channels * cm.threshold.thr_shape.width
                else:
                    ow = RESIDUAL_BITS if st.dest == "layernorm" else st.out_bits + 1
                    consts += st.channels * (OFFSET_BITS + ow)
            elif isinstance(st, LayerNorm):
                consts += st.hidden * (GAMMA_BITS + RESIDUAL_BITS)
            elif isinstance(st, Softmax):
                qk = blk.matmul
                smax = acc_max_abs(qk.k, qk.a_bits, qk.a_signed, qk.b_bits, qk.b_signed)
                consts += min(cm.params.max_exp_lut, 2 * smax + 1) * cm.softmax.exp_width
    return {"weight_bits": weights, "const_bits": consts, "largest_linear_bits": largest,
            "total_bits": weights + consts}


def dram_plan(cm: CycleModel, blocks: list[Block], sram_bits: int) -> dict:
    """Where the parameters of one inference come from, given `sram_bits` of on-chip parameter SRAM.

    * everything fits (weights + constants <= sram_bits): "resident", no DRAM traffic per
      inference (loaded once, amortized over all inferences);
    * otherwise the constants and every linear whose weights fit the SRAM are fetched from
      DRAM once per inference ("fetched": N*K bits each, written into the weight SRAM);
    * a linear whose weights exceed the SRAM is "streamed": its weight operand comes from DRAM
      on every beat (hw.schedule's tile order is row-major, so the weights are read again for
      each row block, and again for each activation bit plane): beats * C * L bits.
    """
    pb = param_bits(cm, blocks)
    out = {"sram_bits": sram_bits, **pb, "fetched": [], "streamed": [], "fetched_bits": 0, "streamed_bits": 0}
    if pb["total_bits"] <= sram_bits:
        return {**out, "regime": "resident", "dram_bits": 0}
    for blk in blocks:
        for st in blk.stages:
            if isinstance(st, Matmul) and st.b_kind == "weights":
                if st.n * st.k <= sram_bits:
                    out["fetched"].append(st.name)
                    out["fetched_bits"] += st.n * st.k
                else:
                    out["streamed"].append(st.name)
                    out["streamed_bits"] += cm.matmul_beats(st.m, st.n, st.k, st.a_bits, st.b_bits) * \
                        cm.params.cols * cm.params.lanes
    regime = "streamed" if out["streamed"] and not out["fetched"] else "fetched" if not out["streamed"] else "mixed"
    return {**out, "regime": regime, "dram_bits": pb["const_bits"] + out["fetched_bits"] + out["streamed_bits"]}


def design_memory_bits(params) -> dict:
    """On-chip memory bits of the generated design per unit (hw.generate.memories of each unit's
    elaboration). The MAC array has no memory (its operands are streamed in), so it is not elaborated."""
    from amaranth.hdl import Fragment

    from bitaccel.hw.generate import UNITS, memories
    out = {}
    for name, factory in UNITS.items():
        if name == "mac_array":
            out[name] = 0
            continue
        out[name] = sum(m["bits"] for m in memories(Fragment.get(factory(params), platform=None)))
    return out


# ----------------------------------------------------------------------------- top level
def inference_energy(config: ModelConfig, seq: int, rows: int, cols: int, lanes: int,
                     quant: dict[str, int] | int = 1, sram_kib: float | None = None, numerics=None,
                     cycles: dict | None = None) -> dict:
    """Energy of one inference: per-category pJ, total pJ/uJ, binary MACs per joule, the action list.

    `sram_kib`: on-chip parameter (weight) SRAM in KiB. None = the generated design, whose
    memories are only the units' tables (no weight buffer): capacity 0, so every weight bit
    is streamed from DRAM.
    """
    if sram_kib is not None and (not isinstance(sram_kib, (int, float)) or isinstance(sram_kib, bool)
                                 or not sram_kib >= 0 or math.isinf(sram_kib)):
        raise ValueError(f"on-chip SRAM size must be a finite number of KiB >= 0, not {sram_kib!r}")
    params = params_for(config, seq, rows, cols, lanes, quant, numerics)
    cm = CycleModel(params)
    blocks = inference_blocks(config, seq, quant, params.numerics)
    sram_bits = 0 if sram_kib is None else int(sram_kib * 8192)
    plan = dram_plan(cm, blocks, sram_bits)
    streamed = frozenset(plan["streamed"])
    counts = Counts()
    for blk in blocks:
        counts.merge(block_counts(cm, blk, streamed))
    # host input (embedding sums) into the residual buffer; per-site constants into the unit tables
    counts.add("sram_residual", "embedding input write", seq * config.hidden, RESIDUAL_BITS, "sram_bit")
    counts.add("sram_tables", "per-site constants written into unit tables", plan["const_bits"], 1, "sram_bit")
    if plan["regime"] == "resident":
        counts.add("sram_weights", "per-site constants read from parameter SRAM", plan["const_bits"], 1, "sram_bit")
    else:
        counts.add("dram_weights", "per-site constants read from DRAM", plan["const_bits"], 1, "dram_bit")
        counts.add("dram_weights", "weights fetched from DRAM once", plan["fetched_bits"], 1, "dram_bit")
        counts.add("sram_weights", "fetched weights written into the weight SRAM", plan["fetched_bits"], 1, "sram_bit")
    memory = {"sram_kib": sram_kib, "sram_source": "generated design (no weight buffer)" if sram_kib is None
              else "--sram-kib", **{k: v for k, v in plan.items() if k not in ("fetched", "streamed")},
              "fetched_linears": len(plan["fetched"]), "streamed_linears": len(plan["streamed"])}
    return _summary(counts, sum(b.macs for b in blocks), memory, cycles)


def unit_energy(model: CycleModel, unit: str, workload: dict) -> dict:
    """Energy of one unit workload (what `bitaccel simulate` runs): the unit's own actions only."""
    w = workload
    if unit == "mac_array":
        st = Matmul("workload", w["m"], w["n"], w["k"], w["a_bits"], bool(w["a_signed"]), w["b_bits"],
                    bool(w["b_signed"]))
        macs = st.macs
    elif unit in ("threshold", "requant"):
        st = PostProc("workload", unit, w["rows"], w["channels"], model.array.acc_width, 1, "array",
                      "activations" if unit == "threshold" else "layernorm")
        macs = 0
    elif unit == "softmax":
        st = Softmax("workload", w["rows"], w["seq_len"], w["mode"], model.softmax.score_width)
        macs = 0
    elif unit == "layernorm":
        st = LayerNorm("workload", w["rows"], w["hidden"], add=True)
        macs = 0
    else:
        raise ValueError(f"unknown unit {unit!r}")
    return _summary(stage_counts(model, st), macs, None, None)


def _summary(counts: Counts, macs: int, memory: dict | None, cycles: dict | None) -> dict:
    by_cat = counts.by_category()
    total = sum(by_cat.values())
    compute = sum(v for k, v in by_cat.items() if not k.startswith(("sram", "dram")))
    out = {
        "energy_pj": total,
        "energy_uj": total * 1e-6,
        "breakdown_pj": by_cat,
        "compute_pj": compute,
        "sram_pj": sum(v for k, v in by_cat.items() if k.startswith("sram")),
        "dram_pj": sum(v for k, v in by_cat.items() if k.startswith("dram")),
        "binary_macs": macs,
        "binary_macs_per_joule": macs / (total * 1e-12) if total else 0.0,
        "counts": {
            "xnor_bit_ops": counts.bits("xnor"),
            "popcount_adder_bits": counts.bits("popcount"),
            "accumulator_adds": counts.count("accumulate", "accumulator add"),
            "threshold_compares": counts.count("threshold", "threshold compare"),
            "requant_multiplies": counts.count("requant", "requant multiply acc x M"),
            "exp_lut_reads": counts.count("sram_tables", "exp LUT read (2 passes)"),
            "layernorm_multiplies": sum(counts.count("layernorm", a) for a in
                                        ("x^2 multiply", "d = H*x - S1 (multiply)", "d x r multiply",
                                         "n x gamma multiply")),
            "sram_bits": {k: counts.bits(k) for k in CATEGORIES if k.startswith("sram")},
            "dram_bits": sum(counts.bits(k) for k in CATEGORIES if k.startswith("dram")),
        },
        "actions": counts.table(),
    }
    if memory is not None:
        out["memory"] = memory
    if cycles is not None and cycles.get("cycles"):
        out["pj_per_cycle"] = total / cycles["cycles"]
    return out


# ----------------------------------------------------------------------------- measured activity
#: Bits of one AXI data beat of the accelerator's master port (hw.encoder.top: 64-bit data).
AXI_BEAT_BITS = 64


def measured_counts(params, counters: dict) -> Counts:
    """Actions of one run on the RTL from its activity counters (docs/sim.md, "Measured energy").

    `params`: the run's hw.params.HwParams. `counters`: `sim.inference.run_program`'s result or
    the same keys: ``busy`` {mac_array: array beats, threshold_unit / requant_unit / softmax_unit
    / layernorm_unit: elements entering the unit} and ``beats`` {axi_read_beats, axi_write_beats}
    (64-bit AXI data beats). Per count, the per-action rows of the schedule model are reused:
    array beats -> `_array_beat_counts` plus the operand reads (A: R*L bits from the activation
    buffer, B: C*L bits from the tile buffer); elements -> the width-1 units' per-element actions.
    """
    busy, beats = counters["busy"], counters["beats"]
    for name, v in list(busy.items()) + list(beats.items()):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ValueError(f"activity counter {name} must be a non-negative integer, not {v!r}")
    cm = CycleModel(params)
    cm1 = CycleModel(dataclasses.replace(params, cols=1))       # post-processing priced per element (width-1 actions)
    R, C, L = params.rows, params.cols, params.lanes
    c = Counts()
    n = busy.get("mac_array", 0)
    _array_beat_counts(cm, n, c)
    c.add("sram_activations", "A operand read (activation buffer)", n * R, L, "sram_bit")
    c.add("sram_weights", "B operand read (tile buffer)", n * C, L, "sram_bit")
    n = busy.get("threshold_unit", 0)
    if n:
        _post_counts(cm1, PostProc("measured", "threshold", n, 1, cm.array.acc_width, params.max_act_bits,
                                   "array", "activations"), c)
    n = busy.get("requant_unit", 0)
    if n:   # every output charged as a 16-bit residual write (the widest destination: an upper bound)
        _post_counts(cm1, PostProc("measured", "requant", n, 1, cm.array.acc_width, RESIDUAL_BITS,
                                   "layernorm", "layernorm"), c)
        c.add("sram_residual", "requant output write (16-bit, upper bound)", n, RESIDUAL_BITS, "sram_bit")
    n = busy.get("softmax_unit", 0)
    if n:
        u = cm1.softmax
        c.add("sram_scores", "score write (drain) + read (softmax)", 2 * n, u.score_width, "sram_bit")
        _softmax_lane_counts(u, n, "binary" if params.max_act_bits == 1 else "multibit", c)
    n = busy.get("layernorm_unit", 0)
    if n:
        _layernorm_element_counts(cm1.layernorm, n, True, c)
    c.add("dram_reads", "AXI read data beats (program, weights, constants, tokens, embeddings)",
          beats.get("axi_read_beats", 0), AXI_BEAT_BITS, "dram_bit")
    c.add("dram_writes", "AXI write data beats (traces, pooler output; charged like reads)",
          beats.get("axi_write_beats", 0), AXI_BEAT_BITS, "dram_bit")
    return c


def activity_energy(params, counters: dict, binary_macs: int, cycles: dict | None = None) -> dict:
    """Energy of one inference from activity counters (`measured_counts`), in `inference_energy`'s form.

    `bitaccel report` prices the counters `sim.program_cycles` predicts for a compiled program (equal to
    the RTL's measured counters in tests/test_sim_accelerator.py) with this: the same actions and
    energies as a measured run (`measured_energy`), for the generated design (no weight buffer).
    """
    beats = counters["beats"]
    memory = {"sram_kib": None, "sram_source": "generated design (no weight buffer)", "regime": "streamed",
              "axi_read_bytes": beats.get("axi_read_beats", 0) * AXI_BEAT_BITS // 8,
              "axi_write_bytes": beats.get("axi_write_beats", 0) * AXI_BEAT_BITS // 8}
    return _summary(measured_counts(params, counters), binary_macs, memory, cycles)


def measured_energy(params, counters: dict) -> dict:
    """Energy of one run from its measured activity: {energy_pj, breakdown_pj (by category), actions}."""
    c = measured_counts(params, counters)
    by_cat = c.by_category()
    return {"energy_pj": sum(by_cat.values()), "breakdown_pj": by_cat, "actions": c.table()}
