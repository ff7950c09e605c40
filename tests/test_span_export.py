"""Export of span (SQuAD) runs and golden inference on the exported artifact.

A tiny squad run (the random BERT, WordPiece tokenizer and SQuAD fixture files of test_squad_train.py,
32/32 -> W1A1, a few steps) is exported with `bitaccel export`: the artifact has head "span", the run's
tokenizer and window sizes, and the eval-mode PyTorch span model equals golden.reference.FloatModel on its
tensors; golden.IntegerModel's logits stay within fixed-point rounding of it; `bitaccel eval --integer`
prints EM / F1 of the golden model decoded like PyTorch's (checked by hand here); `bitaccel infer` prints
the per-token start / end logits.
"""
import json
import os

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from bitaccel.cli import main
from bitaccel.golden.artifact import load_artifact
from bitaccel.golden.model import IntegerModel
from bitaccel.golden.reference import FloatModel
from bitaccel.model.span_head import BitBertForSpans
from bitaccel.model.squad_data import prepare_features, read_squad
from bitaccel.model.squad_metrics import decode_best_spans, squad_scores
from test_squad import VOCAB
from test_squad_train import WINDOW, train_argv, write_squad_setup


#: tiny tensors: one torch thread (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(run folder, SQuAD folder, artifact path, export's printed line) of a finished 32/32 -> 1/1 squad run."""
    import io
    from contextlib import redirect_stdout

    root = tmp_path_factory.mktemp("span_export")
    model, squad = write_squad_setup(root)
    run, art = str(root / "run"), str(root / "span.safetensors")
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(train_argv(model, squad, run)) == 0
        assert main(["export", run, "--out", art]) == 0
    return run, squad, art, out.getvalue().splitlines()[-1]


def dev_features(run, squad):
    examples = read_squad(os.path.join(squad, "dev-v1.1.json"), training=False).examples
    tok = AutoTokenizer.from_pretrained(os.path.join(run, "tokenizer"))
    return examples, prepare_features(examples, tok, **WINDOW)


def test_export_writes_a_span_artifact(exported):
    run, squad, path, printed = exported
    assert printed.startswith(f"wrote {path}: span head, 2 layers, hidden 32, activation bits [1]"), printed
    art = load_artifact(path)
    assert art.head == "span" and art.config.num_labels == 2 and "pooler.in" not in art.quant
    model = BitBertForSpans.load(os.path.join(run, "stages", "1-w1a1", "model"))
    assert np.array_equal(art["span.weight"], model.head.qa_outputs.weight.detach().numpy())
    ref = art.tokenizer
    assert ref["kind"] == "huggingface" and ref["task"] == "squad" and ref["labels"] is None
    assert (ref["max_len"], ref["doc_stride"], ref["max_query_len"]) == (20, 4, 8)
    assert ref["vocab_size"] == len(VOCAB) and os.path.isfile(os.path.join(ref["source"], "tokenizer.json"))


def test_pytorch_span_model_equals_float_reference_and_integer_model_is_close(exported):
    run, squad, path, _ = exported
    art = load_artifact(path)
    model = BitBertForSpans.load(os.path.join(run, "stages", "1-w1a1", "model")).eval().double()
    _, feats = dev_features(run, squad)
    t = feats.tensors
    with torch.no_grad():
        out = model(t["input_ids"], t["attention_mask"], t["token_type_ids"])
    args = (t["input_ids"].numpy(), t["attention_mask"].numpy(), t["token_type_ids"].numpy())
    ref = FloatModel(art.config, art.quant, art.tensors, head="span").forward(*args)
    valid = t["attention_mask"].numpy().astype(bool)
    for name in ("start_logits", "end_logits"):
        got = getattr(out, name).numpy()
        assert np.abs(got - ref[name])[valid].max() <= 1e-9 * max(1.0, np.abs(ref[name]).max()), name
    integer = IntegerModel(art).forward(*args)
    for name in ("start_logits", "end_logits"):
        err = np.abs(integer[name] - ref[name])[valid]
        print(f"{name}: median |integer - float| {np.median(err):.4f}, std of float {ref[name][valid].std():.4f}")
        assert np.median(err) <= 0.25 * ref[name][valid].std()


