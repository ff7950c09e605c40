"""The compiler and its executor: execute(program) == golden IntegerModel intermediates, bit-exact.

Also: every hardware limit refuses the model with one line naming it; instruction encode/decode
round trips; program files round trip and corrupt files are rejected; the images are really
read (a flipped weight bit changes the results).
"""
import dataclasses
import pathlib

import numpy as np
import pytest

from compiler import CompileError, ExecError, ProgramError, Target, compile_program, execute, load_program
from compiler.memory import act_address, from_stored, to_stored
from golden.config import ModelConfig, uniform_quant
from golden.formats import NumericFormat
from golden.model import IntegerModel
from golden.random_artifact import random_artifact
from hw.params import HwParams
from hw.spec import isa
from hw.spec.isa import FORMATS, INSTR_BYTES, Instruction, IsaError, Layout, Op, decode, encode

TINY = ModelConfig(vocab_size=100, hidden=64, layers=2, heads=2, ffn=128, max_position=32)
ODD = ModelConfig(vocab_size=50, hidden=48, layers=1, heads=3, ffn=80, max_position=24, type_vocab=3)
CONFIGS = {"tiny": TINY, "odd": ODD}
#: (rows, cols, lanes): non-square with K (48, 64, 80, 128, head_dim 16/32, T) mostly not multiples of L;
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
    rest = {"act_words": 1 << 13, **{k: v for k, v in kw.items() if k not in p}}   # default: sized for head_dim 32
    return Target(HwParams(**p), **rest)


def inputs(rng, config: ModelConfig, t: int):
    ids = rng.integers(0, config.vocab_size, t)
    mask = np.ones(t, dtype=bool)
    if t > 2:
        mask[t - rng.integers(1, t // 2 + 1):] = False        # padded tail
    types = rng.integers(0, config.type_vocab, t)
    return ids, mask, types


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
        got = execute(prog)
        assert_same(got, ref["intermediates"])
        assert_same(execute(prog, source="buffers", rng=rng), ref["intermediates"])   # buffers start as garbage
        np.testing.assert_array_equal(model.head(got["pooler.acc"]), ref["logits"])


def test_untraced_program_maps_buffer_values_and_output(rng):
    art = artifact("tiny", 2)
    ids, mask, types = inputs(rng, art.config, 9)
    prog = compile_program(art, target(), ids, mask, types, trace=False)
    ref = IntegerModel(art).forward(ids, mask, types, keep_intermediates=True)["intermediates"]
    got = execute(prog)
    stream_only = {n for n in ref if n.endswith((".acc", ".exp", ".exp_sum", ".recip", ".p")) and n != "pooler.acc"}
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
        assert_same(execute(prog.with_inputs(ids, mask, types)), ref)


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
    ("act_words", dict(act_words=100)),
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
    # every (row, channel, plane) of each layout gets its own (word, lane)
    for layout, rows, ch, width in ((Layout.ROWS, 5, 70, 70), (Layout.HEADS, 5, 48, 16), (Layout.TRANS, 37, 12, 37)):
        r, n, p = np.meshgrid(np.arange(rows), np.arange(ch), np.arange(3), indexing="ij")
        w, lane = act_address(layout, 10, rows, width, 3, 32, r, n, p)
        pairs = set(zip(w.ravel().tolist(), lane.ravel().tolist()))
        assert len(pairs) == rows * ch * 3 and min(w.ravel()) == 10


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
    assert_same(execute(prog), ref)
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
