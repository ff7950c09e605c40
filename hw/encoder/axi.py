"""AXI4 read master and AXI4-Lite register bank: the accelerator's SoC ports.

Port names follow the AXI specification inside one signature member, so the exported
Verilog carries ``<member>__arvalid``, ``<member>__rdata``, ... (Amaranth joins a member
path with ``__``): cocotbext-axi finds them with ``AxiReadBus.from_prefix(dut, "m_axi_")``
(the prefix plus ``_`` plus the AXI name).

* `axi4_read_signature`, `axi4_write_signature`, `axi4_lite_signature`: the buses, seen
  from the master.
* `AxiReader`: commands ``(addr, beats)`` in, data beats out. It splits a command into
  INCR bursts of at most `max_burst` beats that never cross a 4 KiB boundary, keeps up to
  `max_outstanding` bursts in flight, and flags a misaligned command or an error response
  (sticky, never a silent drop).
* `AxiWriter`: commands ``(addr, beats)`` and data words in, the same burst rules; `idle`
  once every write response has come back.
* `AxiLiteRegisters`: a bank of 32-bit registers (``rw``, ``ro``, ``pulse``) at fixed
  offsets; an unmapped address answers SLVERR.
"""
from __future__ import annotations

import dataclasses

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from ..spec.validate import require_int

__all__ = ["axi4_read_signature", "axi4_write_signature", "axi4_lite_signature", "AxiReader", "AxiWriter", "Register", "AxiLiteRegisters",
           "RESP_OKAY", "RESP_SLVERR", "BURST_INCR"]

RESP_OKAY = 0
RESP_SLVERR = 2
BURST_INCR = 1
#: AXI4: a burst must not cross a 4 KiB address boundary.
AXI_BOUNDARY_BYTES = 4096


def axi4_read_signature(addr_width: int, data_width: int, id_width: int = 1) -> wiring.Signature:
    """AXI4 read channels (AR, R) from the master's side; `data_width` bits a beat (a power of two, 8..1024)."""
    require_int("addr_width", addr_width, 12, 64)
    if data_width not in (8, 16, 32, 64, 128, 256, 512, 1024):
        raise ValueError(f"data_width must be a power of two in [8, 1024], not {data_width!r}")
    require_int("id_width", id_width, 1, 16)
    return wiring.Signature({
        "arid": Out(id_width), "araddr": Out(addr_width), "arlen": Out(8), "arsize": Out(3),
        "arburst": Out(2), "arvalid": Out(1), "arready": In(1),
        "rid": In(id_width), "rdata": In(data_width), "rresp": In(2), "rlast": In(1),
        "rvalid": In(1), "rready": Out(1),
    })


def axi4_write_signature(addr_width: int, data_width: int, id_width: int = 1) -> wiring.Signature:
    """AXI4 write channels (AW, W, B) from the master's side."""
    axi4_read_signature(addr_width, data_width, id_width)      # same parameter rules
    return wiring.Signature({
        "awid": Out(id_width), "awaddr": Out(addr_width), "awlen": Out(8), "awsize": Out(3),
        "awburst": Out(2), "awvalid": Out(1), "awready": In(1),
        "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wlast": Out(1), "wvalid": Out(1),
        "wready": In(1),
        "bid": In(id_width), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
    })


def axi4_lite_signature(addr_width: int = 12) -> wiring.Signature:
    """AXI4-Lite (32-bit data) from the master's side."""
    require_int("addr_width", addr_width, 3, 32)
    return wiring.Signature({
        "awaddr": Out(addr_width), "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
        "wdata": Out(32), "wstrb": Out(4), "wvalid": Out(1), "wready": In(1),
        "bresp": In(2), "bvalid": In(1), "bready": Out(1),
        "araddr": Out(addr_width), "arprot": Out(3), "arvalid": Out(1), "arready": In(1),
        "rdata": In(32), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
    })


def _burst_splitter(m: Module, port, shift: int):
    """State of a command being cut into bursts: (busy, addr, left, burst).

    ``burst`` = min(left, max_burst, beats to the next 4 KiB boundary) (combinational).
    """
    boundary_beats = max(1, AXI_BOUNDARY_BYTES >> shift)
    busy = Signal()
    addr = Signal(port.addr_width)
    left = Signal(range(port.max_beats + 1))            # beats of the command not yet requested
    to_boundary = Signal(range(boundary_beats + 1))
    burst = Signal(range(port.max_burst + 1))
    m.d.comb += to_boundary.eq(boundary_beats - (addr[shift:] & (boundary_beats - 1)))
    limit = min(port.max_burst, boundary_beats)
    with m.If((left <= to_boundary) & (left <= limit)):
        m.d.comb += burst.eq(left)
    with m.Elif(to_boundary <= limit):
        m.d.comb += burst.eq(to_boundary)
    with m.Else():
        m.d.comb += burst.eq(limit)
    return busy, addr, left, burst


