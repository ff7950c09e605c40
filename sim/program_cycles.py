"""Cycle model of a compiled program on the generated top level: the schedule the sequencer actually runs.

`program_cycles(program)` walks `program.instructions` (the decoded `hw.spec.isa` words: it
never re-derives the encoder's order of operations) and adds, per instruction, what the
RTL FSMs do (hw/encoder/sequencer.py and the execute units; docs/sim.md):

    instruction = FETCH 1 + RECEIVE (mem_latency + 4 beats) + DECODE 1 + EXEC_START 1
                  + B (the unit's busy cycles) + 1 (the EXEC cycle that sees busy fall)
    END         = FETCH 1 + RECEIVE (mem_latency + 4) + DECODE 1 + END 1

Cycles are counted from START to DONE, as the accelerator's ``cycles`` register does. Every
read command of a unit costs 1 cycle (the command), then ``mem_latency`` cycles, then one
cycle per 64-bit data beat the unit takes (a unit's X_CMD state, then its data state).

Per-unit busy cycles B (one function per execute unit, pure Python, no Amaranth elaboration;
the unit latencies come from `sim.cycles.CycleModel`, i.e. the units' own ``latency``,
``cycles`` and ``interval``):

* EMBED: token read, then per token the word row, position row and token-type row, E =
  `hw.spec.isa.embed_beat` elements a cycle (`embed_busy`);
* LAYERNORM: the constant block, then FEED (n cycles in) and OUT (n cycles out, after the
  unit's latency) phases: row by row, or, when `hw.spec.isa.wide_layernorm` holds (n = ceil(H / V)
  residual words), the next row fed while one waits out the unit's latency (`layernorm_busy`);
* QUANT: the constant block, then a beat a cycle through the threshold / requant unit (Q
  channels when `hw.spec.isa.wide_quant` holds, else one channel), ``max(bits, trace
  values)`` drain cycles per beat (`quant_busy`);
* SOFTMAX: the block, then back-to-back rows, W = `hw.spec.buffers.score_lanes` keys a beat
  (`SoftmaxUnit.cycles` + (rows - 1) x ``interval``) and the per-beat code drain (`softmax_busy`);
* MATMUL: a cycle-stepped model of matmul_exec (`matmul_busy`): constant loads, the weight
  loader beside the issue stage (two tile banks, the byte gearbox) or, per column tile, the
  ACT tile load before its issue, the issue stage, the array's
  admission rule (two drain banks) and drain (output FIFO), the serializer and the
  post-processing pipeline (threshold 2 / requant 5 stages, one write-back phase per cycle:
  a drain beat whole when `hw.spec.isa.wide_beats` holds (its trace values, then one write per
  code plane or one score or residual write), else per element: accumulator trace, post value, one act
  write per extra code plane).

Memory: cocotbext-axi's AxiRam (the external memory of every cocotb run) answers an AR
handshake with the first R beat `MEM_LATENCY` cycles later and then streams one beat a
cycle; its W channel takes a beat every cycle, so trace writes never stall a unit (the trace
writer needs one bus word per two int32 values). A read longer than one 256-beat burst
streams without a gap (the bursts are issued ahead; MiniLM's 769-beat LayerNorm blocks).

Busy counters (hw.encoder.regs.BUSY_COUNTERS): ``fetch`` (cycles fetching), ``mac_array``
(beats the array accepts), ``threshold_unit`` / ``requant_unit`` / ``softmax_unit`` /
``layernorm_unit`` (elements entering the unit) are counted exactly; ``axi_read`` /
``axi_write`` (bus activity spans) are not modeled.
"""
from __future__ import annotations

import warnings
from collections import deque

from bitaccel.hw.encoder.matmul_exec import POST_DEPTH
from bitaccel.hw.encoder.ports import BUS_BITS
from bitaccel.hw.encoder.softmax_exec import HEADER_WORDS
from bitaccel.hw.mac_array import OUT_FIFO_DEPTH
from bitaccel.hw.softmax import SoftmaxMode, SoftmaxUnit
from bitaccel.hw.spec.buffers import quant_lanes, residual_lanes, score_lanes
from bitaccel.hw.spec.isa import INSTR_BITS, BSource, Layout, Op, Post, embed_beat, wide_beats, wide_layernorm, wide_quant

