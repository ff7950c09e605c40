"""Analytic cycle model of the accelerator, built from the units' own timing formulas.

Unit level (exact, checked against the Amaranth simulator in tests/test_sim_model.py):

* matmul on the MAC array: ``hw.schedule.array_cycles`` of its tiles (each tile
  ``beats_count / tiles`` beats = plane pairs x ceil(K / L), one beat per cycle; a tile's
  R-beat drain overlaps the next tiles through two drain banks, so tiles shorter than R
  beats are drain bound), from the first beat offered to the last drain beat taken,
  results always taken (``B - 1 + pipe + drain + R`` for one tile of B beats);
* threshold / requant: ``beats + latency`` (full throughput, one beat of `cols` values per cycle);
* softmax: back-to-back rows, ``SoftmaxUnit.cycles`` for the first row plus
  ``SoftmaxUnit.interval`` for every further row;
* LayerNorm: back-to-back rows, ``LayerNormUnit.cycles`` + (rows - 1) x ``interval``.

No constant here is re-derived: every number comes from hw.schedule or a unit's ``latency``,
``cycles`` or ``interval``.

Per inference (a model of the intended schedule; the whole-encoder sequencer does not exist
yet): the blocks of sim.workload run one after the other on the shared MAC array; inside a
block the stages stream (post-processing overlaps the array), so a block takes its
*slowest unit's* busy cycles plus the fill of the others, not the sum (docs/sim.md):

    T_block = max_u B_u + sum_{u != bottleneck} B_u / n + sum_u latency_u

(when the array is the bottleneck, a threshold/requant unit fed by its drain adds only its
latency: it takes the drain's R beats per tile at the drain's pace)

B_u = busy cycles of hardware unit u in the block (stages on the same unit add up: one
instance of each unit), n = granules the stages hand over (tiles for array -> threshold /
requant, row blocks of R rows when a softmax or LayerNorm needs whole rows, rows for a
LayerNorm feeding a threshold unit). A block of one unit is exactly its unit formula.
"""
from __future__ import annotations

import dataclasses
import warnings

from golden.config import ModelConfig
from golden.formats import RESIDUAL_BITS
from hw.layernorm import LayerNormUnit
from hw.mac_array import BinaryMacArray
from hw.params import HwParams
from hw.requant import RequantUnit
from hw.schedule import beats_count, ideal_cycles, tile_grid, uniform_array_cycles
from hw.softmax import SoftmaxMode, SoftmaxUnit
from hw.threshold import ThresholdUnit

from .workload import Block, LayerNorm, Matmul, PostProc, Softmax, inference_blocks, quant_map

__all__ = ["ASSUMPTIONS", "CycleModel", "params_for", "inference_cycles"]

#: The execution assumptions of the per-inference model (also in docs/sim.md and every report).
ASSUMPTIONS = (
    "model of the intended schedule: the whole-encoder sequencer does not exist yet; unit-level "
    "formulas are exact (checked against simulation), the composition is a model",
    "blocks run one after the other on the one shared MAC array (Q, K, V, per-head Q.K^T and P.V, O, "
    "FFN1, FFN2, pooler); heads run one after the other; a block's fill and drain are not overlapped "
    "with the next block",
    "post-processing streams behind the array (threshold/requant after every linear, softmax after "
    "Q.K^T, LayerNorm after O and FFN2, residual-stream binarization after each LayerNorm): inside a "
    "block the slowest unit sets the pace, plus the fill of the others",
    "one instance of each unit, `cols` values per beat: the array drains a tile's R rows of C results in R "
    "beats, and a post-processing unit takes them at the same rate, so a tile of fewer than R beats (short K) "
    "is drain bound",
    "softmax and LayerNorm need whole rows: they start on a row block (R rows) once its tiles are done "
    "(a row-block reorder buffer is assumed)",
    "residual-stream binarizations of Q, K, V inputs (three per-feature thresholds) run on the one "
    "threshold unit after each LayerNorm, one pass per site",
    "all positions valid (no padding), batch 1; embedding gather and the classifier run on the host",
)


def _quiet(unit):
    """Mark a unit built only for its timing formulas as used (no UnusedElaboratable warning)."""
    unit._MustUse__silence = True
    return unit


