"""cocotb bench of the binary MAC array (hw/mac_array.py) on its generated Verilog, against golden.matmul.

A product ``out (M, N) = a (M, K) @ b (N, K).T`` of code matrices is scheduled by
hw.schedule.matmul_beats (tiles of R x C outputs, offset-binary plane pairs in falling
weight, K in zero-padded chunks of L lanes), streamed into ``operands``; the ``results``
drain beats (R per tile, C values each, with their ``row`` index and ``last`` flag checked)
are placed by hw.schedule.assemble and every element of (M, N) is compared with
golden.matmul.bitserial_matmul (the packed xnor-popcount path; its BLAS path is asserted
equal first). The timed operation's model is hw.schedule.array_cycles.

Workload options (`DEFAULT_WORKLOAD`; names as sim.workload.UNIT_WORKLOAD_KEYS):

* ``m``, ``n``, ``k``, ``a_bits``, ``a_signed``, ``b_bits``, ``b_signed``: the timed
  operation (random codes, no stalls, results always taken, unit idle; expected
  ``hw.schedule.array_cycles``) and the shape of the random verification cases.
* ``gap``, ``backpressure``: stall probabilities of the verification test.

Tests: ``verify_random_and_edges`` (every plane mode on partial edge tiles with K not a
multiple of L; multi-bit operands 2/4/8-bit signed and unsigned, shifts up to 14 and
negated sign planes; constant operands: all +1, all -1, all-zero and all-one {0,1},
-128 x -128, 255 x -128 and 255 x 255, the largest products; K = 1, K = L; random gaps
and heavy back-pressure on the drain, which stalls the compute pipeline when the next
tile needs the drain registers) and ``timed_operation``.
"""
from __future__ import annotations

import numpy as np

from bitaccel.golden.formats import code_range
from bitaccel.golden.matmul import bitserial_matmul, blas_matmul
from bitaccel.hw.schedule import array_cycles, assemble, beats_count, check_fits, matmul_beats

from bitaccel.sim.bench.harness import bench_test, workload_options

DEFAULT_WORKLOAD = {"m": 5, "n": 7, "k": 40, "a_bits": 1, "a_signed": 1, "b_bits": 1, "b_signed": 1,
                    "gap": 0.3, "backpressure": 0.3}
#: Stand-in for an X/Z result element while assembling (outside every signed accumulator range).
_X = 1 << 62


def codes(rng, shape, bits: int, signed: bool, fill: str | None = None) -> np.ndarray:
    """Random codes of a (bits, signed) operand; fill = "min" / "max" / "zero" gives a constant operand."""
    lo, hi = code_range(bits, signed)
    if fill == "min":
        return np.full(shape, lo, dtype=np.int64)
    if fill == "max":
        return np.full(shape, hi, dtype=np.int64)
    if fill == "zero":
        return np.zeros(shape, dtype=np.int64)
    if bits == 1 and signed:
        return np.where(rng.random(shape) < 0.5, -1, 1).astype(np.int64)
    return rng.integers(lo, hi + 1, size=shape, dtype=np.int64)


