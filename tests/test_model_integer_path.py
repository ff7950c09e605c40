"""The integer-exact PyTorch path (model/integer_path.py) against golden.model.IntegerModel.

Tiny random BERT students (W1A1, W1A2, W1A4; generic and tie-heavy parameters; padded
batches; a format that saturates the residual stream) and a briefly trained one: every
intermediate integer tensor and the logits must be identical to golden's, and the
straight-through gradients must reach the float parameters.
"""
import numpy as np
import pytest
import torch
from torch.nn import functional as F
from transformers import BertConfig, BertForSequenceClassification

from bitaccel.golden.artifact import load_artifact
from bitaccel.golden.formats import NumericFormat
from bitaccel.golden.model import IntegerModel
from bitaccel.model.bit_bert import BitBertForSequenceClassification as BitBert
from bitaccel.model.export import export, fold_constants
from bitaccel.model.integer_path import IntegerPath

VOCAB, SEQ = 100, 12


#: tiny tensors: one torch thread (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    cfg = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=32, type_vocab_size=2, num_labels=3)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny_bert_int")
    BertForSequenceClassification(cfg).save_pretrained(path)
    return path


def batch(seed, b=6, s=SEQ):
    """Random ids, a mask with padded rows (row 0 full, one row of a single token), token types."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (b, s), generator=g)
    lengths = torch.randint(2, s + 1, (b,), generator=g)
    lengths[0], lengths[-1] = s, 1
    mask = (torch.arange(s)[None] < lengths[:, None]).long()
    types = (torch.arange(s)[None] >= (lengths[:, None] // 2)).long() * mask
    return ids, mask, types


def student(path, act_bits, seed, generic=True):
    """A W1 student; generic=True perturbs biases, betas, LayerNorms (else zero biases: exact ties)."""
    m = BitBert.from_pretrained(path, num_labels=3, weight_bits=1, act_bits=act_bits)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if generic and (name.endswith(".bias") or name.endswith(".beta")):
                p.add_(0.1 * torch.randn(p.shape, generator=g))
            elif generic and ".ln" in name and name.endswith("weight"):
                p.add_(0.2 * torch.randn(p.shape, generator=g))
        m.classifier.weight.copy_(torch.randn(m.classifier.weight.shape, generator=g))
    m.calibrate(*batch(seed + 100))
    return m.eval()


def compare_with_golden(model, art, seeds):
    """Every golden intermediate and the logits, on padded batches: identical (integer equality)."""
    path = IntegerPath.from_artifact(art)
    golden = IntegerModel(art)
    for seed in seeds:
        ids, mask, types = batch(seed)
        keep = {}
        with torch.no_grad():
            logits, _ = path.forward(model, ids, mask, types, keep=keep)
        ref = golden.forward(ids.numpy(), mask.numpy(), types.numpy(), keep_intermediates=True)
        assert set(keep) == set(ref["intermediates"])
        for name, want in ref["intermediates"].items():
            got = keep[name].numpy()
            assert got.shape == want.shape, name
            assert np.array_equal(got, want), f"{name}: {np.count_nonzero(got != want)} of {got.size} differ"
        assert logits.dtype == torch.float64 and np.array_equal(logits.numpy(), ref["logits"])
    return len(keep)


@pytest.mark.parametrize("bits", [1, 2, 4])
@pytest.mark.parametrize("generic", [True, False])
def test_identical_to_golden_at_every_site(checkpoint, tmp_path, bits, generic):
    m = student(checkpoint, bits, seed=bits + 10 * generic, generic=generic)
    art_path = tmp_path / "a.safetensors"
    export(m, art_path, tokenizer_ref={"kind": "test"})
    art = load_artifact(art_path)
    n = compare_with_golden(m, art, seeds=(1, 2))
    assert n >= 2 * 26 + 4                                    # 26 per layer (+ recip, p when multi-bit)
    # the model's own integer mode: constants folded from its parameters = the artifact's, same logits
    folded = fold_constants(m, art.numerics)
    for name, value in folded.items():
        assert np.array_equal(np.asarray(value), art[name]), name
    m.integer_format = art.numerics
    ids, mask, types = batch(3)
    with torch.no_grad():
        out = m(ids, mask, types)
    assert np.array_equal(out.logits.numpy(), IntegerModel(art).forward(ids.numpy(), mask.numpy(), types.numpy())["logits"])


def test_saturating_residual_format_identical(checkpoint, tmp_path):
    """A residual_frac so large that the residual stream saturates (clamps at +-2^15) somewhere."""
    m = student(checkpoint, 1, seed=7)
    art_path = tmp_path / "sat.safetensors"
    export(m, art_path, numerics=NumericFormat(residual_frac=14, gamma_frac=11), tokenizer_ref={"kind": "test"})
    art = load_artifact(art_path)
    compare_with_golden(m, art, seeds=(4,))
    inter = IntegerModel(art).forward(batch(4)[0].numpy(), keep_intermediates=True)["intermediates"]
    assert any(v.max() == (1 << 15) - 1 or v.min() == -(1 << 15)
               for k, v in inter.items() if k.endswith(("res1", "res2", "ln1", "ln2", "embeddings.ln")))


@pytest.mark.parametrize("bits", [1, 2])
def test_gradients_reach_float_parameters(checkpoint, bits):
    m = student(checkpoint, bits, seed=20 + bits)
    m.integer_format = NumericFormat(residual_frac=9, gamma_frac=11)
    m.train()
    ids, mask, types = batch(5)
    out = m(ids, mask, types, labels=torch.tensor([0, 1, 2, 0, 1, 2]))
    loss = out.loss + sum((h ** 2).mean() for h in out.hidden_states)
    loss.backward()
    named = dict(m.named_parameters())
    for name in ("embeddings.word.weight", "embeddings.position.weight", "embeddings.ln.weight",
                 "layers.0.linears.q.weight", "layers.0.linears.ffn2.weight", "layers.1.linears.o.weight",
                 "layers.1.ln2.weight", "layers.0.sites.q_in.alpha", "layers.0.sites.q_in.beta",
                 "layers.1.sites.ffn2_in.beta", "layers.1.sites.probs.alpha", "pooler.weight", "sites.pooler_in.alpha",
                 "classifier.weight"):
        g = named[name].grad
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, name


def test_briefly_trained_model_identical_and_refolded(checkpoint, tmp_path):
    """Train a few steps in float mode, then in integer mode; after each the export matches bit for bit."""
    m = student(checkpoint, 1, seed=30).train()
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3, fused=True)     # fused: no version-counter bumps
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    for step in range(4):
        ids, mask, types = batch(40 + step)
        loss = m(ids, mask, types, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    art_path = tmp_path / "t.safetensors"
    art = export(m, art_path, tokenizer_ref={"kind": "test"})
    compare_with_golden(m, load_artifact(art_path), seeds=(8, 9))

    m.integer_format = art.numerics
    with torch.no_grad():
        before = m.eval()(*batch(50)).logits                 # fills the eval-mode caches
    m.train()
    for step in range(3):
        ids, mask, types = batch(60 + step)
        out = m(ids, mask, types, labels=labels)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    m.eval()
    with torch.no_grad():
        after = m(*batch(50)).logits
    assert not torch.equal(before, after)                      # the constants were folded again
    art2 = export(m, tmp_path / "t2.safetensors", tokenizer_ref={"kind": "test"})
    assert art2.numerics == art.numerics                       # the frozen format is the export's
    ids, mask, types = batch(70)
    with torch.no_grad():
        logits = m(ids, mask, types).logits
    assert np.array_equal(logits.numpy(), IntegerModel(art2).forward(ids.numpy(), mask.numpy(),
                                                                      types.numpy())["logits"])
    compare_with_golden(m, art2, seeds=(71,))


def test_integer_mode_saved_and_loaded(checkpoint, tmp_path):
    m = student(checkpoint, 2, seed=80)
    m.integer_format = NumericFormat(residual_frac=10, gamma_frac=11)
    m.save(tmp_path / "m")
    back = BitBert.load(tmp_path / "m").eval()
    assert back.integer_format == m.integer_format
    ids, mask, types = batch(81)
    with torch.no_grad():
        assert torch.equal(back(ids, mask, types).logits, m(ids, mask, types).logits)
    with pytest.raises(ValueError, match="unmasked"):
        m(ids, torch.zeros_like(mask))
    assert F.softmax(back(ids, mask).logits, -1).isfinite().all()


# ----------------------------------------------------------------------------- the integer fine-tune stage
def test_int_stage_export_agrees_100_percent(tmp_path):
    """32/32 -> 1/2 -> 1/1 -> int on the synthetic task: the exported artifact is the PyTorch model."""
    from test_model_train import write_setup

    from bitaccel.model.train import evaluate_run, export_run, load_stage_model, train

    model, glue = write_setup(tmp_path, n_train=400, n_dev=200)
    run = tmp_path / "run"
    r = train("sst2", model, "32/32,1/2,1/1,int", run, glue_dir=glue, epochs=3, int_epochs=1, batch_size=16,
              lr=1e-3, max_len=16, quiet=True)
    names = [s["name"] for s in r["stages"]]
    assert names == ["0-w32a32", "1-w1a2", "2-w1a1", "3-w1a1-int"]
    last = r["stages"][-1]
    assert last["precision"] == "W1A1-int" and last["steps"] == 25 and last["teacher"] == 1 and last["init"] == 2
    fmt = NumericFormat.from_dict(last["integer_format"])
    assert load_stage_model(run).integer_format == fmt
    art_path = tmp_path / "int.safetensors"
    art = export_run(run, art_path)
    assert art.numerics == fmt                          # the frozen format, not a new choice
    e = evaluate_run(run, "dev", integer=art_path)
    i = e["integer"]
    print(f"int stage: dev accuracy {e['metrics']['accuracy']:.4f}, integer {i['metrics']['accuracy']:.4f}, "
          f"agreement {i['agreement']:.4f}, max |logit diff| {i['max_logit_diff']}")
    assert e["examples"] == 200 and e["precision"] == "W1A1-int"
    assert i["agreement"] == 1.0 and i["max_logit_diff"] == 0.0
    assert i["metrics"] == e["metrics"]
    assert e["metrics"]["accuracy"] >= 0.9               # a real classifier, so agreement means something
