"""AXI4 read master and AXI4-Lite register bank in the Amaranth simulator.

The memory side here is the smallest responder that checks the AXI rules the reader must
keep (burst length, 4 KiB boundary, INCR, size, outstanding bursts, stable AR payload);
the generated Verilog is checked against cocotbext-axi's models in the cocotb benches.
"""
from __future__ import annotations

import numpy as np
import pytest

from bitaccel.hw.encoder.axi import RESP_OKAY, RESP_SLVERR, AxiLiteRegisters, AxiReader, AxiWriter, Register
from tests.hwsim import run, stream_get, stream_put


def _word(addr: int, width: int) -> int:
    """Memory content: a word derived from its byte address (distinct per word)."""
    return (addr * 0x9E3779B97F4A7C15 + 12345) % (1 << width)


def _responder(dut, rng, log, ar_stall=0.3, r_stall=0.3, error_at=None):
    """AXI slave: accepts ARs with random stalls, returns their beats in order with random gaps."""
    bpb = dut.bytes_per_beat

    async def slave(ctx):
        pending = []          # [addr, beats_left]
        in_flight_max = 0
        while True:
            ar_ready = int(rng.random() >= ar_stall)
            ctx.set(dut.bus.arready, ar_ready)
            r_valid = int(bool(pending) and rng.random() >= r_stall)
            if r_valid:
                addr, left = pending[0]
                ctx.set(dut.bus.rdata, _word(addr, dut.data_width))
                ctx.set(dut.bus.rlast, int(left == 1))
                ctx.set(dut.bus.rresp, RESP_SLVERR if addr == error_at else RESP_OKAY)
            ctx.set(dut.bus.rvalid, r_valid)
            *_, arvalid, araddr, arlen, arsize, arburst, rready = await ctx.tick().sample(
                dut.bus.arvalid, dut.bus.araddr, dut.bus.arlen, dut.bus.arsize, dut.bus.arburst, dut.bus.rready)
            if r_valid and rready:
                pending[0][0] += bpb
                pending[0][1] -= 1
                if pending[0][1] == 0:
                    pending.pop(0)
            if arvalid and ar_ready:
                beats = arlen + 1
                assert arburst == 1 and (1 << arsize) == bpb
                assert araddr % bpb == 0
                assert beats <= dut.max_burst
                assert araddr // 4096 == (araddr + beats * bpb - 1) // 4096, "burst crosses 4 KiB"
                log.append((araddr, beats))
                pending.append([araddr, beats])
                in_flight_max = max(in_flight_max, len(pending))
                assert in_flight_max <= dut.max_outstanding
    return slave


