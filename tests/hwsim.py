"""Helpers for Amaranth-simulator unit tests: stream drivers with random stalls, and a runner."""
from __future__ import annotations

import gc

import numpy as np
from amaranth.sim import Simulator


async def stream_put(ctx, port, payload, rng: np.random.Generator | None = None, stall: float = 0.0) -> None:
    """Send one payload on a stream (valid/ready), optionally idling random cycles first."""
    while rng is not None and rng.random() < stall:
        await ctx.tick()
    ctx.set(port.valid, 1)
    ctx.set(port.payload, payload)
    await ctx.tick().until(port.ready)
    ctx.set(port.valid, 0)


async def stream_get(ctx, port, rng: np.random.Generator | None = None, stall: float = 0.0):
    """Receive one payload from a stream, optionally holding ready low for random cycles (back-pressure)."""
    while rng is not None and rng.random() < stall:
        ctx.set(port.ready, 0)
        await ctx.tick()
    ctx.set(port.ready, 1)
    (payload,) = await ctx.tick().sample(port.payload).until(port.valid)
    ctx.set(port.ready, 0)
    return payload


def run(dut, *testbenches, deadline_cycles: int = 200_000, vcd: str | None = None, background=()) -> None:
    """Run testbenches on `dut` with a 1 MHz clock until they finish; fail after `deadline_cycles` (hung DUT).

    `background` testbenches (e.g. a bus responder that loops forever) run beside them
    and do not keep the simulation alive.
    """
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for tb in testbenches:
        sim.add_testbench(tb)
    for tb in background:
        sim.add_testbench(tb, background=True)

    async def watchdog(ctx):
        for _ in range(deadline_cycles):  # a plain loop: nothing left suspended inside an async generator
            await ctx.tick()
        raise AssertionError(f"simulation still busy after {deadline_cycles} cycles (hung DUT?)")

    sim.add_testbench(watchdog, background=True)  # background: does not keep the simulation alive
    try:
        if vcd:
            with sim.write_vcd(vcd):
                sim.run()
        else:
            sim.run()
    finally:
        gc.collect()  # finalize suspended testbench coroutines now, not in the middle of pytest's reporting
