"""A W1A1 model trained here (32/32 -> 1/2 -> 1/1 on the learnable synthetic task), exported,
and run by golden.model.IntegerModel predicts the same class as the PyTorch model on >= 99.5 %."""
import numpy as np
import torch

from bitaccel.golden.artifact import load_artifact
from bitaccel.golden.model import IntegerModel
from bitaccel.model.train import evaluate_run, export_run, train
from test_model_train import write_setup


def test_trained_w1a1_integer_model_agrees(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, glue = write_setup(tmp_path, n_train=400, n_dev=400)
        run = tmp_path / "run"
        train("sst2", model, "32/32,1/2,1/1", run, glue_dir=glue, epochs=3, batch_size=16, lr=1e-3, max_len=16,
              quiet=True)
        art_path = tmp_path / "w1a1.safetensors"
        art = export_run(run, art_path)
        r = evaluate_run(run, "dev", integer=art_path)
    finally:
        torch.set_num_threads(threads)
    i = r["integer"]
    print(f"W1A1 on {r['examples']} dev examples: PyTorch accuracy {r['metrics']['accuracy']:.4f}, integer "
          f"accuracy {i['metrics']['accuracy']:.4f}, agreement {100 * i['agreement']:.2f}%, max |logit diff| "
          f"{i['max_logit_diff']:.4g} (mean {i['mean_logit_diff']:.3g}); residual_frac {art.numerics.residual_frac}")
    assert r["precision"] == "W1A1" and r["examples"] == 400
    assert set(art.quant.values()) == {1}
    assert r["metrics"]["accuracy"] >= 0.9          # a real, non-constant classifier: agreement means something
    assert i["agreement"] >= 0.995
    assert load_artifact(art_path).tokenizer["kind"] == "huggingface"
    # the packed xnor-popcount path gives the very same logits as the BLAS path used above
    ids = np.array([[2, 5, 9, 12, 3, 0, 0], [2, 7, 8, 3, 0, 0, 0]])
    mask = (ids != 0).astype(np.int64)
    a = IntegerModel(art, "blas").forward(ids, mask)["logits"]
    b = IntegerModel(art, "packed").forward(ids, mask)["logits"]
    assert np.array_equal(a, b)
