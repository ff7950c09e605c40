"""Verilog generation: every accelerator unit for one `HwParams`, plus a JSON description.

`generate(params, out_dir)` writes, for each unit of `UNITS`, `<out_dir>/<unit>.v` (the
Verilog top module is named after the unit) and `<out_dir>/bitaccel_hw.json`, which
describes the configuration: the parameters and derived widths, and per unit its ports,
latency, memories and generation time, with the peak binary MACs per cycle and the total
on-chip memory bits.

`bitaccel_hw.json` keys:

* ``generator`` (bitaccel and amaranth versions), ``params`` (`HwParams.describe()`),
  ``peak_macs_per_cycle``, ``total_memory_bits``, ``generation_s`` (all units);
* ``units``: unit name -> ``file``, ``top`` (Verilog module), ``class``, ``latency`` (the
  component's `latency`), ``ports`` (list of ``name``/``direction`` in|out/``width`` bits,
  signature order, then ``clk`` and ``rst``), ``memories`` (list of ``name`` (hierarchical
  submodule path), ``depth``, ``width``, ``bits``), ``memory_bits``, ``verilog_bytes``,
  ``generation_s`` (construction + `amaranth.back.verilog.convert`), ``inspection_s``
  (second elaboration that lists the memories).

Parameters are validated before anything is built or written. All Verilog is produced in
memory first and each file is written atomically (temporary file, then rename), so a
failure leaves no half-written file behind.
"""
from __future__ import annotations

import json
import os
import re
import time

import amaranth
from amaranth.back import verilog
from amaranth.hdl import Fragment, MemoryInstance, Shape
from amaranth.lib import memory, wiring

from golden.version import __version__

from .params import HwParams

DESCRIPTION_FILE = "bitaccel_hw.json"


# ----------------------------------------------------------------------------- registry
# Each factory imports its unit lazily, so a unit module is only needed when it is generated.
def _mac_array(p: HwParams):
    from .mac_array import BinaryMacArray
    return BinaryMacArray.from_params(p)


def _threshold_unit(p: HwParams):
    from .threshold import ThresholdUnit
    return ThresholdUnit.from_params(p)


def _requant_unit(p: HwParams):
    from .requant import RequantUnit
    return RequantUnit.from_params(p, p.residual_width)  # requantizes into the residual stream


def _softmax_unit(p: HwParams):
    from .softmax import SoftmaxUnit
    return SoftmaxUnit.from_params(p)


def _layernorm_unit(p: HwParams):
    from .layernorm import LayerNormUnit
    return LayerNormUnit.from_params(p)


def _accelerator(p: HwParams):
    from .encoder.top import Accelerator
    return Accelerator(p)


#: Unit name (also the Verilog top module and file name) -> factory(params) -> wiring.Component.
UNITS = {
    "mac_array": _mac_array,
    "threshold_unit": _threshold_unit,
    "requant_unit": _requant_unit,
    "softmax_unit": _softmax_unit,
    "layernorm_unit": _layernorm_unit,
    "accelerator": _accelerator,
}