def _accept_command(m: Module, port, cmd, busy, addr, left, shift: int) -> None:
    """Take a command when idle; a misaligned or empty one only sets the sticky flag."""
    with m.If(cmd.valid & cmd.ready):
        bad = (cmd.payload.addr[:shift] != 0) if shift else 0
        with m.If(bad | (cmd.payload.beats == 0)):
            m.d.sync += port.misaligned.eq(1)
        with m.Else():
            m.d.sync += [busy.eq(1), addr.eq(cmd.payload.addr), left.eq(cmd.payload.beats)]


def _advance(m: Module, issued, busy, addr, left, burst, shift: int) -> None:
    """After an address handshake: move past the burst; the last burst ends the command."""
    with m.If(issued):
        m.d.sync += [addr.eq(addr + (burst << shift)), left.eq(left - burst)]
        with m.If(left == burst):
            m.d.sync += busy.eq(0)


def _burst_master_init(self, addr_width: int, data_width: int, max_beats: int, max_burst: int, max_outstanding: int,
                       bus_signature, data_member) -> None:
    """Shared constructor of `AxiReader` and `AxiWriter`: checks the parameters, builds the signature."""
    try:
        self.addr_width = require_int("addr_width", addr_width, 12, 64)
        self.data_width = data_width
        self.max_beats = require_int("max_beats", max_beats, 1)
        self.max_burst = require_int("max_burst", max_burst, 1, 256)
        self.max_outstanding = require_int("max_outstanding", max_outstanding, 1, 64)
        bus = bus_signature(addr_width, data_width)          # validates data_width
    except (TypeError, ValueError):
        self._MustUse__silence = True    # a rejected instance is not an "unused elaboratable"
        raise
    self.bytes_per_beat = data_width // 8
    wiring.Component.__init__(self, {
        "cmd": In(stream.Signature(data.StructLayout({"addr": addr_width, "beats": range(max_beats + 1)}))),
        "data": data_member,
        "bus": Out(bus),
        "idle": Out(1),
        "resp_error": Out(1),
        "misaligned": Out(1),
        "clear": In(1),
    })


class AxiReader(wiring.Component):
    """AXI4 read master: reads `beats` consecutive bus words from byte address `addr`.

    Parameters
    ----------
    addr_width, data_width : int
        Bus address bits and data bits per beat (bytes per beat B = data_width / 8).
    max_beats : int
        Largest command length in beats.
    max_burst : int
        Longest burst issued (1..256 beats, AXI4 INCR).
    max_outstanding : int
        Bursts in flight (issued, last beat not yet received).

    Members
    -------
    cmd : ``In(stream.Signature({"addr": addr_width, "beats": range(max_beats + 1)}))``
        ``addr`` must be a multiple of B; ``beats`` >= 1. A misaligned or empty command
        is consumed without a transfer and sets `misaligned`.
    data : ``Out(stream.Signature({"data": data_width, "last": 1}))``
        The words in address order; ``last`` on the command's final word.
    bus : ``Out(axi4_read_signature(...))``
        The AXI4 read channels (``arid`` = 0, ``arburst`` = INCR, ``arsize`` = log2 B).
    idle : ``Out(1)``
        No command in progress and no burst in flight.
    resp_error, misaligned : ``Out(1)``
        Sticky: a beat came back with a non-OKAY ``rresp`` (its data is still passed on);
        a command was misaligned or empty. Cleared by `clear`.
    clear : ``In(1)``
        Clears the sticky flags.

    A new command is accepted once every burst of the previous one is issued, so the next
    command's addresses overlap the previous one's data.
    """

    def __init__(self, addr_width: int = 32, data_width: int = 64, max_beats: int = 1 << 20,
                 max_burst: int = 256, max_outstanding: int = 4):
        _burst_master_init(self, addr_width, data_width, max_beats, max_burst, max_outstanding,
                           axi4_read_signature, Out(stream.Signature(data.StructLayout({"data": data_width, "last": 1}))))

    def elaborate(self, platform):
        m = Module()
        bus, cmd = self.bus, self.cmd
        shift = (self.bytes_per_beat - 1).bit_length()      # log2 B

        # one entry per burst in flight: does it end its command?
        m.submodules.ends = ends = fifo.SyncFIFO(width=1, depth=self.max_outstanding)

        # ---- address side
        busy, addr, left, burst = _burst_splitter(m, self, shift)
        m.d.comb += [
            cmd.ready.eq(~busy),
            bus.arid.eq(0), bus.araddr.eq(addr), bus.arlen.eq(burst - 1), bus.arsize.eq(shift),
            bus.arburst.eq(BURST_INCR), bus.arvalid.eq(busy & ends.w_rdy),
            ends.w_data.eq(left == burst),
            ends.w_en.eq(bus.arvalid & bus.arready),
        ]
        _accept_command(m, self, cmd, busy, addr, left, shift)
        _advance(m, bus.arvalid & bus.arready, busy, addr, left, burst, shift)

        # ---- data side
        m.d.comb += [
            self.data.valid.eq(bus.rvalid),
            self.data.payload.data.eq(bus.rdata),
            self.data.payload.last.eq(bus.rlast & ends.r_data),
            bus.rready.eq(self.data.ready),
            ends.r_en.eq(bus.rvalid & bus.rready & bus.rlast),
            self.idle.eq(~busy & ~ends.r_rdy),
        ]
        with m.If(bus.rvalid & bus.rready & (bus.rresp != RESP_OKAY)):
            m.d.sync += self.resp_error.eq(1)
        with m.If(self.clear):
            m.d.sync += [self.resp_error.eq(0), self.misaligned.eq(0)]
        return m