def params_for(config: ModelConfig, seq: int, rows: int, cols: int, lanes: int,
               quant: dict[str, int] | int = 1, numerics=None, max_exp_lut: int | None = None) -> HwParams:
    """Hardware parameters of an R x C x L accelerator sized for `config` at sequence length `seq`."""
    q = quant_map(config, quant)
    kw = {} if max_exp_lut is None else {"max_exp_lut": max_exp_lut}
    if numerics is not None:
        kw["numerics"] = numerics
    p = HwParams(rows=rows, cols=cols, lanes=lanes, max_seq=seq, max_hidden=config.hidden, max_ffn=config.ffn,
                 max_head_dim=config.head_dim, max_act_bits=max(q.values()), **kw).validate()
    if config.hidden % cols:
        raise ValueError(f"array {rows}x{cols}x{lanes}: the LayerNorm unit takes {cols} values per beat and needs "
                         f"the hidden size {config.hidden} to be a multiple of cols={cols}")
    return p


@dataclasses.dataclass
class _Unit:
    """Busy cycles and fill latency of one hardware unit inside a block."""

    unit: str
    busy: float
    latency: int
    stages: list


class CycleModel:
    """Cycle formulas of the units of one accelerator configuration (`HwParams`)."""

    def __init__(self, params: HwParams):
        if not isinstance(params, HwParams):
            raise TypeError(f"params must be an HwParams, not {params!r}")
        self.params = params.validate()
        p = params
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.array = _quiet(BinaryMacArray.from_params(p))
            self.threshold = _quiet(ThresholdUnit.from_params(p))
            self.requant = _quiet(RequantUnit.from_params(p, RESIDUAL_BITS))
            self.softmax = _quiet(SoftmaxUnit.from_params(p))
            self.layernorm = _quiet(LayerNormUnit.from_params(p))

    # ------------------------------------------------------------------ unit formulas (exact)
    def matmul_beats(self, m: int, n: int, k: int, a_bits: int = 1, b_bits: int = 1) -> int:
        p = self.params
        return beats_count(m, n, k, a_bits, b_bits, p.rows, p.cols, p.lanes)

    def matmul_ideal(self, m: int, n: int, k: int, a_bits: int = 1, b_bits: int = 1) -> float:
        p = self.params
        return ideal_cycles(m, n, k, a_bits, b_bits, p.rows, p.cols, p.lanes)

    def matmul_tiles(self, m: int, n: int, k: int, a_bits: int = 1, b_bits: int = 1) -> tuple[int, int]:
        """(tiles, beats per tile) of a matmul on the array."""
        p = self.params
        tm, tn = tile_grid(m, n, p.rows, p.cols)
        return tm * tn, self.matmul_beats(m, n, k, a_bits, b_bits) // (tm * tn)

    def matmul_cycles(self, m: int, n: int, k: int, a_bits: int = 1, b_bits: int = 1) -> int:
        """First operand beat offered to last drain beat taken (results always ready): hw.schedule.array_cycles."""
        tiles, per_tile = self.matmul_tiles(m, n, k, a_bits, b_bits)
        return uniform_array_cycles(tiles, per_tile, self.params.rows, self.array.pipe, self.array.drain)

    def matmul_busy(self, m: int, n: int, k: int, a_bits: int = 1, b_bits: int = 1) -> int:
        """Cycles the array is occupied in steady state: tiles x max(beats per tile, R drain beats) (its
        fill, the rest of `matmul_cycles`, is the stage latency)."""
        tiles, per_tile = self.matmul_tiles(m, n, k, a_bits, b_bits)
        return tiles * max(per_tile, self.params.rows)

    def stream_beats(self, rows: int, channels: int) -> int:
        """Beats of `rows` x `channels` values on a `cols`-wide threshold/requant unit: rows * ceil(channels / cols)."""
        _check_pos(rows=rows, channels=channels)
        return rows * -(-channels // self.params.cols)

    def stream_cycles(self, unit: str, beats: int) -> int:
        """Threshold or requant unit, full throughput: first input beat to last output beat = beats + latency."""
        _check_pos(beats=beats)
        return beats + self._post_unit(unit).latency

    def softmax_cycles(self, rows: int, seq_len: int, mode: str | SoftmaxMode = "binary") -> int:
        """Back-to-back rows, first input beat to last output beat: SoftmaxUnit.cycles + (rows - 1) * interval.

        (After an idle start the second row follows the first by cycles - latency, one cycle less than
        interval for one-beat rows, but then every later one-beat row takes one cycle longer than
        `cycles`: the two cancel, and the total is exact for every row length.)
        """
        _check_pos(rows=rows)
        mode = _mode(mode)
        u = self.softmax
        return u.cycles(seq_len, mode) + (rows - 1) * u.interval(seq_len, mode)

    def layernorm_cycles(self, rows: int, hidden: int) -> int:
        """Back-to-back rows, first input beat to last output beat: cycles + (rows - 1) * interval."""
        _check_pos(rows=rows)
        u = self.layernorm
        return u.cycles(hidden) + (rows - 1) * u.interval(hidden)

    def unit_cycles(self, unit: str, workload: dict) -> dict:
        """Modeled cycles of one unit on a `sim.workload.unit_workload` dict (what `bitaccel simulate` measures)."""
        w = workload
        if unit == "mac_array":
            beats = self.matmul_beats(w["m"], w["n"], w["k"], w["a_bits"], w["b_bits"])
            ideal = self.matmul_ideal(w["m"], w["n"], w["k"], w["a_bits"], w["b_bits"])
            cycles = self.matmul_cycles(w["m"], w["n"], w["k"], w["a_bits"], w["b_bits"])
            return {"cycles": cycles, "beats": beats, "latency": self.array.latency, "ideal_cycles": ideal,
                    "utilization": ideal / cycles}
        if unit in ("threshold", "requant"):
            beats = self.stream_beats(w["rows"], w["channels"])
            return {"cycles": self.stream_cycles(unit, beats), "beats": beats, "latency": self._post_unit(unit).latency}
        if unit == "softmax":
            return {"cycles": self.softmax_cycles(w["rows"], w["seq_len"], w["mode"]),
                    "beats": w["rows"] * self.softmax.beats(w["seq_len"]), "latency": self.softmax.latency,
                    "row_cycles": self.softmax.cycles(w["seq_len"], _mode(w["mode"])),
                    "interval": self.softmax.interval(w["seq_len"], _mode(w["mode"]))}
        if unit == "layernorm":
            return {"cycles": self.layernorm_cycles(w["rows"], w["hidden"]),
                    "beats": w["rows"] * (w["hidden"] // self.params.cols), "latency": self.layernorm.latency,
                    "row_cycles": self.layernorm.cycles(w["hidden"]), "interval": self.layernorm.interval(w["hidden"])}
        raise ValueError(f"unknown unit {unit!r}; choose one of mac_array, threshold, requant, softmax, layernorm")

    def _post_unit(self, unit: str):
        if unit == "threshold":
            return self.threshold
        if unit == "requant":
            return self.requant
        raise ValueError(f"post-processing unit must be threshold or requant, not {unit!r}")

    # ------------------------------------------------------------------ stages and blocks (the schedule model)
    def stage_timing(self, st) -> tuple[str, float, int]:
        """(hardware unit, busy cycles, fill latency) of one stage; a single stage takes busy + latency exactly."""
        if isinstance(st, Matmul):
            busy = self.matmul_busy(st.m, st.n, st.k, st.a_bits, st.b_bits)
            return "mac_array", busy, self.matmul_cycles(st.m, st.n, st.k, st.a_bits, st.b_bits) - busy
        if isinstance(st, PostProc):
            return st.unit, self.stream_beats(st.rows, st.channels), self._post_unit(st.unit).latency
        if isinstance(st, Softmax):
            mode = _mode(st.mode)
            u = self.softmax
            total = self.softmax_cycles(st.rows, st.seq_len, mode)
            busy = st.rows * u.interval(st.seq_len, mode)
            return "softmax", busy, total - busy
        if isinstance(st, LayerNorm):
            u = self.layernorm
            busy = st.rows * u.interval(st.hidden)
            return "layernorm", busy, self.layernorm_cycles(st.rows, st.hidden) - busy
        raise TypeError(f"unknown stage {st!r}")

    def _granules(self, blk: Block) -> int:
        first = blk.stages[0]
        whole_rows = any(isinstance(s, (Softmax, LayerNorm)) for s in blk.stages)
        if isinstance(first, Matmul):
            tm, tn = tile_grid(first.m, first.n, self.params.rows, self.params.cols)
            return tm if whole_rows else tm * tn
        if isinstance(first, LayerNorm):
            return first.rows
        return 1

    def block(self, blk: Block) -> dict:
        """Cycles of one block (all repeats), its units' busy cycles, bottleneck and array utilization."""
        units: dict[str, _Unit] = {}
        for st in blk.stages:
            name, busy, lat = self.stage_timing(st)
            u = units.setdefault(name, _Unit(name, 0, 0, []))
            u.busy += busy
            u.latency = max(u.latency, lat)
            u.stages.append(st.name)
        bottleneck = max(units.values(), key=lambda u: u.busy)
        n = self._granules(blk)
        # a threshold/requant unit behind the array takes the drain's beats at the drain's pace: its
        # last granule overlaps the last tile's drain, already inside the array's latency
        in_step = {"threshold", "requant"} if bottleneck.unit == "mac_array" else set()
        once = bottleneck.busy + sum(u.busy / n for u in units.values() if u is not bottleneck and u.unit not in in_step) \
            + sum(u.latency for u in units.values())
        cycles = blk.repeat * once
        mm = blk.matmul
        ideal = 0.0 if mm is None else blk.repeat * self.matmul_ideal(mm.m, mm.n, mm.k, mm.a_bits, mm.b_bits)
        return {
            "name": blk.name, "kind": blk.kind, "repeat": blk.repeat,
            "cycles": cycles, "cycles_each": once, "bottleneck": bottleneck.unit,
            "units": {u.unit: {"busy": blk.repeat * u.busy, "latency": u.latency, "stages": u.stages}
                      for u in units.values()},
            "binary_macs": blk.macs, "ideal_cycles": ideal,
            "utilization": ideal / cycles if cycles else 0.0,
            "shape": None if mm is None else {"m": mm.m, "n": mm.n, "k": mm.k, "a_bits": mm.a_bits,
                                               "b_bits": mm.b_bits},
        }

    def inference(self, blocks: list[Block]) -> dict:
        """Per-inference totals and the per-block / per-kind breakdown of a `sim.workload.inference_blocks` list."""
        rows = [self.block(b) for b in blocks]
        total = sum(r["cycles"] for r in rows)
        ideal = sum(r["ideal_cycles"] for r in rows)
        by_kind: dict[str, dict] = {}
        busy: dict[str, float] = {}
        for r in rows:
            k = by_kind.setdefault(r["kind"], {"cycles": 0.0, "ideal_cycles": 0.0, "binary_macs": 0, "blocks": 0,
                                               "bottleneck": {}})
            k["cycles"] += r["cycles"]
            k["ideal_cycles"] += r["ideal_cycles"]
            k["binary_macs"] += r["binary_macs"]
            k["blocks"] += 1
            k["bottleneck"][r["bottleneck"]] = k["bottleneck"].get(r["bottleneck"], 0) + 1
            for u, v in r["units"].items():
                busy[u] = busy.get(u, 0) + v["busy"]
        for k in by_kind.values():
            k["share"] = k["cycles"] / total if total else 0.0
            k["utilization"] = k["ideal_cycles"] / k["cycles"] if k["cycles"] else 0.0
        p = self.params
        return {
            "array": f"{p.rows}x{p.cols}x{p.lanes}",
            "peak_macs_per_cycle": p.peak_macs_per_cycle,
            "cycles": total,
            "ideal_cycles": ideal,
            "utilization": ideal / total if total else 0.0,
            "binary_macs": sum(r["binary_macs"] for r in rows),
            "unit_busy_cycles": busy,
            "by_kind": by_kind,
            "blocks": rows,
            "assumptions": list(ASSUMPTIONS),
        }


def inference_cycles(config: ModelConfig, seq: int, rows: int, cols: int, lanes: int,
                     quant: dict[str, int] | int = 1, numerics=None) -> dict:
    """Cycle model of one inference of `config` at `seq` on an R x C x L accelerator sized for the model."""
    params = params_for(config, seq, rows, cols, lanes, quant, numerics)
    model = CycleModel(params)
    return model.inference(inference_blocks(config, seq, quant, params.numerics))


def _mode(mode) -> SoftmaxMode:
    if isinstance(mode, SoftmaxMode):
        return mode
    if mode in ("binary", "multibit"):
        return SoftmaxMode.BINARY if mode == "binary" else SoftmaxMode.MULTIBIT
    raise ValueError(f"softmax mode must be 'binary' or 'multibit', not {mode!r}")


def _check_pos(**kw) -> None:
    for name, v in kw.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, not {v!r}")
