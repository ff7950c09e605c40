"""BiT BERT (model/bit_bert.py) and export (model/export.py) on tiny random checkpoints (no downloads).

The key check: in eval mode the PyTorch model computes golden.reference.FloatModel on its
exported tensors, and golden.model.IntegerModel (what the hardware computes) predicts the
same class on nearly every sequence.
"""
import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification

from bitaccel.golden.artifact import load_artifact
from bitaccel.golden.model import IntegerModel
from bitaccel.golden.reference import FloatModel
from bitaccel.model.bit_bert import BitBertForSequenceClassification as BitBert
from bitaccel.model.export import export
from bitaccel.model.quant import weight_signs_scale

VOCAB, SEQ = 100, 16


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny random Hugging Face BertForSequenceClassification (3 labels) saved with save_pretrained."""
    cfg = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, type_vocab_size=2, num_labels=3)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny_bert")
    BertForSequenceClassification(cfg).save_pretrained(path)
    return path


def batch(seed, b=8, s=SEQ):
    """Random ids (B, S), a mask with padded rows, token types."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, (b, s), generator=g)
    mask = torch.ones(b, s, dtype=torch.long)
    lengths = torch.randint(2, s + 1, (b,), generator=g)
    lengths[0] = s
    for r in range(b):
        mask[r, lengths[r]:] = 0
    types = (torch.arange(s)[None] >= (lengths[:, None] // 2)).long() * mask
    return ids, mask, types


def student(path, act_bits, seed=1, num_labels=3, **flags):
    """A W1 student with generic (random, non-zero) biases, betas and LayerNorms, alphas from a padded batch.

    Generic values avoid exact ties (an untrained checkpoint has zero biases and betas, so a
    zero accumulator would sit exactly on a threshold; see test_eval_ties_follow_exact_integer_semantics).
    """
    m = BitBert.from_pretrained(path, num_labels=num_labels, weight_bits=1, act_bits=act_bits, **flags)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith(".bias") or name.endswith(".beta"):
                p.add_(0.1 * torch.randn(p.shape, generator=g))
            elif ".ln" in name and name.endswith("weight"):
                p.add_(0.2 * torch.randn(p.shape, generator=g))
        m.classifier.weight.copy_(torch.randn(m.classifier.weight.shape, generator=g))   # an untrained head
        m.classifier.bias.zero_()                       # that does not predict one class for everything
    m.calibrate(*batch(seed + 100))
    with torch.no_grad():                               # break the 2/S symmetry of the LSQ init of probs
        for _, q in m.named_sites():
            q.alpha.mul_(1.0 + 0.02 * torch.rand((), generator=g))
    return m.eval()


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory):
    """{act_bits: (model, artifact loaded back from disk)} for W1A1, W1A2, W1A4."""
    out = {}
    for bits in (1, 2, 4):
        m = student(checkpoint, bits, seed=bits + 1)    # seeds whose random heads predict more than one class
        path = tmp_path_factory.mktemp("art") / f"w1a{bits}.safetensors"
        export(m, path, tokenizer_ref={"kind": "test"}, producer="test_model_bit_bert")
        out[bits] = (m, load_artifact(path))
    return out


def logits(model, ids, mask, types=None, dtype=torch.float32):
    model = model.to(dtype).eval()
    with torch.no_grad():
        out = model(ids, mask, types).logits.double().numpy()
    model.float()
    return out


def test_teacher_equals_hugging_face(checkpoint):
    hf = BertForSequenceClassification.from_pretrained(checkpoint).eval()
    ours = BitBert.from_pretrained(checkpoint, num_labels=3).eval()
    assert ours.ffn_act == "gelu" and all(q.bits == 32 for _, q in ours.named_sites())
    ids, mask, types = batch(5)
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
        out = ours(ids, mask, types)
    assert torch.allclose(out.logits, ref.logits, atol=1e-5, rtol=1e-5)
    assert len(out.hidden_states) == len(ref.hidden_states) == 3
    for a, b in zip(out.hidden_states, ref.hidden_states):
        valid = mask.bool()
        assert torch.allclose(a[valid], b[valid], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_eval_logits_equal_float_reference(exported, bits):
    model, art = exported[bits]
    ids, mask, types = batch(10 + bits, b=32)
    ref = FloatModel(art.config, art.quant, art.tensors).forward(ids.numpy(), mask.numpy(), types.numpy())["logits"]
    l64 = logits(model, ids, mask, types, torch.float64)
    l32 = logits(model, ids, mask, types, torch.float32)
    d64, d32 = np.abs(l64 - ref).max(), np.abs(l32 - ref).max()
    print(f"W1A{bits}: max |logit - FloatModel| float64 {d64:.2e}, float32 {d32:.2e} (|logits| <= {np.abs(ref).max():.2f})")
    assert d64 <= 1e-9 * max(1.0, np.abs(ref).max())
    assert d32 <= 1e-4 * max(1.0, np.abs(ref).max())


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_integer_model_agrees_with_pytorch(exported, bits):
    model, art = exported[bits]
    ids, mask, types = batch(20 + bits, b=300)
    ours = logits(model, ids, mask, types)
    integer = IntegerModel(art).forward(ids.numpy(), mask.numpy(), types.numpy())["logits"]
    agree = (ours.argmax(1) == integer.argmax(1)).mean()
    diff = np.abs(ours - integer)
    print(f"W1A{bits}: IntegerModel agrees on {agree:.1%} of 300 sequences; |dlogit| max {diff.max():.3f}, "
          f"median {np.median(diff):.4f}, logit std {ours.std():.3f}; predicted classes {np.bincount(ours.argmax(1))}")
    assert len(np.unique(ours.argmax(1))) > 1           # not a constant predictor
    assert agree >= 0.95


def test_export_writes_a_valid_artifact(exported):
    model, art = exported[2]
    assert art.tokenizer == {"kind": "test"} and art.producer == "test_model_bit_bert"
    assert set(art.quant.values()) == {2}
    assert art.config.num_labels == 3 and art.config.hidden == 32 and art.config.layers == 2
    assert "layers.0.probs.beta" not in art.tensors and "layers.0.q.out.beta" not in art.tensors
    assert np.isclose(float(art["layers.1.ffn2.in.alpha"]), model.site("layers.1.ffn2.in").alpha.item())
    assert np.array_equal(art["layers.0.ffn2.in.beta"], model.site("layers.0.ffn2.in").beta.detach().numpy())


def test_padding_is_masked(exported):
    model, _ = exported[1]
    model = model.double()
    ids, _, _ = batch(30, b=1)
    mask = torch.ones_like(ids)
    mask[0, 9:] = 0
    junk = ids.clone()
    junk[0, 9:] = (ids[0, 9:] + 7) % VOCAB
    with torch.no_grad():
        short = model(ids[:, :9])
        padded = model(ids, mask)
        padded_junk = model(junk, mask)
    model.float()
    assert torch.allclose(padded.logits, short.logits, rtol=0, atol=1e-12)
    assert torch.equal(padded.logits, padded_junk.logits)
    for a, b in zip(padded.hidden_states, short.hidden_states):
        assert torch.allclose(a[:, :9], b, rtol=0, atol=1e-12)


def test_regression_head(checkpoint, tmp_path):
    model = student(checkpoint, 1, seed=7, num_labels=1)    # the 3-label classifier is re-initialized
    assert model.classifier.out_features == 1
    ids, mask, types = batch(40)
    model.train()
    out = model(ids, mask, types, labels=torch.linspace(0, 5, ids.shape[0]))
    assert out.logits.shape == (ids.shape[0], 1) and out.loss.ndim == 0
    out.loss.backward()
    art = export(model.eval(), tmp_path / "reg.safetensors")
    ref = FloatModel(art.config, art.quant, art.tensors).forward(ids.numpy(), mask.numpy(), types.numpy())["logits"]
    assert ref.shape == (ids.shape[0], 1)
    assert np.abs(logits(model, ids, mask, types, torch.float64) - ref).max() < 1e-9
    integer = IntegerModel(load_artifact(tmp_path / "reg.safetensors")).forward(ids.numpy(), mask.numpy(), types.numpy())
    print(f"regression: max |IntegerModel - PyTorch| = {np.abs(integer['logits'] - ref).max():.4f}")


def test_distillation_outputs(checkpoint):
    model = BitBert.from_pretrained(checkpoint, num_labels=3, weight_bits=1, act_bits=2)
    ids, mask, types = batch(50, b=3)
    out = model.train()(ids, mask, types, output_attentions=True)
    assert len(out.hidden_states) == 3 and all(h.shape == (3, SEQ, 32) for h in out.hidden_states)
    assert len(out.attentions) == 2 and all(a.shape == (3, 2, SEQ, SEQ) for a in out.attentions)
    assert model(ids, mask).attentions is None


def test_training_step_reaches_every_parameter(checkpoint):
    model = BitBert.from_pretrained(checkpoint, num_labels=3, weight_bits=1, act_bits=1).train()
    assert model.uninitialized_sites()
    ids, mask, types = batch(60)
    out = model(ids, mask, types, labels=torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]))
    assert not model.uninitialized_sites()              # lazy alpha init on the first training forward
    out.loss.backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    for name, q in model.named_sites():
        assert q.alpha.grad is not None and q.alpha.item() > 0, name
    # the word embedding gradient passes straight through the per-row binarization
    assert model.embeddings.word.weight.grad[ids[0, 0]].abs().sum() > 0


