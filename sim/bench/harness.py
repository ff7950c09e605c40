"""Shared cocotb verification components: packing, stream driver, stream monitor, scoreboard, report.

The generated Verilog flattens every Amaranth stream into ``<port>__valid``,
``<port>__ready`` and ``<port>__payload``, the payload being the struct's bits as one vector
(LSB first, fields in layout order). `Codec` derives every field's offset from the
Amaranth layout itself (the unit is constructed in the cocotb process from the same
`HwParams`), so no offset is written down twice.

Timing protocol used by every component (one clock, ``CLOCK_NS`` period):

* values are written only right after a rising edge (``await RisingEdge(clk)``);
* values are read in the read-only phase after an edge (``await ReadOnly()``), where they
  are settled: ``valid & ready`` there means a transfer *at the next rising edge*;
* a cycle number is the index of a rising edge since the clock started; "cycles of an
  operation" = last output transfer edge - first input transfer edge + 1 (both included),
  the definition of the units' own ``cycles()`` formulas.

Run parameters come from the environment `sim.runner` sets (`sim.run_env.ENV`); this module never
imports the host-side runner.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import warnings
import zlib

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, Event, ReadOnly, RisingEdge, SimTimeoutError, with_timeout

from amaranth.hdl import Shape
from amaranth.lib import data, wiring

from bitaccel.sim.run_env import ENV, params_from_dict

__all__ = ["CLOCK_NS", "Codec", "Beat", "Transfer", "StreamDriver", "StreamMonitor", "Scoreboard", "Op", "TB",
           "bench_test", "run_config", "workload_options", "padded_chunks", "bits_of", "signed_range",
           "channel_beats", "table_rows", "lanes_of"]

#: Clock period of every bench (the exported Verilog has no timescale; the runner passes 1ns/1ps).
CLOCK_NS = 10
log = logging.getLogger("cocotb.bitaccel")


# ----------------------------------------------------------------------------- run configuration
@dataclasses.dataclass(frozen=True)
class RunConfig:
    unit: str
    config: str
    sim: str
    params: object          # hw.params.HwParams
    seed: int
    workload: dict
    results: str | None
    verify: bool
    timeout_ms: float


@functools.lru_cache(maxsize=None)
def run_config() -> RunConfig:
    """The run's parameters from the environment set by sim.runner."""
    env = os.environ
    try:
        params = params_from_dict(json.loads(env[ENV.params]))
        unit = env[ENV.unit]
    except KeyError as e:
        raise RuntimeError(f"{e.args[0]} is not set: run this module through sim.runner") from None
    workload = {}
    if env.get(ENV.workload):
        with open(env[ENV.workload]) as f:
            workload = json.load(f)
    return RunConfig(unit=unit, config=env.get(ENV.config, "?"), sim=env.get(ENV.sim, "?"), params=params,
                     seed=int(env.get(ENV.seed, "0")), workload=workload, results=env.get(ENV.results),
                     verify=env.get(ENV.verify, "1") != "0", timeout_ms=float(env.get(ENV.timeout_ms, "200")))


def workload_options(defaults: dict) -> dict:
    """The unit's defaults overridden by the run's workload; unknown keys are an error."""
    given = run_config().workload
    unknown = set(given) - set(defaults)
    if unknown:
        raise ValueError(f"unknown workload options {sorted(unknown)}; known: {sorted(defaults)}")
    return {**defaults, **given}


def channel_workload_options(tb, defaults: dict) -> dict:
    """`workload_options` for the per-channel units (threshold, requant): checks rows and channels."""
    opt = workload_options(defaults)
    if not 1 <= opt["channels"] <= tb.component.max_channels:
        raise ValueError(f"channels must be in [1, {tb.component.max_channels}], not {opt['channels']}")
    if opt["rows"] < 1:
        raise ValueError(f"rows must be >= 1, not {opt['rows']}")
    return opt


