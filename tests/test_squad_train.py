"""SQuAD training and evaluation wiring (model/train.py with model/task_kind.py, `bitaccel train/eval/export`).

A tiny random BERT and the small WordPiece tokenizer of test_squad.py, SQuAD v1.1 files written here
(a few paragraphs of the letter words), a few optimizer steps per stage. Nothing is downloaded.
"""
import json
import os
import random

import pytest
import torch
from transformers import AutoTokenizer, BertForQuestionAnswering, BertTokenizer

from bitaccel.cli import main
from bitaccel.model import train as train_mod
from bitaccel.model.checkpoint import load_checkpoint
from bitaccel.model.span_head import SPAN_FORMAT, BitBertForSpans
from bitaccel.model.squad_data import prepare_features, read_squad
from bitaccel.model.squad_metrics import decode_best_spans, squad_scores
from bitaccel.model.train import param_digest, read_metrics, train
from test_squad import VOCAB, WORDS, tiny_config

# windows of 20 tokens: [CLS] + a question of up to 8 + [SEP] + context + [SEP]; a 16-word context takes 2
# windows, so 12 training questions give 24 windows: 4 steps of 6 per epoch
WINDOW = dict(max_len=20, doc_stride=4, max_query_len=8)
FAST = dict(batch_size=6, lr=1e-3, quiet=True, **WINDOW)


def paragraphs(n: int, seed: int, answers_per_question: int) -> dict:
    """n paragraphs of the 16 letter words shuffled; 3 questions each ("which word ? <word>": the words after it)."""
    rng = random.Random(seed)
    data = []
    for p in range(n):
        words = WORDS[:]
        rng.shuffle(words)
        context = " ".join(words)
        qas = []
        for q in range(3):
            i = rng.randrange(0, 14)
            answers = []
            for a in range(answers_per_question):
                text = " ".join(words[i + 1:i + 2 + a % 2])          # one or two words
                answers.append({"text": text, "answer_start": context.index(" " + text) + 1})
            qas.append({"id": f"s{seed}p{p}q{q}", "question": f"which word ? {words[i]}", "answers": answers})
        data.append({"title": f"t{p}", "paragraphs": [{"context": context, "qas": qas}]})
    return {"version": "1.1", "data": data}


#: tiny tensors: one torch thread (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_squad_setup(root) -> tuple[str, str]:
    """(model folder, SQuAD folder) under `root`: a random BertForQuestionAnswering + tokenizer, train / dev JSON files."""
    model, squad = root / "model", root / "squad"
    torch.manual_seed(0)
    BertForQuestionAnswering(tiny_config()).save_pretrained(model)
    BertTokenizer(vocab={w: i for i, w in enumerate(VOCAB)}).save_pretrained(model)
    squad.mkdir()
    (squad / "train-v1.1.json").write_text(json.dumps(paragraphs(4, 1, 1)))
    (squad / "dev-v1.1.json").write_text(json.dumps(paragraphs(2, 2, 3)))
    return str(model), str(squad)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return write_squad_setup(tmp_path_factory.mktemp("squad_setup"))


def train_argv(model, squad, out, schedule="32/32,1/1", steps=4):
    return ["train", "--task", "squad", "--model", model, "--squad-dir", squad, "--schedule", schedule,
            "--out", out, "--max-steps", str(steps), "--batch-size", "6", "--lr", "1e-3", "--max-len", "20",
            "--doc-stride", "4", "--max-query-len", "8", "--eval-every", "2", "--save-every", "2", "--quiet"]


@pytest.fixture(scope="module")
def squad_run(setup, tmp_path_factory):
    """A finished 32/32 -> 1/1 squad run (through the CLI) and its printed summary."""
    model, squad = setup
    run = str(tmp_path_factory.mktemp("squad_run") / "run")
    import io
    from contextlib import redirect_stdout
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(train_argv(model, squad, run)) == 0
    return run, out.getvalue()


