"""Span (SQuAD) head from the artifact to the compiler: head kind in the artifact, golden start / end logits,
best-span decoding, and the compiled program's output region (the final residual stream) equal to golden.

Golden: the host part `IntegerModel.span_logits` against an explicit per-token sum over golden's own final
residual stream (math.fsum), the whole integer model against the float reference with the same head
(fixed-point rounding only), `best_span` against brute force. Artifact: the head is recorded, validated by
the one loader (missing / extra / mis-shaped head tensors, an unknown head, num_labels), and files without
the field load as classifiers. Compiler: executor == golden at every checkpoint for span artifacts (two
arrays, act bits 1 and 2, T = 1 and T = max with padding, trace on and off, random buffer contents), no
pooler instructions, and the output region (the last LAYERNORM's trace) read back from external memory.
"""
import dataclasses
import json
import math
import struct

import numpy as np
import pytest

from bitaccel.compiler import Machine, Target, compile_program, execute, load_program, read_external
from bitaccel.golden.artifact import Artifact, ArtifactError, header_bytes, load_artifact, save_artifact
from bitaccel.golden.config import ModelConfig, site_names
from bitaccel.golden.model import IntegerModel, best_span
from bitaccel.golden.random_artifact import random_artifact
from bitaccel.golden.reference import FloatModel
from bitaccel.hw.params import HwParams
from bitaccel.hw.spec.isa import Op, Post

TINY = ModelConfig(vocab_size=100, hidden=64, layers=2, heads=2, ffn=128, max_position=32)
ODD = ModelConfig(vocab_size=50, hidden=48, layers=1, heads=3, ffn=80, max_position=24, type_vocab=3)
MAX_SEQ = 20
_ARTS: dict = {}


def span_artifact(config=TINY, bits: int = 1, seed: int = 7) -> Artifact:
    key = (config, bits, seed)
    if key not in _ARTS:
        _ARTS[key] = random_artifact(config, seed=seed, act_bits=bits, head="span")
    return _ARTS[key]


