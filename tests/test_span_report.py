"""`bitaccel report` on a span (SQuAD) artifact: sim.workload follows the artifact's head.

A span head has no pooler.in site and no pooler (golden.config.HEADS; compiler.blocks.encoder_blocks
ends with the last layer's LayerNorm writing the final residual stream out), so the modeled
workload of a span artifact is the classifier's without the pooler block and without the
pooler.in binarization after the last layer.
"""
from __future__ import annotations

import json

import pytest

from bitaccel.cli import main
from bitaccel.golden.artifact import save_artifact
from bitaccel.golden.config import PRESETS, uniform_quant
from bitaccel.golden.random_artifact import random_artifact
from bitaccel.sim.workload import LayerNorm, inference_blocks, map_head, quant_map

CFG = PRESETS["tiny"]


def _names(blocks) -> list[tuple[str, tuple[str, ...]]]:
    return [(b.name, tuple(s.name for s in b.stages)) for b in blocks]


@pytest.mark.parametrize("bits", [1, 2])
def test_span_blocks_are_the_classifier_blocks_without_the_pooler(bits):
    cls = inference_blocks(CFG, 16, uniform_quant(CFG, bits))
    span = inference_blocks(CFG, 16, uniform_quant(CFG, bits, "span"))
    assert cls[-1].name == "pooler" and cls[-2].stages[-1].name == "pooler.in"
    assert span[-1].name == f"layers.{CFG.layers - 1}.ffn2_ln2"
    assert isinstance(span[-1].stages[-1], LayerNorm)       # the final residual stream leaves the chip
    assert all("pooler" not in s for _, stages in _names(span) for s in stages)
    assert _names(span) == _names(cls[:-2]) + [(cls[-2].name, tuple(s.name for s in cls[-2].stages[:-1]))]
    assert sum(b.macs for b in cls) - sum(b.macs for b in span) == CFG.hidden * CFG.hidden * bits


def test_head_of_a_quantization_map():
    span_q = uniform_quant(CFG, 1, "span")
    assert map_head(span_q) == "span" and map_head(uniform_quant(CFG, 1)) == "classifier"
    assert map_head(1) == "classifier" and map_head(1, "span") == "span"
    assert quant_map(CFG, 1, "span") == span_q
    # an explicit head is checked against the map: a classifier needs pooler.in
    with pytest.raises(ValueError, match="lacks 1 site.*pooler.in"):
        quant_map(CFG, span_q, "classifier")
    with pytest.raises(ValueError, match="head must be one of"):
        inference_blocks(CFG, 8, 1, head="pointer")
    # a uniform width with head "span" builds the same blocks as the span map
    assert _names(inference_blocks(CFG, 8, 1, head="span")) == _names(inference_blocks(CFG, 8, span_q))


def _report(tmp_path, capsys, art, *extra) -> dict:
    path = tmp_path / f"{art.head}.safetensors"
    save_artifact(art, path)
    capsys.readouterr()
    rc = main(["report", "--model", str(path), "--arrays", "2x4x16", "--seq", "16", "--json", *extra])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return json.loads(out)


def test_report_on_a_span_artifact(tmp_path, capsys):
    span = _report(tmp_path, capsys, random_artifact("tiny", seed=3, head="span"))
    cls = _report(tmp_path, capsys, random_artifact("tiny", seed=3))
    assert span["model"] == "span.safetensors" and span["seq"] == 16 and span["quant"] == "W1A1"
    (s,), (c,) = span["arrays"], cls["arrays"]
    assert s["array"] == "2x4x16"
    for key in ("cycles", "ideal_cycles", "binary_macs", "energy_pj", "instructions"):
        assert s[key] > 0, key
    assert 0 < s["utilization"] <= 1
    # the span program is the classifier's without its pooler (QUANT + MATMUL on the [CLS] row); its cycles are
    # not fewer: the last LayerNorm writes every row to the output region through the trace, one value a cycle
    # (hw.spec.isa.wide_layernorm: a traced LayerNorm is serial), where the classifier's runs a word a cycle
    assert s["ideal_cycles"] < c["ideal_cycles"] and s["instructions"] < c["instructions"]


def test_report_what_if_sram_on_a_span_artifact(tmp_path, capsys):
    """--sram-kib prices sim.workload's blocks (sim.energy.inference_energy): the span head's have no pooler."""
    span = _report(tmp_path, capsys, random_artifact("tiny", seed=4, head="span"), "--sram-kib", "64")
    cls = _report(tmp_path, capsys, random_artifact("tiny", seed=4), "--sram-kib", "64")
    (s,), (c,) = span["arrays"], cls["arrays"]
    assert s["binary_macs"] == sum(b.macs for b in inference_blocks(CFG, 16, 1, head="span"))
    assert c["binary_macs"] - s["binary_macs"] == CFG.hidden * CFG.hidden
    assert 0 < s["energy_pj"] < c["energy_pj"]
