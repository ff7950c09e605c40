"""The compiler and its executor: execute(program) == golden IntegerModel intermediates, bit-exact.

Also: every hardware limit refuses the model with one line naming it; instruction encode/decode
round trips; program files round trip and corrupt files are rejected; the images are really
read (a flipped weight bit changes the results); the activation buffer puts the R rows of a
row block in one physical word (docs/encoder.md §5) and every trace is in the hardware's
order (docs/encoder.md §6).
"""
import dataclasses
import pathlib

import numpy as np
import pytest

from bitaccel.compiler import CompileError, ExecError, Machine, ProgramError, Target, compile_program, execute, load_program
from bitaccel.compiler import program as program_module
from bitaccel.compiler.memory import act_address, drain_order, from_stored, to_stored, trace_offsets, trace_words
from bitaccel.golden.config import ModelConfig, uniform_quant
from bitaccel.golden.formats import NumericFormat
from bitaccel.golden.model import IntegerModel
from bitaccel.golden.random_artifact import random_artifact
from bitaccel.hw.params import HwParams
from bitaccel.hw.spec.buffers import act_tensor_words
from bitaccel.hw.spec import isa
from bitaccel.hw.spec.isa import FORMATS, INSTR_BYTES, Instruction, IsaError, Layout, Op, decode, encode

TINY = ModelConfig(vocab_size=100, hidden=64, layers=2, heads=2, ffn=128, max_position=32)
ODD = ModelConfig(vocab_size=50, hidden=48, layers=1, heads=3, ffn=80, max_position=24, type_vocab=3)
CONFIGS = {"tiny": TINY, "odd": ODD}
#: (rows, cols, lanes): non-square with K (48, 64, 80, 128, head_dim 16/32, T) mostly not multiples of L,
#: R = 3 (no head_dim or T = 20 is a multiple: padding rows everywhere) and C = 5 (partial column tiles);
#: and a square one with L larger than every K.
ARRAYS = {"3x5x32": (3, 5, 32), "4x4x128": (4, 4, 128)}
MAX_SEQ = 20

_ARTS: dict = {}


def artifact(config: str, bits: int):
    key = (config, bits)
    if key not in _ARTS:
        _ARTS[key] = random_artifact(CONFIGS[config], seed=100 + bits, act_bits=bits)
    return _ARTS[key]


