"""A span (SQuAD) artifact on the generated accelerator RTL (Verilator): the final residual stream leaves the chip.

The program of a span artifact has no pooler; its last LAYERNORM writes, per token, the sum row and the
output row to the output region (no trace needed). One whole inference of the tiny random encoder of
tests/test_sim_accelerator.py (its 2x3x16 build) with padding: the residual stream read back from the RTL's
external memory equals golden bit for bit, the host's start / end logits from it equal golden's, and the
cycle model predicts the measured cycles and AXI beats. Then `bitaccel run --question --context` on a span
artifact with a small WordPiece tokenizer written here (the build of tests/test_cli_run.py): the tokens,
bit_exact, the answer span and text against golden. Tokenization of the pair (the question cut to
max_query_len, one window, over-long input refused) is checked without a simulator.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest

from bitaccel.cli import main
from bitaccel.golden.config import ModelConfig
from bitaccel.golden.random_artifact import random_artifact

TINY = dict(vocab_size=60, hidden=64, layers=2, heads=2, ffn=128, max_position=8)
WORDS = ["which", "word", "?", "alpha", "beta", "gamma", "delta", "echo"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS


def _need_verilator() -> None:
    from bitaccel.sim import runner

    try:
        runner.check_simulator("verilator")
    except runner.SimulatorUnavailable as e:
        pytest.skip(f"verilator unavailable: {e}")


def _work_dir() -> str:
    return os.environ.get("BITACCEL_SIM_BUILD", str(Path(__file__).resolve().parent.parent / "sim_build"))


@pytest.fixture(scope="module")
def span_art():
    return random_artifact(ModelConfig(**TINY), seed=21, act_bits=1, head="span")


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> str:
    pytest.importorskip("tokenizers")
    from transformers import BertTokenizer

    folder = tmp_path_factory.mktemp("wordpiece")
    BertTokenizer(vocab={w: i for i, w in enumerate(VOCAB)}).save_pretrained(folder)
    assert (folder / "tokenizer.json").is_file()
    return str(folder)


@pytest.fixture(scope="module")
def span_file(span_art, tokenizer_dir, tmp_path_factory) -> str:
    """The span artifact with a tokenizer reference (max_len 8 = max_position, questions cut to 2 tokens)."""
    from bitaccel.golden.artifact import save_artifact

    ref = {"kind": "huggingface", "class": "BertTokenizer", "source": tokenizer_dir, "vocab_size": len(VOCAB),
           "max_len": 8, "max_query_len": 2, "doc_stride": 1, "task": "squad", "labels": None}
    path = tmp_path_factory.mktemp("span_run") / "span.safetensors"
    save_artifact(dataclasses.replace(span_art, tokenizer=ref), str(path))
    return str(path)


def test_pair_tokenization(span_file):
    from bitaccel.golden.artifact import load_artifact
    from bitaccel.sim.run_command import tokenize_pair

    art = load_artifact(span_file)
    ids, types, offsets = tokenize_pair(art, "  which word ?", "alpha beta gamma")
    tok = {w: i for i, w in enumerate(VOCAB)}
    # the question is cut after its 2nd token (max_query_len), as model/squad_data.py does
    assert ids.tolist() == [tok[w] for w in ("[CLS]", "which", "word", "[SEP]", "alpha", "beta", "gamma", "[SEP]")]
    assert types.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert offsets == [None, None, None, None, (0, 5), (6, 10), (11, 16), None]
    with pytest.raises(ValueError, match="more than the model's window of 8 tokens"):
        tokenize_pair(art, "which word", "alpha beta gamma delta")
    with pytest.raises(ValueError, match="must not be empty"):
        tokenize_pair(art, "which", "   ")


def test_too_long_pair_fails_with_one_line(span_file, capsys):
    status = main(["run", "--artifact", span_file, "--question", "which word", "--context", "alpha beta gamma delta",
                   "--array", "2x3x16"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and err[0].startswith("bitaccel: error:") and "shorten the context" in err[0]


@pytest.mark.sim
def test_span_program_on_verilator_returns_the_residual_stream(span_art):
    from bitaccel.compiler import Target, compile_program
    from bitaccel.golden.model import IntegerModel
    from bitaccel.hw.encoder import regs
    from bitaccel.sim.inference import run_program
    from bitaccel.sim.program_cycles import UNIT_COUNTERS, program_cycles
    from test_sim_accelerator import CONFIGS

    _need_verilator()
    ids = np.array([59, 3, 17, 42, 8, 11, 23, 5])
    mask = np.array([1, 1, 1, 1, 1, 0, 0, 0], dtype=bool)
    types = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    prog = compile_program(span_art, Target(CONFIGS["2x3x16"]), ids=ids, mask=mask, types=types, trace=False)
    r = run_program(prog, "verilator", work_dir=_work_dir())
    assert r["passed"] and r["status"] == regs.STATUS_DONE and r["retired"] == len(prog.instructions), r
    assert r["checked"] == ["layers.1.ln2", "layers.1.res2"] and r["compared"] == 2 * 8 * 64
    assert r["bit_exact"], f"first mismatch: {r['first_mismatch']}"
    ref = IntegerModel(span_art).forward(ids, mask, types, keep_intermediates=True)
    assert np.array_equal(r["checkpoints"]["layers.1.ln2"], ref["hidden"])
    start, end = IntegerModel(span_art).span_logits(r["checkpoints"]["layers.1.ln2"])
    assert np.array_equal(start, ref["start_logits"]) and np.array_equal(end, ref["end_logits"])
    model = program_cycles(prog)
    assert abs(model["cycles"] - r["cycles"]) <= 0.02 * r["cycles"], (model["cycles"], r["cycles"])
    assert {k: model["busy"][k] for k in UNIT_COUNTERS} == {k: r["busy"][k] for k in UNIT_COUNTERS}
    assert model["beats"] == r["beats"]


@pytest.mark.sim
def test_bitaccel_run_prints_the_answer_span(span_file, capsys):
    from bitaccel.golden.artifact import load_artifact
    from bitaccel.golden.model import IntegerModel, best_span
    from bitaccel.sim.run_command import format_run

    _need_verilator()
    question, context = "which word ?", "alpha beta gamma delta"
    status = main(["run", "--artifact", span_file, "--question", question, "--context", "alpha beta gamma",
                   "--max-answer-length", "2", "--array", "2x3x16", "--sim", "verilator", "--json",
                   "--build-dir", _work_dir()])
    out, err = capsys.readouterr()
    assert status == 0, err
    r = json.loads(out)
    context = "alpha beta gamma"
    tok = {w: i for i, w in enumerate(VOCAB)}
    ids = [tok[w] for w in ("[CLS]", "which", "word", "[SEP]", "alpha", "beta", "gamma", "[SEP]")]
    assert r["head"] == "span" and r["ids"] == ids and r["tokens"] == 8 and r["question"] == question
    assert r["bit_exact"] is True and r["checked"] == ["layers.1.ln2", "layers.1.res2"]
    assert r["compared"] == 2 * 8 * 64 and r["axi_write_bytes"] == 2 * 8 * 64 * 4     # the output region only
    golden = IntegerModel(load_artifact(span_file)).forward(ids, None, [0] * 4 + [1] * 4)
    assert r["start_logits"] == [float(v) for v in golden["start_logits"][0]]
    s, e, score = best_span(golden["start_logits"][0], golden["end_logits"][0], [False] * 4 + [True] * 3 + [False], 2)
    assert (r["start"], r["end"], r["score"]) == (s, e, score) == (r["golden_start"], r["golden_end"], score)
    starts, ends = {4: 0, 5: 6, 6: 11}, {4: 5, 5: 10, 6: 16}
    assert r["answer"] == context[starts[s]:ends[e]] and 0 <= e - s <= 1
    text = format_run(r)
    assert f"answer:      {r['answer']!r}  tokens {s}..{e}" in text and "bit_exact:   true" in text
    assert r["cycles"] > 0 and r["energy_pj"] > 0