from .cycles import CycleModel

__all__ = ["ASSUMPTIONS", "MEM_LATENCY", "BUS_BYTES", "DATA_BASE", "UNIT_COUNTERS", "program_cycles",
           "instruction_cycles", "axi_beats", "model_program"]

#: What the per-inference cycle model assumes (docs/sim.md; every `bitaccel report` carries it).
ASSUMPTIONS = (
    "cycles of a compiled program on the generated top level, START to DONE (sim.program_cycles): the "
    "sequencer's fetch/decode/dispatch and every execute unit's FSM, instruction after instruction; equal "
    "to the cycles measured on Verilator/Icarus for every whole-encoder run of tests/test_sim_accelerator.py",
    "external memory with cocotbext-axi AxiRam timing: the first read beat 2 cycles after the AR handshake "
    "(MEM_LATENCY), then one beat a cycle; write beats taken every cycle (traces never stall a unit)",
    "the report's program: a random artifact of the model's shape and precision (the schedule does not "
    "depend on weight values), one sequence of `seq` valid tokens, compiled without traces",
    "reads longer than one 256-beat burst stream without a gap between bursts (MiniLM T = 16 on 8x8x64, "
    "bench/encoder_run.py's program: 881,728 modeled = 881,728 measured on Verilator, every layer exact)",
)

#: cocotbext-axi AxiRam (0.1.28): cycles from the AR handshake to the first R beat. Measured: a
#: one-instruction fetch (4 beats) keeps the sequencer fetching 7 cycles (FETCH 1 + 2 + 4 beats),
#: busy_fetch = 7 per instruction in every cocotb run; the whole-run test checks it.
MEM_LATENCY = 2
#: Bytes per AXI data beat.
BUS_BYTES = BUS_BITS // 8
#: The DATA_BASE register value of the cocotb bench (sim/bench/tb_accelerator.py): external addresses are
#: relative to it; it moves the weight tiles inside bus words (the MATMUL gearbox's skip).
DATA_BASE = 0x1040
#: Instruction-word beats of one fetch.
FETCH_BEATS = INSTR_BITS // (8 * BUS_BYTES)
#: Busy counters the model predicts exactly (hw.encoder.regs.BUSY_COUNTERS minus the AXI spans).
UNIT_COUNTERS = ("fetch", "mac_array", "threshold_unit", "requant_unit", "softmax_unit", "layernorm_unit")


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _read(beats: int, lat: int) -> int:
    """Cycles of a unit's read: the command cycle, the memory latency, one cycle per beat taken at full rate."""
    return 1 + lat + beats


