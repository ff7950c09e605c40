"""Pipelined popcount compressor trees, LUT6-friendly.

Two components share one tree builder:

* `Popcount(width)`: number of one bits in a `width`-bit input.
* `XorPopcount(width)`: number of lanes where two `width`-bit inputs differ,
  ``popcount(a ^ b)``: the XOR is folded into the first level, so a LUT6 sees
  3 lanes (a0, b0, a1, b1, a2, b2) and produces their 2-bit count.

Structure: level 1 counts groups of `group` input bits (6 for `Popcount`: 6 inputs ->
3-bit count, one LUT6 per output bit; 3 lanes = 6 inputs for `XorPopcount`), then a
balanced binary tree of adders, ``ceil(log2(ceil(width / group)))`` levels. Level j's
values are ``bit_length(group) + j - 1`` bits wide, so every adder has equal-width operands
and a result exactly one bit wider (lint-clean Verilog). A register follows every `register_every`-th level
and always the last one, so the output is registered and ``latency`` is
``ceil(levels / register_every)`` cycles, levels = ``1 + ceil(log2(ceil(width / group)))``.
The components have no enable port (wrap them in `amaranth.hdl.EnableInserter` to stall)
and no reset (pure datapath: registers are reset-less).
"""
from __future__ import annotations

import math

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

#: Default first-level group of `Popcount`: 6 bits -> 3-bit count (one LUT6 per output bit).
POPCOUNT_GROUP = 6
#: Default first-level group of `XorPopcount`: 3 lanes = 6 inputs -> 2-bit count.
XNOR_GROUP = 3

__all__ = ["POPCOUNT_GROUP", "XNOR_GROUP", "Popcount", "XorPopcount", "tree_levels", "tree_latency"]


def _check_int(name: str, value, lo: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {value!r}")
    if value < lo:
        raise ValueError(f"{name} must be >= {lo}, not {value}")
    return value


def tree_levels(width: int, group: int) -> int:
    """Adder levels of a popcount of `width` bits whose first level counts `group`-bit groups."""
    groups = -(-width // group)
    return 1 + math.ceil(math.log2(groups)) if groups > 1 else 1


def tree_latency(width: int, group: int, register_every: int = 1) -> int:
    """Cycles of a popcount tree (registers after every `register_every` levels and after the last)."""
    return -(-tree_levels(width, group) // register_every)


class _CountTree(wiring.Component):
    """Shared builder: level-1 group counts, then a registered binary adder tree."""

    def __init__(self, width: int, group: int, register_every: int, signature):
        try:
            self._width = _check_int("width", width, 1)
            self._group = _check_int("group", group, 1)
            self._register_every = _check_int("register_every", register_every, 1)
        except (TypeError, ValueError):
            self._MustUse__silence = True   # a rejected instance is not an "unused elaboratable"
            raise
        self._levels = tree_levels(width, group)
        super().__init__(signature(width))

    @property
    def width(self) -> int:
        """Input bits (lanes)."""
        return self._width

    @property
    def levels(self) -> int:
        """Adder levels, the first one included."""
        return self._levels

    @property
    def latency(self) -> int:
        """Cycles from an input to its count on `count` (>= 1: the output is registered)."""
        return tree_latency(self._width, self._group, self._register_every)

    def _lane_bits(self, m: Module) -> list:
        """The `width` single-bit values to count (subclasses may fold logic into them)."""
        raise NotImplementedError

    def _group_count(self, bits: list, width: int):
        """First-level count of one group of bits as a `width`-bit value."""
        return _count_bits(bits, width)

    def elaborate(self, platform) -> Module:
        m = Module()
        bits = self._lane_bits(m)
        g = self._group
        # level j (1-based) nodes all have the same width, so every adder has equal-width
        # operands and a result exactly one bit wider (the next level's width)
        width = (g).bit_length()
        nodes = [self._group_count(bits[i:i + g], width) for i in range(0, len(bits), g)]
        level = 1
        while True:
            registered = level == self._levels or level % self._register_every == 0
            staged = []
            for j, value in enumerate(nodes):
                s = Signal(width, name=f"l{level}_{j}", reset_less=True)
                if registered:
                    m.d.sync += s.eq(value)
                else:
                    m.d.comb += s.eq(value)
                staged.append(s)
            if level == self._levels:
                break
            width += 1
            nodes = [staged[j] + staged[j + 1] for j in range(0, len(staged) - 1, 2)]
            if len(staged) % 2:
                nodes.append(staged[-1])
            level += 1
        m.d.comb += self.count.eq(staged[0])
        return m


def _count_bits(bits: list, width: int):
    """Number of one bits among `bits` as a `width`-bit value, from full and half adders (bitwise logic only).

    A carry-save (Dadda-style) reduction: column j holds bits of weight 2**j; three bits
    of a column become a sum bit (same column) and a carry (next column).
    """
    columns = [list(bits)]
    j = 0
    while j < len(columns):
        col = columns[j]
        while len(col) > 1:
            if len(columns) == j + 1:
                columns.append([])
            if len(col) >= 3:
                x, y, z = col.pop(0), col.pop(0), col.pop(0)
                col.append(x ^ y ^ z)
                columns[j + 1].append((x & y) | (x & z) | (y & z))
            else:
                x, y = col.pop(0), col.pop(0)
                col.append(x ^ y)
                columns[j + 1].append(x & y)
        j += 1
    out = [col[0] for col in columns if col]
    assert len(out) <= width
    return Cat(*out, Const(0, width - len(out)))


class Popcount(_CountTree):
    """Pipelined popcount of `width` bits.

    Parameters
    ----------
    width : int
        Input bits (>= 1).
    group : int
        Bits counted by each first-level node (6 fills a LUT6: 6 inputs -> 3-bit count).
    register_every : int
        Register after every this many adder levels (the last level is always registered).

    Members
    -------
    bits : ``In(width)``
        Input bits.
    count : ``Out(range(width + 1))``
        Number of one bits, ``latency`` cycles after `bits`.
    """

    def __init__(self, width: int, *, group: int = POPCOUNT_GROUP, register_every: int = 1):
        super().__init__(width, group, register_every, lambda w: {"bits": In(w), "count": Out(range(w + 1))})

    def _lane_bits(self, m):
        return [self.bits[i] for i in range(self.width)]


class XorPopcount(_CountTree):
    """Pipelined ``popcount(a ^ b)`` over `width` lanes: the lanes where `a` and `b` differ (the PE's count).

    Parameters
    ----------
    width : int
        Lanes (>= 1).
    group : int
        Lanes per first-level node (3 fills a LUT6: a0, b0, a1, b1, a2, b2 -> 2-bit count).
    register_every : int
        Register after every this many adder levels (the last level is always registered).

    Members
    -------
    a, b : ``In(width)``
        Lane bits; lane i counts when ``a[i] != b[i]``.
    count : ``Out(range(width + 1))``
        Number of differing lanes, ``latency`` cycles after `a`, `b`.
    """

    def __init__(self, width: int, *, group: int = XNOR_GROUP, register_every: int = 1):
        super().__init__(width, group, register_every,
                         lambda w: {"a": In(w), "b": In(w), "count": Out(range(w + 1))})

    def _lane_bits(self, m):
        x = Signal(self.width, name="xor")
        m.d.comb += x.eq(self.a ^ self.b)
        return [x[i] for i in range(self.width)]

    def _group_count(self, bits, width):
        # A plain adder chain: synthesizes to the same LUT6 per output bit as the
        # full-adder form (each output is a function of the group's 6 inputs) and
        # simulates about twice as fast in the Python simulator.
        return sum(bits[1:], bits[0])
