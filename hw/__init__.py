"""hw: the Amaranth description of the bitaccel accelerator (never imports torch).

Each unit is a `wiring.Component` with `amaranth.lib.stream` ports and a `latency`
property; golden/ primitives are the specification (docs/numerics.md).
"""