def target(array=(3, 5, 32), **kw) -> Target:
    r, c, lanes = array
    p = dict(rows=r, cols=c, lanes=lanes, max_seq=MAX_SEQ, max_hidden=64, max_ffn=128, max_head_dim=32,
             max_exp_lut=1 << 17)
    p.update({k: v for k, v in kw.items() if k in {f.name for f in dataclasses.fields(HwParams)}})
    rest = {"act_words": -(-(1 << 13) // r) * r, **{k: v for k, v in kw.items() if k not in p}}   # whole R-row words
    return Target(HwParams(**p), **rest)


def inputs(rng, config: ModelConfig, t: int):
    ids = rng.integers(0, config.vocab_size, t)
    mask = np.ones(t, dtype=bool)
    if t > 2:
        mask[t - rng.integers(1, t // 2 + 1):] = False        # padded tail
    types = rng.integers(0, config.type_vocab, t)
    return ids, mask, types


#: golden intermediates internal to the softmax unit: not traced (the unit's own tests check them)
SOFTMAX_INTERNALS = (".exp", ".exp_sum", ".recip")


def mapped(ref: dict) -> dict:
    """Golden intermediates a traced program maps: all but the softmax unit's internals."""
    return {n: v for n, v in ref.items() if not n.endswith(SOFTMAX_INTERNALS)}


def assert_same(got: dict, ref: dict) -> None:
    assert set(got) == set(ref), (sorted(set(ref) - set(got)), sorted(set(got) - set(ref)))
    for name in ref:
        assert got[name].shape == ref[name].shape, name
        if not np.array_equal(got[name], ref[name]):
            idx = tuple(int(i) for i in np.argwhere(got[name] != ref[name])[0])
            raise AssertionError(f"{name} differs first at {idx}: {got[name][idx]} != {ref[name][idx]}")


# ----------------------------------------------------------------------------- executor == golden
@pytest.mark.parametrize("array", sorted(ARRAYS))
@pytest.mark.parametrize("bits", [1, 2, 4, 8])
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_execute_equals_golden_every_checkpoint(config, bits, array, rng):
    art = artifact(config, bits)
    model = IntegerModel(art)
    tgt = target(ARRAYS[array])
    for t in (1, MAX_SEQ):
        ids, mask, types = inputs(rng, art.config, t)
        prog = compile_program(art, tgt, ids, mask, types)
        ref = model.forward(ids, mask, types, keep_intermediates=True)
        want = mapped(ref["intermediates"])
        assert len(want) == len(ref["intermediates"]) - (3 if bits > 1 else 2) * art.config.layers
        got = execute(prog)
        assert_same(got, want)
        assert_same(execute(prog, source="buffers", rng=rng), want)   # buffers (padding rows too) start as garbage
        np.testing.assert_array_equal(model.head(got["pooler.acc"]), ref["logits"])


def test_untraced_program_maps_buffer_values_and_output(rng):
    art = artifact("tiny", 2)
    ids, mask, types = inputs(rng, art.config, 9)
    prog = compile_program(art, target(), ids, mask, types, trace=False)
    ref = IntegerModel(art).forward(ids, mask, types, keep_intermediates=True)["intermediates"]
    got = execute(prog)
    ref = mapped(ref)
    stream_only = {n for n in ref if n.endswith((".acc", ".p")) and n != "pooler.acc"}
    assert set(got) == set(ref) - stream_only
    assert_same(got, {n: ref[n] for n in got})
    assert "trace" not in prog.regions


def test_mixed_site_widths_and_rebinding_inputs(rng):
    quant = uniform_quant(TINY, 1)
    quant.update({"layers.0.probs": 2, "layers.0.v.out": 4, "layers.1.ffn2.in": 8, "layers.1.q.in": 2,
                  "pooler.in": 4})
    art = random_artifact(TINY, seed=7, quant=quant)
    prog = compile_program(art, target(), seq_len=12)
    for _ in range(2):
        ids, mask, types = inputs(rng, TINY, 12)
        ref = IntegerModel(art).forward(ids, mask, types, keep_intermediates=True)["intermediates"]
        assert_same(execute(prog.with_inputs(ids, mask, types)), mapped(ref))


def test_images_are_really_read(rng):
    """A flipped weight bit in the image changes the results (operands come from the image)."""
    art = artifact("tiny", 2)
    ids, mask, types = inputs(rng, TINY, 8)
    prog = compile_program(art, target(), ids, mask, types)
    base = execute(prog)
    addr, _ = prog.regions["layers.0.ffn1.weights"]
    lane_bytes = prog.target.params.lanes // 8
    for offset, name in ((0, "layers.0.ffn1.acc"), (7 * lane_bytes, "layers.0.ffn1.acc")):
        image = prog.image.copy()
        image[addr + offset] ^= 1
        got = execute(dataclasses.replace(prog, image=image))
        assert not np.array_equal(got[name], base[name])
        np.testing.assert_array_equal(got["layers.0.ln1"], base["layers.0.ln1"])   # earlier values unchanged


def test_token_outside_the_table_is_a_hardware_error(rng):
    art = artifact("tiny", 1)
    prog = compile_program(art, target(), seq_len=4)
    addr, _ = prog.regions["tokens"]
    prog.image[addr:addr + 4] = np.frombuffer(np.array([TINY.vocab_size | 1 << 31], "<u4").tobytes(), np.uint8)
    with pytest.raises(ExecError, match="token id"):
        execute(prog)


# ----------------------------------------------------------------------------- limits
@pytest.mark.parametrize("limit, kwargs", [
    ("max_hidden", dict(max_hidden=32, max_head_dim=16)),
    ("max_ffn", dict(max_ffn=64)),
    ("max_head_dim", dict(max_head_dim=16)),
    ("max_heads", dict(max_heads=1)),
    ("max_seq", dict(max_seq=8)),
    ("max_vocab", dict(max_vocab=64)),
    ("max_type_vocab", dict(max_type_vocab=1)),
    ("max_act_bits", dict(max_act_bits=2)),
    ("max_exp_lut", dict(max_exp_lut=100)),
    ("act_words", dict(act_words=99)),
    ("res_words", dict(res_words=1000)),
    ("scr_words", dict(scr_words=50)),
])
def test_each_limit_refuses_with_its_name(limit, kwargs):
    art = artifact("tiny", 4)
    with pytest.raises(CompileError, match=rf"hardware limit {limit} = ") as e:
        compile_program(art, target(**kwargs), seq_len=10)
    assert "\n" not in str(e.value)


def test_numeric_format_mismatch_is_refused():
    art = artifact("tiny", 1)
    with pytest.raises(CompileError, match="numeric format"):
        compile_program(art, target(numerics=NumericFormat(exp_frac=14)), seq_len=4)


def test_default_target_buffers_fit_the_largest_model():
    t = Target()
    p = t.params
    assert t.res_words == 4 * p.max_seq * p.max_hidden and t.scr_words == p.max_seq ** 2
    assert t.act_words > 0


# ----------------------------------------------------------------------------- instruction set
def _random_fields(rng, op, extreme=None):
    out = {}
    for f in FORMATS[op]:
        hi = (1 << f.width) - 1
        out[f.name] = {None: int(rng.integers(0, hi, endpoint=True)), "max": hi, "min": 0}[extreme]
    return out


@pytest.mark.parametrize("op", list(Op))
def test_isa_round_trip_every_instruction(op, rng):
    for extreme in (None, "max", "min", None):
        ins = Instruction(op, _random_fields(rng, op, extreme))
        word = encode(ins)
        assert len(word) == INSTR_BYTES and word[0] & 0x3F == int(op)
        back = decode(word)
        assert back.op == op and dict(back.fields) == dict(ins.fields)


def test_isa_rejects_bad_instructions(rng):
    fields = _random_fields(rng, Op.MATMUL)
    with pytest.raises(IsaError, match="does not fit"):
        encode(Instruction(Op.MATMUL, {**fields, "m": 1 << 16}))
    with pytest.raises(IsaError, match="missing fields"):
        encode(Instruction(Op.MATMUL, {k: v for k, v in fields.items() if k != "m"}))
    with pytest.raises(IsaError, match="unknown opcode"):
        decode(bytes([63]) + bytes(INSTR_BYTES - 1))
    word = bytearray(encode(Instruction(Op.END, {})))
    word[-1] = 0x80
    with pytest.raises(IsaError, match="reserved bits"):
        decode(bytes(word))
    with pytest.raises(IsaError, match="no END"):
        isa.decode_program(encode(Instruction(Op.QUANT, _random_fields(rng, Op.QUANT))))


def test_docs_show_the_instruction_formats():
    doc = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "compiler.md").read_text()
    for op in Op:
        assert isa.format_table(op) in doc, f"docs/compiler.md lacks the current {op.name} field table"


def test_offset_binary_and_layouts(rng):
    for bits, signed in ((1, True), (1, False), (2, True), (4, False), (8, True)):
        lo, hi = (-1, 1) if (bits, signed) == (1, True) else ((-(1 << bits - 1), (1 << bits - 1) - 1) if signed
                                                              else (0, (1 << bits) - 1))
        codes = rng.integers(lo, hi, 50, endpoint=True)
        if (bits, signed) == (1, True):
            codes = np.where(codes == 0, 1, codes)
        u = to_stored(codes, bits, signed)
        assert u.min() >= 0 and u.max() < 1 << bits
        np.testing.assert_array_equal(from_stored(u, bits, signed), codes)
    assert to_stored(np.array([-2, -1, 0, 1]), 2, True).tolist() == [0, 1, 2, 3]     # offset binary
    # every (row, channel, plane) of each layout gets its own (word, lane), inside the tensor's words
    for block in (1, 3, 4):
        for layout, rows, ch, width in ((Layout.ROWS, 5, 70, 70), (Layout.HEADS, 5, 48, 16),
                                        (Layout.TRANS, 37, 12, 4), (Layout.TRANS, 37, 12, 12)):
            r, n, p = np.meshgrid(np.arange(rows), np.arange(ch), np.arange(3), indexing="ij")
            w, lane = act_address(layout, 12, rows, width, 3, 32, block, r, n, p)
            pairs = set(zip(w.ravel().tolist(), lane.ravel().tolist()))
            words = act_tensor_words(layout, rows, ch, width, 3, 32, block)
            assert len(pairs) == rows * ch * 3 and min(w.ravel()) == 12 and max(w.ravel()) < 12 + words
            assert words % block == 0


def test_act_interleave_puts_a_row_block_in_one_physical_word():
    """docs/encoder.md §5: the R rows of a row block, same plane and chunk, are R consecutive flat words
    starting at a multiple of R (one physical word); a HEADS head or a TRANS head group is a ROWS
    tensor of its own at a base that is a multiple of R."""
    lanes, bits = 32, 2
    for block in (3, 4, 5):
        base = 7 * block
        for layout, rows, ch, width in ((Layout.ROWS, 10, 70, 70), (Layout.HEADS, 10, 48, 16),
                                        (Layout.TRANS, 37, 12, 5)):
            r, n, plane = (x.ravel() for x in np.meshgrid(np.arange(rows), np.arange(ch), np.arange(bits),
                                                           indexing="ij"))
            w, lane = act_address(layout, base, rows, width, bits, lanes, block, r, n, plane)
            if layout == Layout.ROWS:         # (group, stored row, packed element)
                g, rho, k = np.zeros_like(r), r, n
            elif layout == Layout.HEADS:
                g, rho, k = n // width, r, n % width
            else:
                g, rho, k = n // width, n % width, r
            assert np.array_equal(lane, k % lanes) and np.array_equal(w % block, rho % block)
            if layout == Layout.ROWS:         # the formula of docs/encoder.md §5, literally
                wpr = -(-width // lanes)
                assert np.array_equal(w, base + ((r // block * bits + plane) * wpr + n // lanes) * block + r % block)
            blocks: dict = {}
            for key, word in zip(zip(g, rho // block, plane, k // lanes), w // block):
                blocks.setdefault(key, set()).add(int(word))
            assert all(len(words) == 1 for words in blocks.values())      # a row block: one physical word
            assert len(set().union(*blocks.values())) == len(blocks)        # and no two blocks share one
            for group in np.unique(g):   # each head group is a ROWS tensor at a base that starts a physical word
                sel = g == group
                g0 = int(w[sel].min())
                assert g0 % block == 0
                packed = rows if layout == Layout.TRANS else width
                wr, lr = act_address(Layout.ROWS, g0, 0, packed, bits, lanes, block, rho[sel], k[sel], plane[sel])
                assert np.array_equal(wr, w[sel]) and np.array_equal(lr, lane[sel])
    # the compiler's bases and depths are whole physical words
    art = artifact("odd", 4)
    prog = compile_program(art, target((3, 5, 32)), seq_len=7)
    assert prog.target.act_words % 3 == 0
    for ins in prog.instructions:
        if ins.op == Op.MATMUL:
            assert ins["a"] % 3 == 0 and (ins["b_src"] == 0 or ins["b"] % 3 == 0)
        if ins.op in (Op.QUANT, Op.SOFTMAX) or (ins.op == Op.MATMUL and ins["post"] in (1, 2)):
            assert ins["dst"] % 3 == 0
    with pytest.raises(ValueError, match="multiple of rows = 3"):
        target((3, 5, 32), act_words=1000)


def _hardware_order(op, streams, r_rows, c_cols):
    """The int32 words an instruction traces, by explicit loops over docs/encoder.md §6."""
    m, n = streams[0].shape
    out = []
    if op == Op.LAYERNORM:                      # per row: the sum row (with add), then the output row
        for r in range(m):
            for s in streams:
                out += s[r].tolist()
    elif op == Op.SOFTMAX:                      # per query row, per key: p (multi-bit), then the code
        for r in range(m):
            for k in range(n):
                out += [int(s[r, k]) for s in streams]
    elif op == Op.MATMUL:                       # drain order: column tile, row block, row, column
        for j in range(0, n, c_cols):
            for i in range(0, m, r_rows):
                for r in range(i, min(m, i + r_rows)):
                    for c in range(j, min(n, j + c_cols)):
                        out += [int(s[r, c]) for s in streams]
    else:                                       # EMBED, QUANT: row-major
        out = streams[0].ravel().tolist()
    return out


def test_drain_order_and_trace_interleave_match_explicit_loops(rng):
    for m, n, r_rows, c_cols in ((1, 64, 8, 8), (7, 13, 3, 5), (20, 20, 4, 4), (5, 3, 2, 7), (6, 10, 3, 5)):
        streams = [rng.integers(-1000, 1000, (m, n)) for _ in range(2)]
        want = _hardware_order(Op.MATMUL, streams, r_rows, c_cols)
        assert trace_words(streams, tile_cols=c_cols).tolist() == want
        assert trace_words(streams[:1], tile_cols=c_cols).tolist() == _hardware_order(Op.MATMUL, streams[:1], r_rows,
                                                                                         c_cols)
        assert sorted(drain_order(m, n, c_cols).tolist()) == list(range(m * n))
        for s in range(2):      # the reader's offsets invert the writer
            assert np.array_equal(np.asarray(want)[trace_offsets(m, n, 2, s, 1, c_cols)], streams[s])
        assert trace_words(streams, unit=n).tolist() == _hardware_order(Op.LAYERNORM, streams, r_rows, c_cols)
        assert trace_words(streams).tolist() == _hardware_order(Op.SOFTMAX, streams, r_rows, c_cols)
    assert drain_order(1, 12, 5).tolist() == list(range(12))       # M = 1: row-major whatever C


@pytest.mark.parametrize("bits", [1, 4])
def test_raw_traces_are_in_hardware_order(bits, rng):
    """Every tapped instruction's trace bytes equal golden's values laid out by the explicit loops of §6."""
    art = artifact("odd", bits)
    r_rows, c_cols, lanes = ARRAYS["3x5x32"]
    ids, mask, types = inputs(rng, ODD, 11)
    prog = compile_program(art, target(ARRAYS["3x5x32"]), ids, mask, types)
    ref = IntegerModel(art).forward(ids, mask, types, keep_intermediates=True)["intermediates"]
    machine = Machine(prog, rng)
    while machine.step():
        machine.pc += 1
    by_pc: dict = {}
    for name, c in prog.checkpoints.items():
        for piece in c.trace:
            by_pc.setdefault(piece.pc, []).append((piece.view.stream, name, piece))
    instrs = prog.instructions
    checked = set()
    for pc, entries in by_pc.items():
        ins = instrs[pc]
        entries.sort(key=lambda e: e[0])
        streams = []
        for _, name, piece in entries:
            v = (ref[name][piece.lead] if piece.lead else ref[name]).reshape(piece.view.rows, -1)
            streams.append(v[:, piece.col0:piece.col0 + piece.view.cols])
        addr = ins["ext_out"] if ins.op == Op.MATMUL else ins["trace"]
        want = _hardware_order(ins.op, streams, r_rows, c_cols)
        got = machine.ext[addr:addr + 4 * len(want)].view("<i4").tolist()
        assert got == want, (pc, ins.op, [e[1] for e in entries])
        checked.add((ins.op, len(streams)))
    assert {(Op.EMBED, 1), (Op.LAYERNORM, 1), (Op.LAYERNORM, 2), (Op.QUANT, 1), (Op.MATMUL, 1),
            (Op.MATMUL, 2), (Op.SOFTMAX, 1 if bits == 1 else 2)} <= checked
    # the pooler's output (EXT) in drain order too
    out, _ = prog.regions["output"]
    acc = ref["pooler.acc"]
    assert machine.ext[out:out + 4 * acc.size].view("<i4").tolist() == _hardware_order(Op.MATMUL, [acc], r_rows,
                                                                                        c_cols)


# ----------------------------------------------------------------------------- program files
def test_program_file_round_trip_and_corruption(tmp_path, rng):
    art = artifact("odd", 2)
    ids, mask, types = inputs(rng, ODD, 6)
    prog = compile_program(art, target(), ids, mask, types)
    path = tmp_path / "p.bitprog"
    prog.save(path)
    back = load_program(path)
    assert back.target == prog.target and back.config == prog.config and back.checkpoints == prog.checkpoints
    assert_same(execute(back), execute(prog))
    data = bytearray(path.read_bytes())
    corrupt = tmp_path / "bad.bitprog"
    data[-10] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    with pytest.raises(ProgramError, match="checksum mismatch"):
        load_program(corrupt)
    corrupt.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ProgramError, match="truncated"):
        load_program(corrupt)
    corrupt.write_bytes(b"not a program at all")
    with pytest.raises(ProgramError):
        load_program(corrupt)
    with pytest.raises(ProgramError, match="no such program"):
        load_program(tmp_path / "missing.bitprog")


def test_program_file_of_an_older_version_is_rejected(tmp_path, monkeypatch):
    """Version 1 files (flat activation rows, traces stream after stream) are refused with the reason."""
    prog = compile_program(artifact("tiny", 1), target(), seq_len=3)
    monkeypatch.setattr(program_module, "FORMAT_VERSION", 1)
    prog.save(tmp_path / "old.bitprog")
    monkeypatch.undo()
    with pytest.raises(ProgramError, match=r"program version 1 .* reads version 2"):
        load_program(tmp_path / "old.bitprog")


def test_program_file_with_a_bad_instruction_is_rejected(tmp_path):
    art = artifact("tiny", 1)
    prog = compile_program(art, target(), seq_len=3)
    addr, _ = prog.regions["program"]
    prog.image[addr + INSTR_BYTES - 1] |= 0x80          # a reserved bit of instruction 0
    prog.save(tmp_path / "p.bitprog")                    # checksum of the bad image: only decoding catches it
    with pytest.raises(ProgramError, match="bad instruction"):
        load_program(tmp_path / "p.bitprog")


def test_minilm_on_the_default_target(rng):
    """MiniLM shape (6 layers, hidden 384, 12 heads), W1A1, T = 128 with padding, default 8x8x64 target."""
    art = random_artifact("minilm", seed=3, act_bits=1)
    ids, mask, types = inputs(rng, art.config, 128)
    prog = compile_program(art, Target(), ids, mask, types)
    ref = IntegerModel(art).forward(ids, mask, types, keep_intermediates=True)["intermediates"]
    assert_same(execute(prog), mapped(ref))
    # the weight blocks hold the binary weights and nothing else (each read once per inference)
    c = art.config
    weights = sum(size for name, (_, size) in prog.regions.items() if name.endswith(".weights"))
    assert weights * 8 == c.layers * (4 * c.hidden ** 2 + 2 * c.hidden * c.ffn) + c.hidden ** 2


def test_compiler_imports_no_hardware_elaboration_torch_or_sim():
    import subprocess
    import sys
    code = ("import sys, compiler, compiler.blocks, compiler.lower, compiler.memory, compiler.program, hw.spec.isa; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('amaranth', 'torch', 'sim')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=pathlib.Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]", out.stdout


def test_read_external_gives_every_traced_checkpoint():
    """After a run, the external image alone (as an RTL run leaves it) holds every golden intermediate
    except the softmax internals; read_external places them in golden's shapes."""
    from bitaccel.compiler import Machine, read_external
    art = artifact("odd", 2)
    rng = np.random.default_rng(5)
    ids, mask, types = inputs(rng, ODD, 7)
    prog = compile_program(art, target((3, 5, 32)), ids=ids, mask=mask, types=types)
    machine = Machine(prog)
    while machine.step():
        machine.pc += 1
    got = read_external(prog, machine.ext)
    ref = IntegerModel(art).forward(ids, mask, types, keep_intermediates=True)["intermediates"]
    internals = {n for n in ref if n.rsplit(".", 1)[-1] in ("exp", "exp_sum", "recip")}
    assert set(got) == set(ref) - internals
    for name, value in got.items():
        assert value.shape == ref[name].shape and np.array_equal(value, ref[name]), name
    with pytest.raises(ValueError, match="external image"):
        read_external(prog, machine.ext[:-1])
