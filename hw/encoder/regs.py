"""The accelerator's control/status register map (AXI4-Lite, 32-bit registers): one owner.

docs/encoder.md prints this table; `hw.encoder.top.Accelerator` instantiates it and
sim/ drives it by name. Offsets are bytes from the register window's base.
"""
from __future__ import annotations

from .axi import Register

__all__ = ["REGISTERS", "MAGIC", "CTRL_START", "CTRL_CLEAR", "STATUS_BUSY", "STATUS_DONE", "STATUS_ERROR",
           "ERR_NONE", "ERR_OPCODE", "ERR_FETCH", "ERR_UNSUPPORTED", "ERR_TOKEN", "ERR_MASKED_ROW",
           "ERR_LENGTH", "ERR_FRAMING", "ERR_RANGE", "COUNTER_UNITS", "BUSY_COUNTERS", "BEAT_COUNTERS", "offset"]

#: ID register value: ASCII "BITA".
MAGIC = 0x42495441

# CTRL bits (write 1)
CTRL_START = 1 << 0     #: start the program at PROGRAM_BASE (ignored while busy)
CTRL_CLEAR = 1 << 1     #: clear DONE, ERROR and the error code
# STATUS bits
STATUS_BUSY = 1 << 0
STATUS_DONE = 1 << 1    #: the program reached END (sticky until CLEAR or the next START)
STATUS_ERROR = 1 << 2   #: the sequencer stopped on an error; STATUS[15:8] is the code
# error codes (STATUS[15:8])
ERR_NONE = 0
ERR_OPCODE = 1          #: an instruction word with an unknown opcode or set reserved bits
ERR_FETCH = 2           #: an AXI read answered with an error response, or a misaligned address
ERR_UNSUPPORTED = 3     #: an opcode this build does not execute yet
ERR_TOKEN = 4           #: EMBED: a token id or type outside the embedding tables
ERR_MASKED_ROW = 5      #: SOFTMAX: a row with no valid key (golden raises)
ERR_LENGTH = 6          #: a row longer than the generated limit (softmax keys, LayerNorm width)
ERR_FRAMING = 7         #: LAYERNORM: a row length the unit cannot take (not a multiple of its width)
ERR_RANGE = 8           #: a value outside the range its destination holds (never wrapped)

#: Activity counters (one read-only register `busy_<name>` each, saturating at 2**32 - 1) and what each
#: counts: cycles (fetching, AXI activity spans), MAC-array operand beats (at most one a cycle), or
#: elements entering a post-processing unit (up to its width a cycle, so not a busy fraction).
COUNTER_UNITS = {"fetch": "cycles", "mac_array": "beats", "threshold_unit": "elements", "requant_unit": "elements",
                 "softmax_unit": "elements", "layernorm_unit": "elements", "axi_read": "cycles", "axi_write": "cycles"}
BUSY_COUNTERS = tuple(COUNTER_UNITS)
#: AXI data beats counted for the energy model (one read-only register each, 64-bit beats, saturating):
#: R handshakes of the read master (rvalid & rready) and W handshakes of the write master (wvalid & wready).
BEAT_COUNTERS = ("axi_read_beats", "axi_write_beats")

REGISTERS = (
    Register("id", 0x00, "ro", doc="MAGIC (\"BITA\")"),
    Register("version", 0x04, "ro", doc="bitaccel version: major << 16 | minor << 8 | patch"),
    Register("array", 0x08, "ro", doc="rows[7:0] - 1, cols[15:8] - 1, lanes[31:16]"),
    Register("ctrl", 0x10, "pulse", doc="bit 0 START, bit 1 CLEAR"),
    Register("status", 0x14, "ro", doc="bit 0 BUSY, bit 1 DONE, bit 2 ERROR, bits 15:8 error code"),
    Register("irq_enable", 0x18, "rw", doc="bit 0: raise `irq` while DONE or ERROR"),
    Register("program_base_lo", 0x20, "rw", doc="byte address of the first instruction, bits 31:0"),
    Register("program_base_hi", 0x24, "rw", doc="bits 63:32 (ignored above the AXI address width)"),
    Register("data_base_lo", 0x28, "rw", doc="base of every external address in the program, bits 31:0"),
    Register("data_base_hi", 0x2C, "rw", doc="bits 63:32"),
    Register("cycles_lo", 0x30, "ro", doc="cycles from START to DONE/ERROR (running while busy), bits 31:0"),
    Register("cycles_hi", 0x34, "ro", doc="bits 63:32"),
    Register("retired", 0x38, "ro", doc="instructions completed in the last run"),
    Register("pc", 0x3C, "ro", doc="index of the instruction executing (or that stopped the run)"),
) + tuple(Register(f"busy_{name}", 0x40 + 4 * i, "ro", doc=f"{name} {COUNTER_UNITS[name]} in the last run")
          for i, name in enumerate(BUSY_COUNTERS)) + tuple(
    Register(name, 0x40 + 4 * (len(BUSY_COUNTERS) + i), "ro", doc=f"AXI {kind} data beats in the last run")
    for i, (name, kind) in enumerate(zip(BEAT_COUNTERS, ("read (R)", "write (W)"))))


def offset(name: str) -> int:
    """Byte offset of register `name` (KeyError naming the register if unknown)."""
    for r in REGISTERS:
        if r.name == name:
            return r.offset
    raise KeyError(f"no register named {name!r}")