# ----------------------------------------------------------------------------- packing
class Codec:
    """Packs nested Python values into the flat bit vector of an Amaranth shape, and back.

    `shape` is any Amaranth shape-castable: a `data.StructLayout` (dict values), a
    `data.ArrayLayout` (list values), nested freely, or a leaf (`Shape`, ``range``, an
    `amaranth.lib.enum` class: int or enum-member values). Leaf offsets come from the
    layout's own fields, LSB first, exactly as `layout.const(value).as_bits()`; signed leaves
    unpack to negative ints. A leaf whose bits are not all 0/1 (X or Z in the simulator)
    unpacks to None.
    """

    def __init__(self, shape):
        self.shape = shape
        self.width = Shape.cast(shape).width
        self.leaves = []                 # (path, offset, width, signed)
        self._walk(shape, (), 0)
        self._self_check()

    def _walk(self, shape, path, offset):
        if isinstance(shape, data.UnionLayout):
            raise TypeError(f"union layouts have overlapping fields and cannot be packed: {shape!r}")
        if isinstance(shape, data.Layout):
            for key, field in shape:
                self._walk(field.shape, path + (key,), offset + field.offset)
            return
        cast = Shape.cast(shape)
        self.leaves.append((path, offset, cast.width, cast.signed))

    def _empty(self, shape=None):
        """A nested value of the layout's structure with None leaves (lists for arrays, dicts for structs)."""
        shape = self.shape if shape is None else shape
        if isinstance(shape, data.ArrayLayout):
            return [self._empty(shape.elem_shape) for _ in range(shape.length)]
        if isinstance(shape, data.Layout):
            return {key: self._empty(field.shape) for key, field in shape}
        return None

    @staticmethod
    def _set(root, path, leaf):
        if not path:
            return leaf
        node = root
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = leaf
        return root

    def _self_check(self):
        """Pack a pattern with this codec and with Amaranth's own `Layout.const`; they must agree."""
        if not isinstance(self.shape, data.Layout):
            return
        rng = np.random.default_rng(self.width)
        value = self._empty()
        for path, _, width, signed in self.leaves:
            lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
            value = self._set(value, path, int(rng.integers(lo, hi + 1)) if width < 63 else hi)
        ours = self.pack(value)
        amaranth = self.shape.const(value).as_bits()
        if ours != amaranth:
            raise AssertionError(f"Codec disagrees with Amaranth for {self.shape!r}: {ours:#x} != {amaranth:#x}")

    @staticmethod
    def _leaf_value(path, value):
        for key in path:
            value = value[key]
        return value

    def pack(self, value) -> int:
        """Nested value (dict / list / int / enum member) -> unsigned int of `width` bits."""
        bits = 0
        for path, offset, width, _signed in self.leaves:
            v = self._leaf_value(path, value)
            if hasattr(v, "value") and not isinstance(v, (int, np.integer)):     # enum member
                v = v.value
            bits |= (int(v) & ((1 << width) - 1)) << offset
        return bits

    def unpack(self, bits) -> object:
        """Unsigned int (or a binary string MSB first, possibly with X/Z) -> nested value."""
        text = None
        if isinstance(bits, str):
            if set(bits) <= {"0", "1"}:
                bits = int(bits, 2)
            else:
                text = bits.rjust(self.width, "0")
        out = self._empty()
        for path, offset, width, signed in self.leaves:
            if text is not None:
                part = text[self.width - offset - width:self.width - offset]
                if not set(part) <= {"0", "1"}:
                    out = self._set(out, path, None)
                    continue
                v = int(part, 2)
            else:
                v = (bits >> offset) & ((1 << width) - 1)
            if signed and v >> (width - 1):
                v -= 1 << width
            out = self._set(out, path, v)
        return out


def bits_of(value: int | None, n: int) -> list:
    """The low `n` bits of an int, LSB first (None -> n Nones)."""
    if value is None:
        return [None] * n
    return [(value >> i) & 1 for i in range(n)]


def padded_chunks(values, width: int, fill) -> list[list[int]]:
    """Split a 1-D sequence into beats of `width`, the last one padded with `fill()` values."""
    values = [int(v) for v in values]
    out = []
    for i in range(0, len(values), width):
        part = values[i:i + width]
        part += [int(fill()) for _ in range(width - len(part))]
        out.append(part)
    return out


def _level(handle) -> int | None:
    """A 1-bit signal as 0 / 1, or None when it is X / Z."""
    s = str(handle.value)
    return 1 if s == "1" else 0 if s == "0" else None


# ----------------------------------------------------------------------------- streams
@dataclasses.dataclass
class Beat:
    """One stream beat: its payload, and scalar ports to set when the beat is first offered."""

    payload: object
    ports: dict | None = None


@dataclasses.dataclass
class Transfer:
    cycle: int              # rising-edge index of the transfer
    payload: object         # unpacked payload (None leaves for X/Z bits)