class AxiWriter(wiring.Component):
    """AXI4 write master: writes `beats` consecutive bus words from the `data` stream at byte address `addr`.

    Parameters and the burst rules are `AxiReader`'s (INCR bursts of at most `max_burst`
    beats, never across 4 KiB; at most `max_outstanding` bursts whose response is pending).

    Members
    -------
    cmd : ``In(stream.Signature({"addr": addr_width, "beats": range(max_beats + 1)}))``
        ``addr`` a multiple of B, ``beats`` >= 1 (else consumed, `misaligned` set).
    data : ``In(stream.Signature({"data": data_width}))``
        Exactly the commands' words, in order (full-word writes, every strobe set).
    bus : ``Out(axi4_write_signature(...))``
    idle : ``Out(1)``
        No command in progress and every write response received: the data is in memory.
    resp_error, misaligned, clear : as `AxiReader`.
    """

    def __init__(self, addr_width: int = 32, data_width: int = 64, max_beats: int = 1 << 20,
                 max_burst: int = 256, max_outstanding: int = 4):
        _burst_master_init(self, addr_width, data_width, max_beats, max_burst, max_outstanding,
                           axi4_write_signature, In(stream.Signature(data.StructLayout({"data": data_width}))))

    def elaborate(self, platform):
        m = Module()
        bus, cmd = self.bus, self.cmd
        shift = (self.bytes_per_beat - 1).bit_length()
        # burst lengths from the address side to the data side, one entry per burst issued
        m.submodules.lens = lens = fifo.SyncFIFO(width=9, depth=self.max_outstanding)
        waiting = Signal(range(self.max_outstanding + 1))       # bursts issued, response not yet received

        # ---- address side
        busy, addr, left, burst = _burst_splitter(m, self, shift)
        aw_go = bus.awvalid & bus.awready
        m.d.comb += [
            cmd.ready.eq(~busy),
            bus.awid.eq(0), bus.awaddr.eq(addr), bus.awlen.eq(burst - 1), bus.awsize.eq(shift),
            bus.awburst.eq(BURST_INCR),
            bus.awvalid.eq(busy & lens.w_rdy & (waiting != self.max_outstanding)),
            lens.w_data.eq(burst), lens.w_en.eq(aw_go),
        ]
        _accept_command(m, self, cmd, busy, addr, left, shift)
        _advance(m, aw_go, busy, addr, left, burst, shift)

        # ---- data side: the words of the burst at the head of `lens`
        sent = Signal(9)
        w_go = bus.wvalid & bus.wready
        m.d.comb += [
            bus.wvalid.eq(self.data.valid & lens.r_rdy),
            bus.wdata.eq(self.data.payload.data),
            bus.wstrb.eq((1 << self.bytes_per_beat) - 1),
            bus.wlast.eq(sent + 1 == lens.r_data),
            self.data.ready.eq(bus.wready & lens.r_rdy),
            lens.r_en.eq(w_go & bus.wlast),
        ]
        with m.If(w_go):
            m.d.sync += sent.eq(Mux(bus.wlast, 0, sent + 1))

        # ---- responses
        b_go = bus.bvalid & bus.bready
        m.d.comb += [bus.bready.eq(1), self.idle.eq(~busy & (waiting == 0))]
        m.d.sync += waiting.eq(waiting + aw_go - b_go)
        with m.If(b_go & (bus.bresp != RESP_OKAY)):
            m.d.sync += self.resp_error.eq(1)
        with m.If(self.clear):
            m.d.sync += [self.resp_error.eq(0), self.misaligned.eq(0)]
        return m