def resolve_units(units=None) -> list[str]:
    """Unit names to generate (all of `UNITS` when None), or ValueError naming an unknown one."""
    if units is None:
        return list(UNITS)
    names = list(units)
    if not names:
        raise ValueError("no units selected")
    for name in names:
        if name not in UNITS:
            raise ValueError(f"unknown unit {name!r}; known units: {', '.join(UNITS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"a unit is listed twice in {names}")
    return names


# ----------------------------------------------------------------------------- introspection
def _signature_ports(component: wiring.Component) -> list[dict]:
    """Ports of the component's signature, named as in the Verilog (`path__joined__by__dunder`)."""
    ports = []
    for path, member in component.signature.members.flatten():
        if member.is_port:
            ports.append({"name": "__".join(map(str, path)),
                          "direction": "in" if member.flow == wiring.In else "out",
                          "width": Shape.cast(member.shape).width})
    return ports


_DIRECTIONS = {"input": "in", "output": "out", "inout": "inout"}
_PORT_DECL = re.compile(r"^\s*(input|output|inout)\s+(?:\[(\d+):(\d+)\]\s+)?([A-Za-z_][A-Za-z0-9_$]*)\s*;", re.MULTILINE)


def verilog_ports(text: str, top: str) -> list[dict]:
    """Port declarations of module `top` in Amaranth's Verilog output: name, direction, width."""
    start = re.search(rf"^module {re.escape(top)}\(", text, re.MULTILINE)
    if start is None:
        raise ValueError(f"module {top} not found in the generated Verilog")
    body = text[start.end():text.index("endmodule", start.end())]
    return [{"name": m.group(4), "direction": _DIRECTIONS[m.group(1)],
             "width": int(m.group(2)) - int(m.group(3)) + 1 if m.group(2) else 1}
            for m in _PORT_DECL.finditer(body)]


def _ports(component: wiring.Component, text: str, top: str) -> list[dict]:
    """Signature ports in signature order, then the ones Amaranth adds (clk, rst); checked against the Verilog."""
    ports = _signature_ports(component)
    in_verilog = {d["name"]: d for d in verilog_ports(text, top)}
    for port in ports:
        if in_verilog.get(port["name"]) != port:
            raise ValueError(f"{top}: port {port} does not match the Verilog {in_verilog.get(port['name'])}")
    named = {port["name"] for port in ports}
    return ports + [d for d in in_verilog.values() if d["name"] not in named]


def memories(fragment: Fragment, path: tuple[str, ...] = ()) -> list[dict]:
    """Every `amaranth.lib.memory.Memory` in an elaborated fragment tree: hierarchical name, depth, width, bits."""
    found = []
    name = ".".join(path) or "<top>"
    if isinstance(fragment, MemoryInstance):
        origin = next((o for o in fragment.origins or () if isinstance(o, memory.Memory)), None)
        if origin is None:
            raise TypeError(f"memory {name} is not an amaranth.lib.memory.Memory (units must use lib.memory)")
        width, depth = Shape.cast(origin.shape).width, origin.depth
        found.append({"name": name, "depth": depth, "width": width, "bits": depth * width})
    for index, (sub, name, _src_loc) in enumerate(fragment.subfragments):
        found += memories(sub, path + (name if name is not None else f"U${index}",))
    return found


# ----------------------------------------------------------------------------- generation
def generate_unit(name: str, params: HwParams) -> tuple[str, dict]:
    """Verilog text and description of one unit (nothing written). `params` must be valid."""
    factory = UNITS[name]
    t0 = time.perf_counter()
    component = factory(params)
    text = verilog.convert(component, name=name, emit_src=False)
    t_convert = time.perf_counter() - t0
    # Memories are read from a second, fresh instance: convert() elaborates its component
    # itself and does not hand back the elaborated tree.
    t1 = time.perf_counter()
    mems = memories(Fragment.get(factory(params), platform=None))
    t_inspect = time.perf_counter() - t1
    info = {
        "file": f"{name}.v",
        "top": name,
        "class": type(component).__name__,
        "latency": getattr(component, "latency", None),      # None: the top level (no stream latency)
        "ports": _ports(component, text, name),
        "memories": mems,
        "memory_bits": sum(m["bits"] for m in mems),
        "verilog_bytes": len(text.encode()),
        "generation_s": round(t_convert, 3),
        "inspection_s": round(t_inspect, 3),
    }
    return text, info


def _write_atomic(path: str, text: str) -> None:
    """Write `text` to a temporary file beside `path`, then rename it over `path`."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def generate(params: HwParams, out_dir, units=None) -> dict:
    """Generate the Verilog of `units` (default: all) for `params` into `out_dir`; return the description.

    Raises ValueError for invalid parameters or unknown units before building or writing anything.
    """
    if not isinstance(params, HwParams):
        raise TypeError(f"params must be an HwParams, not {params!r}")
    params.validate()
    names = resolve_units(units)
    t0 = time.perf_counter()
    texts, described = {}, {}
    for name in names:
        texts[name], described[name] = generate_unit(name, params)
    description = {
        "generator": f"bitaccel {__version__}, amaranth {amaranth.__version__}",
        "params": params.describe(),
        "peak_macs_per_cycle": params.peak_macs_per_cycle,
        "total_memory_bits": sum(d["memory_bits"] for d in described.values()),
        "generation_s": round(time.perf_counter() - t0, 3),
        "units": described,
    }
    os.makedirs(out_dir, exist_ok=True)
    for name in names:
        _write_atomic(os.path.join(out_dir, described[name]["file"]), texts[name])
    _write_atomic(os.path.join(out_dir, DESCRIPTION_FILE), json.dumps(description, indent=2) + "\n")
    return description
