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

Per inference: `sim.program_cycles` (the compiled program on the schedule the sequencer
actually runs; it takes its unit latencies from this class). The earlier composition of
`sim.workload` blocks (a model of an intended schedule, before the sequencer existed) is
gone; sim.workload's blocks remain the energy model's action list (sim.energy).
"""
from __future__ import annotations

import warnings

from bitaccel.golden.config import ModelConfig
from bitaccel.golden.formats import RESIDUAL_BITS
from bitaccel.hw.layernorm import LayerNormUnit
from bitaccel.hw.mac_array import BinaryMacArray
from bitaccel.hw.params import HwParams
from bitaccel.hw.requant import RequantUnit
from bitaccel.hw.schedule import beats_count, ideal_cycles, tile_grid, uniform_array_cycles
from bitaccel.hw.softmax import SoftmaxMode, SoftmaxUnit
from bitaccel.hw.threshold import ThresholdUnit

from .workload import quant_map

__all__ = ["CycleModel", "params_for"]

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