@dataclasses.dataclass(frozen=True)
class Register:
    """One 32-bit register of an `AxiLiteRegisters` bank.

    ``kind``: "rw" (written by the bus, read back; drives ``<name>``), "ro" (read-only,
    driven by the fabric on ``<name>``), "pulse" (a write drives ``<name>`` with the data
    and ``<name>_stb`` high for one cycle; reads as 0).
    """

    name: str
    offset: int
    kind: str = "rw"
    reset: int = 0
    doc: str = ""

    def __post_init__(self):
        if not self.name.isidentifier():
            raise ValueError(f"register name must be an identifier, not {self.name!r}")
        if self.kind not in ("rw", "ro", "pulse"):
            raise ValueError(f"register {self.name}: kind must be rw, ro or pulse, not {self.kind!r}")
        if not isinstance(self.offset, int) or self.offset < 0 or self.offset % 4:
            raise ValueError(f"register {self.name}: offset must be a non-negative multiple of 4, not {self.offset!r}")
        if not 0 <= self.reset < 1 << 32:
            raise ValueError(f"register {self.name}: reset value must fit 32 bits, not {self.reset!r}")


class AxiLiteRegisters(wiring.Component):
    """AXI4-Lite slave exposing `registers` (32-bit, word offsets).

    Members
    -------
    bus : ``In(axi4_lite_signature(addr_width))``
    <name> : ``Out(32)`` for "rw" and "pulse" registers, ``In(32)`` for "ro" ones.
    <name>_stb : ``Out(1)`` for "pulse" registers: high the cycle after the write is accepted.

    Writes accept AW and W together (byte strobes honoured on "rw" registers) and answer
    OKAY, or SLVERR at an unmapped or read-only offset (nothing is written). Reads answer
    the register's value or SLVERR (data 0) at an unmapped offset. One outstanding
    transaction per direction.
    """

    def __init__(self, registers, addr_width: int = 12):
        regs = list(registers)
        names = [r.name for r in regs]
        offsets = [r.offset for r in regs]
        problem = None
        if not regs:
            problem = "a register bank needs at least one register"
        elif len(set(names)) != len(names) or len(set(offsets)) != len(offsets):
            problem = "register names and offsets must be unique"
        elif max(offsets) >= 1 << addr_width:
            problem = f"offset {max(offsets):#x} does not fit addr_width {addr_width}"
        if problem:
            self._MustUse__silence = True
            raise ValueError(problem)
        self.registers = regs
        self.addr_width = addr_width
        members = {"bus": In(axi4_lite_signature(addr_width))}
        for r in regs:
            members[r.name] = In(32) if r.kind == "ro" else Out(32, init=r.reset if r.kind == "rw" else 0)
            if r.kind == "pulse":
                members[f"{r.name}_stb"] = Out(1)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        bus = self.bus

        # ---- write: AW and W together, B held until taken
        bvalid, bresp = Signal(), Signal(2)
        take_w = bus.awvalid & bus.wvalid & ~bvalid
        m.d.comb += [bus.awready.eq(take_w), bus.wready.eq(take_w), bus.bvalid.eq(bvalid), bus.bresp.eq(bresp)]
        with m.If(bvalid & bus.bready):
            m.d.sync += bvalid.eq(0)
        for r in self.registers:
            if r.kind == "pulse":
                m.d.sync += getattr(self, f"{r.name}_stb").eq(0)
        with m.If(take_w):
            m.d.sync += [bvalid.eq(1), bresp.eq(RESP_SLVERR)]
            word = bus.awaddr[2:]
            with m.Switch(word):
                for r in self.registers:
                    if r.kind == "ro":
                        continue
                    with m.Case(r.offset >> 2):
                        m.d.sync += bresp.eq(RESP_OKAY)
                        port = getattr(self, r.name)
                        if r.kind == "pulse":
                            m.d.sync += [port.eq(bus.wdata), getattr(self, f"{r.name}_stb").eq(1)]
                        else:
                            for b in range(4):
                                with m.If(bus.wstrb[b]):
                                    m.d.sync += port[8 * b:8 * b + 8].eq(bus.wdata[8 * b:8 * b + 8])

        # ---- read: one outstanding, R held until taken
        rvalid, rresp, rdata = Signal(), Signal(2), Signal(32)
        m.d.comb += [bus.arready.eq(~rvalid), bus.rvalid.eq(rvalid), bus.rresp.eq(rresp), bus.rdata.eq(rdata)]
        with m.If(rvalid & bus.rready):
            m.d.sync += rvalid.eq(0)
        with m.If(bus.arvalid & ~rvalid):
            m.d.sync += [rvalid.eq(1), rresp.eq(RESP_SLVERR), rdata.eq(0)]
            with m.Switch(bus.araddr[2:]):
                for r in self.registers:
                    with m.Case(r.offset >> 2):
                        m.d.sync += rresp.eq(RESP_OKAY)
                        if r.kind != "pulse":
                            m.d.sync += rdata.eq(getattr(self, r.name))
        return m