# ---------------------------------------------------------------------------------------- EMBED
def embed_busy(ins, cm: CycleModel, lat: int) -> tuple[int, dict]:
    """hw/encoder/embed.py: TOKENS_CMD/TOKENS, TRACE, per token TOKEN, WORD_CMD, SCALE + SIGNS
    (1 + ceil(H/64) beats), POS_CMD/POS (H/4 beats), TYPE_CMD/ADD (E = `hw.spec.isa.embed_beat` elements
    a cycle), DONE."""
    t, h = ins["rows"], ins["hidden"]
    e = embed_beat(ins["dst"], ins["tap"], residual_lanes(cm.params))
    per_token = 1 + _read(1 + _ceil(h, 64), lat) + _read(h // 4, lat) + (1 + lat + h // e)
    return _read(_ceil(t, 2), lat) + 1 + t * per_token + 1, {}


# ---------------------------------------------------------------------------------------- LAYERNORM
def layernorm_busy(ins, cm: CycleModel, lat: int) -> tuple[int, dict]:
    """hw/encoder/layernorm_exec.py: CONSTS (1 + 2H beats), CHECK, TRACE, the FEED / OUT phases, FLAGS, DONE.

    n = ceil(H / V) residual words when `hw.spec.isa.wide_layernorm` holds, else H values. Phase
    order: serial FEED(0), OUT(0), FEED(1), ...; wide FEED(0), FEED(1), OUT(0), FEED(2), OUT(1), ...,
    OUT(rows - 1); each phase enters the cycle after the previous one ends. A FEED entered at cycle t
    issues at t and takes its n beats one a cycle from max(t + 1, the unit's ingest bank free) on
    (its last one at L). The unit (`hw.layernorm.LayerNormUnit`) hands row r to its normalize stage
    at max(L_r + 2, the last output transfer of row r - 1 + 1), its ingest bank is free the cycle
    after, and its first output beat is valid `latency` - 2 cycles after the hand-off. An OUT entered
    at t takes the n beats one a cycle from the later of t and that first beat."""
    rows, h = ins["rows"], ins["hidden"]
    v = residual_lanes(cm.params)
    wide = wide_layernorm(h, ins["src"], ins["res"], ins["dst"], ins["sum_dst"], ins["tap"], v)
    n = _ceil(h, v) if wide else h
    order = [("feed", 0)] + ([("feed", 1)] if wide and rows > 1 else [])
    for r in range(rows):
        order.append(("out", r))
        if r + (2 if wide else 1) < rows:
            order.append(("feed", r + (2 if wide else 1)))
    last_in, last_out = {}, {-1: -(1 << 30)}

    def handoff(r: int) -> int:
        return max(last_in[r] + 2, last_out[r - 1] + 1)

    t = 0                                               # the cycle the next phase enters
    for kind, r in order:
        if kind == "feed":
            last_in[r] = max(t + 1, handoff(r - 1) + 1 if r else 0) + n - 1
            t = last_in[r] + 1
        else:
            last_out[r] = max(t, handoff(r) + cm.layernorm.latency - 2) + n - 1
            t = last_out[r] + 1
    return _read(1 + 2 * h, lat) + 2 + t + 2, {"layernorm_unit": rows * h}


# ---------------------------------------------------------------------------------------- QUANT
def quant_busy(ins, cm: CycleModel, lat: int) -> tuple[int, dict]:
    """hw/encoder/quant_exec.py: constants (thresholds: `channels` beats; requant: 4-beat header, then
    2 x channels pairs), CHECK, TRACE, RUN (read-port prefetch 1, the unit's latency, the drain
    register 1, then per beat ``max(bits, its trace values)`` cycles), DONE. A beat is Q =
    `hw.spec.buffers.quant_lanes` channels when `hw.spec.isa.wide_quant` holds, else one channel.

    The code writer's set-up (SETUP 1, GROUP ceil(extent / R) + 1, FIRST dst_col + 1) runs beside the
    constant load; the first code waits for it when it is longer."""
    rows, ch, bits, tap = ins["rows"], ins["channels"], ins["bits"], ins["tap"]
    if bits == 1:
        consts, unit, counter = _read(ch, lat), cm.threshold.latency, "threshold_unit"
    else:
        consts, unit, counter = _read(4, lat) + _read(2 * ch, lat), cm.requant.latency, "requant_unit"
    q = quant_lanes(cm.params)
    width = q if wide_quant(ins["layout"], ins["src"], ch, ins["dst_col"], ins["dst_width"], q) else 1
    beats = [min(width, ch - c) for c in range(0, ch, width)] * rows          # elements of each beat
    per = [max(bits, n if tap else 1) for n in beats]                          # drain cycles of each beat
    extent = ins["dst_width"] if ins["layout"] == Layout.TRANS else rows
    write_from = 3 + _ceil(extent, cm.params.rows) + ins["dst_col"]     # the writer's first WRITE cycle
    run_from = consts + 2                                               # after CHECK and TRACE
    first = max(run_from + 1 + unit + per[0], write_from + bits - 1)    # cycle the first beat completes
    return first + sum(per[1:]) + 2, {counter: rows * ch}


# ---------------------------------------------------------------------------------------- SOFTMAX
def softmax_busy(ins, cm: CycleModel, lat: int) -> tuple[int, dict]:
    """hw/encoder/softmax_exec.py: CONSTS (6 + lut_len beats), CHECK, TRACE, RUN, FLAGS, DONE.

    RUN: the unit (W = `hw.spec.buffers.score_lanes` keys a beat) takes rows back to back, the
    first beat at RUN cycle 2 (the feed's priming word, then the first beat's word); each row's
    ceil(keys/W) output beats leave in its last beats + latency cycles; a beat's codes complete in
    the drain register after ``max(bits, trace values)`` cycles (trace values: the beat's keys,
    twice that multi-bit: p and the code; the requant unit's latency in between). Back-to-back rows
    follow `SoftmaxUnit.interval` (the next row is ingested while one is summed and output). Measured
    exact where the drain keeps up with the unit's output pass (every whole-encoder run without a
    trace; the tests' traced multi-bit runs); a trace of more values a beat than the drain can take
    a cycle back-pressures the output pass, which this does not model (the tests' traced W1A1 runs
    at T = 8 take 0.25 % more cycles than modeled)."""
    rows, keys, bits, tap = ins["rows"], ins["keys"], ins["bits"], ins["tap"]
    u = _softmax_exec_unit(cm)
    w = u.width
    nb = _ceil(keys, w)
    mode = SoftmaxMode.BINARY if bits == 1 else SoftmaxMode.MULTIBIT
    cyc, itv = u.cycles(keys, mode), u.interval(keys, mode)
    values = 2 if bits > 1 else 1                                # trace values per key
    extra = 0 if bits == 1 else cm.requant.latency
    done = 0
    for r in range(rows):
        # the row's first input beat enters at RUN cycle 2 + r * interval; its output beats are valid
        # in its last `nb` cycles; each enters the drain register a cycle later (+ requant)
        last_out = 2 + r * itv + cyc - 1
        for k in range(nb):
            n = min(w, keys - k * w)
            per = max(bits, values * n if tap else 1)           # drain cycles of the beat
            ready = last_out - (nb - 1 - k) + 1 + extra
            done = max(ready, done + 1) + per - 1
    run = done + 1
    counters = {"softmax_unit": rows * keys}
    if bits > 1:
        counters["requant_unit"] = rows * keys
    return _read(HEADER_WORDS + ins["lut_len"], lat) + 2 + run + 2, counters


def _softmax_exec_unit(cm: CycleModel):
    """The softmax unit as SoftmaxExec builds it: W = score_lanes keys a beat."""
    u = getattr(cm, "_softmax_exec_unit", None)
    if u is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            u = SoftmaxUnit.from_params(cm.params, width=score_lanes(cm.params))
        u._MustUse__silence = True                    # built for its timing formulas only
        cm._softmax_exec_unit = u
    return u


# ---------------------------------------------------------------------------------------- MATMUL
def _post_timing(ins, cm: CycleModel) -> tuple[int, int]:
    """(write-back cycles per element, post pipeline stages: 0 = none) of a MATMUL's post-op."""
    post, tap, out_bits = Post(ins["post"]), ins["tap"], ins["out_bits"]
    need_acc = 1 if (tap or post == Post.EXT) else 0
    if post in (Post.SCORES, Post.EXT):
        return 1, 0
    if post == Post.RESIDUAL:
        return need_acc + 1, cm.requant.latency
    if post == Post.THRESHOLD:
        return need_acc + 1, cm.threshold.latency
    return need_acc + out_bits, cm.requant.latency


def _weight_load(skip: int, tile_bytes: int, word_bytes: int, words: int, lat: int) -> int:
    """Cycles of LOADW (the gearbox state) for one weight tile: from its first cycle to the cycle that
    writes the tile's last word (inclusive). Beats come `lat` cycles after LOADW starts, one a cycle,
    each held until the gearbox has room (8 bytes past the word it emits)."""
    beats = _ceil(tile_bytes + skip, BUS_BYTES)
    cap = word_bytes + BUS_BYTES
    fill, widx, taken, first, x = 0, 0, 0, True, 0
    next_beat = lat                      # cycle the next beat is on the bus
    while True:
        emit = fill >= word_bytes
        after = fill - word_bytes if emit else fill
        ready = after + BUS_BYTES <= cap and widx < words
        take = taken < beats and next_beat <= x and ready
        fill = after + ((BUS_BYTES - skip if first else BUS_BYTES) if take else 0)
        if take:
            taken, first, next_beat = taken + 1, False, x + 1
        if emit:
            widx += 1
            if widx == words:
                return x + 1
        x += 1


def matmul_busy(ins, cm: CycleModel, lat: int, data_base: int = DATA_BASE) -> tuple[int, dict]:
    """Busy cycles of hw/encoder/matmul_exec.py for one MATMUL, cycle by cycle (see the module docstring).

    `data_base` matters only through the weight tiles' byte offset inside a bus word (the gearbox skip).
    """
    p = cm.params
    R, C, L = p.rows, p.cols, p.lanes
    post = Post(ins["post"])
    M, N, K = ins["m"], ins["n"], ins["k"]
    a_bits, b_bits = ins["a_bits"], ins["b_bits"]
    chunks = _ceil(K, L)
    per_block = a_bits * b_bits * chunks            # beats of one row block against one column tile
    blocks, col_tiles = _ceil(M, R), _ceil(N, C)
    pipe, drain = cm.array.pipe, cm.array.drain
    per_el, stages = _post_timing(ins, cm)
    wide = wide_beats(post, ins["layout"], ins["dst"], ins["dst_col"], ins["dst_width"], R, C, L)
    traced = 1 if post == Post.SCORES else 2        # trace values per element of a wide beat (with a tap)
    writes = ins["out_bits"] if post in (Post.THRESHOLD, Post.REQUANT) else 1

    def row_pushes(ncols: int) -> list[int]:
        """Write-back cycles of each push of a drained row of `ncols` elements: wide, one push (with a tap
        each element's accumulator (and code), then one write, or one per code plane); serial, one push
        per element."""
        if wide:
            return [(traced * ncols if ins["tap"] else 0) + writes]
        return [per_el] * ncols

    # ---- fixed prefix: CHECK, SETUP, SETUP2, constants, TRACE; LOAD of tile 0 at `x0`
    x0 = 3
    if post == Post.THRESHOLD:
        x0 += _read(N, lat)
    elif post in (Post.REQUANT, Post.RESIDUAL):
        x0 += _read(4, lat) + _read(2 * N, lat)
    x0 += 1
    # the seek FSM (beside): WAIT, NBLK (HEADS: ceil(M/R) + 1), GW (TRANS: ceil(width/R) + 1), COL (dst_col + 1)
    layout = ins["layout"]
    seek_done = 1 + (blocks + 1 if layout == Layout.HEADS else 1) \
        + (_ceil(ins["dst_width"], R) + 1 if layout == Layout.TRANS else 1) + ins["dst_col"] + 1

    weights = ins["b_src"] == BSource.WEIGHTS
    word_bytes = C * L // 8
    tile_bytes = chunks * word_bytes

    def weight_load(j: int) -> int:
        """Cycles of the weight loader's DATA state for column tile j (the gearbox, `_weight_load`)."""
        return _weight_load((data_base + ins["b"] + j * tile_bytes) % BUS_BYTES, tile_bytes, word_bytes, chunks, lat)

    act_load = C * b_bits * chunks + 1   # ACT tiles: LOADA + LOADA_LAST, from the cycle after LOAD

    # ---- state
    state, until = "PRE", x0             # control FSM; `until`: first cycle of the next state
    j = 0                                # column tile being loaded / issued
    issue_left = 0                       # beats of this column tile not yet in the issue register
    issue_pos = 0                        # beat index inside the row block of the next beat issued
    v1 = False                           # the issue register holds a beat
    v1_last = False                      # ... the last beat of a row block (a tile)
    v1_tile_end = False                  # ... the last beat of a column tile (frees its weight bank)
    v1_bank = 0                          # ... read from this tile bank
    full = [False, False]                # weight banks holding a loaded tile not wholly issued
    l_state, l_until, l_bank, l_tiles = "IDLE", 0, 0, 0     # the weight loader (double buffering)
    pending = 0                          # tiles whose last beat is accepted and rows not all read
    banks = deque()                      # (cycle the tile's rows may be read, tile index)
    drow = 0                             # next row of the head bank to read
    used = 0                             # rows read and not yet taken by the serializer
    rows_out = deque()                   # (cycle valid on `results`, tile index, row in tile)
    tiles_accepted = 0
    s_left = deque()                     # write-back cycles of the pushes left of the row being serialized
    s_done = False
    rows_taken = 0
    total_rows = blocks * col_tiles * R
    pipeline = deque([None] * stages)    # post pipeline registers (global advance): write-back cycles; last = out
    in_flight = 0                        # elements pushed and not yet retired
    meta = deque()                       # SCORES / EXT: (cycle visible, write-back cycles) in the write-back FIFO
    phase = 0                            # write-back phases done on the element at the head
    beats = 0
    x = 0
    while True:
        s_done_0, s_left_0 = s_done, len(s_left)
        empty_0 = in_flight == 0 if stages else not meta
        # ------------------------------------------------ write-back (head element), retire
        retire = False
        if stages:
            head_ready = pipeline[-1] is not None
        else:
            head_ready = bool(meta) and meta[0][0] <= x
        if head_ready:
            phase += 1
            if phase == (pipeline[-1] if stages else meta[0][1]):
                retire, phase = True, 0
        # ------------------------------------------------ serializer push into the post pipeline
        if stages:
            advance = pipeline[-1] is None or retire
            can_push = advance and in_flight - retire < POST_DEPTH
        else:
            can_push = len(meta) < POST_DEPTH
        push = bool(s_left) and can_push
        row_end = push and len(s_left) == 1
        # ------------------------------------------------ serializer takes a result row
        take_row = False
        if x >= seek_done and not s_done and (not s_left or row_end) and rows_out and rows_out[0][0] <= x:
            take_row = True
        # ------------------------------------------------ drain reads a row of the head bank
        reading = bool(banks) and banks[0][0] <= x and used < OUT_FIFO_DEPTH - 1
        finishing = reading and drow == R - 1
        # ------------------------------------------------ issue register -> array
        ready = not (v1_last and pending == 2)
        accept = v1 and ready
        advance_issue = not v1 or ready

        # ================================================ updates (the clock edge)
        if stages:
            if advance:                                   # (a retire always advances)
                pipeline.pop()
                pipeline.appendleft(s_left[0] if push else None)
                in_flight += push - retire
        else:
            if retire:
                meta.popleft()
            if push:
                meta.append((x + 1, s_left[0]))
        if push:
            s_left.popleft()
        if take_row:
            _, tile, rho = rows_out.popleft()
            used -= 1
            rows_taken += 1
            row = (tile % blocks) * R + rho               # tiles in issue order: column tile, then row block
            s_left = deque(row_pushes(min(C, N - (tile // blocks) * C)) if row < M else [])
            if rows_taken == total_rows:
                s_done = True
        if reading:
            rows_out.append((x + drain - 1, banks[0][1], drow))
            used += 1
            if finishing:
                banks.popleft()
                drow = 0
                pending -= 1
            else:
                drow += 1
        # weight loader (decisions on the values at the start of cycle x)
        loaded = False
        l_next = l_state
        if l_state == "IDLE":
            if weights and state == "PRE" and x + 1 == until:          # TRACE hands over: wl_go
                l_next = "WAIT"
        elif l_state == "WAIT":
            if l_tiles == col_tiles:
                l_next = "IDLE"
            elif not full[l_bank]:
                l_next = "CMD"
        elif l_state == "CMD":
            l_next, l_until = "DATA", x + 1 + weight_load(l_tiles)
        elif l_state == "DATA" and x + 1 == l_until:
            loaded, l_next = True, "WAIT"
        bank_ready = full[j % 2]
        if loaded:
            full[l_bank] = True
            l_bank, l_tiles = 1 - l_bank, l_tiles + 1
        if accept and v1_tile_end:
            full[v1_bank] = False
        l_state = l_next
        if accept:
            beats += 1
            if v1_last:
                banks.append((x + pipe + 1, tiles_accepted))
                tiles_accepted += 1
                pending += 1
        # control FSM (decisions on the values at the start of cycle x)
        nxt = state
        if state == "PRE":
            if x + 1 == until:
                nxt = "LOAD"
        elif state == "LOAD":
            if weights:
                if bank_ready:                                           # tile j's bank is loaded
                    nxt, until = "LOADING", x + 2                        # ISSUE_START
            elif not v1:
                nxt, until = "LOADING", x + 1 + act_load + 1             # + ISSUE_START
        elif state == "LOADING":
            if x + 1 == until:
                nxt, issue_left, issue_pos = "ISSUE", blocks * per_block, 0
        elif state == "FINISH":
            if s_done_0 and s_left_0 == 0 and empty_0:
                # DONE at x + 1; busy falls at its edge
                counters = {"mac_array": beats}
                if post == Post.THRESHOLD:
                    counters["threshold_unit"] = M * N
                elif post in (Post.REQUANT, Post.RESIDUAL):
                    counters["requant_unit"] = M * N
                return x + 2, counters
        if state == "ISSUE" and advance_issue:
            v1 = True
            v1_tile_end, v1_bank = issue_left == 1, j % 2
            issue_pos += 1
            v1_last = issue_pos == per_block
            if v1_last:
                issue_pos = 0
            issue_left -= 1
            if issue_left == 0:
                j += 1
                nxt = "LOAD" if j < col_tiles else "FINISH"
        elif advance_issue:
            v1 = False
        state = nxt
        x += 1
        if x > 50_000_000:
            raise RuntimeError("matmul model did not finish")


#: The fields the timing of a MATMUL / SOFTMAX depends on (a MATMUL's addresses only through the weight
#: tiles' offset in a bus word and dst mod C).
_TIMING_FIELDS = {Op.MATMUL: ("post", "m", "n", "k", "a_bits", "b_bits", "b_src", "out_bits", "layout", "dst_width",
                              "dst_col", "tap"),
                  Op.SOFTMAX: ("rows", "keys", "bits", "lut_len", "tap")}


def _busy_cached(ins, cm: CycleModel, lat: int, data_base: int) -> tuple[int, dict]:
    """`matmul_busy` / `softmax_busy`, computed once per distinct timing (layers and heads repeat shapes)."""
    cache = cm.__dict__.setdefault("_busy_cache", {})
    skip = (data_base + ins["b"]) % BUS_BYTES if ins.op == Op.MATMUL and ins["b_src"] == BSource.WEIGHTS else None
    dst_mod = ins["dst"] % cm.params.cols if ins.op == Op.MATMUL else None      # wide SCORES / RESIDUAL beats
    key = (ins.op, lat, skip, dst_mod) + tuple(ins[f] for f in _TIMING_FIELDS[ins.op])
    if key not in cache:
        cache[key] = (matmul_busy(ins, cm, lat, data_base) if ins.op == Op.MATMUL else softmax_busy(ins, cm, lat))
    busy, counters = cache[key]
    return busy, dict(counters)


# ---------------------------------------------------------------------------------------- AXI beats
def _trace_beats(values: int) -> int:
    """Write beats of a trace of `values` int32 values (two per 64-bit bus word)."""
    return _ceil(values * 4, BUS_BYTES)


def axi_beats(ins, params, data_base: int = DATA_BASE) -> tuple[int, int, int]:
    """(read, write, weight read) AXI data beats of one instruction, its fetch included: the read
    commands of its unit (the same commands the busy formulas time), its traces / EXT output, and
    the part of the reads that is weight tiles (MATMUL from WEIGHTS)."""
    read, write, weights, op = FETCH_BEATS, 0, 0, ins.op
    if op == Op.EMBED:
        t, h = ins["rows"], ins["hidden"]
        read += _ceil(t, 2) + t * ((1 + _ceil(h, 64)) + 2 * (h // 4))     # tokens; word, position, type rows
        write += _trace_beats(t * h) if ins["tap"] else 0
    elif op == Op.LAYERNORM:
        rows, h = ins["rows"], ins["hidden"]
        read += 1 + 2 * h
        write += _trace_beats(rows * h * (2 if ins["add"] else 1)) if ins["tap"] else 0
    elif op == Op.QUANT:
        ch = ins["channels"]
        read += ch if ins["bits"] == 1 else 4 + 2 * ch
        write += _trace_beats(ins["rows"] * ch) if ins["tap"] else 0
    elif op == Op.SOFTMAX:
        read += HEADER_WORDS + ins["lut_len"]
        write += _trace_beats(ins["rows"] * ins["keys"] * (2 if ins["bits"] > 1 else 1)) if ins["tap"] else 0
    elif op == Op.MATMUL:
        post, m, n = Post(ins["post"]), ins["m"], ins["n"]
        if post == Post.THRESHOLD:
            read += n
        elif post in (Post.REQUANT, Post.RESIDUAL):
            read += 4 + 2 * n
        if ins["b_src"] == BSource.WEIGHTS:
            tile_bytes = _ceil(ins["k"], params.lanes) * params.cols * params.lanes // 8
            for j in range(_ceil(n, params.cols)):
                skip = (data_base + ins["b"] + j * tile_bytes) % BUS_BYTES
                weights += _ceil(tile_bytes + skip, BUS_BYTES)
        read += weights
        if ins["tap"] or post == Post.EXT:
            write += _trace_beats(m * n * (1 if post in (Post.SCORES, Post.EXT) else 2))
    return read, write, weights


# ---------------------------------------------------------------------------------------- program
_BUSY = {Op.EMBED: embed_busy, Op.LAYERNORM: layernorm_busy, Op.QUANT: quant_busy}


def instruction_cycles(ins, cm: CycleModel, mem_latency: int = MEM_LATENCY, data_base: int = DATA_BASE) -> dict:
    """Modeled cycles of one instruction from its FETCH to the next FETCH (END: to DONE), its unit's busy
    cycles and its busy-counter increments."""
    fetch = 1 + mem_latency + FETCH_BEATS
    if ins.op == Op.END:
        return {"op": "END", "cycles": fetch + 2, "busy": 0, "counters": {"fetch": fetch}}
    if ins.op in _TIMING_FIELDS:
        busy, counters = _busy_cached(ins, cm, mem_latency, data_base)
    else:
        busy, counters = _BUSY[ins.op](ins, cm, mem_latency)
    return {"op": ins.op.name, "cycles": fetch + 1 + 1 + busy + 1, "busy": busy,
            "counters": {"fetch": fetch, **counters}}


def program_cycles(program, mem_latency: int = MEM_LATENCY, data_base: int = DATA_BASE) -> dict:
    """Modeled cycles of `program` (a compiler.Program) on its target, START to DONE.

    Returns {"cycles": total, "instructions": [per-instruction dicts of `instruction_cycles`],
    "busy": {counter: modeled value} for `UNIT_COUNTERS`, "beats": {"axi_read_beats", "axi_write_beats"}
    (`axi_beats` summed: the accelerator's BEAT_COUNTERS), "weight_read_beats" (the weight tiles' share of
    the reads), "by_op": {op: cycles}, "mem_latency": the
    latency used}. `data_base` is the DATA_BASE register (default: the cocotb bench's
    0x1040); it only moves the weight tiles inside bus words.
    """
    cm = CycleModel(program.target.params)
    rows = [instruction_cycles(ins, cm, mem_latency, data_base) for ins in program.instructions]
    busy = {k: 0 for k in UNIT_COUNTERS}
    by_op: dict[str, int] = {}
    for r in rows:
        for k, v in r["counters"].items():
            busy[k] += v
        by_op[r["op"]] = by_op.get(r["op"], 0) + r["cycles"]
    beats = [axi_beats(ins, program.target.params, data_base) for ins in program.instructions]
    return {"cycles": sum(r["cycles"] for r in rows), "instructions": rows, "busy": busy, "by_op": by_op,
            "beats": {"axi_read_beats": sum(b[0] for b in beats), "axi_write_beats": sum(b[1] for b in beats)},
            "weight_read_beats": sum(b[2] for b in beats),
            "mem_latency": mem_latency}


def model_program(artifact, seq: int, params, seed: int = 0):
    """A compiler.Program of `artifact` (golden.artifact.Artifact; for timing a random one of the model's
    shape does: the schedule does not depend on the weights) for `seq` random valid token ids on `params`
    (hw.params.HwParams), compiled without traces."""
    import numpy as np

    from bitaccel.compiler import Target, compile_program

    ids = np.random.default_rng(seed).integers(0, artifact.config.vocab_size, seq)
    return compile_program(artifact, Target(params), ids=ids, trace=False)
