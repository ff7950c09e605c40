"""cocotb test modules of the hardware units, run on the generated Verilog by `sim.runner`.

One module per unit (``tb_<unit>.py``, the unit names of `hw.generate.UNITS`) and the
shared verification components in `sim.bench.harness` (payload packing derived from the
Amaranth layouts, stream driver, stream monitor, scoreboard, results report). These
modules import cocotb and only run inside a simulator started by `sim.runner`.
"""
