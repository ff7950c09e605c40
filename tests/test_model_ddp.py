"""torchrun with 2 CPU processes (gloo): training finishes, only rank 0 writes, replicas stay identical."""
import json
import os
import subprocess
import sys
from collections import Counter

from bitaccel.model.checkpoint import load_checkpoint
from bitaccel.model.train import read_metrics
from test_model_train import write_setup

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_torchrun_two_processes(tmp_path):
    model, glue = write_setup(tmp_path, n_train=96, n_dev=32)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "bitaccel.cli", "train", "--task", "sst2", "--model", model, "--glue-dir", glue,
           "--schedule", "32/32,1/1", "--out", str(run), "--max-steps", "5", "--batch-size", "16",
           "--lr", "1e-3", "--max-len", "16", "--save-every", "2", "--quiet"]
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]

    ckpt = load_checkpoint(run / "checkpoint.pt")          # written by rank 0, weights_only
    assert ckpt["world"] == 2 and len(ckpt["rng"]) == 2 and (ckpt["stage"], ckpt["step"]) == (1, 5)
    assert not ckpt["rng"][0]["torch"].equal(ckpt["rng"][1]["torch"])   # each rank's own dropout stream
    counts = Counter((r["kind"], r["stage"], r["step"]) for r in read_metrics(run))
    assert counts[("train", 0, 1)] == 1 and counts[("train", 1, 5)] == 1 and max(counts.values()) == 1
    for stage in ("0-w32a32", "1-w1a1"):
        result = json.loads((run / "stages" / stage / "result.json").read_text())
        assert result["world_size"] == 2 and result["steps"] == 5
        digests = result["replica_digests"]
        assert len(digests) == 2 and digests[0] == digests[1], "parameters differ across ranks"
    assert (run / "stages" / "1-w1a1" / "model" / "model.safetensors").is_file()
    assert not list(run.rglob("*.tmp"))
