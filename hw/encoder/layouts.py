"""Amaranth layouts of the instruction words, derived from `hw.spec.isa` (the one owner of the format)."""
from __future__ import annotations

from amaranth.lib import data

from bitaccel.hw.spec.isa import FORMATS, INSTR_BITS, OPCODE_BITS, Op

__all__ = ["instruction_layout"]


def instruction_layout(op: Op) -> data.StructLayout:
    """The INSTR_BITS-wide word of `op` as a struct: ``op``, then its fields LSB first, then ``reserved``."""
    members = {"op": OPCODE_BITS}
    for f in FORMATS[Op(op)]:
        members[f.name] = f.width
    used = sum(members.values())
    if used < INSTR_BITS:
        members["reserved"] = INSTR_BITS - used
    return data.StructLayout(members)
