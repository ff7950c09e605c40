"""TraceWriter in the Amaranth simulator: int32 values -> bus words in memory order, partial last word zero-padded."""
from __future__ import annotations

import numpy as np
import pytest

from bitaccel.hw.encoder.trace import TraceWriter
from tests.hwsim import run, stream_get, stream_put


@pytest.mark.parametrize("data_width", [32, 64, 128])
def test_trace_words(data_width):
    rng = np.random.default_rng(data_width)
    dut = TraceWriter(addr_width=32, data_width=data_width)
    per = data_width // 32
    traces = [(0x40, 1), (0x80, per), (0x100, 3 * per + 1), (0x200, 2 * per - 1), (0x400, 17)]
    values = {addr: rng.integers(-(1 << 31), 1 << 31, n) for addr, n in traces}
    values[0x80][:] = [-(1 << 31)] + [(1 << 31) - 1] * (per - 1)          # both int32 ends

    async def host(ctx):
        for addr, n in traces:
            await stream_put(ctx, dut.start, {"addr": addr, "count": n}, rng, 0.3)
            for v in values[addr]:
                await stream_put(ctx, dut.values, {"value": int(v)}, rng, 0.3)

    async def writer(ctx):
        for addr, n in traces:
            cmd = await stream_get(ctx, dut.cmd, rng, 0.3)
            beats = -(-n // per)
            assert (cmd.addr, cmd.beats) == (addr, beats)
            want = np.zeros(beats * per, dtype=np.int64)
            want[:n] = values[addr]
            for b in range(beats):
                word = (await stream_get(ctx, dut.words, rng, 0.3)).data
                got = [(word >> (32 * i)) & 0xFFFFFFFF for i in range(per)]
                assert got == [int(v) & 0xFFFFFFFF for v in want[b * per:(b + 1) * per]], (addr, b)
        await ctx.tick()
        assert not ctx.get(dut.busy)

    run(dut, host, writer)