def test_train_teacher_then_bit_student(setup, squad_run):
    model, squad = setup
    run, printed = squad_run
    assert "stage 0-w32a32" in printed and "stage 1-w1a1" in printed
    assert sorted(os.listdir(run)) == ["checkpoint.pt", "metrics.jsonl", "run.json", "stages", "tokenizer"]
    info = json.loads(open(os.path.join(run, "run.json")).read())
    assert info["task"] == "squad" and info["options"]["squad_dir"] == os.path.abspath(squad)
    assert (info["options"]["max_len"], info["options"]["doc_stride"], info["options"]["max_query_len"]) == (20, 4, 8)
    n_train = len(prepare_features(read_squad(os.path.join(squad, "train-v1.1.json"), training=True).examples,
                                   AutoTokenizer.from_pretrained(model), **WINDOW).example_index)
    assert info["examples"]["train"] == n_train > 12                  # 12 questions, most in 2 windows

    stages = {name: BitBertForSpans.load(os.path.join(run, "stages", name, "model")) for name in ("0-w32a32", "1-w1a1")}
    meta = json.load(open(os.path.join(run, "stages", "1-w1a1", "model", "bitaccel_model.json")))
    assert meta["format"] == SPAN_FORMAT and (meta["weight_bits"], meta["act_bits"]) == (1, 1)
    assert stages["0-w32a32"].weight_bits == 32 and stages["1-w1a1"].site("layers.0.ffn1.in").bits == 1
    start = BitBertForSpans.from_pretrained(model)
    assert param_digest(stages["0-w32a32"]) != param_digest(start)      # the teacher was fine-tuned

    records = read_metrics(run)
    train0 = [r for r in records if r["kind"] == "train" and r["stage"] == 0]
    train1 = [r for r in records if r["kind"] == "train" and r["stage"] == 1]
    assert [r["step"] for r in train0] == [r["step"] for r in train1] == [1, 2, 3, 4]
    assert "reps" not in train0[0]                                       # stage 0: span_loss only
    for r in train1:                                                     # distillation: logits + block-output MSE
        assert r["reps"] > 0 and r["att"] == 0 and r["loss"] == pytest.approx(r["logits"] + r["reps"], rel=1e-5)
    evals = [r for r in records if r["kind"] == "eval"]
    assert [(r["stage"], r["step"]) for r in evals] == [(0, 2), (0, 4), (1, 2), (1, 4)]
    assert all(set(r["metrics"]) == {"exact_match", "f1", "main"} for r in evals)
    result = json.load(open(os.path.join(run, "stages", "1-w1a1", "result.json")))
    assert result["teacher"] == 0 and result["source"] == "distilled" and result["steps"] == 4
    assert result["best_dev"] == max(r["metrics"]["f1"] for r in evals if r["stage"] == 1)
    assert load_checkpoint(os.path.join(run, "checkpoint.pt"))["stage"] == 1


def _scores_by_hand(run, squad, stage, n_best, max_answer_length):
    """EM / F1 of the saved model's decoded answers, computed without model/evaluate.py (untrimmed batch)."""
    model = BitBertForSpans.load(os.path.join(run, "stages", stage, "model")).eval()
    examples = read_squad(os.path.join(squad, "dev-v1.1.json"), training=False).examples
    feats = prepare_features(examples, AutoTokenizer.from_pretrained(os.path.join(run, "tokenizer")), **WINDOW)
    t = feats.tensors
    with torch.no_grad():
        out = model(t["input_ids"], t["attention_mask"], t["token_type_ids"])
    texts = decode_best_spans(out.start_logits.numpy(), out.end_logits.numpy(), feats.example_index, feats.offsets,
                              [e.context for e in examples], n_best=n_best, max_answer_length=max_answer_length)
    return squad_scores({e.id: x for e, x in zip(examples, texts)}, {e.id: list(e.answers) for e in examples}), texts


def test_eval_prints_em_and_f1(setup, squad_run, capsys):
    _, squad = setup
    run, _ = squad_run
    capsys.readouterr()
    assert main(["eval", run, "--split", "dev"]) == 0
    text = capsys.readouterr().out
    want, _ = _scores_by_hand(run, squad, "1-w1a1", 20, 30)
    assert "6 questions in" in text and "(W1A1)" in text
    assert f"EM {want['exact_match']:.2f} F1 {want['f1']:.2f}" in text, text
    # other decoding options, the teacher stage, JSON: the numbers of squad_metrics on the decoded answers
    for stage, n_best, length in (("1-w1a1", 3, 1), ("0-w32a32", 5, 2)):
        argv = ["eval", run, "--json", "--n-best", str(n_best), "--max-answer-length", str(length)]
        assert main(argv + (["--stage", "0"] if stage.startswith("0") else [])) == 0
        got = json.loads(capsys.readouterr().out)
        want, texts = _scores_by_hand(run, squad, stage, n_best, length)
        assert got["metrics"]["exact_match"] == pytest.approx(want["exact_match"], abs=1e-9)
        assert got["metrics"]["f1"] == pytest.approx(want["f1"], abs=1e-9)
        assert got["examples"] == 6 and got["n_best"] == n_best and got["max_answer_length"] == length
        if length == 1:
            assert all(len(t.split()) <= 1 for t in texts)