def test_baseline_flags(checkpoint):
    ids, mask, types = batch(70)
    fixed = BitBert.from_pretrained(checkpoint, num_labels=3, weight_bits=1, act_bits=1, learn_alpha=False,
                                    learn_beta=False).train()
    fixed(ids, mask, types).logits.sum().backward()
    assert all(not q.alpha.requires_grad and (q.beta is None or not q.beta.requires_grad) for _, q in fixed.named_sites())
    one_set = BitBert.from_pretrained(checkpoint, num_labels=3, weight_bits=1, act_bits=1, two_set=False).train()
    assert all(q.signed for _, q in one_set.named_sites())
    one_set(ids, mask, types).logits.sum().backward()
    bi = BitBert.from_pretrained(checkpoint, num_labels=3, weight_bits=1, act_bits=1, bi_attention=True).train()
    out = bi(ids, mask, types)
    out.logits.sum().backward()
    assert bi.layers[0].linears["q"].weight.grad is not None and bi.uninitialized_sites() == []


def test_export_refuses_unsupported_models(checkpoint, tmp_path):
    ids, mask, types = batch(80)
    cases = {
        "weight_bits=1": BitBert.from_pretrained(checkpoint, num_labels=3),
        "activation bits": BitBert.from_pretrained(checkpoint, num_labels=3, weight_bits=1, act_bits=32),
        "two_set=False": BitBert.from_pretrained(checkpoint, num_labels=3, weight_bits=1, act_bits=1, two_set=False),
        "bi_attention": BitBert.from_pretrained(checkpoint, num_labels=3, weight_bits=1, act_bits=1, bi_attention=True),
        "never initialized": BitBert.from_pretrained(checkpoint, num_labels=3, weight_bits=1, act_bits=1),
    }
    for reason, model in cases.items():
        if reason != "never initialized":
            model.calibrate(ids, mask, types)
        with pytest.raises(ValueError, match=reason):
            export(model, tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


def test_from_teacher_save_and_load(checkpoint, tmp_path):
    ids, mask, types = batch(90)
    teacher = BitBert.from_pretrained(checkpoint, num_labels=3)
    w1a2 = BitBert.from_teacher(teacher, 1, 2)
    assert w1a2.ffn_act == "relu" and w1a2.uninitialized_sites()
    w1a2.train()(ids, mask, types).logits.sum().backward()
    with torch.no_grad():
        w1a2.site("layers.0.q.in").beta.fill_(0.25)
    with torch.no_grad():
        w1a2.site("layers.1.probs").alpha.fill_(0.3)
    w1a1 = BitBert.from_teacher(w1a2, 1, 1)
    assert not w1a1.uninitialized_sites()               # multi-distillation carries every alpha (official BiT)
    assert w1a1.site("layers.1.probs").alpha.item() == pytest.approx(0.3) and w1a1.site("layers.1.probs").bits == 1
    assert all(q.alpha.item() == w1a2.site(n).alpha.item() for n, q in w1a1.named_sites())
    assert torch.equal(w1a1.site("layers.0.q.in").beta, w1a2.site("layers.0.q.in").beta)
    fixed = BitBert.from_teacher(w1a2, 1, 1, learn_alpha=False)
    assert len(fixed.uninitialized_sites()) == len(list(fixed.named_sites()))   # fixed-scale baselines: re-initialized
    assert torch.equal(w1a1.layers[1].linears["ffn2"].weight, w1a2.layers[1].linears["ffn2"].weight)
    w1a1.calibrate(ids, mask, types)
    w1a1.save(tmp_path / "w1a1")
    again = BitBert.load(tmp_path / "w1a1")
    assert again.flags() == w1a1.flags() and not again.uninitialized_sites()
    assert np.array_equal(logits(again, ids, mask, types), logits(w1a1, ids, mask, types))
    with pytest.raises(ValueError, match="load"):
        BitBert.from_pretrained(tmp_path / "w1a1")


def test_eval_ties_follow_exact_integer_semantics(checkpoint):
    """Untrained checkpoint: zero biases, so q.out sees v = a * acc exactly 0 whenever the +-1 dot product is 0.

    In eval mode the model sums codes exactly (as golden's integer model does), so every such tie
    gives code +1, like the integer threshold acc >= 0.
    """
    model = BitBert.from_pretrained(checkpoint, num_labels=3, weight_bits=1, act_bits=1)
    ids, mask, types = batch(100, b=16)
    model.calibrate(ids, mask, types)
    seen = {}
    layer = model.layers[0]
    hooks = [layer.sites[k].register_forward_hook(lambda m, i, o, k=k: seen.__setitem__(k, o / m.effective_alpha()))
             for k in ("q_in", "q_out")]
    with torch.no_grad():
        model.eval()(ids, mask, types)
    for h in hooks:
        h.remove()
    signs = weight_signs_scale(layer.linears["q"].weight)[0].long()
    acc = seen["q_in"].round().long() @ signs.T                         # exact integer accumulators
    assert (acc == 0).sum() > 100                                        # plenty of exact ties
    expected = torch.where(acc >= 0, 1.0, -1.0)                          # bias is 0: code = +1 iff acc >= 0
    assert torch.equal(seen["q_out"], expected)
