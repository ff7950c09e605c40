"""cocotb bench of the binary MAC array (hw/mac_array.py) on its generated Verilog, against golden.matmul.

A product ``out (M, N) = a (M, K) @ b (N, K).T`` of code matrices is scheduled by
hw.schedule.matmul_beats (tiles of R x C outputs, every plane pair, K in chunks of L
lanes), streamed into ``operands``; the ``results`` beats (one per tile) are placed by
hw.schedule.assemble and every element of (M, N) is compared with
golden.matmul.bitserial_matmul (the packed xnor-popcount path; its BLAS path is asserted
equal first).

Workload options (`DEFAULT_WORKLOAD`; names as sim.workload.UNIT_WORKLOAD_KEYS):

* ``m``, ``n``, ``k``, ``a_bits``, ``a_signed``, ``b_bits``, ``b_signed``: the timed
  operation (random codes, no stalls, results always taken, unit idle; expected
  ``beats + latency``) and the shape of the random verification cases.
* ``gap``, ``backpressure``: stall probabilities of the verification test.

Tests: ``verify_random_and_edges`` (every plane mode on partial edge tiles with K not a
multiple of L; multi-bit operands 2/4/8-bit signed and unsigned, shifts up to 14 and
negated sign planes; constant operands: all +1, all -1, all-zero and all-one {0,1},
-128 x -128 and 255 x -128, the largest products; random garbage in the lanes past
``count``, which the array must ignore; K = 1; random gaps and heavy results
back-pressure, which exercises the double buffer) and ``timed_operation``.
"""
from __future__ import annotations

import numpy as np

from golden.formats import acc_bits, code_range
from golden.matmul import bitserial_matmul, blas_matmul
from hw.schedule import assemble, beats_count, matmul_beats

from sim.bench.harness import bench_test, workload_options

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
        """Whether every dot product of this case fits the array's accumulator (and its shifts the array's)."""
        (ab, asg), (bb, bsg) = a_spec, b_spec
        shift_ok = (ab - 1) + (bb - 1) <= self.u.max_shift
        return shift_ok and acc_bits(k, ab, asg, bb, bsg) <= self.u.acc_width

    async def matmul(self, name: str, a: np.ndarray, a_spec, b: np.ndarray, b_spec, *, garbage: bool = False,
                     timed: bool = False) -> None:
        """Schedule, stream, assemble and compare one product."""
        tb, u = self.tb, self.u
        (ab, asg), (bb, bsg) = a_spec, b_spec
        (m, k), n = a.shape, b.shape[0]
        assert self.fits(k, a_spec, b_spec), (name, k, a_spec, b_spec)
        expect = bitserial_matmul(a, ab, asg, b, bb, bsg)
        assert np.array_equal(expect, blas_matmul(a, b)), f"{name}: golden's packed and BLAS paths disagree"
        beats = list(matmul_beats(a, ab, asg, b, bb, bsg, u.rows, u.cols, u.lanes))
        assert len(beats) == beats_count(m, n, k, ab, bb, u.rows, u.cols, u.lanes)
        if garbage:                        # lanes >= count must be ignored
            for beat in beats:
                c = beat["count"]
                if c < u.lanes:
                    def junk(c=c):
                        return (int.from_bytes(tb.rng.bytes(-(-u.lanes // 8)), "little") << c) & ((1 << u.lanes) - 1)
                    beat["a"] = [x | junk() for x in beat["a"]]
                    beat["w"] = [x | junk() for x in beat["w"]]
        tiles = sum(b_["last"] for b_ in beats)
        stalls = self.drv.gap > 0 or self.mon.backpressure > 0
        outs = await tb.transact(name, self.drv, beats, self.mon, tiles, timed=timed,
                                 model_cycles=None if stalls else len(beats) + u.latency)
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
                         codes(rng, (m, k), *a_spec), a_spec, codes(rng, (n, k), *b_spec), b_spec, garbage=True)
        ran += 1

    # multi-bit operands: bit-serial plane pairs with shifts and negated sign planes
    for a_spec, b_spec in (((2, True), (1, True)), ((2, False), (1, True)), ((4, True), (4, False)),
                           ((4, False), (2, True)), ((8, True), (8, True))):
        if not mac.fits(k, a_spec, b_spec):
            tb.dut._log.info("skipping %s x %s at K=%d: exceeds acc_width %d / max_shift %d",
                             a_spec, b_spec, k, u.acc_width, u.max_shift)
            continue
        await mac.matmul(f"multibit_{a_spec[0]}{'s' if a_spec[1] else 'u'}x{b_spec[0]}{'s' if b_spec[1] else 'u'}",
                         codes(rng, (R + 1, k), *a_spec), a_spec, codes(rng, (C + 1, k), *b_spec), b_spec)
        ran += 1

    # constant operands, including the largest products; K = 19 (a partial chunk for any L >= 32)
    kc = 19
    for fills, a_spec, b_spec in ((("max", "max"), (1, True), (1, True)), (("min", "max"), (1, True), (1, True)),
                                  (("zero", "min"), (1, False), (1, True)), (("max", "max"), (1, False), (1, False)),
                                  (("min", "min"), (8, True), (8, True)), (("max", "min"), (8, False), (8, True))):
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

    # heavy results back-pressure (tiles wait in the double buffer), then no stalls
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
        raise ValueError(f"a {a_spec} x b {b_spec} product over K={k} exceeds the array's acc_width "
                         f"{mac.u.acc_width} or max_shift {mac.u.max_shift}")
    await mac.matmul("timed", codes(tb.rng, (m, k), *a_spec), a_spec, codes(tb.rng, (n, k), *b_spec), b_spec,
                     timed=True)
