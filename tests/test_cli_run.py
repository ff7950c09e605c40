"""`bitaccel run` and the energy of measured activity (sim.energy.measured_energy).

The energy of a fixed counters dict is checked against hand-computed figures and for
linearity (no simulator). One tiny encoder (hidden 64, 2 heads of 32, FFN 128, 2 layers)
runs through `bitaccel run --json` on a 2x3x16 array under Verilator: bit-exact with
golden, golden's prediction, measured cycles and AXI bytes, an energy breakdown summing to
the total. `--text` is tokenized with the packaged MiniLM tokenizer when the artifact names
it; an input longer than max_position and an unavailable simulator fail with one line, exit 2.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from bitaccel.cli import main
from bitaccel.hw.params import HwParams
from bitaccel.sim.energy import ENERGY, measured_energy

#: The tiny encoder (the whole-encoder tests' shape) and its hardware limits.
TINY = dict(vocab_size=60, hidden=64, layers=2, heads=2, ffn=128, max_position=8)
PARAMS = HwParams(rows=2, cols=3, lanes=16, max_seq=8, max_hidden=64, max_ffn=128, max_head_dim=32,
                  max_exp_lut=256, max_act_bits=1)
COUNTERS = {"busy": {"fetch": 50, "mac_array": 1000, "threshold_unit": 300, "requant_unit": 200,
                     "softmax_unit": 64, "layernorm_unit": 256, "axi_read": 900, "axi_write": 40},
            "beats": {"axi_read_beats": 700, "axi_write_beats": 32}}


def _scaled(counters: dict, k: int) -> dict:
    return {g: {n: v * k for n, v in d.items()} for g, d in counters.items()}


def test_measured_energy_hand_computed():
    e = measured_energy(PARAMS, COUNTERS)
    b = e["breakdown_pj"]
    dram = ENERGY["dram_bit"].value                      # 20 pJ per bit
    assert b["dram_reads"] == pytest.approx(700 * 64 * dram)          # 896 000 pJ
    assert b["dram_writes"] == pytest.approx(32 * 64 * dram)
    # one XNOR per lane of every PE per beat: 1000 beats x 2 x 3 PEs x 16 lanes x 0.001875 pJ
    assert b["xnor"] == pytest.approx(1000 * 6 * 16 * ENERGY["xnor_bit"].value)
    # B operand: C words of L bits per beat from the tile buffer
    assert b["sram_weights"] == pytest.approx(1000 * 3 * 16 * ENERGY["sram_bit"].value)
    # A operand (R words of L bits per beat) + one 1-bit code written per threshold element
    assert b["sram_activations"] == pytest.approx((1000 * 2 * 16 + 300 * 1) * ENERGY["sram_bit"].value)
    assert e["energy_pj"] == pytest.approx(sum(b.values()))
    assert sum(a["pj"] for a in e["actions"]) == pytest.approx(e["energy_pj"])
    assert all(b[k] > 0 for k in ("popcount", "accumulate", "registers", "threshold", "requant", "softmax",
                                  "layernorm", "sram_scores", "sram_residual", "sram_tables"))


def test_measured_energy_is_linear_and_zero_without_activity():
    one = measured_energy(PARAMS, COUNTERS)["breakdown_pj"]
    three = measured_energy(PARAMS, _scaled(COUNTERS, 3))["breakdown_pj"]
    for cat in one:
        assert three[cat] == pytest.approx(3 * one[cat]), cat
    assert measured_energy(PARAMS, _scaled(COUNTERS, 0))["energy_pj"] == 0
    only_read = {"busy": {}, "beats": {"axi_read_beats": 1, "axi_write_beats": 0}}
    assert measured_energy(PARAMS, only_read)["energy_pj"] == pytest.approx(64 * ENERGY["dram_bit"].value)
    with pytest.raises(ValueError, match="mac_array"):
        measured_energy(PARAMS, {"busy": {"mac_array": -1}, "beats": {}})


@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory) -> str:
    from bitaccel.golden.artifact import save_artifact
    from bitaccel.golden.config import ModelConfig
    from bitaccel.golden.random_artifact import random_artifact

    path = tmp_path_factory.mktemp("run") / "tiny.safetensors"
    save_artifact(random_artifact(ModelConfig(**TINY), seed=5, act_bits=1), str(path))
    return str(path)


def _one_line_error(status: int, err: str, needle: str) -> None:
    lines = err.strip().splitlines()
    assert status == 2, err
    assert len(lines) == 1 and lines[0].startswith("bitaccel: error:") and needle in lines[0], err


@pytest.mark.sim
def test_run_tiny_encoder_on_verilator(tiny_artifact, capsys):
    from bitaccel.golden.artifact import load_artifact
    from bitaccel.golden.model import IntegerModel
    from bitaccel.sim import runner

    try:
        runner.check_simulator("verilator")
    except runner.SimulatorUnavailable as e:
        pytest.skip(f"verilator unavailable: {e}")
    work = os.environ.get("BITACCEL_SIM_BUILD", str(Path(__file__).resolve().parent.parent / "sim_build"))
    ids, mask = [59, 3, 17, 42, 8, 1], [1, 1, 1, 1, 0, 0]
    status = main(["run", "--artifact", tiny_artifact, "--ids", ",".join(map(str, ids)), "--mask",
                   ",".join(map(str, mask)), "--array", "2x3x16", "--sim", "verilator", "--json", "--build-dir", work])
    out, err = capsys.readouterr()
    assert status == 0, err
    r = json.loads(out)
    ref = IntegerModel(load_artifact(tiny_artifact)).forward(np.array(ids), np.array(mask, dtype=bool))
    assert r["bit_exact"] is True and r["checked"] == ["pooler.acc"] and r["compared"] == TINY["hidden"]
    assert r["prediction"] == r["golden_prediction"] == int(ref["prediction"][0])
    assert r["logits"] == [float(v) for v in ref["logits"][0]]              # same integers, same host head
    assert r["cycles"] > 0 and r["unit_activity"]["mac_array"] > 0 and r["unit_activity"]["softmax_unit"] > 0
    assert r["unit_activity_counts"]["softmax_unit"] == "elements" and r["unit_activity_counts"]["fetch"] == "cycles"
    assert r["latency_ms"] == pytest.approx(r["cycles"] / 200e3)
    assert r["energy_pj"] > 0 and math.isclose(sum(r["energy_breakdown_pj"].values()), r["energy_pj"], rel_tol=1e-9)
    weight_bytes = TINY["layers"] * (4 * 64 * 64 + 2 * 64 * 128) // 8         # every binary weight bit, once at least
    assert r["axi_read_bytes"] >= weight_bytes
    assert r["axi_write_bytes"] == 4 * TINY["hidden"]          # no traces: only the int32 pooler output leaves
    assert (r["sim"], r["array"], r["tokens"]) == ("verilator", "2x3x16", len(ids))
    assert "simulating accelerator on verilator" in err                       # progress on stderr


def test_text_is_tokenized_with_the_artifacts_tokenizer(tiny_artifact, tmp_path):
    pytest.importorskip("tokenizers")
    from bitaccel.golden.artifact import load_artifact
    from bitaccel.sim.run_command import _packaged_minilm_dir, tokenize

    if _packaged_minilm_dir() is None:
        pytest.skip("the packaged all-MiniLM-L6-v2 folder is not installed")
    art = dataclasses.replace(load_artifact(tiny_artifact),
                              tokenizer={"kind": "huggingface", "class": "BertTokenizerFast", "source": "",
                                         "vocab_size": 30522})
    ids = tokenize(art, "A fine film.")
    assert ids[0] == 101 and ids[-1] == 102 and ids.size == 6, ids      # [CLS] a fine film . [SEP]
    wrong = dataclasses.replace(art, tokenizer={**art.tokenizer, "vocab_size": 1234})
    with pytest.raises(ValueError, match="not available"):
        tokenize(wrong, "A fine film.")


def test_text_longer_than_max_position_fails(tiny_artifact, tmp_path, capsys):
    pytest.importorskip("tokenizers")
    from bitaccel.golden.artifact import load_artifact, save_artifact
    from bitaccel.sim.run_command import _packaged_minilm_dir

    if _packaged_minilm_dir() is None:
        pytest.skip("the packaged all-MiniLM-L6-v2 folder is not installed")
    art = dataclasses.replace(load_artifact(tiny_artifact),
                              tokenizer={"kind": "huggingface", "source": "", "vocab_size": 30522})
    path = tmp_path / "tok.safetensors"
    save_artifact(art, str(path))
    status = main(["run", "--artifact", str(path), "--text", "a film that is far too long for this model",
                   "--array", "2x3x16"])
    _one_line_error(status, capsys.readouterr().err, "max_position 8")


def test_unavailable_simulator_fails_with_one_line(tiny_artifact, capsys, monkeypatch):
    from bitaccel.sim import runner

    def missing(sim):
        raise runner.SimulatorUnavailable(f"{sim} not found: install it")

    monkeypatch.setattr(runner, "check_simulator", missing)
    status = main(["run", "--artifact", tiny_artifact, "--ids", "1,2", "--array", "2x3x16", "--sim", "icarus"])
    _one_line_error(status, capsys.readouterr().err, "icarus not found")
