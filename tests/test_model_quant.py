"""BiT quantizers (model/quant.py): STE gradients vs the closed forms, forward codes vs golden, modules."""
import numpy as np
import pytest
import torch

from bitaccel.golden.fold import binarize_weight as golden_binarize_weight
from bitaccel.golden.fold import unpack_pm1
from bitaccel.golden.formats import code_range
from bitaccel.golden.reference import quantize_float
from bitaccel.model.quant import (ALPHA_MIN, ActQuantizer, BitEmbedding, BitLinear, binarize_weight, quant_codes, quantize,
                         weight_signs_scale)

#: (bits, signed) of every quantizer kind.
KINDS = [(1, True), (1, False), (2, True), (4, True), (8, True), (2, False), (4, False), (8, False)]
C = 6  # features (beta length)


def closed_forms(x, alpha, beta, bits, signed, g):
    """Forward value and gradients (x elementwise, alpha and beta summed) from the formulas, in NumPy."""
    z = x - (0.0 if beta is None else beta)
    u = z / alpha
    if bits == 1 and signed:                       # Eq. 12, 13; STE of alpha * Clip(z, -1, 1) for x, beta
        code = np.where(z >= 0, 1.0, -1.0)
        gx = g * (np.abs(u) <= 1)
        ga = g * code
        gb = -gx
    elif bits == 1:                                # Eq. 9, 10, 11 written out literally
        code = np.clip(np.floor(u + 0.5), 0, 1)
        gx = g * ((u >= 0) & (u <= 1))
        ga = g * np.select([u < 0, u < 0.5, u < 1], [np.zeros_like(u), -u, 1 - u], np.ones_like(u))
        gb = -g * ((u >= 0) & (u < 1))
    else:                                          # LSQ
        qn, qp = code_range(bits, signed)
        code = np.clip(np.floor(u + 0.5), qn, qp)
        inside = (u >= qn) & (u <= qp)
        gx = g * inside
        ga = g * np.where(inside, code - u, np.where(u < qn, qn, qp))
        gb = -gx
    return alpha * code, gx, ga.sum(), gb.reshape(-1, C).sum(axis=0)


