"""Ports every execute unit shares (docs/encoder.md §4): the AXI reader's and the trace writer's
streams, the read-request helper, and range checks for the error flags."""
from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream
from amaranth.lib.wiring import In, Out

from bitaccel.golden.formats import RESIDUAL_BITS

from .trace import trace_start_layout

__all__ = ["BUS_BITS", "rd_signatures", "trace_signatures", "res_signatures", "request_read", "read_lanes",
           "read_element", "write_lanes", "write_element", "fits_signed", "fits_unsigned"]

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


def res_signatures(lanes: int, res_words: int, reads: tuple = (), write: bool = False) -> dict:
    """Residual-buffer ports (docs/encoder.md §4): physical words of `lanes` (= V,
    `hw.spec.buffers.residual_lanes`) signed 16-bit values, ``res_<r>_addr``/``res_<r>_data`` for each
    read port in `reads` ("r0", "r1"), and with `write` ``res_w_addr``/``res_w_data``/``res_w_en``
    (one enable per value). `res_words`: the depth in values."""
    depth = -(-res_words // lanes)
    word = data.ArrayLayout(signed(RESIDUAL_BITS), lanes)
    ports = {}
    for r in reads:
        ports.update({f"res_{r}_addr": Out(range(max(depth, 2))), f"res_{r}_data": In(word)})
    if write:
        ports.update({"res_w_addr": Out(range(max(depth, 2))), "res_w_data": Out(word), "res_w_en": Out(lanes)})
    return ports


def read_lanes(m: Module, addr_port, data_port, addr, count: int, name: str):
    """`count` values from a read port of words of V = ``data_port.shape().length`` lanes: address flat value
    `addr` now (comb; `count` divides V, and `addr` is a multiple of `count` when count > 1); returns
    (the values at addr .. addr + count - 1, the value at addr) the next cycle (the lane is registered)."""
    lanes = data_port.shape().length
    shift = (lanes - 1).bit_length()
    m.d.comb += addr_port.eq(addr >> shift)
    if lanes == 1:
        return data_port, data_port[0]
    lane = Signal(shift, name=f"{name}_lane")
    m.d.sync += lane.eq(addr)
    group = data.ArrayLayout(data_port.shape().elem_shape, count)
    values = group(data_port.as_value().word_select(lane >> (count - 1).bit_length(), group.size))
    return values, data_port[lane]


def read_element(m: Module, addr_port, data_port, addr, name: str):
    """One value a cycle from a read port of words of V lanes: address flat value `addr` now (comb); the
    returned value is that element next cycle (the lane is registered)."""
    return read_lanes(m, addr_port, data_port, addr, 1, name)[1]


def write_lanes(m: Module, addr_port, data_port, en_port, addr, values: list, en, valid=None) -> None:
    """Write k = len(`values`) values at flat addresses `addr` .. `addr` + k - 1 this cycle when `en` (comb):
    k divides the word's V lanes and `addr` is a multiple of k, so they are lanes addr mod V .. of one
    word (every k-lane group of the data carries them; the enables pick theirs). `valid`: a k-bit
    mask of the values to write (default all)."""
    lanes, k = data_port.shape().length, len(values)
    shift = (lanes - 1).bit_length()
    mask = Const((1 << k) - 1, k) if valid is None else valid
    m.d.comb += [addr_port.eq(addr >> shift), en_port.eq(Mux(en, mask << addr[:shift], 0))]
    m.d.comb += [data_port[i].eq(values[i % k]) for i in range(lanes)]


def write_element(m: Module, addr_port, data_port, en_port, addr, value, en) -> None:
    """Write one value at flat address `addr` this cycle when `en` (comb): its word, its lane's enable."""
    write_lanes(m, addr_port, data_port, en_port, addr, [value], en)


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