class _Stream:
    def __init__(self, tb: "TB", name: str):
        self.tb, self.name = tb, name
        members = tb.component.signature.members
        if name not in members:
            raise KeyError(f"{tb.unit} has no stream port {name!r}")
        self.codec = Codec(members[name].signature.members["payload"].shape)
        self.valid = getattr(tb.dut, f"{name}__valid")
        self.ready = getattr(tb.dut, f"{name}__ready")
        self.payload = getattr(tb.dut, f"{name}__payload")


class StreamDriver(_Stream):
    """Drives a DUT input stream: valid + payload, with optional random idle gaps before each beat.

    ``gap`` is the probability of one idle cycle (valid low) before a beat, drawn again
    after each idle cycle, from the driver's own generator. ``cycles`` lists the edge index
    of every transfer made.
    """

    def __init__(self, tb: "TB", name: str, gap: float = 0.0, rng: np.random.Generator | None = None):
        super().__init__(tb, name)
        self.gap = gap
        self.rng = rng if rng is not None else tb.child_rng(f"driver:{name}")
        self.cycles: list[int] = []

    async def send(self, beats) -> list[int]:
        """Offer every beat until it is taken; return the transfer cycles of these beats.

        Starts after the next rising edge and returns right after the last transfer edge
        (a write-safe point).
        """
        tb = self.tb
        done = []
        await RisingEdge(tb.clk)
        for beat in beats:
            if not isinstance(beat, Beat):
                beat = Beat(beat)
            while self.gap > 0 and self.rng.random() < self.gap:
                self.valid.value = 0
                await RisingEdge(tb.clk)
            for port, value in (beat.ports or {}).items():
                tb.set(port, value)
            self.payload.value = self.codec.pack(beat.payload)
            self.valid.value = 1
            while True:
                await ReadOnly()
                ready = _level(self.ready)
                if ready is None:
                    raise AssertionError(f"{self.name}__ready is X/Z at cycle {tb.cycle()} (reset / X-propagation)")
                if ready:
                    break
                await RisingEdge(tb.clk)
            done.append(tb.cycle() + 1)
            await RisingEdge(tb.clk)
        self.valid.value = 0
        self.cycles += done
        return done


class StreamMonitor(_Stream):
    """Samples a DUT output stream: drives ready (random back-pressure) and records valid & ready transfers.

    Runs in the background from `start()` until the test ends. ``backpressure`` is the
    probability that ready is low in a cycle (0: always ready); it may be changed between
    operations. ``transfers`` holds every `Transfer` in order.
    """

    def __init__(self, tb: "TB", name: str, backpressure: float = 0.0, rng: np.random.Generator | None = None):
        super().__init__(tb, name)
        self.backpressure = backpressure
        self.rng = rng if rng is not None else tb.child_rng(f"monitor:{name}")
        self.transfers: list[Transfer] = []
        self._event = Event()
        self._want = None

    def start(self) -> "StreamMonitor":
        cocotb.start_soon(self._run())
        return self

    async def _run(self):
        tb = self.tb
        while True:
            await RisingEdge(tb.clk)
            ready = 0 if (self.backpressure > 0 and self.rng.random() < self.backpressure) else 1
            self.ready.value = ready
            await ReadOnly()
            valid = _level(self.valid)
            if valid is None and tb.out_of_reset:
                raise AssertionError(f"{self.name}__valid is X/Z at cycle {tb.cycle()} (reset / X-propagation)")
            if ready and valid:
                value = self.payload.value
                raw = value.to_unsigned() if value.is_resolvable else str(value)
                self.transfers.append(Transfer(tb.cycle() + 1, self.codec.unpack(raw)))
                if self._want is not None and len(self.transfers) >= self._want:
                    self._event.set()

    async def wait_count(self, n: int) -> None:
        """Return (in a read-only phase) once `n` transfers in total have been recorded."""
        if len(self.transfers) >= n:
            return
        self._want = n
        self._event.clear()
        await self._event.wait()
        self._want = None