def sample_inputs(rng, bits, signed):
    """x covering every branch (random values plus exact boundaries), alpha, beta; float64."""
    qn, qp = code_range(bits, signed) if not (bits == 1 and signed) else (-1, 1)
    alpha, beta = 0.5, rng.integers(-8, 9, C) / 8.0                          # dyadic: boundaries are exact
    u = rng.uniform(qn - 2.5, qp + 2.5, (4, 5, C))
    edges = np.array([qn - 0.5, qn, qn + 0.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, qp - 0.5, qp, qp + 0.5])
    u[0, : len(edges) // C + 1].flat[: len(edges)] = edges
    return beta + alpha * u, alpha, beta


@pytest.mark.parametrize("with_beta", [True, False])
@pytest.mark.parametrize("bits,signed", KINDS)
def test_gradients_match_closed_forms(bits, signed, with_beta, rng):
    x_np, alpha_np, beta_np = sample_inputs(rng, bits, signed)
    if not with_beta:
        x_np = x_np - beta_np
        beta_np = None
    g_np = rng.normal(size=x_np.shape)
    x = torch.tensor(x_np, requires_grad=True)
    alpha = torch.tensor(alpha_np, dtype=torch.float64, requires_grad=True)
    beta = None if beta_np is None else torch.tensor(beta_np, requires_grad=True)
    y = quantize(x, alpha, beta, bits, signed)
    leaves = [x, alpha] + ([beta] if beta is not None else [])
    grads = torch.autograd.grad(y, leaves, torch.tensor(g_np))
    y_ref, gx, ga, gb = closed_forms(x_np, alpha_np, beta_np, bits, signed, g_np)
    assert np.array_equal(y.detach().numpy(), y_ref)
    assert np.array_equal(grads[0].numpy(), gx)                               # element by element
    assert grads[1].shape == () and np.isclose(grads[1].item(), ga, rtol=1e-12, atol=1e-12)
    if beta is not None:
        assert grads[2].shape == (C,) and np.allclose(grads[2].numpy(), gb, rtol=1e-12, atol=1e-12)


def test_unsigned_binary_boundaries_follow_eq10_eq11():
    """z = 0, 1/2, 1 exactly: Eq. 10 gives dalpha 0, 1/2, 1; Eq. 11 dbeta -1, -1, 0; dx (closed [0, 1]) 1, 1, 1."""
    alpha = torch.tensor(2.0, requires_grad=True)
    beta = torch.tensor([0.0], requires_grad=True)
    x = torch.tensor([[0.0], [1.0], [2.0]], requires_grad=True)
    for row, (da, db, dx) in enumerate([(0.0, -1.0, 1.0), (0.5, -1.0, 1.0), (1.0, 0.0, 1.0)]):
        y = quantize(x[row:row + 1], alpha, beta, 1, False)
        gx, ga, gb = torch.autograd.grad(y.sum(), (x, alpha, beta))
        assert (gx[row, 0].item(), ga.item(), gb.item()) == (dx, da, db)


@pytest.mark.parametrize("bits,signed", KINDS)
def test_forward_codes_equal_golden_including_ties(bits, signed, rng):
    lo, hi = code_range(bits, signed)
    alpha, beta = 0.25, rng.integers(-16, 17, C) / 16.0
    ties = np.arange(lo - 2, hi + 2) + 0.5                                    # z / alpha = k + 1/2 exactly
    u = np.concatenate([ties, rng.integers((lo - 3) * 64, (hi + 3) * 64, 120) / 64, [0.0, -0.0]])
    x = beta + alpha * np.resize(u, (-(-len(u) // C), C))                     # (rows, C), every value used
    for dtype in (torch.float64, torch.float32):                              # dyadic values: exact in both
        ours = quant_codes(torch.tensor(x, dtype=dtype), torch.tensor(alpha, dtype=dtype),
                           torch.tensor(beta, dtype=dtype), bits, signed).double().numpy()
        assert np.array_equal(ours, quantize_float(x, alpha, beta, bits, signed)), dtype
    y = quantize(torch.tensor(x), torch.tensor(alpha), torch.tensor(beta), bits, signed).numpy()
    assert np.array_equal(y, alpha * quantize_float(x, alpha, beta, bits, signed))
    if bits == 1 and signed:   # sign(0) = +1: x == beta exactly
        assert np.all(quant_codes(torch.tensor(beta), torch.tensor(alpha), torch.tensor(beta), 1, True).numpy() == 1)
    else:                      # ties round half up: k + 1/2 -> k + 1 (then clipped)
        tie_codes = quant_codes(torch.tensor(alpha * ties), torch.tensor(alpha), None, bits, signed).numpy()
        assert np.array_equal(tie_codes, np.clip(np.floor(ties) + 1, lo, hi))


def test_torch_round_would_differ_at_ties():
    """Documented pitfall: torch.round is half-to-even; BiT/golden round half up."""
    z = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5])
    assert torch.round(z).tolist() == [0.0, 2.0, 2.0, -0.0, -2.0]
    assert quant_codes(z, torch.tensor(1.0), None, 8, True).tolist() == [1.0, 2.0, 3.0, 0.0, -1.0]


def test_weight_binarization_matches_golden_and_passes_gradient(rng):
    w_np = 5.0 * rng.normal(size=(7, 70))                # many |w| > 1: the gradient must not be clipped
    w = torch.tensor(w_np, requires_grad=True)
    wb = binarize_weight(w)
    bits, scale = golden_binarize_weight(w_np)
    assert np.array_equal(wb.detach().numpy(), unpack_pm1(bits, 70).astype(np.float64) * scale)
    g = torch.tensor(rng.normal(size=w_np.shape))
    (gw,) = torch.autograd.grad(wb, w, g)
    assert torch.equal(gw, g)                           # plain pass-through, no clipping, nothing into the scale


def test_weight_binarization_sign_of_zero_and_per_row():
    w = torch.tensor([[1.0, 2.0, 3.0], [-4.0, 0.0, 4.0]], dtype=torch.float64)
    signs, scale = weight_signs_scale(w, per_row=True)   # per-row scale, mean of the whole matrix (1, hit exactly)
    assert signs.tolist() == [[1.0, 1.0, 1.0], [-1.0, -1.0, 1.0]]
    assert scale[:, 0].tolist() == [2.0, 8 / 3]
    emb = BitEmbedding(2, 3, weight_bits=1).double()
    with torch.no_grad():
        emb.weight.copy_(w)
    assert emb(torch.tensor([[1, 0]]))[0].tolist() == [[-8 / 3, -8 / 3, 8 / 3], [2.0, 2.0, 2.0]]
    whole = binarize_weight(torch.tensor([[1.0, 2.0], [3.0, 2.0]]))   # mean 2 is hit exactly -> +1
    assert whole.tolist() == [[-2.0, 2.0], [2.0, 2.0]]


@pytest.mark.parametrize("bits,signed", KINDS)
def test_alpha_initialized_lazily_from_first_training_batch(bits, signed, rng):
    q = ActQuantizer(bits, signed, channels=C)
    with torch.no_grad():
        q.beta.copy_(torch.tensor(rng.normal(size=C) * 0.1))
    x1 = torch.tensor(rng.normal(size=(3, 4, C)) + 0.3)
    q.eval()
    with pytest.raises(RuntimeError, match="not initialized"):
        q(x1)
    q.train()
    q(x1)
    z = (x1 - q.beta.detach()).double().abs().mean().item()
    expected = z if (bits == 1 and signed) else 2 * z / np.sqrt(code_range(bits, signed)[1])
    assert bool(q.initialized) and np.isclose(q.alpha.item(), expected, rtol=1e-6)
    q(10 * x1)                                           # later batches do not re-initialize
    assert np.isclose(q.alpha.item(), expected, rtol=1e-6)
    q.eval()
    assert torch.equal(q(x1), quantize(x1, q.alpha, q.beta, bits, signed))
    q.set_bits(bits)
    assert q._ready
    q.set_bits(32 if bits != 32 else 1)
    assert not q._ready


def test_alpha_clamped_positive_and_identity_at_32_bits():
    q = ActQuantizer(1, True).train()
    q(torch.ones(4))
    with torch.no_grad():
        q.alpha.fill_(-3.0)                              # e.g. after a large optimizer step
    assert q(torch.tensor([0.5, -0.5])).tolist() == pytest.approx([ALPHA_MIN, -ALPHA_MIN])
    ident = ActQuantizer(32, True, channels=3)
    x = torch.randn(2, 3, requires_grad=True)
    y = ident(x)
    assert y is x and not ident._ready


def test_learn_flags_and_state_roundtrip():
    q = ActQuantizer(2, False, channels=C, learn_alpha=False, learn_beta=False)
    assert not q.alpha.requires_grad and not q.beta.requires_grad
    q.train()(torch.rand(5, C))
    r = ActQuantizer(2, False, channels=C)
    r.load_state_dict(q.state_dict())
    assert r._ready and r.alpha.item() == q.alpha.item()
    assert ActQuantizer(1, True).beta is None


def test_bit_linear_and_embedding(rng):
    lin = BitLinear(40, 3, weight_bits=1).double()
    x = torch.tensor(rng.normal(size=(2, 40)))
    bits, scale = golden_binarize_weight(lin.weight.detach().numpy())
    ref = x.numpy() @ (unpack_pm1(bits, 40) * scale).T + lin.bias.detach().numpy()
    assert np.allclose(lin(x).detach().numpy(), ref, rtol=1e-12, atol=1e-12)
    full = BitLinear(4, 2, weight_bits=32)
    assert full.effective_weight() is full.weight
    emb = BitEmbedding(10, 70, weight_bits=1).double()
    ids = torch.tensor([[3, 3, 7]])
    out = emb(ids)
    table = emb.weight.detach().numpy()
    for j, t in enumerate([3, 3, 7]):                   # sign(row - mean of the table) * mean|row|
        want = np.where(table[t] >= table.mean(), 1.0, -1.0) * np.abs(table[t]).mean()
        assert np.allclose(out[0, j].detach().numpy(), want, rtol=1e-15, atol=0)
        assert np.array_equal(np.sign(out[0, j].detach().numpy()), np.where(table[t] >= table.mean(), 1.0, -1.0))
    out.sum().backward()
    assert emb.weight.grad[3].eq(2).all() and emb.weight.grad[7].eq(1).all() and emb.weight.grad[0].eq(0).all()
    with pytest.raises(ValueError):
        BitLinear(4, 2, weight_bits=2)
    with pytest.raises(ValueError):
        ActQuantizer(3, True)


@pytest.mark.parametrize("bits,signed", [(1, True), (1, False), (2, True), (4, False), (8, True)])
def test_binary_linear_int8_forward_equals_float_path(bits, signed, rng):
    """BinaryLinear (exact int8 forward) = F.linear(quantize(x), binarize_weight(W), b): values and every gradient."""
    from bitaccel.model.quant import BinaryLinear, int8_codes
    assert int8_codes(bits, signed) and not int8_codes(8, False)
    x = torch.tensor(rng.normal(size=(3, 5, 40)), dtype=torch.float32, requires_grad=True)
    alpha = torch.tensor(0.37, requires_grad=True)
    beta = torch.tensor(0.1 * rng.normal(size=40), dtype=torch.float32)
    w = torch.tensor(rng.normal(size=(7, 40)), dtype=torch.float32, requires_grad=True)
    b = torch.tensor(rng.normal(size=7), dtype=torch.float32, requires_grad=True)
    xq = quantize(x, alpha, beta, bits, signed)
    ref = torch.nn.functional.linear(xq, binarize_weight(w), b)
    out = BinaryLinear.apply(xq, alpha.detach(), w, b)
    assert torch.allclose(out, ref, rtol=1e-6, atol=1e-5)
    g = torch.tensor(rng.normal(size=ref.shape), dtype=torch.float32)
    for a, c in zip(torch.autograd.grad(ref, (x, alpha, w, b), g, retain_graph=True),
                    torch.autograd.grad(out, (x, alpha, w, b), g)):
        assert torch.allclose(a, c, rtol=1e-5, atol=1e-5)
