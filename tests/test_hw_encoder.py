"""The accelerator top level's parameters: instruction layouts equal the ISA, bad parameters are refused."""
from __future__ import annotations

import pytest

from bitaccel.hw.encoder.layouts import instruction_layout
from bitaccel.hw.encoder.top import Accelerator
from bitaccel.hw.params import HwParams
from bitaccel.hw.spec.isa import INSTR_BITS, Op, field_offsets


@pytest.mark.parametrize("op", list(Op))
def test_instruction_layout_matches_the_isa(op):
    lay = instruction_layout(op)
    assert lay.size == INSTR_BITS
    offsets = {name: field.offset for name, field in lay}
    for f, pos in field_offsets(op):
        assert offsets[f.name] == pos and lay.members[f.name] == f.width


def test_refuses_bad_parameters():
    with pytest.raises(TypeError, match="HwParams"):
        Accelerator("8x8x64")
    with pytest.raises(ValueError, match="data width"):
        Accelerator(HwParams(), data_width=128)
    with pytest.raises(ValueError, match="multiple of 4"):
        Accelerator(HwParams(max_hidden=66))
