"""hw.spec: pure-Python specification of the accelerator (no Amaranth, no torch).

What the compiler (`compiler/`), the hardware (`hw/`) and the benches (`sim/`) must agree on
without elaborating hardware: the instruction set (`isa`), the unit registry (`units`: one
name per unit) and the one integer-parameter check (`validate`).
"""
