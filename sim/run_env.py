"""What a simulation run hands from the host (`sim.runner`) to the cocotb bench (`sim.bench`).

Both sides import this small module and nothing of each other: the bench runs inside the
simulator process and must not import the host-side runner (subprocess control, builds).
The run's parameters travel in environment variables (`ENV`); the hardware parameters as
JSON (`params_to_dict` on the host, `params_from_dict` in the bench).
"""
from __future__ import annotations

import dataclasses
import types

from bitaccel.golden.formats import NumericFormat

__all__ = ["ENV", "params_to_dict", "params_from_dict"]

#: Environment variables that carry a run's parameters into the cocotb process.
ENV = types.SimpleNamespace(
    unit="BITACCEL_SIM_UNIT", config="BITACCEL_SIM_CONFIG", sim="BITACCEL_SIM_NAME",
    params="BITACCEL_SIM_PARAMS", seed="BITACCEL_SIM_SEED", workload="BITACCEL_SIM_WORKLOAD",
    results="BITACCEL_SIM_RESULTS", verify="BITACCEL_SIM_VERIFY", timeout_ms="BITACCEL_SIM_TIMEOUT_MS",
)


def params_to_dict(params) -> dict:
    """HwParams -> JSON-ready dict of its fields (numerics as a dict)."""
    d = dataclasses.asdict(params)
    d["numerics"] = params.numerics.to_dict()
    return d


def params_from_dict(d: dict):
    """Inverse of `params_to_dict` (validated)."""
    from bitaccel.hw.params import HwParams

    d = dict(d)
    numerics = NumericFormat.from_dict(d.pop("numerics")) if "numerics" in d else NumericFormat()
    return HwParams(**d, numerics=numerics).validate()
