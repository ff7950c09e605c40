"""The accelerator's units: one registry, one name per unit (pure Python, no Amaranth import).

A unit's `name` is the only name it has: the Verilog top module and file (``<name>.v``)
that `hw.generate` writes, the key of ``bitaccel_hw.json``, the value of every command's
unit option (``generate --units``, ``synth --unit``, ``simulate --unit``, ``report
--synth-units``), the cocotb bench's unit and the ``unit`` field of every result.

The Amaranth class and the cocotb bench are import-path strings, resolved only when asked
(`component_class`), so `sim/` and the CLI can list and check units without elaborating
hardware or importing Amaranth. `model_key` is the tag the cycle and energy models
(`sim/workload.py` stages, `sim/cycles.py`, `sim/energy.py`) give the unit's work; it is
not a name users type.
"""
from __future__ import annotations

import dataclasses
import importlib

__all__ = ["UnitSpec", "UNITS", "unit", "resolve", "component_class", "simulated_units"]


@dataclasses.dataclass(frozen=True)
class UnitSpec:
    """One hardware unit.

    Members
    -------
    name : the unit's one name (Verilog top module, file stem, CLI value, result field).
    component : ``"module:Class"`` of its `amaranth.lib.wiring.Component`; the class builds
        itself for an `HwParams` with ``from_params(params)`` (or ``Class(params)``).
    bench : cocotb test module of its unit bench, or None (no stand-alone bench).
    model_key : the cycle / energy models' tag of its work, or None (not modeled per unit).
    summary : one line saying what it does.
    """

    name: str
    component: str
    bench: str | None
    model_key: str | None
    summary: str


UNITS: dict[str, UnitSpec] = {u.name: u for u in (
    UnitSpec("mac_array", "bitaccel.hw.mac_array:BinaryMacArray", "bitaccel.sim.bench.tb_mac_array", "mac_array",
             "R x C array of xnor-popcount PEs, L lanes each, bit-serial over activation planes"),
    UnitSpec("threshold_unit", "bitaccel.hw.threshold:ThresholdUnit", "bitaccel.sim.bench.tb_threshold_unit", "threshold",
             "per-channel integer threshold compare: accumulators -> 1-bit codes"),
    UnitSpec("requant_unit", "bitaccel.hw.requant:RequantUnit", "bitaccel.sim.bench.tb_requant_unit", "requant",
             "fixed-point requantization y = clamp((M * acc + b) >> s): multi-bit codes and the residual stream"),
    UnitSpec("softmax_unit", "bitaccel.hw.softmax:SoftmaxUnit", "bitaccel.sim.bench.tb_softmax_unit", "softmax",
             "fixed-point softmax rows (exp LUT, masked sum, threshold or reciprocal probabilities)"),
    UnitSpec("layernorm_unit", "bitaccel.hw.layernorm:LayerNormUnit", "bitaccel.sim.bench.tb_layernorm_unit", "layernorm",
             "residual add and integer LayerNorm (S1/S2 sums, rsqrt, gamma/beta)"),
    UnitSpec("accelerator", "bitaccel.hw.encoder.top:Accelerator", "bitaccel.sim.bench.tb_accelerator", None,
             "the whole-encoder top level: sequencer, buffers, the units above, AXI ports"),
)}


def unit(name: str) -> UnitSpec:
    """The unit called `name`, or ValueError listing the known names."""
    try:
        return UNITS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown unit {name!r}; known units: {', '.join(UNITS)}") from None


def resolve(names=None, known=None) -> list[str]:
    """Unit names in order (all of `known`, default `UNITS`, when None); ValueError if unknown, empty or repeated."""
    known = UNITS if known is None else known
    if names is None:
        return list(known)
    names = list(names)
    if not names:
        raise ValueError("no units selected")
    for name in names:
        if name not in known:
            raise ValueError(f"unknown unit {name!r}; known units: {', '.join(known)}")
    if len(set(names)) != len(names):
        raise ValueError(f"a unit is listed twice in {names}")
    return names


def simulated_units() -> list[str]:
    """Units that have a stand-alone cocotb bench and a cycle model (what `bitaccel simulate --unit` runs)."""
    return [u.name for u in UNITS.values() if u.bench is not None and u.model_key is not None]


def component_class(name: str) -> type:
    """The Amaranth component class of unit `name` (imports its module now)."""
    module, _, cls = unit(name).component.partition(":")
    return getattr(importlib.import_module(module), cls)