# ----------------------------------------------------------------------------- scoreboard
class Scoreboard:
    """Compares DUT outputs with the golden model element by element, bit-exactly.

    Every `compare` call counts its elements; the first mismatch (check name, index,
    expected, got) is kept, the first few of each check are logged, and `assert_ok` fails
    the test with the first one. X/Z bits from the simulator arrive as None and never match.
    """

    def __init__(self, name: str):
        self.name = name
        self.compared = 0
        self.mismatches = 0
        self.first_mismatch: dict | None = None
        self.checks: dict[str, list[int]] = {}      # check -> [compared, mismatches]

    def compare(self, check: str, expected, got) -> int:
        """Compare two equally shaped arrays; return the number of mismatches."""
        exp = np.asarray(expected, dtype=object)
        obs = np.asarray(got, dtype=object)
        if exp.shape != obs.shape:
            self._record(check, (), f"shape {exp.shape}", f"shape {obs.shape}")
            self.compared += 1
            self.checks.setdefault(check, [0, 0])
            self.checks[check][0] += 1
            self.checks[check][1] += 1
            return 1
        bad = 0
        for idx in np.ndindex(exp.shape):
            e, g = exp[idx], obs[idx]
            if g is None or int(e) != int(g):
                self._record(check, idx, int(e), None if g is None else int(g), log_it=bad < 5)
                bad += 1
        stats = self.checks.setdefault(check, [0, 0])
        stats[0] += int(exp.size)
        stats[1] += bad
        self.compared += int(exp.size)
        self.mismatches += bad
        return bad

    def _record(self, check, index, expected, got, log_it=True):
        entry = {"check": check, "index": list(index), "expected": expected, "got": "X" if got is None else got,
                 "test": self.name}
        if self.first_mismatch is None:
            self.first_mismatch = entry
        if log_it:
            log.error("MISMATCH %s[%s]: expected %s, got %s", check, ",".join(map(str, index)), expected, entry["got"])

    def describe_first(self) -> str:
        m = self.first_mismatch
        if m is None:
            return "none"
        return f"{m['check']}[{','.join(map(str, m['index']))}]: expected {m['expected']}, got {m['got']}"

    def assert_ok(self) -> None:
        if self.mismatches:
            raise AssertionError(f"{self.mismatches} of {self.compared} compared elements differ from golden; "
                                 f"first mismatch {self.describe_first()}")
        if self.compared == 0:
            raise AssertionError("nothing was compared")


# ----------------------------------------------------------------------------- report
@dataclasses.dataclass
class Op:
    """One measured operation."""

    name: str
    cycles: int                 # last output transfer - first input transfer + 1
    in_beats: int
    out_beats: int
    stalls: bool                # random gaps / back-pressure were on
    model_cycles: int | None = None
    test: str = ""


class _Report:
    """The run's results.json, rewritten after every test (so a crash still leaves the tests before it)."""

    def __init__(self):
        self.tests: list[dict] = []
        self.ops: list[Op] = []
        self.timed: Op | None = None

    def write(self) -> None:
        cfg = run_config()
        if not cfg.results:
            return
        compared = sum(t["compared"] for t in self.tests)
        mismatches = sum(t["mismatches"] for t in self.tests)
        first = next((t["first_mismatch"] for t in self.tests if t["first_mismatch"]), None)
        timed = self.timed
        doc = {
            "unit": cfg.unit, "config": cfg.config, "sim": cfg.sim, "seed": cfg.seed,
            "params": json.loads(os.environ[ENV.params]), "workload": cfg.workload,
            "cycles": timed.cycles if timed else None,
            "beats": timed.in_beats if timed else None,
            "out_beats": timed.out_beats if timed else None,
            "model_cycles": timed.model_cycles if timed else None,
            "timed_op": timed.name if timed else None,
            "bit_exact": compared > 0 and mismatches == 0,
            "compared": compared, "mismatches": mismatches, "first_mismatch": first,
            "ops": [dataclasses.asdict(o) for o in self.ops],
            "bench_tests": self.tests,
        }
        tmp = f"{cfg.results}.tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=2)
        os.replace(tmp, cfg.results)


REPORT = _Report()


