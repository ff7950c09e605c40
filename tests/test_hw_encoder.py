"""The accelerator top level's parameters: buffer depths agree with the compiler, bad parameters are refused."""
from __future__ import annotations

import pytest

from compiler.memory import buffer_words
from hw.encoder.layouts import instruction_layout
from hw.encoder.top import Accelerator, default_res_words
from hw.params import HwParams
from hw.spec.isa import INSTR_BITS, Op, field_offsets


@pytest.mark.parametrize("params", [HwParams(), HwParams(rows=2, cols=3, lanes=16, max_seq=32, max_hidden=64,
                                                         max_ffn=128, max_head_dim=16, max_exp_lut=64)])
def test_residual_buffer_matches_the_compiler(params):
    assert default_res_words(params) == buffer_words(params)["res_words"]


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
