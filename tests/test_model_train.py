"""Training (model/train.py, model/distill.py, model/checkpoint.py) on a tiny, learnable synthetic task.

The setup written here (also used by test_model_ddp.py and test_model_agreement.py): a tiny
random BERT saved with save_pretrained, a WordPiece tokenizer over a 47-word vocabulary, and
an SST-2-format GLUE folder whose label is whether the word "good" appears in the sentence.
"""
import json
import os
import random

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

from bitaccel.cli import main
from bitaccel.model import checkpoint as ckpt_mod
from bitaccel.model import train as train_mod
from bitaccel.model.bit_bert import BitBertForSequenceClassification as BitBert
from bitaccel.model.checkpoint import load_checkpoint, save_checkpoint
from bitaccel.model.distill import distillation_loss, masked_mse, soft_cross_entropy
from bitaccel.model.train import (METHODS, Stage, param_digest, parse_schedule, plan_stages, read_metrics, train)

FILLER = [f"w{i}" for i in range(40)]


def sentences(n: int, seed: int) -> list[tuple[str, int]]:
    """n sentences of 3..10 filler words; every odd one also holds "good" (label 1)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = [rng.choice(FILLER) for _ in range(rng.randint(3, 10))]
        if i % 2:
            words.insert(rng.randint(0, len(words)), "good")
        rows.append((" ".join(words), i % 2))
    return rows


def write_setup(root, n_train: int = 400, n_dev: int = 200, hidden: int = 64) -> tuple[str, str]:
    """(model folder, GLUE folder) of the synthetic task under root."""
    model, glue = os.path.join(root, "model"), os.path.join(root, "glue")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good"] + FILLER
    cfg = BertConfig(vocab_size=len(words), hidden_size=hidden, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=2 * hidden, max_position_embeddings=32, type_vocab_size=2)
    torch.manual_seed(0)
    BertForSequenceClassification(cfg).save_pretrained(model)
    BertTokenizer(vocab={w: i for i, w in enumerate(words)}).save_pretrained(model)
    os.makedirs(os.path.join(glue, "SST-2"))
    for split, n, seed in (("train", n_train, 1), ("dev", n_dev, 2)):
        with open(os.path.join(glue, "SST-2", f"{split}.tsv"), "w") as f:
            f.write("sentence\tlabel\n")
            f.writelines(f"{text}\t{label}\n" for text, label in sentences(n, seed))
    return model, glue


FAST = dict(batch_size=16, lr=1e-3, max_len=16, quiet=True)


#: tiny tensors: one torch thread (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return write_setup(tmp_path_factory.mktemp("bit_setup"))


# ----------------------------------------------------------------------------- schedule and plan
def test_parse_schedule():
    assert parse_schedule("32/32,1/2,1/1") == [(32, 32), (1, 2), (1, 1)]
    assert parse_schedule(" 32/32, 1/8 ,1/4,1/2,1/1") == [(32, 32), (1, 8), (1, 4), (1, 2), (1, 1)]
    assert parse_schedule("32/32") == [(32, 32)]
    assert parse_schedule("32/32,32/4,1/4") == [(32, 32), (32, 4), (1, 4)]


@pytest.mark.parametrize("text, message", [
    ("", "string like"),
    ("1/2,1/1", "must start with 32/32"),
    ("32/32,1/3", "activation bits must be one of"),
    ("32/32,2/2", "weight bits must be one of"),
    ("32/32,1-1", "expected weight_bits/act_bits"),
    ("32/32,1/x", "expected weight_bits/act_bits"),
    ("32/32,1/1,1/2", "not a lower precision"),
    ("32/32,1/2,1/2", "not a lower precision"),
    ("32/32,,1/1", "bad schedule entry"),
])
def test_parse_schedule_errors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_schedule(text)


def test_plan_stages():
    bit = plan_stages("32/32,1/2,1/1")
    assert bit == [Stage(0, 32, 32, None, None), Stage(1, 1, 2, 0, 0), Stage(2, 1, 1, 1, 1)]
    assert [s.name for s in bit] == ["0-w32a32", "1-w1a2", "2-w1a1"]
    prog = plan_stages("32/32,1/2,1/1", progressive=True)
    assert [(s.teacher, s.init) for s in prog] == [(None, None), (0, 0), (0, 1)]
    for method in METHODS:
        if method != "bit":      # one step: the FP teacher straight to the last entry (BiT‡)
            assert plan_stages("32/32,1/2,1/1", method) == [Stage(0, 32, 32, None, None), Stage(1, 1, 1, 0, 0)]
    with pytest.raises(ValueError, match="progressive"):
        plan_stages("32/32,1/2,1/1", "kd", progressive=True)
    with pytest.raises(ValueError, match="unknown method"):
        plan_stages("32/32,1/1", "bitt")


# ----------------------------------------------------------------------------- distillation loss
def test_distillation_loss_terms():
    torch.manual_seed(0)
    s, t = torch.randn(4, 3, requires_grad=True), torch.randn(4, 3)
    ref = -(torch.softmax(t, -1) * torch.log_softmax(s, -1)).sum(-1).mean()
    assert torch.allclose(soft_cross_entropy(s, t), ref)
    kl = torch.nn.functional.kl_div(torch.log_softmax(s, -1), torch.softmax(t, -1), reduction="batchmean")
    entropy = -(torch.softmax(t, -1) * torch.log_softmax(t, -1)).sum(-1).mean()
    assert torch.allclose(soft_cross_entropy(s, t), kl + entropy, atol=1e-6)      # KL + a constant
    a, b = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]).bool()
    junk = b.clone()
    junk[0, 3:] += 100.0                                                            # padding is ignored
    assert torch.allclose(masked_mse(a, junk, mask), ((a - b) ** 2)[mask].mean())

    class Out:
        def __init__(self, logits, hidden, att=None):
            self.logits, self.hidden_states, self.attentions = logits, hidden, att
    reg = distillation_loss(Out(torch.tensor([[1.0], [2.0]]), (a,)), Out(torch.tensor([[0.0], [4.0]]), (a,)),
                            mask)
    assert torch.isclose(reg["logits"], torch.tensor(2.5)) and reg["reps"] == 0     # regression: MSE of logits
    att_s, att_t = torch.randn(2, 2, 5, 5), torch.randn(2, 2, 5, 5)
    with_att = distillation_loss(Out(s, (a,), (att_s,)), Out(t, (b,), (att_t,)), mask, attention=True)
    pair = mask[:, None, :, None] & mask[:, None, None, :]
    assert torch.isclose(with_att["att"], ((att_s - att_t) ** 2)[pair.expand(-1, 2, -1, -1)].mean())
    assert torch.isclose(with_att["loss"], with_att["logits"] + with_att["reps"] + with_att["att"])


# ----------------------------------------------------------------------------- multi-distillation chain
def _weights(model) -> dict:
    return {k: v for k, v in model.state_dict().items() if not k.endswith((".alpha", ".initialized"))}


@pytest.mark.parametrize("progressive", [False, True])
def test_chain_initialization_and_teacher(setup, tmp_path, monkeypatch, progressive):
    """Stage k's student starts from stage k-1's best model; its teacher is stage k-1 (BiT) or stage 0 (progressive)."""
    model, glue = setup
    seen = {}
    original = train_mod.build_stage_models

    def spy(run_dir, stage, opts, calib=None):
        student, teacher = original(run_dir, stage, opts, calib)
        seen[stage.index] = ({k: v.clone() for k, v in _weights(student).items()}, param_digest(teacher),
                             (student.weight_bits, student.act_bits))
        return student, teacher

    monkeypatch.setattr(train_mod, "build_stage_models", spy)
    out = tmp_path / "run"
    train("sst2", model, "32/32,1/2,1/1", out, glue_dir=glue, max_steps=6, progressive=progressive, **FAST)
    stages = {s.index: BitBert.load(out / "stages" / s.name / "model") for s in plan_stages("32/32,1/2,1/1")}
    assert sorted(seen) == [1, 2]
    for k in (1, 2):
        weights, teacher_digest, bits = seen[k]
        init = _weights(stages[k - 1])
        assert set(weights) == set(init) and all(torch.equal(weights[n], init[n]) for n in init), k
        teacher = 0 if progressive else k - 1
        assert teacher_digest == param_digest(stages[teacher])
    assert seen[1][2] == (1, 2) and seen[2][2] == (1, 1)
    assert param_digest(stages[2]) != param_digest(stages[1])          # the W1A1 student was trained
    for k, s in enumerate(json.loads((out / "run.json").read_text())["stages"]):
        assert s["teacher"] == (None if k == 0 else 0 if progressive else k - 1)


# ----------------------------------------------------------------------------- checkpoints and resume
def test_checkpoint_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"step": 1, "w": torch.arange(4.0), "rng": [{"pos": 3, "keys": [1, 2]}]}, path)
    real_save = torch.save

    def crash(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.truncate(10)                    # a partial file, then the process dies
        raise OSError("simulated crash while writing")

    monkeypatch.setattr(ckpt_mod.torch, "save", crash)
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint({"step": 2, "w": torch.zeros(4)}, path)
    monkeypatch.undo()
    state = load_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["w"], torch.arange(4.0))
    assert os.listdir(tmp_path) == ["checkpoint.pt"]                    # no temporary file left behind

    class Evil:
        def __reduce__(self):
            return (print, ("executed",))
    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="[Ww]eights only"):
        load_checkpoint(tmp_path / "evil.pt")


def _train_records(run_dir) -> list:
    return [(r["stage"], r["step"], r["loss"], r.get("logits"), r.get("reps"), r["lr"], r["grad_norm"])
            for r in read_metrics(run_dir) if r["kind"] == "train"]


def _eval_records(run_dir) -> list:
    return [(r["stage"], r["step"], r["metrics"]["main"], r["best"]) for r in read_metrics(run_dir)
            if r["kind"] == "eval"]


def test_resume_reproduces_uninterrupted_run(setup, tmp_path, monkeypatch):
    model, glue = setup
    opts = dict(glue_dir=glue, max_steps=12, save_every=4, eval_every=6, **FAST)
    train("sst2", model, "32/32,1/1", tmp_path / "a", **opts)

    real_write = train_mod.write_metrics

    def crash_at_step_7(run_dir, record):
        if record["kind"] == "train" and record["stage"] == 1 and record["step"] == 7:
            raise KeyboardInterrupt("simulated crash")
        real_write(run_dir, record)

    monkeypatch.setattr(train_mod, "write_metrics", crash_at_step_7)
    with pytest.raises(KeyboardInterrupt):
        train("sst2", model, "32/32,1/1", tmp_path / "b", **opts)
    monkeypatch.undo()
    ckpt = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert (ckpt["stage"], ckpt["step"]) == (1, 6)                      # the eval at step 6 saved it
    with pytest.raises(ValueError, match="already holds a run"):
        train("sst2", model, "32/32,1/1", tmp_path / "b", **opts)
    with pytest.raises(ValueError, match="differ from the run's"):
        train("sst2", model, "32/32,1/1", tmp_path / "b", resume=True, **{**opts, "lr": 5e-4})
    train("sst2", model, "32/32,1/1", tmp_path / "b", resume=True, **opts)

    a, b = _train_records(tmp_path / "a"), _train_records(tmp_path / "b")
    assert len(a) == 24 and a == b                                       # bit-identical losses, lr, grad norms
    assert _eval_records(tmp_path / "a") == _eval_records(tmp_path / "b")
    final = [BitBert.load(tmp_path / r / "stages" / "1-w1a1" / "model") for r in ("a", "b")]
    assert param_digest(final[0]) == param_digest(final[1])


# ----------------------------------------------------------------------------- CLI end to end, learning
def test_cli_train_eval_export_and_learning(setup, tmp_path, capsys):
    model, glue = setup
    run = str(tmp_path / "run")
    argv = ["train", "--task", "sst2", "--model", model, "--glue-dir", glue, "--schedule", "32/32,1/2,1/1",
            "--out", run, "--epochs", "3", "--batch-size", "16", "--lr", "1e-3", "--max-len", "16", "--quiet"]
    assert main(argv) == 0
    assert "stage 2-w1a1" in capsys.readouterr().out
    assert main(["eval", run, "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["precision"] == "W1A1" and ev["examples"] == 200 and ev["metrics"]["accuracy"] >= 0.9
    art = str(tmp_path / "w1a1.safetensors")
    assert main(["export", run, "--out", art]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["eval", run, "--integer", art, "--json"]) == 0
    ev_int = json.loads(capsys.readouterr().out)
    assert ev_int["integer"]["agreement"] >= 0.95 and ev_int["metrics"] == ev["metrics"]
    assert main(["eval", run, "--stage", "0"]) == 0
    assert "W32A32" in capsys.readouterr().out

    records = read_metrics(run)
    for stage, factor in ((0, 0.5), (1, 0.9), (2, 0.9)):   # the loss goes down: fine-tuning, both distillations
        losses = [r["loss"] for r in records if r["kind"] == "train" and r["stage"] == stage]
        first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
        print(f"stage {stage}: mean loss of the first 10 steps {first:.3f}, of the last 10 {last:.3f}")
        assert len(losses) == 75 and last < factor * first, stage
    for name in ("0-w32a32", "2-w1a1"):                      # the task is learnable, also by the W1A1 student
        assert json.loads((tmp_path / "run" / "stages" / name / "result.json").read_text())["best_dev"] >= 0.9


@pytest.mark.parametrize("argv, message", [
    (["eval", "NOPE"], "no such run folder"),
    (["export", "NOPE", "--out", "x.safetensors"], "no such run folder"),
    (["train", "--task", "nosuch", "--out", "OUT"], "unknown task"),
    (["train", "--task", "sst2", "--schedule", "32/32,1/3", "--out", "OUT"], "activation bits"),
    (["train", "--task", "sst2", "--out", "OUT"], "--glue-dir"),
    (["train", "--task", "rte", "--glue-dir", "GLUE", "--out", "OUT"], "rte train file not found"),
    (["train", "--task", "sst2", "--glue-dir", "GLUE", "--out", "OUT", "--method", "nope"], "unknown method"),
])
def test_cli_errors_exit_2(setup, tmp_path, capsys, argv, message):
    model, glue = setup
    argv = [{"NOPE": str(tmp_path / "none"), "OUT": str(tmp_path / "out"), "GLUE": glue}.get(a, a) for a in argv]
    if argv[0] == "train":
        argv += ["--model", model, "--quiet"]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "out")


def test_cli_export_refuses_teacher_and_run_reuses_it(setup, tmp_path, capsys):
    model, glue = setup
    run = str(tmp_path / "fp")
    assert main(["train", "--task", "sst2", "--model", model, "--glue-dir", glue, "--schedule", "32/32",
                 "--out", run, "--max-steps", "2", "--batch-size", "16", "--max-len", "16", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["export", run, "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "binary weights" in capsys.readouterr().err
    # a finished run is an already fine-tuned teacher: step 0 is reused, not trained again
    student = str(tmp_path / "student")
    assert main(["train", "--task", "sst2", "--model", run, "--glue-dir", glue, "--schedule", "32/32,1/1",
                 "--out", student, "--max-steps", "2", "--batch-size", "16", "--max-len", "16", "--quiet"]) == 0
    reused = json.loads((tmp_path / "student" / "stages" / "0-w32a32" / "result.json").read_text())
    original = json.loads((tmp_path / "fp" / "stages" / "0-w32a32" / "result.json").read_text())
    assert reused["source"] == f"run {run}" and reused["steps"] == 0 and reused["metrics"] == original["metrics"]
    assert param_digest(BitBert.load(tmp_path / "student" / "stages" / "0-w32a32" / "model")) == \
        param_digest(BitBert.load(tmp_path / "fp" / "stages" / "0-w32a32" / "model"))
    assert [r["stage"] for r in read_metrics(student) if r["kind"] == "train"] == [1, 1]


# ----------------------------------------------------------------------------- the integer stage and the recipe
def test_schedule_with_integer_stage():
    from bitaccel.model.train import has_integer_stage
    assert parse_schedule("32/32,1/2,1/1,int") == [(32, 32), (1, 2), (1, 1)] and has_integer_stage("32/32,1/1, int")
    plan = plan_stages("32/32,1/2,1/1,int")
    assert plan[-1] == Stage(3, 1, 1, 1, 2, integer=True) and plan[-1].name == "3-w1a1-int"
    assert plan_stages("32/32,1/2,1/1,int", progressive=True)[-1] == Stage(3, 1, 1, 0, 2, integer=True)
    assert plan_stages("32/32,1/2,1/1,int", "bit-onestep")[1:] == [Stage(1, 1, 1, 0, 0), Stage(2, 1, 1, 0, 1, True)]
    for text, method, message in (("32/32,int,1/1", "bit", "last entry"), ("32/32,int", "bit", "binary-weight"),
                                  ("32/32,32/4,int", "bit", "binary-weight"), ("32/32,1/1,int", "kd", "two-set")):
        with pytest.raises(ValueError, match=message):
            plan_stages(text, method)


def test_optimizer_groups_follow_the_official_code(setup):
    from bitaccel.model.train import ALPHA_LR, Options, make_optimizer
    model, _ = setup
    m = BitBert.from_pretrained(model, num_labels=2, weight_bits=1, act_bits=1)
    opts = Options(task="sst2", model=model, schedule="32/32,1/1").resolve()
    assert opts.alpha_lr == ALPHA_LR == 1e-4 and opts.lr == 1e-4
    opt = make_optimizer(m, 5e-4, opts.alpha_lr, 0.01)
    by_id = {id(p): g for g in opt.param_groups for p in g["params"]}
    q = m.site("layers.0.q.in")
    assert by_id[id(q.alpha)]["lr"] == 1e-4 and by_id[id(q.alpha)]["weight_decay"] == 0.0
    assert by_id[id(q.beta)]["lr"] == 5e-4 and by_id[id(q.beta)]["weight_decay"] == 0.0     # beta: with the biases
    w = m.layers[0].linears["q"].weight
    assert by_id[id(w)]["lr"] == 5e-4 and by_id[id(w)]["weight_decay"] == 0.01
    assert by_id[id(m.layers[0].ln1.weight)]["weight_decay"] == 0.0