def target(r: int, c: int, lanes: int) -> Target:
    p = HwParams(rows=r, cols=c, lanes=lanes, max_seq=MAX_SEQ, max_hidden=64, max_ffn=128, max_head_dim=32,
                 max_exp_lut=1 << 17)
    return Target(p, act_words=-(-(1 << 13) // r) * r)


def _rewrite_manifest(path, edit) -> None:
    """Apply edit(manifest dict) to an artifact file and re-seal its header (a file another writer made)."""
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    manifest = json.loads(header["__metadata__"]["bitaccel"])
    edit(manifest)
    header["__metadata__"] = {"bitaccel": json.dumps(manifest, sort_keys=True)}
    blob = header_bytes(header)
    open(path, "wb").write(struct.pack("<Q", len(blob)) + blob + data[8 + n:])


# ----------------------------------------------------------------------------- artifact
def test_span_artifact_round_trip_and_tensors(tmp_path):
    art = span_artifact()
    assert art.head == "span" and "pooler.in" not in art.quant and set(art.quant) == set(site_names(TINY, "span"))
    assert art["span.weight"].shape == (2, 64) and art["span.bias"].shape == (2,)
    assert not [n for n in art.tensors if n.startswith(("pooler", "classifier"))]
    save_artifact(art, tmp_path / "s.safetensors")
    back = load_artifact(tmp_path / "s.safetensors")
    assert back.head == "span" and set(back.tensors) == set(art.tensors)
    assert all(np.array_equal(back[n], art[n]) for n in art.tensors)
    # the classifier tensors of a seed do not depend on the option
    cls = random_artifact(TINY, seed=7)
    assert cls.head == "classifier" and "pooler.bits" in cls.tensors


def test_artifact_without_head_field_loads_as_classifier(tmp_path):
    path = tmp_path / "old.safetensors"
    save_artifact(random_artifact(TINY, seed=1), path)
    _rewrite_manifest(path, lambda m: m.pop("head"))
    assert load_artifact(path).head == "classifier"
    # a span artifact without the field is a classifier with missing pooler tensors: refused
    path = tmp_path / "span-old.safetensors"
    save_artifact(span_artifact(), path)
    _rewrite_manifest(path, lambda m: m.pop("head"))
    with pytest.raises(ArtifactError, match="quantization map|missing"):
        load_artifact(path)


@pytest.mark.parametrize("case, message", [
    ("missing-weight", "missing 1 tensor"),
    ("pooler-too", "unexpected tensor"),
    ("weight-shape", "span.weight"),
    ("bias-dtype", "span.bias"),
    ("labels", "num_labels = 2"),
    ("unknown-head", "head must be one of"),
])
def test_bad_span_artifacts_are_refused(case, message):
    art = span_artifact()
    t = dict(art.tensors)
    cfg = art.config
    if case == "missing-weight":
        del t["span.weight"]
    elif case == "pooler-too":
        t.update({n: v for n, v in random_artifact(TINY, seed=1).tensors.items() if n.startswith("classifier")})
    elif case == "weight-shape":
        t["span.weight"] = np.zeros((3, 64), np.float32)
    elif case == "bias-dtype":
        t["span.bias"] = t["span.bias"].astype(np.float64)
    elif case == "labels":
        cfg = dataclasses.replace(cfg, num_labels=3)
    bad = dataclasses.replace(art, tensors=t, config=cfg, head="pointer" if case == "unknown-head" else "span")
    with pytest.raises(ArtifactError, match=message):
        bad.validate()


def test_manifest_head_field_is_checked_on_load(tmp_path):
    path = tmp_path / "s.safetensors"
    save_artifact(span_artifact(), path)
    for value in ("pointer", 1, ["span"]):
        _rewrite_manifest(path, lambda m: m.update(head=value))
        with pytest.raises(ArtifactError, match="'head' must be one of"):
            load_artifact(path)


# ----------------------------------------------------------------------------- golden
def test_span_logits_are_the_host_formula_on_the_final_residual_stream():
    art = span_artifact(bits=2)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, TINY.vocab_size, (3, 12))
    mask = np.ones((3, 12), dtype=bool)
    mask[1, 9:] = False
    types = (np.arange(12)[None] >= 5).astype(np.int64).repeat(3, 0)
    out = IntegerModel(art).forward(ids, mask, types, keep_intermediates=True)
    hidden = out["intermediates"]["layers.1.ln2"]
    assert np.array_equal(out["hidden"], hidden) and hidden.shape == (3, 12, 64)
    assert "pooler.acc" not in out["intermediates"] and "logits" not in out
    frac = art.numerics.residual_frac
    w, b = art["span.weight"].astype(np.float64), art["span.bias"].astype(np.float64)
    for i in range(3):
        for t in range(12):
            x = [int(v) / 2 ** frac for v in hidden[i, t]]
            start = math.fsum([xv * float(wv) for xv, wv in zip(x, w[0])] + [b[0]])
            end = math.fsum([xv * float(wv) for xv, wv in zip(x, w[1])] + [b[1]])
            assert out["start_logits"][i, t] == pytest.approx(start, rel=1e-12, abs=1e-12)
            assert out["end_logits"][i, t] == pytest.approx(end, rel=1e-12, abs=1e-12)
    packed = IntegerModel(art, path="packed").forward(ids, mask, types)
    assert np.array_equal(packed["start_logits"], out["start_logits"])
    assert np.array_equal(packed["end_logits"], out["end_logits"])


@pytest.mark.parametrize("bits", [1, 2])
def test_span_logits_close_to_the_float_reference(bits):
    """As the classifier's end-to-end bound (tests/test_model.py): median |d logit| <= 0.25 std of the float
    logits, and the per-sequence best start token agrees on most sequences."""
    errs, agree, n = [], 0, 0
    for seed in range(3):
        art = random_artifact(TINY, seed=200 + seed, act_bits=bits, head="span")
        ids = np.random.default_rng(seed).integers(0, TINY.vocab_size, (20, 24))
        a = IntegerModel(art).forward(ids)
        f = FloatModel(art.config, art.quant, art.tensors, head="span").forward(ids)
        for k in ("start_logits", "end_logits"):
            errs.append(np.abs(a[k] - f[k]).ravel() / f[k].std())
        agree += int(np.sum(a["start_logits"].argmax(1) == f["start_logits"].argmax(1)))
        n += len(ids)
    errs = np.concatenate(errs)
    print(f"W1A{bits}: median |d logit| = {np.median(errs):.3f} std, best start agrees {agree}/{n}")
    assert np.median(errs) <= 0.25
    assert agree >= 0.6 * n


def test_best_span_hand_cases_and_brute_force():
    start = np.array([5.0, 1.0, 2.0, 0.0, 3.0])
    end = np.array([9.0, 0.5, 1.0, 4.0, 0.0])
    everything = np.ones(5, dtype=bool)
    assert best_span(start, end, everything, 30) == (0, 0, 14.0)
    context = np.array([False, True, True, True, True])       # [CLS] excluded
    assert best_span(start, end, context, 30) == (2, 3, 6.0)   # 2 + 4 beats 1 + 4 and 3 + 0
    assert best_span(start, end, context, 1) == (3, 3, 4.0)    # one token: 0 + 4 beats 2 + 1, 3 + 0
    assert best_span(start, end, np.array([0, 0, 0, 1, 0], bool), 5) == (3, 3, 4.0)
    assert best_span(np.zeros(3), np.zeros(3), np.ones(3, bool), 2) == (0, 0, 0.0)   # ties: smallest s, then e
    with pytest.raises(ValueError, match="no token"):
        best_span(start, end, np.zeros(5, bool))
    rng = np.random.default_rng(1)
    for _ in range(50):
        s = int(rng.integers(1, 12))
        st, en = rng.normal(size=s), rng.normal(size=s)
        ok = rng.random(s) < 0.7
        ok[rng.integers(0, s)] = True
        length = int(rng.integers(1, 5))
        best = max((st[i] + en[j], -i, -j) for i in range(s) for j in range(s)
                   if ok[i] and ok[j] and i <= j < i + length)
        assert best_span(st, en, ok, length) == (-best[1], -best[2], best[0])


# ----------------------------------------------------------------------------- compiler
SPAN_CASES = [((3, 5, 32), TINY, 1, MAX_SEQ), ((3, 5, 32), TINY, 2, 1), ((4, 4, 128), ODD, 1, 1),
              ((4, 4, 128), ODD, 2, MAX_SEQ), ((2, 3, 16), TINY, 1, 7)]


@pytest.mark.parametrize("array, config, bits, t", SPAN_CASES)
def test_executor_equals_golden_for_span_artifacts(array, config, bits, t):
    art = span_artifact(config, bits)
    rng = np.random.default_rng(t + bits)
    ids = rng.integers(0, config.vocab_size, t)
    mask = np.ones(t, dtype=bool)
    if t > 2:
        mask[t - 3:] = False
    types = rng.integers(0, config.type_vocab, t)
    ref = IntegerModel(art).forward(ids, mask, types, keep_intermediates=True)["intermediates"]
    last = f"layers.{config.layers - 1}"
    for trace in (True, False):
        prog = compile_program(art, target(*array), ids=ids, mask=mask, types=types, trace=trace)
        ops = [(i.op, i.fields.get("post")) for i in prog.instructions]
        assert (Op.QUANT, None) not in ops[-3:] and (Op.MATMUL, int(Post.EXT)) not in ops    # no pooler
        final = prog.instructions[-2]
        out_addr, out_size = prog.regions["output"]
        assert final.op == Op.LAYERNORM and final.fields["tap"] == 1 and final.fields["trace"] == out_addr
        assert out_size == 2 * t * config.hidden * 4
        assert not any(n.startswith("pooler") for n in prog.checkpoints)
        for source in ("trace", "buffers"):
            got = execute(prog, source=source, rng=np.random.default_rng(3))
            assert {f"{last}.res2", f"{last}.ln2"} <= set(got)
            for name, value in got.items():
                assert np.array_equal(value, ref[name]), (trace, source, name)
        # what leaves the chip: only the output region without trace, everything traced with it
        m = Machine(prog)
        while m.step():
            m.pc += 1
        ext = read_external(prog, m.ext)
        if not trace:
            assert set(ext) == {f"{last}.res2", f"{last}.ln2"}
        assert all(np.array_equal(v, ref[k]) for k, v in ext.items())
        words = m.ext[out_addr:out_addr + out_size].view("<i4").reshape(t, 2, config.hidden)
        assert np.array_equal(words[:, 1], ref[f"{last}.ln2"][0])           # per token: the sum row, the output row
        assert np.array_equal(words[:, 0], ref[f"{last}.res2"][0])


def test_span_program_file_round_trip(tmp_path):
    art = span_artifact()
    ids = np.arange(1, 9)
    prog = compile_program(art, target(3, 5, 32), ids=ids, trace=False)
    prog.save(tmp_path / "p.bitprog")
    back = load_program(tmp_path / "p.bitprog")
    got, want = execute(back), execute(prog)
    assert set(got) == set(want) and all(np.array_equal(got[k], want[k]) for k in want)
    other = prog.with_inputs(ids[::-1])
    ref = IntegerModel(art).forward(ids[::-1], keep_intermediates=True)["intermediates"]
    assert np.array_equal(execute(other)["layers.1.ln2"], ref["layers.1.ln2"])