# ----------------------------------------------------------------------------- testbench context
class TB:
    """Per-test context: the DUT, the Amaranth unit (for layouts and timing), clock, reset, rng, scoreboard."""

    def __init__(self, dut, test_name: str):
        from amaranth.hdl import UnusedElaboratable
        from bitaccel.hw.generate import UNITS

        cfg = run_config()
        self.dut, self.cfg, self.test_name = dut, cfg, test_name
        self.unit, self.params = cfg.unit, cfg.params
        # The unit is never elaborated here (only its layouts and timing are used).
        warnings.filterwarnings("ignore", category=UnusedElaboratable)
        self.component = UNITS[cfg.unit](cfg.params)
        self.clk = dut.clk
        self.seed = cfg.seed
        self.rng = self.child_rng("test")
        self.scoreboard = Scoreboard(test_name)
        self.ops: list[Op] = []
        self.out_of_reset = False
        self._t0 = 0.0
        self._port_shapes = {"__".join(map(str, path)): member.shape
                             for path, member in self.component.signature.members.flatten() if member.is_port}
        log.info("%s: unit %s, config %s, simulator %s, seed %d", test_name, cfg.unit, cfg.config, cfg.sim, cfg.seed)

    def child_rng(self, purpose: str) -> np.random.Generator:
        """A generator seeded from (run seed, test name, purpose): stable and independent streams."""
        return np.random.default_rng([self.cfg.seed, zlib.crc32(self.test_name.encode()), zlib.crc32(purpose.encode())])

    def cycle(self) -> int:
        """Index of the latest rising edge since the clock started."""
        return int(round((get_sim_time("ns") - self._t0) / CLOCK_NS))

    def set(self, port: str, value) -> None:
        """Set a scalar input port (by its Verilog name) to an int (negative allowed for signed ports)."""
        shape = Shape.cast(self._port_shapes[port])
        if hasattr(value, "value") and not isinstance(value, (int, np.integer)):
            value = value.value
        getattr(self.dut, port).value = int(value) & ((1 << shape.width) - 1)

    async def start(self, reset_cycles: int = 3) -> None:
        """Drive every input to 0, start the clock, hold reset for `reset_cycles` edges."""
        for path, member in self.component.signature.members.flatten():
            if member.is_port and member.flow == wiring.In:
                getattr(self.dut, "__".join(map(str, path))).value = 0
        self.dut.rst.value = 1
        self._t0 = get_sim_time("ns")
        Clock(self.clk, CLOCK_NS, unit="ns").start()
        await ClockCycles(self.clk, reset_cycles)
        self.dut.rst.value = 0
        await RisingEdge(self.clk)
        self.out_of_reset = True

    def driver(self, name: str, gap: float = 0.0) -> StreamDriver:
        return StreamDriver(self, name, gap)

    def monitor(self, name: str, backpressure: float = 0.0) -> StreamMonitor:
        return StreamMonitor(self, name, backpressure).start()

    async def sync(self) -> None:
        """Wait for the next rising edge (then writing inputs is safe)."""
        await RisingEdge(self.clk)

    async def load(self, driver: StreamDriver, beats, budget_cycles: int | None = None) -> None:
        """Send beats into a stream that produces no output (a table write port), under a watchdog."""
        beats = list(beats)
        budget = budget_cycles or (64 + 8 * len(beats))
        try:
            await with_timeout(driver.send(beats), budget * CLOCK_NS, "ns")
        except SimTimeoutError:
            raise AssertionError(f"{driver.name}: {len(driver.cycles)} beats taken, still busy after "
                                 f"{budget} cycles (hung DUT?)") from None

    async def transact(self, name: str, driver: StreamDriver, beats, monitor: StreamMonitor, n_out: int, *,
                       model_cycles: int | None = None, budget_cycles: int | None = None,
                       timed: bool = False, quiet_cycles: int = 8) -> list[Transfer]:
        """Send `beats` on `driver` and wait for `n_out` new transfers on `monitor`, under a watchdog.

        Records an `Op` (cycles from the first input transfer to the last output transfer,
        both included), then watches `quiet_cycles` more cycles: any further output beat
        is a mismatch (``<name>.beat_count``). Returns the `n_out` output transfers (the
        caller compares them) at a write-safe point (just after a rising edge).
        """
        beats = list(beats)
        base = len(monitor.transfers)
        stalls = driver.gap > 0 or monitor.backpressure > 0
        budget = budget_cycles or (400 + 12 * (len(beats) + n_out))
        sent: list[int] = []

        async def body():
            task = cocotb.start_soon(driver.send(beats))
            await monitor.wait_count(base + n_out)
            sent.extend(await task)

        try:
            await with_timeout(body(), budget * CLOCK_NS, "ns")
        except SimTimeoutError:
            raise AssertionError(f"{name}: {len(monitor.transfers) - base} of {n_out} output beats after {budget} "
                                 f"cycles ({len(driver.cycles)} input beats taken in total): hung DUT?") from None
        await ClockCycles(self.clk, quiet_cycles)      # a stray extra output beat would show up here
        extra = len(monitor.transfers) - base - n_out
        out = monitor.transfers[base:base + n_out]
        if extra > 0:
            self.scoreboard.compare(f"{name}.beat_count", [n_out], [n_out + extra])
        op = Op(name, out[-1].cycle - sent[0] + 1 if out and sent else 0, len(beats), n_out, stalls, model_cycles,
                self.test_name)
        self.ops.append(op)
        REPORT.ops.append(op)
        if timed:
            REPORT.timed = op
        log.info("op %s: %d input beats, %d output beats, %d cycles%s%s", name, len(beats), n_out, op.cycles,
                 " (with stalls)" if stalls else "", "" if model_cycles is None else f", model {model_cycles}")
        return out

    def summary(self) -> dict:
        sb = self.scoreboard
        return {"name": self.test_name, "compared": sb.compared, "mismatches": sb.mismatches,
                "first_mismatch": sb.first_mismatch, "checks": {k: {"compared": v[0], "mismatches": v[1]}
                                                                 for k, v in sb.checks.items()}}