@pytest.mark.parametrize("data_width,max_burst,outstanding", [(64, 256, 4), (32, 16, 2), (128, 7, 1)])
def test_reader_bursts_and_data(data_width, max_burst, outstanding):
    rng = np.random.default_rng(data_width + max_burst)
    dut = AxiReader(addr_width=32, data_width=data_width, max_beats=5000, max_burst=max_burst,
                    max_outstanding=outstanding)
    bpb = dut.bytes_per_beat
    # edge cases: 1 beat, a burst exactly at the limit, crossing 4 KiB, starting 1 word before it, long
    cmds = [(0, 1), (4096 - bpb, 3), (8192 - 2 * bpb, max_burst + 5), (bpb * 37, max_burst),
            (0x10000, 4096 // bpb + 9), (0x3000 - bpb, 1)]
    cmds += [(int(rng.integers(0, 1 << 20)) * bpb, int(rng.integers(1, 600))) for _ in range(4)]
    log = []

    async def host(ctx):
        for addr, beats in cmds:
            await stream_put(ctx, dut.cmd, {"addr": addr, "beats": beats}, rng, 0.2)

    async def sink(ctx):
        for addr, beats in cmds:
            for i in range(beats):
                p = await stream_get(ctx, dut.data, rng, 0.3)
                assert p.data == _word(addr + i * bpb, data_width), (addr, i)
                assert p.last == (i == beats - 1), (addr, i)
        for _ in range(4):
            await ctx.tick()
        assert ctx.get(dut.idle) and not ctx.get(dut.resp_error) and not ctx.get(dut.misaligned)

    run(dut, host, sink, background=[_responder(dut, rng, log)])
    assert sum(b for _, b in log) == sum(b for _, b in cmds)


def test_reader_flags_misaligned_and_error_response():
    rng = np.random.default_rng(7)
    dut = AxiReader(addr_width=32, data_width=64, max_beats=100, max_burst=8)

    async def host(ctx):
        await stream_put(ctx, dut.cmd, {"addr": 4, "beats": 2})         # misaligned: no transfer
        await ctx.tick()
        assert ctx.get(dut.misaligned) and ctx.get(dut.idle)
        await stream_put(ctx, dut.cmd, {"addr": 64, "beats": 0})        # empty command
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        assert not ctx.get(dut.misaligned)
        await stream_put(ctx, dut.cmd, {"addr": 64, "beats": 4})
        for i in range(4):
            p = await stream_get(ctx, dut.data)
            assert p.data == _word(64 + 8 * i, 64)
        await ctx.tick()
        assert ctx.get(dut.resp_error)                                  # the beat at 80 answered SLVERR

    run(dut, host, background=[_responder(dut, rng, [], error_at=80)])


def test_reader_rejects_bad_parameters():
    with pytest.raises(ValueError, match="data_width"):
        AxiReader(data_width=48)
    with pytest.raises(ValueError, match="max_burst"):
        AxiReader(max_burst=257)


def _write_responder(dut, rng, memory, stall=0.3, error_at=None):
    """AXI slave for writes: AW and W with random stalls, one B per burst after its last W beat."""
    bpb = dut.bytes_per_beat

    async def slave(ctx):
        bursts, responses, in_flight_max = [], [], 0        # [addr, beats, written]; [resp]
        while True:
            aw_ready, w_ready = int(rng.random() >= stall), int(rng.random() >= stall)
            b_valid = int(bool(responses) and rng.random() >= stall)
            ctx.set(dut.bus.awready, aw_ready)
            ctx.set(dut.bus.wready, w_ready)
            ctx.set(dut.bus.bvalid, b_valid)
            ctx.set(dut.bus.bresp, responses[0] if b_valid else 0)
            *_, awvalid, awaddr, awlen, awsize, awburst, wvalid, wdata, wstrb, wlast, bready = await ctx.tick().sample(
                dut.bus.awvalid, dut.bus.awaddr, dut.bus.awlen, dut.bus.awsize, dut.bus.awburst,
                dut.bus.wvalid, dut.bus.wdata, dut.bus.wstrb, dut.bus.wlast, dut.bus.bready)
            if b_valid and bready:
                responses.pop(0)
            if awvalid and aw_ready:
                beats = awlen + 1
                assert awburst == 1 and (1 << awsize) == bpb and awaddr % bpb == 0 and beats <= dut.max_burst
                assert awaddr // 4096 == (awaddr + beats * bpb - 1) // 4096, "burst crosses 4 KiB"
                bursts.append([awaddr, beats, 0])
                in_flight_max = max(in_flight_max, len(bursts) + len(responses))
                assert in_flight_max <= dut.max_outstanding
            if wvalid and w_ready:
                assert bursts, "W beat before its AW"
                b = bursts[0]
                assert wstrb == (1 << bpb) - 1
                assert wlast == (b[2] == b[1] - 1), "wlast on the wrong beat"
                memory[b[0] + b[2] * bpb] = wdata
                b[2] += 1
                if wlast:
                    responses.append(RESP_SLVERR if b[0] == error_at else RESP_OKAY)
                    bursts.pop(0)
    return slave


@pytest.mark.parametrize("data_width,max_burst,outstanding", [(64, 256, 4), (32, 16, 2), (256, 5, 1)])
def test_writer_bursts_and_data(data_width, max_burst, outstanding):
    rng = np.random.default_rng(data_width * 3 + max_burst)
    dut = AxiWriter(addr_width=32, data_width=data_width, max_beats=5000, max_burst=max_burst,
                    max_outstanding=outstanding)
    bpb = dut.bytes_per_beat
    cmds = [(0, 1), (4096 - bpb, 3), (8192 - 2 * bpb, max_burst + 5), (0x10000, 4096 // bpb + 9)]
    cmds += [(int(rng.integers(0, 1 << 20)) * bpb, int(rng.integers(1, 400))) for _ in range(3)]
    memory = {}

    async def host(ctx):
        for addr, beats in cmds:
            await stream_put(ctx, dut.cmd, {"addr": addr, "beats": beats}, rng, 0.2)

    async def source(ctx):
        for addr, beats in cmds:
            for i in range(beats):
                await stream_put(ctx, dut.data, {"data": _word(addr + i * bpb, data_width)}, rng, 0.3)
        while not ctx.get(dut.idle):
            await ctx.tick()
        assert not ctx.get(dut.resp_error) and not ctx.get(dut.misaligned)

    run(dut, host, source, background=[_write_responder(dut, rng, memory)])
    expected = {addr + i * bpb: _word(addr + i * bpb, data_width) for addr, beats in cmds for i in range(beats)}
    assert memory == expected


def test_writer_flags_error_response():
    rng = np.random.default_rng(3)
    dut = AxiWriter(addr_width=32, data_width=64, max_beats=100, max_burst=4)
    memory = {}

    async def host(ctx):
        await stream_put(ctx, dut.cmd, {"addr": 3, "beats": 1})         # misaligned: nothing written
        await stream_put(ctx, dut.cmd, {"addr": 0x100, "beats": 8})
        for i in range(8):
            await stream_put(ctx, dut.data, {"data": i})
        while not ctx.get(dut.idle):
            await ctx.tick()
        assert ctx.get(dut.misaligned) and ctx.get(dut.resp_error)      # the burst at 0x120 answered SLVERR

    run(dut, host, background=[_write_responder(dut, rng, memory, error_at=0x120)])
    assert memory == {0x100 + 8 * i: i for i in range(8)}


REGS = [Register("ctrl", 0x0, "pulse"), Register("status", 0x4, "ro"), Register("base", 0x10, "rw", reset=0x1234),
        Register("limit", 0x14, "rw")]


async def _lite_write(ctx, bus, addr, value, strb=0xF):
    ctx.set(bus.awaddr, addr)
    ctx.set(bus.wdata, value)
    ctx.set(bus.wstrb, strb)
    ctx.set(bus.awvalid, 1)
    ctx.set(bus.wvalid, 1)
    await ctx.tick().until(bus.awready & bus.wready)
    ctx.set(bus.awvalid, 0)
    ctx.set(bus.wvalid, 0)
    ctx.set(bus.bready, 1)
    (resp,) = await ctx.tick().sample(bus.bresp).until(bus.bvalid)
    ctx.set(bus.bready, 0)
    return resp


async def _lite_read(ctx, bus, addr):
    ctx.set(bus.araddr, addr)
    ctx.set(bus.arvalid, 1)
    await ctx.tick().until(bus.arready)
    ctx.set(bus.arvalid, 0)
    ctx.set(bus.rready, 1)
    data, resp = await ctx.tick().sample(bus.rdata, bus.rresp).until(bus.rvalid)
    ctx.set(bus.rready, 0)
    return data, resp


def test_register_bank():
    dut = AxiLiteRegisters(REGS)
    seen = []

    async def host(ctx):
        assert await _lite_read(ctx, dut.bus, 0x10) == (0x1234, RESP_OKAY)
        assert await _lite_write(ctx, dut.bus, 0x14, 0xDEADBEEF) == RESP_OKAY
        assert await _lite_write(ctx, dut.bus, 0x14, 0x00AA0000, strb=0b0100) == RESP_OKAY
        assert ctx.get(dut.limit) == 0xDEAABEEF
        assert await _lite_read(ctx, dut.bus, 0x14) == (0xDEAABEEF, RESP_OKAY)
        ctx.set(dut.status, 0x5A)
        assert await _lite_read(ctx, dut.bus, 0x4) == (0x5A, RESP_OKAY)
        assert await _lite_write(ctx, dut.bus, 0x4, 1) == RESP_SLVERR          # read-only
        assert await _lite_write(ctx, dut.bus, 0x20, 1) == RESP_SLVERR         # unmapped
        assert await _lite_read(ctx, dut.bus, 0x20) == (0, RESP_SLVERR)
        assert await _lite_write(ctx, dut.bus, 0x0, 3) == RESP_OKAY
        assert await _lite_read(ctx, dut.bus, 0x0) == (0, RESP_OKAY)            # pulse reads as 0
        assert ctx.get(dut.base) == 0x1234 and ctx.get(dut.limit) == 0xDEAABEEF

    async def watch(ctx):
        for _ in range(200):                       # the host finishes well inside 200 cycles
            *_, stb, value = await ctx.tick().sample(dut.ctrl_stb, dut.ctrl)
            if stb:
                seen.append(value)

    run(dut, host, watch)
    assert seen == [3]                             # one strobe, one cycle, carrying the written data


def test_register_bank_rejects_bad_maps():
    with pytest.raises(ValueError, match="unique"):
        AxiLiteRegisters([Register("a", 0), Register("b", 0)])
    with pytest.raises(ValueError, match="multiple of 4"):
        Register("a", 2)
    with pytest.raises(ValueError, match="kind"):
        Register("a", 0, "wo")
