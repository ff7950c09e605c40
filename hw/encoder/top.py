"""The accelerator's top level: AXI4-Lite registers, one AXI4 master port, the sequencer.

Ports (Verilog names, for an SoC integrator):

* ``s_axil__*``: AXI4-Lite slave, 32-bit, 12-bit addresses: the register map of
  `hw.encoder.regs` (docs/encoder.md).
* ``m_axi__*``: AXI4 master (read and write channels, `data_width` bits, `addr_width`-bit
  byte addresses, ID 0): program, weights, constants and tokens are read, results written.
* ``irq``: high while DONE or ERROR is set and ``irq_enable`` bit 0 is 1.

Partial: this build fetches and decodes the program and runs END; every other opcode
stops with ERROR / ERR_UNSUPPORTED until its execute stage is connected (see
`hw.encoder.sequencer`). The write channels are idle (AWVALID = WVALID = 0).
"""
from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden.version import __version__

from ..params import HwParams
from .axi import AxiLiteRegisters, AxiReader, axi4_lite_signature, axi4_read_signature, axi4_write_signature
from .regs import BUSY_COUNTERS, MAGIC, REGISTERS
from .sequencer import Sequencer

__all__ = ["Accelerator", "axi4_signature"]

#: Longest single read command (beats).
MAX_READ_BEATS = 1 << 20
#: Busy counters saturate here instead of wrapping.
_COUNTER_MAX = (1 << 32) - 1


def axi4_signature(addr_width: int, data_width: int) -> wiring.Signature:
    """Full AXI4 master port: read and write channels."""
    members = dict(axi4_read_signature(addr_width, data_width).members.items())
    members.update(axi4_write_signature(addr_width, data_width).members.items())
    return wiring.Signature(members)


def _version_word() -> int:
    major, minor, patch = (int(x) for x in __version__.split(".")[:3])
    return major << 16 | minor << 8 | patch


class Accelerator(wiring.Component):
    """The whole-encoder accelerator for generation parameters `params`.

    Parameters
    ----------
    params : HwParams
    addr_width : int
        AXI byte-address bits (32 or 64 typical).
    data_width : int
        AXI data bits per beat (64 .. 1024; must divide the 256-bit instruction).
    """

    def __init__(self, params: HwParams, addr_width: int = 32, data_width: int = 64):
        if not isinstance(params, HwParams):
            self._MustUse__silence = True
            raise TypeError(f"Accelerator needs an HwParams, not {params!r}")
        params.validate()
        self.params = params
        self.addr_width = addr_width
        self.data_width = data_width
        super().__init__({
            "s_axil": In(axi4_lite_signature(12)),
            "m_axi": Out(axi4_signature(addr_width, data_width)),
            "irq": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        m.submodules.regs = regs = AxiLiteRegisters(REGISTERS, addr_width=12)
        m.submodules.reader = reader = AxiReader(self.addr_width, self.data_width, max_beats=MAX_READ_BEATS)
        m.submodules.seq = seq = Sequencer(self.addr_width, self.data_width, MAX_READ_BEATS)
        wiring.connect(m, wiring.flipped(self.s_axil), regs.bus)

        # the one AXI master port: the reader's channels; the write channels idle for now
        for name, member in reader.bus.signature.members.items():
            ours, theirs = getattr(self.m_axi, name), getattr(reader.bus, name)
            m.d.comb += (ours.eq(theirs) if member.flow == Out else theirs.eq(ours))
        m.d.comb += [self.m_axi.awvalid.eq(0), self.m_axi.wvalid.eq(0), self.m_axi.bready.eq(1)]

        wiring.connect(m, seq.fetch, reader.cmd)
        wiring.connect(m, reader.data, seq.fetch_data)
        m.d.comb += [
            seq.fetch_error.eq(reader.resp_error | reader.misaligned),
            reader.clear.eq(seq.start | seq.clear),
            seq.start.eq(regs.ctrl_stb & regs.ctrl[0]),
            seq.clear.eq(regs.ctrl_stb & regs.ctrl[1]),
            seq.program_base.eq(regs.program_base_lo | (regs.program_base_hi << 32)),
            regs.id.eq(MAGIC),
            regs.version.eq(_version_word()),
            regs.array.eq((p.rows - 1) | (p.cols - 1) << 8 | p.lanes << 16),
            regs.status.eq(seq.busy | seq.done << 1 | seq.error << 2 | seq.error_code << 8),
            regs.cycles_lo.eq(seq.cycles[:32]),
            regs.cycles_hi.eq(seq.cycles[32:]),
            regs.retired.eq(seq.retired),
            regs.pc.eq(seq.pc),
            self.irq.eq(regs.irq_enable[0] & (seq.done | seq.error)),
        ]

        # busy counters: cleared at START, count while their unit works, saturate
        active = {"fetch": seq.fetching, "axi_read": ~reader.idle}
        for name in BUSY_COUNTERS:
            counter = getattr(regs, f"busy_{name}")
            if name not in active:          # units not connected in this build read 0
                m.d.comb += counter.eq(0)
                continue
            value = Signal(32, name=f"busy_{name}")
            m.d.comb += counter.eq(value)
            with m.If(seq.start & ~seq.busy):
                m.d.sync += value.eq(0)
            with m.Elif(seq.busy & active[name] & (value != _COUNTER_MAX)):
                m.d.sync += value.eq(value + 1)
        return m