class MacArray:
    def __init__(self, tb, gap: float = 0.0, backpressure: float = 0.0):
        self.tb, self.u = tb, tb.component
        self.drv = tb.driver("operands", gap=gap)
        self.mon = tb.monitor("results", backpressure=backpressure)

    def fits(self, k: int, a_spec, b_spec) -> bool:
        """Whether this product fits the array's limits (hw.schedule.check_fits: accumulator widths, row counts)."""
        try:
            check_fits(self.u.spec, k, *a_spec, *b_spec)
        except ValueError:
            return False
        return True

    async def matmul(self, name: str, a: np.ndarray, a_spec, b: np.ndarray, b_spec, *, timed: bool = False) -> None:
        """Schedule, stream, assemble and compare one product."""
        tb, u = self.tb, self.u
        (ab, asg), (bb, bsg) = a_spec, b_spec
        (m, k), n = a.shape, b.shape[0]
        assert self.fits(k, a_spec, b_spec), (name, k, a_spec, b_spec)
        expect = bitserial_matmul(a, ab, asg, b, bb, bsg)
        assert np.array_equal(expect, blas_matmul(a, b)), f"{name}: golden's packed and BLAS paths disagree"
        spec = u.spec
        beats = list(matmul_beats(a, ab, asg, b, bb, bsg, spec))
        assert len(beats) == beats_count(m, n, k, ab, bb, u.rows, u.cols, u.lanes)
        tiles = sum(b_["last"] for b_ in beats)
        stalls = self.drv.gap > 0 or self.mon.backpressure > 0
        model = None if stalls else array_cycles([len(beats) // tiles] * tiles, spec.rows, spec.pipe, spec.drain)
        outs = await tb.transact(name, self.drv, beats, self.mon, tiles * u.rows, timed=timed, model_cycles=model)
        rows = [o.payload["row"] for o in outs]
        lasts = [o.payload["last"] for o in outs]
        tb.scoreboard.compare(f"{name}.row", [i % u.rows for i in range(len(outs))], rows)
        tb.scoreboard.compare(f"{name}.last", [int(i % u.rows == u.rows - 1) for i in range(len(outs))], lasts)
        results = [[_X if v is None else v for v in o.payload["acc"]] for o in outs]
        got = assemble(results, m, n, u.rows, u.cols).astype(object)
        got[got == _X] = None
        tb.scoreboard.compare(f"{name}.acc", expect, got)


def _spec(bits, signed):
    return int(bits), bool(signed)


@bench_test(verify=True)
async def verify_random_and_edges(tb):
    opt = workload_options(DEFAULT_WORKLOAD)
    rng = tb.rng
    mac = MacArray(tb, opt["gap"], opt["backpressure"])
    u = mac.u
    R, C, L = u.rows, u.cols, u.lanes
    m, n, k = 2 * R + 1, 2 * C + 1, int(opt["k"])     # partial edge tiles in both directions
    ran = 0

    # every plane mode (+-1 / {0,1} for each operand), K as given (not a multiple of L by default)
    for a_spec, b_spec in (((1, True), (1, True)), ((1, False), (1, True)), ((1, True), (1, False)),
                           ((1, False), (1, False))):
        await mac.matmul(f"mode_{'s' if a_spec[1] else 'u'}{'s' if b_spec[1] else 'u'}",
                         codes(rng, (m, k), *a_spec), a_spec, codes(rng, (n, k), *b_spec), b_spec)
        ran += 1

    # multi-bit operands: bit-serial offset-binary plane pairs (act bits 2/4/8, signed and unsigned)
    for a_spec, b_spec in (((2, True), (1, True)), ((2, False), (1, True)), ((4, True), (1, True)),
                           ((8, False), (1, True)), ((4, True), (4, False)), ((4, False), (2, True)),
                           ((8, True), (8, True))):
        if not mac.fits(k, a_spec, b_spec):
            tb.dut._log.info("skipping %s x %s at K=%d: exceeds pe_width %d / out_width %d / row counts",
                             a_spec, b_spec, k, u.pe_width, u.out_width)
            continue
        await mac.matmul(f"multibit_{a_spec[0]}{'s' if a_spec[1] else 'u'}x{b_spec[0]}{'s' if b_spec[1] else 'u'}",
                         codes(rng, (R + 1, k), *a_spec), a_spec, codes(rng, (C + 1, k), *b_spec), b_spec)
        ran += 1

    # constant operands, including the largest products; K = 19 (a partial chunk for any L >= 32)
    kc = 19
    for fills, a_spec, b_spec in ((("max", "max"), (1, True), (1, True)), (("min", "max"), (1, True), (1, True)),
                                  (("zero", "min"), (1, False), (1, True)), (("max", "max"), (1, False), (1, False)),
                                  (("min", "min"), (8, True), (8, True)), (("max", "min"), (8, False), (8, True)),
                                  (("max", "max"), (8, False), (8, False))):
        if not mac.fits(kc, a_spec, b_spec):
            continue
        await mac.matmul(f"const_{fills[0]}_{fills[1]}_{a_spec[0]}{'s' if a_spec[1] else 'u'}",
                         codes(rng, (R, kc), *a_spec, fills[0]), a_spec, codes(rng, (C + 1, kc), *b_spec, fills[1]),
                         b_spec)
        ran += 1

    # K = 1 and K = L exactly (one full chunk); the workload's own operand kinds
    a_spec, b_spec = _spec(opt["a_bits"], opt["a_signed"]), _spec(opt["b_bits"], opt["b_signed"])
    for kk in (1, L):
        if mac.fits(kk, a_spec, b_spec):
            await mac.matmul(f"k{kk}", codes(rng, (m, kk), *a_spec), a_spec, codes(rng, (n, kk), *b_spec), b_spec)

    # heavy back-pressure on the drain (the next tile waits for the drain registers), then no stalls
    mac.drv.gap, mac.mon.backpressure = 0.1, 0.85
    await mac.matmul("backpressure", codes(rng, (3 * R, k), 1, True), (1, True), codes(rng, (2 * C, k), 1, True),
                     (1, True))
    mac.drv.gap, mac.mon.backpressure = 0.0, 0.0
    await mac.matmul("no_stalls", codes(rng, (m, k), 2, True), (2, True), codes(rng, (n, k), 1, True), (1, True))
    assert ran >= 8


@bench_test()
async def timed_operation(tb):
    opt = workload_options(DEFAULT_WORKLOAD)
    mac = MacArray(tb)
    m, n, k = int(opt["m"]), int(opt["n"]), int(opt["k"])
    if min(m, n, k) < 1:
        raise ValueError(f"m, n, k must be >= 1, not {m}, {n}, {k}")
    a_spec, b_spec = _spec(opt["a_bits"], opt["a_signed"]), _spec(opt["b_bits"], opt["b_signed"])
    if not mac.fits(k, a_spec, b_spec):
        check_fits(mac.u.spec, k, *a_spec, *b_spec)      # raises the ValueError naming the limit
    await mac.matmul("timed", codes(tb.rng, (m, k), *a_spec), a_spec, codes(tb.rng, (n, k), *b_spec), b_spec,
                     timed=True)
