"""Per-channel constant tables shared by the post-processing units.

A post-processing unit consumes *beats* of ``width`` elements: element ``i`` of a beat
belongs to channel ``channel + i``, where ``channel`` is a multiple of ``width``. Its
per-channel constants (thresholds, offsets, lower bounds) therefore live in a memory of
``ceil(max_channels / width)`` rows, one row = the ``width`` constants of one beat,
written by the sequencer through a stream before a run and read one row per cycle.
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Shape, ShapeCastable, Value, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from .spec.validate import require_int

__all__ = ["channel_bits", "row_count", "row_addr_bits", "beat_layout", "write_signature",
           "row_of_channel", "gather_row", "ChannelTable"]


def channel_bits(max_channels: int) -> int:
    """Unsigned bits of a channel index 0 .. max_channels - 1 (at least 1)."""
    return max(1, ceil_log2(max_channels))


def row_count(width: int, max_channels: int) -> int:
    """Rows of a table holding `max_channels` constants, `width` per row."""
    return -(-max_channels // width)


def row_addr_bits(width: int, max_channels: int) -> int:
    """Unsigned bits of a row address (at least 1, so the write stream always has an addr field)."""
    return max(1, ceil_log2(row_count(width, max_channels)))


def beat_layout(elem_shape: ShapeCastable, width: int, max_channels: int, name: str) -> data.StructLayout:
    """Input beat of a unit: {name: width x elem_shape, "channel": first channel, "last": 1}."""
    return data.StructLayout({
        name: data.ArrayLayout(elem_shape, width),
        "channel": unsigned(channel_bits(max_channels)),
        "last": unsigned(1),
    })


def write_signature(elem_shape: ShapeCastable, width: int, max_channels: int) -> stream.Signature:
    """Stream writing one table row: {"addr": row, "data": width x elem_shape}; held off while its unit is busy."""
    return stream.Signature(data.StructLayout({
        "addr": unsigned(row_addr_bits(width, max_channels)),
        "data": data.ArrayLayout(elem_shape, width),
    }))


def row_of_channel(channel: Value, width: int, max_channels: int) -> Value:
    """Row address ``channel // width`` for a `channel` that is a multiple of `width`.

    For width = 2**t * q (q odd) the row is ``(channel >> t) * q^-1 mod 2**bits``: exact for
    multiples of `width` (the quotient is below 2**bits), a shift when q = 1, otherwise a
    constant multiply instead of a divider. Channels that are not multiples give a
    don't-care row.
    """
    bits = ceil_log2(row_count(width, max_channels))
    t = (width & -width).bit_length() - 1
    q = width >> t
    shifted = channel.shift_right(t)
    if q == 1 or bits == 0:
        return shifted[:bits]
    return (shifted * pow(q, -1, 1 << bits))[:bits]


def gather_row(m: Module, row, slot: Value, value: Value, store: Value) -> list:
    """Assemble a table row from constants arriving one at a time (channel k: slot k mod width).

    Returns the row to write now: register `row` (an ArrayLayout view) with `value` in `slot`
    (combinational). With `store` high (a taken beat), the register also keeps `value` in `slot`.
    """
    width = len(row)
    with m.If(store):
        for i in range(width):
            with m.If(slot == i):
                m.d.sync += row[i].eq(value)
    return [Mux(slot == i, value, row[i]) for i in range(width)]


class ChannelTable(wiring.Component):
    """A memory of per-channel constants, `width` per row, written by a stream, read synchronously.

    Parameters
    ----------
    elem_shape : shape of one constant (e.g. ``signed(acc_width + 1)``).
    width : constants per row (= elements per beat of the unit using the table).
    max_channels : largest channel count; depth = ceil(max_channels / width) rows.

    Members
    -------
    write : ``In(write_signature(...))`` — ``addr`` is a row index (< depth; a larger
        address is undefined), ``data[i]`` the constant of channel ``addr * width + i``.
        One row per cycle while ``busy`` is low; refused (ready = 0) while it is high.
        Rows past the last channel of a model are don't-care.
    busy : ``In(1)`` — the owning unit has a row in flight: writes wait, so no row ever
        reads a half-written table.
    channel : ``In(channel_bits(max_channels))`` — first channel of the beat to read (a
        multiple of `width`).
    en : ``In(1)`` — read enable: at a clock edge with ``en`` high, ``data`` loads the row of
        ``channel``; with ``en`` low it holds (so a stalled pipeline keeps its row).
    data : ``Out(ArrayLayout(elem_shape, width))`` — the row read at the last enabled edge.

    A row written in the same cycle as it is read returns its old contents.
    """

    def __init__(self, elem_shape: ShapeCastable, width: int, max_channels: int):
        if not isinstance(elem_shape, ShapeCastable):
            elem_shape = Shape.cast(elem_shape)
        self.width = require_int("width", width, 1)
        self.max_channels = require_int("max_channels", max_channels, 1)
        self.elem_shape = elem_shape
        self.depth = row_count(width, max_channels)
        self.row_layout = data.ArrayLayout(elem_shape, width)
        super().__init__({
            "write": In(write_signature(elem_shape, width, max_channels)),
            "busy": In(1),
            "channel": In(channel_bits(max_channels)),
            "en": In(1),
            "data": Out(self.row_layout),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = memory.Memory(shape=self.row_layout, depth=self.depth, init=[])
        wr = mem.write_port()
        rd = mem.read_port(domain="sync")
        m.d.comb += [
            wr.addr.eq(self.write.payload.addr),
            wr.data.eq(self.write.payload.data),
            wr.en.eq(self.write.valid & ~self.busy),
            self.write.ready.eq(~self.busy),
            rd.addr.eq(row_of_channel(self.channel, self.width, self.max_channels)),
            rd.en.eq(self.en),
            self.data.eq(rd.data),
        ]
        return m
