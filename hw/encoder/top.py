"""The accelerator's top level: AXI4-Lite registers, one AXI4 master port, the sequencer.

Ports (Verilog names, for an SoC integrator):

* ``s_axil__*``: AXI4-Lite slave, 32-bit, 12-bit addresses: the register map of
  `hw.encoder.regs` (docs/encoder.md).
* ``m_axi__*``: AXI4 master (read and write channels, `data_width` bits, `addr_width`-bit
  byte addresses, ID 0): program, weights, constants and tokens are read, results written.
* ``irq``: high while DONE or ERROR is set and ``irq_enable`` bit 0 is 1.

Inside: the `Sequencer` (fetch, decode, dispatch), one `AxiReader` shared by the fetch and
the execute unit that runs, one `AxiWriter` fed by the `TraceWriter`, the residual buffer
(`res_words` signed 16-bit values in words of `hw.spec.buffers.residual_lanes`) and the execute units.

Every opcode has its execute unit (EMBED, LAYERNORM, QUANT, MATMUL, SOFTMAX; docs/encoder.md
§4). The AXI data width is 64 bits (EMBED reads four int16 per word). Post-processing runs
one element per cycle in this first version (docs/RESULTS.md has the cycles).
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from bitaccel.golden.version import __version__

from ..params import HwParams
from bitaccel.hw.spec.buffers import buffer_words, residual_lanes, score_lanes
from bitaccel.hw.spec.isa import Op

from .axi import AxiLiteRegisters, AxiReader, AxiWriter, axi4_lite_signature, axi4_read_signature, axi4_write_signature
from .embed import EmbedExec
from .layernorm_exec import LayerNormExec
from .matmul_exec import MatmulExec
from .ports import BUS_BITS
from .quant_exec import QuantExec
from .softmax_exec import SoftmaxExec
from .regs import BEAT_COUNTERS, BUSY_COUNTERS, MAGIC, REGISTERS
from .sequencer import Sequencer
from .trace import MAX_TRACE_VALUES, TraceWriter

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
        AXI data bits per beat (64 in this build).
    buffers : dict, optional
        Buffer depths ``act_words`` (flat L-bit words, a multiple of R), ``res_words``,
        ``scr_words``; default `hw.spec.buffers.buffer_words(params)`, the largest model
        within the limits (the compiler's `Target` default too).
    """

    def __init__(self, params: HwParams, addr_width: int = 32, data_width: int = BUS_BITS,
                 buffers: dict | None = None):
        problem = None
        if not isinstance(params, HwParams):
            problem = TypeError(f"Accelerator needs an HwParams, not {params!r}")
        elif data_width != BUS_BITS:
            problem = ValueError(f"this build's AXI data width is {BUS_BITS} bits, not {data_width!r}")
        elif params.max_hidden % 4:
            problem = ValueError(f"max_hidden must be a multiple of 4 (int16 rows in 64-bit words), not "
                                 f"{params.max_hidden}")
        if problem is not None:
            self._MustUse__silence = True
            raise problem
        params.validate()
        self.params = params
        self.addr_width = addr_width
        self.data_width = data_width
        depths = buffer_words(params) if buffers is None else buffers
        self.act_words, self.res_words, self.scr_words = (depths[k] for k in ("act_words", "res_words", "scr_words"))
        super().__init__({
            "s_axil": In(axi4_lite_signature(12)),
            "m_axi": Out(axi4_signature(addr_width, data_width)),
            "irq": Out(1),
        })

    def _units(self, p: HwParams) -> dict:
        """Opcode -> its execute unit (docs/encoder.md §4)."""
        aw, beats = self.addr_width, MAX_READ_BEATS
        return {
            Op.EMBED: EmbedExec(aw, p.max_seq, p.max_hidden, self.res_words, residual_lanes(p), beats),
            Op.LAYERNORM: LayerNormExec(p, aw, self.res_words, beats),
            Op.QUANT: QuantExec(p, aw, self.res_words, self.act_words, beats),
            Op.MATMUL: MatmulExec(p, aw, self.act_words, self.res_words, self.scr_words, beats),
            Op.SOFTMAX: SoftmaxExec(p, aw, self.scr_words, self.act_words, beats),
        }

    def elaborate(self, platform):
        m = Module()
        p = self.params
        m.submodules.regs = regs = AxiLiteRegisters(REGISTERS, addr_width=12)
        m.submodules.reader = reader = AxiReader(self.addr_width, self.data_width, max_beats=MAX_READ_BEATS)
        m.submodules.writer = writer = AxiWriter(self.addr_width, self.data_width,
                                                 max_beats=-(-MAX_TRACE_VALUES * 32 // self.data_width))
        m.submodules.tracer = tracer = TraceWriter(self.addr_width, self.data_width)
        units = self._units(self.params)
        m.submodules.seq = seq = Sequencer(self.addr_width, self.data_width, MAX_READ_BEATS, executes=set(units))
        for op, unit in units.items():
            m.submodules[f"exec_{op.name.lower()}"] = unit
        v = residual_lanes(p)           # residual values per physical word (flat address a: word a div V, lane a mod V)
        m.submodules.res = res = memory.Memory(shape=v * 16, depth=-(-self.res_words // v), init=[])
        m.submodules.act = act = memory.Memory(shape=p.rows * p.lanes, depth=self.act_words // p.rows, init=[])
        w = score_lanes(p)              # scores per physical word (flat score address a: word a div W, lane a mod W)
        m.submodules.scr = scr = memory.Memory(shape=w * p.acc_width, depth=-(-self.scr_words // w), init=[])
        buffers = {"res": res, "act": act, "scr": scr}
        wiring.connect(m, wiring.flipped(self.s_axil), regs.bus)

        # the one AXI master port: the reader's and the writer's channels
        for part in (reader, writer):
            for name, member in part.bus.signature.members.items():
                ours, theirs = getattr(self.m_axi, name), getattr(part.bus, name)
                m.d.comb += (ours.eq(theirs) if member.flow == Out else theirs.eq(ours))
        wiring.connect(m, tracer.cmd, writer.cmd)
        wiring.connect(m, tracer.words, writer.data)
        with m.If(seq.fetching):                      # the reader serves the fetch, else the running unit
            wiring.connect(m, seq.fetch, reader.cmd)
            wiring.connect(m, reader.data, seq.fetch_data)
        base = regs.data_base_lo | (regs.data_base_hi << 32)
        _wire_units(m, units, seq, reader, tracer, buffers, {"act": 1, "scr": p.acc_width, "res": 16}, base)
        m.d.comb += [
            seq.writes_idle.eq(~tracer.busy & writer.idle),
            writer.clear.eq(seq.start | seq.clear),
        ]

        m.d.comb += [
            seq.fetch_error.eq(reader.resp_error | reader.misaligned | writer.resp_error | writer.misaligned),
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

        # busy and beat counters: cleared at START, count the cycles their unit works (or AXI beats; a unit's
        # elements: a MATMUL post unit takes up to C a cycle), saturate
        def activity(port: str):
            """The units' activity on `port` (only the running unit's is nonzero, so OR adds them)."""
            return _any(getattr(u, port) for u in units.values() if port in u.signature.members)

        active = {"fetch": seq.fetching, "mac_array": activity("array_beat"), "threshold_unit": activity("thr_element"),
                  "requant_unit": activity("req_element"), "softmax_unit": activity("sm_element"),
                  "layernorm_unit": activity("ln_element"), "axi_read": ~reader.idle,
                  "axi_write": ~writer.idle | tracer.busy,
                  # activity for the energy model: AXI data beats (R and W handshakes)
                  "axi_read_beats": self.m_axi.rvalid & self.m_axi.rready,
                  "axi_write_beats": self.m_axi.wvalid & self.m_axi.wready}
        for reg_name, name in [(f"busy_{n}", n) for n in BUSY_COUNTERS] + [(n, n) for n in BEAT_COUNTERS]:
            counter = getattr(regs, reg_name)
            value = Signal(32, name=reg_name)
            m.d.comb += counter.eq(value)
            with m.If(seq.start & ~seq.busy):
                m.d.sync += value.eq(0)
            with m.Elif(seq.busy):
                total = value + active[name]
                m.d.sync += value.eq(Mux(total > _COUNTER_MAX, _COUNTER_MAX, total))
        return m


def _any(signals):
    """OR of signals (0 when there are none)."""
    out = 0
    for sig in signals:
        out = out | sig
    return out


#: Buffer ports of the execute-unit convention: (buffer, port) -> kind.
_READ_PORTS = (("res", "r0"), ("res", "r1"), ("act", "r"), ("scr", "r"))


def _wire_units(m: Module, units: dict, seq, reader, tracer, buffers: dict, granularity: dict, base) -> None:
    """Connect every execute unit by the port convention; the running unit (seq.exec_op) owns the
    shared reader (outside fetch), the trace writer and the buffer ports. `granularity`: bits per write
    enable of a buffer (act: one per bit, scr: one per score lane, res: one per value)."""
    ports = {op: unit.signature.members for op, unit in units.items()}
    mask = next((u.mask for u in units.values() if "mask" in u.signature.members
                 and u.signature.members["mask"].flow == Out), None)
    reads = {}
    for buf, port in _READ_PORTS:
        if buf in buffers and any(f"{buf}_{port}_addr" in p for p in ports.values()):
            reads[(buf, port)] = buffers[buf].read_port()
    writes = {buf: buffers[buf].write_port(granularity=granularity.get(buf))
              for buf in buffers if any(f"{buf}_w_addr" in p for p in ports.values())}
    for op, unit in units.items():
        m.d.comb += [unit.start.eq(seq.exec_start & (seq.exec_op == op)), unit.ins.eq(seq.word), unit.base.eq(base)]
        if mask is not None and "mask" in ports[op] and ports[op]["mask"].flow == In:
            m.d.comb += unit.mask.eq(mask)
        for (buf, port), rp in reads.items():           # read data fans out to every unit
            if f"{buf}_{port}_data" in ports[op]:
                m.d.comb += getattr(unit, f"{buf}_{port}_data").eq(rp.data)
    with m.Switch(seq.exec_op):
        for op, unit in units.items():
            with m.Case(op):
                m.d.comb += [seq.exec_busy.eq(unit.busy), seq.exec_error.eq(unit.error)]
                with m.If(~seq.fetching):
                    wiring.connect(m, unit.rd_cmd, reader.cmd)
                    wiring.connect(m, reader.data, unit.rd_data)
                if "trace_start" in ports[op]:
                    wiring.connect(m, unit.trace_start, tracer.start)
                    wiring.connect(m, unit.trace_values, tracer.values)
                for (buf, port), rp in reads.items():
                    if f"{buf}_{port}_addr" in ports[op]:
                        m.d.comb += rp.addr.eq(getattr(unit, f"{buf}_{port}_addr"))
                for buf, wp in writes.items():
                    if f"{buf}_w_addr" in ports[op]:
                        m.d.comb += [wp.addr.eq(getattr(unit, f"{buf}_w_addr")), wp.data.eq(getattr(unit, f"{buf}_w_data")),
                                     wp.en.eq(getattr(unit, f"{buf}_w_en"))]