def bench_test(*, verify: bool = False):
    """Decorator: a cocotb test of one unit that gets a started `TB`.

    The test body compares its outputs through ``tb.scoreboard``; after it (even when it
    raised) the report is written, then the test fails with the first mismatch, if any.
    ``verify=True`` marks the randomized verification test, skipped when the run asks for
    the timed operation only. Each operation inside has its own watchdog (`TB.transact`);
    the cocotb ``timeout_time`` is a backstop (``BITACCEL_SIM_TIMEOUT_MS``, default 200 ms
    of simulated time = 20 M cycles).
    """
    cfg_timeout = float(os.environ.get(ENV.timeout_ms, "200"))
    skip = verify and os.environ.get(ENV.verify, "1") == "0"

    def decorate(fn):
        @functools.wraps(fn)
        async def wrapper(dut):
            tb = TB(dut, fn.__name__)
            try:
                await tb.start()
                await fn(tb)
            finally:
                REPORT.tests.append(tb.summary())
                REPORT.write()
            tb.scoreboard.assert_ok()

        return cocotb.test(timeout_time=cfg_timeout, timeout_unit="ms", skip=skip)(wrapper)

    return decorate


# ----------------------------------------------------------------------------- beat helpers
def signed_range(bits: int) -> tuple[int, int]:
    """[lo, hi] of a signed `bits`-bit integer."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def channel_beats(values: np.ndarray, width: int, field: str, rng: np.random.Generator, lo: int, hi: int) -> list[dict]:
    """Rows (T, N) of per-channel values -> input beats ``{field: width values, "channel", "last"}``.

    Channel ``c0`` (a multiple of `width`) is the beat's first channel; elements past N in a
    row's last beat are random in [lo, hi] (don't-care: the output there is not compared).
    """
    n = values.shape[1]
    beats = []
    for row in values:
        for c0 in range(0, n, width):
            part = [int(v) for v in row[c0:c0 + width]]
            part += [int(v) for v in rng.integers(lo, hi + 1, width - len(part))]
            beats.append({field: part, "channel": c0, "last": int(c0 + width >= n)})
    return beats


def table_rows(values, width: int, lo: int, hi: int, rng: np.random.Generator) -> list[dict]:
    """Per-channel constants (N,) -> table write beats ``{"addr": row, "data": width values}``; padding random."""
    values = np.asarray(values)
    return [{"addr": r, "data": part}
            for r, part in enumerate(padded_chunks(values, width, lambda: rng.integers(lo, hi + 1)))]


def lanes_of(transfers: list[Transfer], field: str, width: int, rows: int, n: int, bits: bool = False) -> np.ndarray:
    """Output beats of `rows` rows of `n` channels -> (rows, n) object array of lane values (None = X).

    `bits`: the field is a `width`-bit vector (lane i = bit i) instead of an array.
    """
    per_row = -(-n // width)
    if len(transfers) != rows * per_row:
        raise AssertionError(f"{len(transfers)} output beats for {rows} rows of {per_row} beats")
    out = np.empty((rows, per_row * width), dtype=object)
    for k, t in enumerate(transfers):
        v = t.payload[field]
        lanes = bits_of(v, width) if bits else list(v)
        out[k // per_row, (k % per_row) * width:(k % per_row + 1) * width] = lanes
    return out[:, :n]