def test_resume_reproduces_uninterrupted_run(setup, tmp_path, monkeypatch):
    model, squad = setup
    opts = dict(squad_dir=squad, max_steps=4, save_every=2, eval_every=2, **FAST)
    train("squad", model, "32/32,1/1", tmp_path / "a", **opts)
    real_write = train_mod.write_metrics

    def crash_at_step_3(run_dir, record):
        if record["kind"] == "train" and record["stage"] == 1 and record["step"] == 3:
            raise KeyboardInterrupt("simulated crash")
        real_write(run_dir, record)

    monkeypatch.setattr(train_mod, "write_metrics", crash_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        train("squad", model, "32/32,1/1", tmp_path / "b", **opts)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["step"] == 2
    train("squad", model, "32/32,1/1", tmp_path / "b", resume=True, **opts)
    rows = lambda run: [(r["kind"], r["stage"], r["step"], r.get("loss"), r.get("metrics"))   # noqa: E731
                        for r in read_metrics(run) if r["kind"] in ("train", "eval")]
    assert rows(tmp_path / "a") == rows(tmp_path / "b") and len(rows(tmp_path / "a")) == 12
    final = [BitBertForSpans.load(tmp_path / r / "stages" / "1-w1a1" / "model") for r in ("a", "b")]
    assert param_digest(final[0]) == param_digest(final[1])


def test_finished_run_is_a_reused_teacher(setup, squad_run, tmp_path):
    model, squad = setup
    run, _ = squad_run
    out = tmp_path / "student"
    train("squad", run, "32/32,1/2", out, squad_dir=squad, max_steps=2, **FAST)
    reused = json.load(open(out / "stages" / "0-w32a32" / "result.json"))
    assert reused["source"] == f"run {run}" and reused["steps"] == 0
    assert reused["metrics"] == json.load(open(os.path.join(run, "stages", "0-w32a32", "result.json")))["metrics"]
    assert [r["stage"] for r in read_metrics(out) if r["kind"] == "train"] == [1, 1]


@pytest.mark.parametrize("method, extra", [("binarybert", {}), ("bit", {"progressive": True, "bi_attention": True})])
def test_other_methods_and_schedules(setup, tmp_path, method, extra):
    """The attention-score loss (binarybert, one step), progressive teachers and Bi-Attention students."""
    model, squad = setup
    r = train("squad", model, "32/32,1/2,1/1", tmp_path / "run", squad_dir=squad, max_steps=2, method=method,
              **extra, **FAST)
    got = [(s["name"], s["teacher"]) for s in r["stages"]]
    assert got == ([("0-w32a32", None), ("1-w1a1", 0)] if method == "binarybert" else
                   [("0-w32a32", None), ("1-w1a2", 0), ("2-w1a1", 0)])
    distilled = [rec for rec in read_metrics(tmp_path / "run") if rec["kind"] == "train" and rec["stage"] > 0]
    assert all((rec["att"] > 0) == (method == "binarybert") and rec["reps"] > 0 for rec in distilled)
    last = BitBertForSpans.load(tmp_path / "run" / "stages" / got[-1][0] / "model")
    assert last.bi_attention == bool(extra) and last.flags()["two_set"] == (method != "binarybert")


@pytest.mark.parametrize("case, message", [
    ("no-squad-dir", "pass --squad-dir"),
    ("missing-dir", "no such folder"),
    ("missing-file", "SQuAD file not found"),
    ("int-stage", "'int' stage is not supported for squad yet"),
])
def test_bad_inputs_one_line_exit_2(setup, squad_run, tmp_path, capsys, case, message):
    model, squad = setup
    run, _ = squad_run
    out = str(tmp_path / "out")
    if case == "missing-file":
        os.makedirs(tmp_path / "half")
        (tmp_path / "half" / "train-v1.1.json").write_text(open(os.path.join(squad, "train-v1.1.json")).read())
    argv = {
        "no-squad-dir": [a for a in train_argv(model, squad, out) if a not in ("--squad-dir", squad)],
        "missing-dir": train_argv(model, str(tmp_path / "nope"), out),
        "missing-file": train_argv(model, str(tmp_path / "half"), out),
        "int-stage": train_argv(model, squad, out, schedule="32/32,1/1,int"),
    }[case]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("bitaccel: error: "), err
    assert not os.path.exists(out) and not os.path.exists(tmp_path / "x.safetensors")
