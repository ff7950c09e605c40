"""Ports every execute unit shares (docs/encoder.md §4): the AXI reader's and the trace writer's
streams, the read-request helper, and range checks for the error flags."""
from __future__ import annotations

from amaranth.hdl import Module, signed
from amaranth.lib import data, stream
from amaranth.lib.wiring import In, Out

from .trace import trace_start_layout

__all__ = ["BUS_BITS", "rd_signatures", "trace_signatures", "request_read", "fits_signed", "fits_unsigned"]

#: The AXI data width every execute unit reads (bits per beat).
BUS_BITS = 64


def rd_signatures(addr_width: int, max_beats: int) -> dict:
    """The shared AXI reader's command stream and BUS_BITS-bit data stream, as every execute unit declares them."""
    return {
        "rd_cmd": Out(stream.Signature(data.StructLayout({"addr": addr_width, "beats": range(max_beats + 1)}))),
        "rd_data": In(stream.Signature(data.StructLayout({"data": BUS_BITS, "last": 1}))),
    }


def trace_signatures(addr_width: int) -> dict:
    """The trace writer's start and value streams, as every execute unit declares them."""
    return {
        "trace_start": Out(stream.Signature(trace_start_layout(addr_width))),
        "trace_values": Out(stream.Signature(data.StructLayout({"value": signed(32)}))),
    }


def request_read(m: Module, rd_cmd, addr, beats) -> None:
    """Offer the read command (`addr`, `beats`) this cycle (combinational; taken when ``rd_cmd.ready``)."""
    m.d.comb += [rd_cmd.valid.eq(1), rd_cmd.payload.addr.eq(addr), rd_cmd.payload.beats.eq(beats)]


def fits_signed(value, width: int):
    """1 where the signed `value` lies in the range of signed(width)."""
    top = value.as_signed() >> (width - 1)
    return (top == 0) | (top == -1)


def fits_unsigned(value, width: int):
    """1 where the signed `value` lies in [0, 2**width)."""
    return (value.as_signed() >> width) == 0