def test_eval_integer_prints_golden_em_f1(exported, capsys):
    run, squad, path, _ = exported
    capsys.readouterr()
    assert main(["eval", run, "--integer", path]) == 0
    text = capsys.readouterr().out
    assert "pytorch: EM" in text and "integer: EM" in text, text
    assert main(["eval", run, "--integer", path, "--json"]) == 0
    got = json.loads(capsys.readouterr().out)["integer"]
    # by hand: golden logits of the padded windows, decoded with the official n-best rule
    examples, feats = dev_features(run, squad)
    t = feats.tensors
    o = IntegerModel(load_artifact(path)).forward(t["input_ids"].numpy(), t["attention_mask"].numpy(),
                                                  t["token_type_ids"].numpy())
    texts = decode_best_spans(o["start_logits"], o["end_logits"], feats.example_index, feats.offsets,
                              [e.context for e in examples], n_best=20, max_answer_length=30)
    want = squad_scores({e.id: x for e, x in zip(examples, texts)}, {e.id: list(e.answers) for e in examples})
    assert got["metrics"]["exact_match"] == pytest.approx(want["exact_match"], abs=1e-9)
    assert got["metrics"]["f1"] == pytest.approx(want["f1"], abs=1e-9)
    assert f"integer: EM {want['exact_match']:.2f} F1 {want['f1']:.2f}" in text


def test_infer_prints_start_and_end_logits(exported, capsys):
    _, _, path, _ = exported
    ids = [2, 5, 6, 7, 3, 12, 13, 14, 3]
    capsys.readouterr()
    assert main(["infer", "--artifact", path, "--ids", ",".join(map(str, ids)), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    want = IntegerModel(load_artifact(path)).forward(ids)
    assert got["start_logits"] == [float(v) for v in want["start_logits"][0]]
    assert got["end_logits"] == [float(v) for v in want["end_logits"][0]]
    assert main(["infer", "--artifact", path, "--ids", ",".join(map(str, ids))]) == 0
    assert capsys.readouterr().out.startswith("start logits: ")


def test_eval_integer_with_a_classifier_artifact_is_refused(exported, tmp_path, capsys):
    run, _, _, _ = exported
    other = str(tmp_path / "cls.safetensors")
    assert main(["random-artifact", "--config", "tiny", "--out", other]) == 0
    capsys.readouterr()
    assert main(["eval", run, "--integer", other]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bitaccel: error: ") and "does not hold this run's model" in err and err.count("\n") == 1


def test_run_tokenizes_a_pair_as_the_training_features(exported):
    """`bitaccel run`'s tokenize_pair (tokenizers only, no torch) == model/squad_data.py's window, unpadded."""
    from bitaccel.model.squad_data import SquadExample
    from bitaccel.sim.run_command import tokenize_pair
    from test_squad import WORDS

    run, _, path, _ = exported
    art = load_artifact(path)
    tok = AutoTokenizer.from_pretrained(os.path.join(run, "tokenizer"))
    context = " ".join(WORDS[:7])
    for question in ("which word ? " + WORDS[3], "  which word " + " ".join(WORDS[8:16])):   # the second is cut
        ex = SquadExample("q", "t", question.lstrip(), context, (WORDS[4],), (context.index(WORDS[4]),))
        f = prepare_features([ex], tok, **WINDOW)
        assert f.example_index == [0]
        n = int(f.tensors["attention_mask"][0].sum())
        ids, types, offsets = tokenize_pair(art, question, context)
        assert ids.tolist() == f.tensors["input_ids"][0, :n].tolist()
        assert types.tolist() == f.tensors["token_type_ids"][0, :n].tolist()
        assert offsets == f.offsets[0][:n]
    with pytest.raises(ValueError, match="window of 20 tokens"):
        tokenize_pair(art, "which word", " ".join(WORDS))
